"""The broker's own keys, made on first start under the data directory (all 0600/0700):

    <data>/gnupg/      GnuPG home with the broker's key: its fingerprint is the broker id
    <data>/curve.key   the CURVE secret key (z85); the public key is derived from it

A client reaches a broker with its URL: ``tcp://HOST:PORT#<CURVE server public key, 64 hex>``.
Hex (not z85) keeps the URL free of shell metacharacters; `tits.client.BrokerURL` parses it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.utils import z85

from tits.config import read_toml, write_toml
from tits.identity import Identity


def _write_secret(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class ServerKeys:
    identity: Identity
    fingerprint: str
    curve_public: bytes  # z85
    curve_secret: bytes  # z85
    armored: str  # the broker's OpenPGP public key

    @property
    def curve_hex(self) -> str:
        return z85.decode(self.curve_public).hex()

    def url(self, host: str, port: int) -> str:
        return f"tcp://{host}:{port}#{self.curve_hex}"

    @classmethod
    def load_or_create(cls, data: Path, name: str) -> ServerKeys:
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        identity = Identity(data / "gnupg")
        meta_path = data / "broker.toml"
        meta = read_toml(meta_path)
        fp = meta.get("fingerprint")
        if not fp or not identity.has_key(str(fp)):
            safe = "".join(c for c in name if c.isalnum() or c in "-._ ")[:40] or "broker"
            fp = identity.create_key(f"titsd {safe}", f"broker-{secrets.token_hex(4)}@tits.invalid")
            write_toml(meta_path, {"fingerprint": fp})
        curve_path = data / "curve.key"
        if curve_path.exists():
            secret = curve_path.read_bytes().strip()
        else:
            _, secret = zmq.curve_keypair()
            _write_secret(curve_path, secret + b"\n")
        public = zmq.curve_public(secret)
        return cls(identity, str(fp), public, secret, identity.export_public(str(fp)))
