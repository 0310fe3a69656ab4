"""The scenarios run the real `tits` command, dozens of times a test: each run is a Python
start and gpg, 1 s on an idle machine and 3–4 s on a loaded one (a group scenario took 118 s
of its 120 s on CI). A scenario gets 480 s unless it says otherwise."""

from __future__ import annotations

import pytest

SCENARIO_TIMEOUT_S = 480


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "scenarios" in item.path.parts and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SCENARIO_TIMEOUT_S))
