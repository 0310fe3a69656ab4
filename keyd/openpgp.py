"""Just enough OpenPGP (RFC 4880) to police uploads before GnuPG sees them, in pure Python.

GnuPG stays the authority on signatures; this module only reads packet framing, so that keyd
can refuse what it never wants (secret keys, several keys at once, partial lengths, oversized
packets) and drop third-party certifications *before* spending a gpg call on them: a key that
carries 150,000 signatures (the 2019 certificate-flooding attack) costs one linear scan here and
reaches gpg with its few self-signatures only.

Also here: ASCII armor both ways, v4 fingerprints, and the percent-escaping of HKP `mr` output.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

# packet tags
TAG_SIGNATURE = 2
TAG_SECRET_KEY = 5
TAG_PUBLIC_KEY = 6
TAG_SECRET_SUBKEY = 7
TAG_TRUST = 12
TAG_USER_ID = 13
TAG_PUBLIC_SUBKEY = 14
TAG_USER_ATTRIBUTE = 17

# signature subpackets naming the issuer
SUB_ISSUER_KEYID = 16
SUB_ISSUER_FPR = 33

# what one key may hold once third-party signatures are gone
MAX_USER_IDS = 100
MAX_SUBKEYS = 100
MAX_SELF_SIGNATURES = 1000
MAX_USER_ID_BYTES = 2048

ARMOR_PUBLIC = "PGP PUBLIC KEY BLOCK"
_ARMOR_RE = re.compile(
    r"-----BEGIN (?P<kind>[A-Z0-9 ,/]+)-----\r?\n(?P<body>.*?)-----END (?P=kind)-----",
    re.DOTALL,
)


class PacketError(ValueError):
    """Bytes that are not an acceptable OpenPGP public key; the message says why."""


class SecretKeyError(PacketError):
    """Secret key material, which keyd never accepts."""


# -- ASCII armor -------------------------------------------------------------------------------


def _crc24_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return table


_CRC24 = _crc24_table()


def crc24(data: bytes) -> int:
    crc = 0xB704CE
    table = _CRC24
    for b in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[((crc >> 16) ^ b) & 0xFF]
    return crc


def armor(data: bytes, kind: str = ARMOR_PUBLIC) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    checksum = base64.b64encode(crc24(data).to_bytes(3, "big")).decode("ascii")
    return (
        f"-----BEGIN {kind}-----\n\n" + "\n".join(lines) + f"\n={checksum}\n-----END {kind}-----\n"
    )


def dearmor(text: str) -> list[tuple[str, bytes]]:
    """Every armor block in `text` as (kind, bytes); raise PacketError for broken armor."""
    blocks = []
    for m in _ARMOR_RE.finditer(text):
        kind, body = m.group("kind"), m.group("body")
        lines = [ln.strip() for ln in body.replace("\r", "").split("\n")]
        # armor headers ("Comment: ...") end at the first empty line
        if "" in lines and any(":" in ln for ln in lines[: lines.index("")]):
            lines = lines[lines.index("") + 1 :]
        lines = [ln for ln in lines if ln]
        checksum = None
        if lines and lines[-1].startswith("=") and len(lines[-1]) == 5:
            checksum = lines.pop()
        try:
            data = base64.b64decode("".join(lines), validate=True)
        except (binascii.Error, ValueError):
            raise PacketError("broken ASCII armor (not base64)") from None
        if checksum is not None:
            try:
                want = int.from_bytes(base64.b64decode(checksum[1:], validate=True), "big")
            except (binascii.Error, ValueError):
                raise PacketError("broken ASCII armor (bad checksum line)") from None
            if crc24(data) != want:
                raise PacketError("broken ASCII armor (checksum mismatch)")
        blocks.append((kind, data))
    if not blocks:
        raise PacketError("no ASCII-armored key block found")
    return blocks


# -- packets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    tag: int
    body: bytes
    raw: bytes  # header and body, exactly as read


def packets(data: bytes) -> Iterator[Packet]:
    """Split a binary OpenPGP stream into packets; refuse what a key never needs."""
    pos, n = 0, len(data)
    while pos < n:
        start = pos
        first = data[pos]
        pos += 1
        if not first & 0x80:
            raise PacketError(f"not an OpenPGP packet at byte {start}")
        if first & 0x40:  # new format
            tag = first & 0x3F
            if pos >= n:
                raise PacketError("truncated packet header")
            o1 = data[pos]
            pos += 1
            if o1 < 192:
                length = o1
            elif o1 < 224:
                if pos >= n:
                    raise PacketError("truncated packet header")
                length = ((o1 - 192) << 8) + data[pos] + 192
                pos += 1
            elif o1 == 255:
                if pos + 4 > n:
                    raise PacketError("truncated packet header")
                length = int.from_bytes(data[pos : pos + 4], "big")
                pos += 4
            else:
                raise PacketError("partial-length packets are not allowed in keys")
        else:  # old format
            tag = (first >> 2) & 0x0F
            ltype = first & 0x03
            if ltype == 3:
                raise PacketError("indeterminate-length packets are not allowed in keys")
            size = 1 << ltype
            if pos + size > n:
                raise PacketError("truncated packet header")
            length = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        if pos + length > n:
            raise PacketError(f"truncated packet (tag {tag})")
        yield Packet(tag, data[pos : pos + length], data[start : pos + length])
        pos += length


def _new_header(tag: int, length: int) -> bytes:
    if length < 192:
        return bytes([0xC0 | tag, length])
    if length < 8384:
        length -= 192
        return bytes([0xC0 | tag, (length >> 8) + 192, length & 0xFF])
    return bytes([0xC0 | tag, 255]) + length.to_bytes(4, "big")


def v4_fingerprint(key_body: bytes) -> str:
    """Upper-case 40-hex fingerprint of a v4 public (sub)key packet body."""
    if not key_body or key_body[0] != 4:
        version = key_body[0] if key_body else "?"
        raise PacketError(f"only version 4 keys are accepted (got version {version})")
    if len(key_body) < 9:  # version, creation time, algorithm, at least one MPI
        raise PacketError("public key packet too short")
    digest = hashlib.sha1(b"\x99" + len(key_body).to_bytes(2, "big") + key_body).digest()
    return digest.hex().upper()


def _subpackets(area: bytes) -> Iterator[tuple[int, bytes]]:
    pos, n = 0, len(area)
    while pos < n:
        o1 = area[pos]
        if o1 < 192:
            length, pos = o1, pos + 1
        elif o1 < 255:
            if pos + 2 > n:
                raise PacketError("truncated signature subpacket")
            length, pos = ((o1 - 192) << 8) + area[pos + 1] + 192, pos + 2
        else:
            if pos + 5 > n:
                raise PacketError("truncated signature subpacket")
            length, pos = int.from_bytes(area[pos + 1 : pos + 5], "big"), pos + 5
        if length == 0 or pos + length > n:
            raise PacketError("bad signature subpacket length")
        yield area[pos] & 0x7F, area[pos + 1 : pos + length]
        pos += length


@dataclass(frozen=True)
class SigInfo:
    version: int
    sigtype: int
    issuer_keyid: str | None  # 16 hex, upper case
    issuer_fpr: str | None  # 40 hex, upper case


def signature_info(body: bytes) -> SigInfo:
    """Version, type and issuer of a signature packet (its hashed and unhashed areas)."""
    if len(body) < 2:
        raise PacketError("truncated signature packet")
    version = body[0]
    if version == 3:
        if len(body) < 19 or body[1] != 5:
            raise PacketError("malformed v3 signature")
        return SigInfo(3, body[2], body[7:15].hex().upper(), None)
    if version != 4:
        return SigInfo(version, body[1], None, None)
    if len(body) < 6:
        raise PacketError("truncated signature packet")
    sigtype = body[1]
    hlen = int.from_bytes(body[4:6], "big")
    hashed = body[6 : 6 + hlen]
    if len(hashed) != hlen or len(body) < 8 + hlen:
        raise PacketError("truncated signature packet")
    ulen = int.from_bytes(body[6 + hlen : 8 + hlen], "big")
    unhashed = body[8 + hlen : 8 + hlen + ulen]
    if len(unhashed) != ulen:
        raise PacketError("truncated signature packet")
    keyid = fpr = None
    for area in (hashed, unhashed):
        for sub, value in _subpackets(area):
            if sub == SUB_ISSUER_KEYID and len(value) == 8 and keyid is None:
                keyid = value.hex().upper()
            elif sub == SUB_ISSUER_FPR and len(value) == 21 and value[0] == 4 and fpr is None:
                fpr = value[1:].hex().upper()
    return SigInfo(4, sigtype, keyid, fpr)


def _is_self(sig: SigInfo, fingerprint: str) -> bool:
    if sig.issuer_fpr is not None:
        return sig.issuer_fpr == fingerprint
    return sig.issuer_keyid is not None and sig.issuer_keyid == fingerprint[-16:]


@dataclass
class KeyBlock:
    """One transferable public key, third-party signatures already removed."""

    fingerprint: str
    packets: list[Packet] = field(default_factory=list)
    user_ids: list[bytes] = field(default_factory=list)  # raw user id packet bodies
    subkeys: list[str] = field(default_factory=list)  # subkey fingerprints
    stripped: int = 0  # third-party (or issuer-less) signatures dropped

    @property
    def keyid(self) -> str:
        return self.fingerprint[-16:]

    def to_bytes(self) -> bytes:
        return b"".join(p.raw for p in self.packets)


def split_keys(data: bytes) -> list[KeyBlock]:
    """Parse public keys; drop every signature not issued by the key it sits on.

    Raises PacketError for secret keys, keys that are not v4, framing errors, and keys with
    more user ids, subkeys or self-signatures than any real key has.
    """
    keys: list[KeyBlock] = []
    current: KeyBlock | None = None
    for pkt in packets(data):
        if pkt.tag in (TAG_SECRET_KEY, TAG_SECRET_SUBKEY):
            raise SecretKeyError("secret key material refused: upload public keys only")
        if pkt.tag == TAG_PUBLIC_KEY:
            current = KeyBlock(v4_fingerprint(pkt.body), [pkt])
            keys.append(current)
            continue
        if current is None:
            if pkt.tag == TAG_TRUST:
                continue
            raise PacketError("data does not start with a public key packet")
        if pkt.tag == TAG_SIGNATURE:
            if _is_self(signature_info(pkt.body), current.fingerprint):
                current.packets.append(pkt)
            else:
                current.stripped += 1
        elif pkt.tag in (TAG_USER_ID, TAG_USER_ATTRIBUTE):
            if pkt.tag == TAG_USER_ID:
                if len(pkt.body) > MAX_USER_ID_BYTES:
                    raise PacketError("user id too long")
                current.user_ids.append(pkt.body)
            current.packets.append(pkt)
        elif pkt.tag == TAG_PUBLIC_SUBKEY:
            current.subkeys.append(v4_fingerprint(pkt.body))
            current.packets.append(pkt)
        # trust, marker and unknown packets are dropped
    for key in keys:
        sigs = sum(1 for p in key.packets if p.tag == TAG_SIGNATURE)
        uids = sum(1 for p in key.packets if p.tag in (TAG_USER_ID, TAG_USER_ATTRIBUTE))
        if uids > MAX_USER_IDS or len(key.subkeys) > MAX_SUBKEYS or sigs > MAX_SELF_SIGNATURES:
            raise PacketError(f"key {key.fingerprint} has too many user ids, subkeys or signatures")
    return keys


def parse_armored_keys(text: str) -> list[KeyBlock]:
    """All public keys in an ASCII-armored upload (several armor blocks allowed)."""
    out: list[KeyBlock] = []
    for kind, data in dearmor(text):
        if "PRIVATE" in kind or "SECRET" in kind:
            raise SecretKeyError("secret key material refused: upload public keys only")
        if kind != ARMOR_PUBLIC:
            raise PacketError(f"expected a {ARMOR_PUBLIC}, got {kind[:40]}")
        out.extend(split_keys(data))
    return out


# -- HKP machine-readable output -----------------------------------------------------------


def mr_escape(text: str) -> str:
    """Percent-escape for `options=mr`: everything but printable ASCII, and ':' and '%'."""
    out = []
    for b in text.encode("utf-8"):
        if 0x20 < b < 0x7F and b not in (0x25, 0x3A):
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


def mr_unescape(text: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%" and _HEX2.fullmatch(text[i + 1 : i + 3]):
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw += c.encode("utf-8")
            i += 1
    return raw.decode("utf-8", "replace")
