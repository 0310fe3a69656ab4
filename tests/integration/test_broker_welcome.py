"""`Welcome.brokers`: a client learns every broker of the cloud at login (its own first), so
when its broker stops answering it has the others to try."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker_fixtures import People, connect, people_fixture  # noqa: F401 - fixtures
from tests.proc_cloud import ProcCloud

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cloud3() -> Iterator[ProcCloud]:
    cloud = ProcCloud(3)
    yield cloud
    cloud.close()


def test_welcome_lists_the_clouds_brokers_itself_first(cloud3: ProcCloud, people: People) -> None:
    urls = [cloud3.url(i) for i in range(3)]
    for i in range(3):
        conn = connect(people.alice, urls[i])
        try:
            assert conn.welcome is not None
            brokers = conn.welcome.brokers
            assert brokers[0] == urls[i]
            assert sorted(brokers) == sorted(urls) and len(brokers) == 3
        finally:
            conn.close()


def test_a_client_can_log_in_at_every_broker_it_was_told_of(
    cloud3: ProcCloud, people: People
) -> None:
    first = connect(people.bob, cloud3.url(0))
    assert first.welcome is not None
    listed = first.welcome.brokers
    first.close()
    for url in listed[1:]:
        other = connect(people.bob, url)
        assert other.welcome is not None and other.welcome.brokers[0] == url
        other.close()
