"""A client's home directory (`--home`, `$TITS_HOME`, `~/.tits`): identity, device, config.

HOME/gnupg/        GnuPG home holding the user's key and the keys of contacts
HOME/device.key    this device's Ed25519 private key (0600)
HOME/device.cert   its certificate (the exact bytes the identity signed)
HOME/device.sig    the identity's ASCII-armored detached signature over it
HOME/config.toml   fingerprint, name, email, broker, keyserver
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .config import read_toml, write_toml
from .device import Certificate, DeviceKey
from .errors import ConfigError
from .identity import Identity


def resolve_home(explicit: str | Path | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("TITS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".tits"


@dataclass
class Home:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @cached_property
    def config(self) -> dict[str, Any]:
        return read_toml(self.config_path)

    def save_config(self, **changes: Any) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        cfg = dict(self.config)
        cfg.update({k: v for k, v in changes.items() if v is not None})
        write_toml(self.config_path, cfg)
        self.__dict__["config"] = cfg

    @property
    def initialised(self) -> bool:
        return "fingerprint" in self.config and (self.path / "device.key").exists()

    def require(self) -> None:
        if not self.initialised:
            raise ConfigError(
                f"no ω IM identity in {self.path}; run `tits --home {self.path} init` first"
            )

    @cached_property
    def identity(self) -> Identity:
        return Identity(self.path / "gnupg")

    @property
    def fingerprint(self) -> str:
        self.require()
        return str(self.config["fingerprint"])

    @cached_property
    def device(self) -> DeviceKey:
        self.require()
        return DeviceKey.load(self.path / "device.key")

    @cached_property
    def certificate(self) -> tuple[Certificate, bytes, str]:
        """(certificate, the exact signed bytes, armored signature)."""
        self.require()
        data = (self.path / "device.cert").read_bytes()
        return Certificate.parse(data), data, (self.path / "device.sig").read_text()

    def create(
        self, name: str, email: str, device_name: str, **settings: Any
    ) -> tuple[str, DeviceKey]:
        """Make the GnuPG key and the device key; refuse to overwrite an existing identity."""
        if self.initialised:
            raise ConfigError(f"{self.path} already holds identity {self.config['fingerprint']}")
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        fp = self.identity.create_key(name, email)
        device = DeviceKey.generate()
        cert, sig = device.certify(self.identity, fp, device_name)
        device.save(self.path / "device.key")
        (self.path / "device.cert").write_bytes(cert.to_bytes())
        (self.path / "device.sig").write_text(sig)
        self.save_config(
            fingerprint=fp, name=name, email=email, device_name=device_name, **settings
        )
        return fp, device
