"""One exception root for ω IM; every message is written for the person at the keyboard.

TitsError
├── ConfigError        a home, config file or argument is unusable
├── WireError          bytes that do not decode as the protocol says
├── IdentityError      GnuPG failed or a key is missing
├── VerificationError  a signature is bad, by the wrong key, expired or revoked
├── DecryptionError    ciphertext that does not open (tampered, wrong key or epoch)
├── KeyServerError     the key server refused or could not be reached
├── BrokerError        the broker refused a request (carries its error code)
└── MediaError         a file, chunk or manifest refused (its code: wire.MediaErrorCode)
"""

from __future__ import annotations


class TitsError(Exception):
    """Base of every error ω IM raises on purpose; the CLI prints it as one line."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(TitsError):
    code = "config"


class WireError(TitsError):
    code = "bad-frame"


class IdentityError(TitsError):
    code = "identity"


class VerificationError(TitsError):
    code = "bad-signature"


class DecryptionError(TitsError):
    code = "undecryptable"


class KeyServerError(TitsError):
    code = "keyserver"


class BrokerError(TitsError):
    code = "broker"


class MediaError(TitsError):
    """A file, a chunk or a manifest refused (its `code` is a `wire.MediaErrorCode`)."""

    code = "media"
