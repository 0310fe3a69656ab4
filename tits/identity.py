"""A user's (or broker's) OpenPGP identity, held in a GnuPG home through python-gnupg.

Every check here compares the signer's primary-key fingerprint with the one expected:
python-gnupg calls a signature "valid" when *any* key in the ring made it, and a decryption
"ok" when nothing signed it at all. No function here ever talks to a key server.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gnupg

from .errors import IdentityError, VerificationError

FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}\Z")
IMPORT_OPTIONS = ["--import-options", "import-clean,self-sigs-only"]

# gpg.conf for every home we make: gpg must never fetch or send keys on its own.
GPG_CONF = """\
# written by ω IM: keys come only from the ω IM key server, fetched on purpose
no-auto-key-retrieve
no-auto-key-locate
keyserver-options no-auto-key-retrieve,no-honor-keyserver-url
auto-key-locate local
trust-model always
# gpg 2.2 falls back to a public key server when none is set: no dirmngr, no network at all
disable-dirmngr
"""


def normalise_fingerprint(value: str) -> str:
    """Return an upper-case 40-hex fingerprint, or raise for anything else."""
    fp = value.replace(" ", "").upper()
    if fp.startswith("0X"):
        fp = fp[2:]
    if not FINGERPRINT_RE.match(fp):
        raise IdentityError(f"not a 40-hex fingerprint: {value[:60]!r}")
    return fp


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    name: str
    email: str
    secret: bool


def _split_uid(uid: str) -> tuple[str, str]:
    m = re.match(r"^(.*?)\s*<([^>]*)>\s*$", uid)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return uid.strip(), ""


class Identity:
    """GnuPG operations in one home directory (created 0700 if missing)."""

    def __init__(self, gnupghome: str | os.PathLike[str]) -> None:
        self.home = Path(gnupghome)
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        conf = self.home / "gpg.conf"
        if not conf.exists():
            conf.write_text(GPG_CONF)
        try:
            self.gpg = gnupg.GPG(gnupghome=str(self.home))
        except (OSError, ValueError) as exc:  # gpg binary missing or unusable
            raise IdentityError(
                f"GnuPG is not usable ({exc}); install it, e.g. `apt-get install gnupg`"
            ) from exc
        self.gpg.encoding = "utf-8"

    # -- keys -------------------------------------------------------------------------------

    def create_key(self, name: str, email: str, passphrase: str | None = None) -> str:
        """Make an ed25519 signing key with a cv25519 encryption subkey; return its fingerprint."""
        for field in (name, email):
            if not field or any(c in field for c in "\n\r<>:") or len(field) > 200:
                raise IdentityError(f"unusable name or email: {field!r}")
        lines = [
            "Key-Type: EDDSA",
            "Key-Curve: ed25519",
            "Key-Usage: sign,cert",
            "Subkey-Type: ECDH",
            "Subkey-Curve: cv25519",
            "Subkey-Usage: encrypt",
            f"Name-Real: {name}",
            f"Name-Email: {email}",
            "Expire-Date: 0",
        ]
        lines += [f"Passphrase: {passphrase}"] if passphrase else ["%no-protection"]
        lines.append("%commit")
        result = self.gpg.gen_key("\n".join(lines) + "\n")
        if not result.fingerprint:
            raise IdentityError(f"GnuPG could not create a key: {result.stderr[-300:]}")
        return normalise_fingerprint(result.fingerprint)

    def keys(self, secret: bool = False) -> list[KeyInfo]:
        out = []
        for k in self.gpg.list_keys(secret=secret):
            name, email = _split_uid(k["uids"][0] if k["uids"] else "")
            out.append(KeyInfo(k["fingerprint"], name, email, secret))
        return out

    def key_info(self, fingerprint: str) -> KeyInfo | None:
        fp = normalise_fingerprint(fingerprint)
        for k in self.gpg.list_keys(keys=[fp]):
            if k["fingerprint"] == fp:
                name, email = _split_uid(k["uids"][0] if k["uids"] else "")
                return KeyInfo(fp, name, email, False)
        return None

    def subkeys(self, fingerprint: str) -> list[str]:
        """The key ids of `fingerprint`'s subkeys: what changes when its owner (or someone
        pretending to be them) replaces the encryption key under the same fingerprint."""
        fp = normalise_fingerprint(fingerprint)
        for k in self.gpg.list_keys(keys=[fp]):
            if k["fingerprint"] == fp:
                return sorted(str(s[0]) for s in k.get("subkeys", []))
        return []

    def has_key(self, fingerprint: str) -> bool:
        return self.key_info(fingerprint) is not None

    def export_public(self, fingerprint: str) -> str:
        data = self.gpg.export_keys(normalise_fingerprint(fingerprint), armor=True)
        if not data:
            raise IdentityError(f"no public key {fingerprint} in this home")
        return data

    def import_public(self, armored: str | bytes) -> list[str]:
        """Import public keys, dropping third-party signatures; return the fingerprints imported.

        Secret keys in the input are refused: this path only ever takes public keys.
        """
        text = armored.decode("utf-8", "replace") if isinstance(armored, bytes) else armored
        if "PRIVATE KEY BLOCK" in text:
            raise IdentityError("refusing to import a secret key")
        result = self.gpg.import_keys(text, extra_args=IMPORT_OPTIONS)
        fps = sorted({normalise_fingerprint(f) for f in result.fingerprints if f})
        if not fps:
            raise IdentityError("no usable public key in the data")
        return fps

    # -- signatures ---------------------------------------------------------------------------

    def sign_detached(self, data: bytes, fingerprint: str, passphrase: str | None = None) -> str:
        sig = self.gpg.sign(
            data, keyid=normalise_fingerprint(fingerprint), detach=True, passphrase=passphrase
        )
        if not sig.data:
            raise IdentityError(f"GnuPG could not sign: {sig.status}")
        return str(sig)

    def verify_detached(self, data: bytes, signature: str | bytes, expected: str) -> None:
        """Raise unless `signature` over `data` is good and made by the key `expected`."""
        expected = normalise_fingerprint(expected)
        fd, path = tempfile.mkstemp(dir=self.home, suffix=".sig")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(signature.encode() if isinstance(signature, str) else signature)
            result = self.gpg.verify_data(path, data)
        finally:
            os.unlink(path)
        self._require_signer(result, expected)

    @staticmethod
    def _require_signer(result: gnupg.Verify, expected: str, decrypted: bool = False) -> None:
        signers = {
            (info.get("pubkey_fingerprint") or info.get("fingerprint") or "").upper()
            for info in result.sig_info.values()
        }
        problems = result.problems
        if decrypted:
            # a message to many recipients names every one of them: "no secret key" for
            # the others' keys is how gpg says it found ours among them
            problems = [p for p in problems if p.get("status") != "no secret key"]
        if not result.valid or problems:
            raise VerificationError(f"signature not valid ({result.status or 'no signature'})")
        if signers != {expected} or (result.pubkey_fingerprint or "").upper() != expected:
            raise VerificationError(
                f"signed by {result.pubkey_fingerprint or 'unknown key'}, expected {expected}"
            )

    # -- encryption ---------------------------------------------------------------------------

    def encrypt_to(
        self,
        data: bytes,
        recipient: str,
        signer: str | None = None,
        passphrase: str | None = None,
    ) -> str:
        """Encrypt (and, given a signer, sign) to one recipient; ASCII-armored OpenPGP message."""
        result = self.gpg.encrypt(
            data,
            [normalise_fingerprint(recipient)],
            sign=normalise_fingerprint(signer) if signer else None,
            always_trust=True,
            armor=True,
            passphrase=passphrase,
        )
        if not result.ok:
            raise IdentityError(f"GnuPG could not encrypt to {recipient}: {result.status}")
        return str(result)

    def encrypt_to_many(
        self, data: bytes, recipients: list[str], signer: str, passphrase: str | None = None
    ) -> str:
        """One OpenPGP message, signed by `signer`, that each recipient opens with plain
        `gpg --decrypt`: one gpg process for a whole group instead of one per member."""
        result = self.gpg.encrypt(
            data,
            sorted({normalise_fingerprint(r) for r in recipients}),
            sign=normalise_fingerprint(signer),
            always_trust=True,
            armor=True,
            passphrase=passphrase,
        )
        if not result.ok:
            raise IdentityError(f"GnuPG could not encrypt to {len(recipients)}: {result.status}")
        return str(result)

    def decrypt_from(
        self, armored: str | bytes, expected_signer: str | None, passphrase: str | None = None
    ) -> bytes:
        """Decrypt; given `expected_signer`, require a good signature by exactly that key."""
        result = self.gpg.decrypt(armored, passphrase=passphrase)
        if not result.ok:
            raise VerificationError(f"cannot decrypt: {result.status or 'not an OpenPGP message'}")
        if expected_signer is not None:
            self._require_signer(result, normalise_fingerprint(expected_signer), decrypted=True)
        return result.data
