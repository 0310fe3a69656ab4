"""Which brokers belong to this cloud: every broker of a cloud holds the same *join secret*.

Why a secret and not an allow-list of fingerprints: a cloud grows by starting a broker with
`--join`, and its GnuPG key (its id) is only made on first start, so nobody could list it in
advance. The operator copies one file instead (`<data>/cloud.secret`, made on first start,
or `--cloud-secret FILE`); `tits cloud up` hands one secret to all its brokers.

- Peer links: a broker proves it holds the secret with HMAC-SHA256(secret, id ‖ CURVE key)
  in its `PeerHello`. The CURVE key is the one ZAP authenticated for that very connection, so
  a proof seen (or stolen) on one link is useless on another.
- Gossip: PUB/SUB frames are sealed with AES-256-GCM under a key derived from the secret, so
  a CURVE client that subscribes without being admitted learns nothing, and cannot inject.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tits.errors import ConfigError, VerificationError

SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """Read a hex secret; make one (0600) if the file does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(SECRET_BYTES) + "\n")
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cloud secret {path} is unreadable: {exc}") from None
    if len(secret) < 16:
        raise ConfigError(f"cloud secret {path} is too short (need at least 16 bytes of hex)")
    return secret


class Admission:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._gossip = AESGCM(hashlib.sha256(b"tits-gossip-v1" + secret).digest())

    def proof(self, broker_id: str, curve_key: str) -> bytes:
        msg = f"tits-peer-v1|{broker_id}|{curve_key}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def admits(self, broker_id: str, curve_key: str, proof: bytes) -> bool:
        return hmac.compare_digest(self.proof(broker_id, curve_key), proof)

    def seal_gossip(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._gossip.encrypt(nonce, data, b"gossip")

    def open_gossip(self, data: bytes) -> bytes:
        if len(data) < 28:
            raise VerificationError("gossip frame too short")
        try:
            return self._gossip.decrypt(data[:12], data[12:], b"gossip")
        except InvalidTag:
            raise VerificationError("gossip frame not sealed with this cloud's secret") from None
