"""The 加好友 code: what a QR code (or a line read aloud) carries so a friend can add you —
your fingerprint and the key server to fetch your key from; never a name (a name in a code
could claim to be anyone: the name shown comes from the key itself, marked as such).

    omega-im:friend?fp=<40 hex>&ks=<http(s) URL>
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

from tits.errors import ConfigError, IdentityError
from tits.identity import normalise_fingerprint

SCHEME = "omega-im"


def make(fingerprint: str, keyserver: str | None) -> str:
    code = f"{SCHEME}:friend?fp={fingerprint}"
    return code + (f"&ks={quote(keyserver, safe=':/')}" if keyserver else "")


def read(text: str) -> tuple[str, str | None]:
    """(fingerprint, key server or None) from a code, or from a fingerprint as typed (spaces
    between the groups of four allowed)."""
    text = text.strip()
    if not text.lower().startswith(SCHEME + ":"):
        try:
            return normalise_fingerprint(text), None
        except IdentityError:
            raise ConfigError(
                "not a friend code or a fingerprint: ask for their QR code or their ID"
            ) from None
    parts = urlsplit(text)
    if parts.path != "friend":
        raise ConfigError("not a friend code (omega-im:friend?fp=…)")
    query = parse_qs(parts.query, max_num_fields=4)
    fps = query.get("fp", [])
    if len(fps) != 1:
        raise ConfigError("a friend code names exactly one fingerprint")
    try:
        fp = normalise_fingerprint(fps[0])
    except IdentityError:
        raise ConfigError("the friend code's fingerprint is not 40 hex digits") from None
    ks = query.get("ks", [None])[0]
    if ks is not None and urlsplit(ks).scheme not in ("http", "https"):
        raise ConfigError("the friend code's key server is not an http(s) address")
    return fp, ks
