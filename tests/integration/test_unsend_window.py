"""A group's 收回 window, set by its admins for every member (24 h unless they say otherwise):
a shorter one, or none, holds on every member's device — checked by the receivers, so a
hostile client's late unsend is refused there too; a member who is no admin cannot set it."""

from __future__ import annotations

import pytest

from tests.group_fixtures import (  # noqa: F401 - fixtures
    Crowd,
    cloud1_fixture,
    crowd_fixture,
    group_of,
    join,
)
from tests.integration.test_line_gestures import forged
from tests.proc_cloud import ProcCloud
from tits.client.controls import settings_payload, unsend_window_seconds
from tits.client.model import (
    SETTINGS_MIME,
    UNSEND_MIME,
    UNSEND_WINDOW_S,
    ChatSettings,
    SettingsChanged,
    Unsent,
)
from tits.errors import ConfigError

pytestmark = pytest.mark.timeout(300)


def test_the_group_window_holds_for_every_member(cloud1: ProcCloud, crowd: Crowd) -> None:
    rs = join(cloud1, crowd, "alice", "bob", "carol")
    gid = group_of(crowd, rs, ["bob", "carol"], "班聚")
    alice, bob, carol = rs["alice"], rs["bob"], rs["carol"]
    target = "#" + gid.hex()
    assert carol.m.store.extras.unsend_window(gid) == UNSEND_WINDOW_S  # nobody set one

    # Bob is a member, not an admin: his client says so, and a forged rule is refused
    with pytest.raises(ConfigError, match="admins"):
        bob.m.set_unsend_window(target, 0)
    bogus = forged(bob, gid, settings_payload(ChatSettings(unsend_s=0)), SETTINGS_MIME)
    carol.until(lambda r: bogus in {e.id for e in r.refused}, 60, "the forged rule refused")
    assert carol.m.store.extras.unsend_window(gid) == UNSEND_WINDOW_S

    # the admin turns unsend off: on every device, then a text of Bob's
    alice.m.set_unsend_window(target, 0)
    for r in (bob, carol):
        r.until(lambda r: any(isinstance(e, SettingsChanged) for e in r.events), 60, "the rule")
        assert r.m.store.extras.unsend_window(gid) == 0
    text = bob.m.send_text([], "說出去的話", group=gid)
    carol.until(lambda r: text in {m.id for m in r.messages}, 60, "the text")
    with pytest.raises(ConfigError, match="does not allow"):
        bob.m.unsend(text)  # his own client refuses
    late = forged(bob, gid, text, UNSEND_MIME)  # a hostile client sends it anyway
    carol.until(lambda r: late in {e.id for e in r.refused}, 60, "the unsend refused")
    refused = {e.id: e.reason for e in carol.refused}
    assert "too late" in refused[late]
    kept = carol.m.store.message(text)
    assert kept is not None and not kept.unsent and kept.text == "說出去的話"

    # an hour again: Bob may take it back, everywhere
    alice.m.set_unsend_window(target, 3600)
    carol.until(lambda r: r.m.store.extras.unsend_window(gid) == 3600, 60, "the new rule")
    bob.until(lambda r: r.m.store.extras.unsend_window(gid) == 3600, 60, "the new rule")
    bob.m.unsend(text)
    carol.until(lambda r: any(isinstance(e, Unsent) and e.id == text for e in r.events), 60)
    gone = carol.m.store.message(text)
    assert gone is not None and gone.unsent and gone.text is None


def test_window_words() -> None:
    assert unsend_window_seconds("off") == 0
    assert unsend_window_seconds("10m") == 600
    assert unsend_window_seconds("7d") == 7 * 86400
    for bad in ("8d", "30s", "-1h", "soon", "", "1e9"):
        assert unsend_window_seconds(bad) is None, bad
