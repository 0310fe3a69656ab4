"""A length of time in words, in the reader's language: "30 days", "4 seconds".

The status page passes its page's gettext; everything else reads the process's.
"""

from __future__ import annotations

from collections.abc import Callable

from . import i18n

Tr = Callable[[str], str]

_DAY, _HOUR, _MINUTE = 86400, 3600, 60


def span(seconds: float, _: Tr = i18n._) -> str:
    """The largest whole unit that fits (rounded down): 2,592,000 s → "30 days"."""
    s = max(0, int(seconds))
    if s >= _DAY:
        n = s // _DAY
        return _("1 day") if n == 1 else _("{n} days").format(n=n)
    if s >= _HOUR:
        n = s // _HOUR
        return _("1 hour") if n == 1 else _("{n} hours").format(n=n)
    if s >= _MINUTE:
        n = s // _MINUTE
        return _("1 minute") if n == 1 else _("{n} minutes").format(n=n)
    return _("1 second") if s == 1 else _("{n} seconds").format(n=s)
