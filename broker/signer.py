"""The broker signs what it gossips with its own device key, certified by its GnuPG identity,
exactly as a user's device signs texts: GnuPG once per broker, Ed25519 per advert."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from tits import wire
from tits.device import Certificate, CertificateCache, DeviceKey
from tits.errors import IdentityError, VerificationError
from tits.identity import Identity

log = structlog.get_logger("tits.broker.signer")

MAX_REFUSED = 10_000
RENEW_BEFORE_S = 30 * 24 * 3600  # a broker restarted in its certificate's last month renews it


def _expiring(cert: bytes) -> bool:
    try:
        return Certificate.parse(cert).expires - time.time() < RENEW_BEFORE_S
    except VerificationError:
        return True


class BrokerSigner:
    """This broker's gossip signing key: `<data>/gossip.key`, `.cert`, `.sig`."""

    def __init__(self, identity: Identity, fingerprint: str, data: Path) -> None:
        self.fingerprint = fingerprint
        key_path, cert_path, sig_path = (data / f"gossip.{x}" for x in ("key", "cert", "sig"))
        if (
            key_path.exists()
            and cert_path.exists()
            and sig_path.exists()
            and not _expiring(cert_path.read_bytes())
        ):
            self.device = DeviceKey.load(key_path)
            self.cert, self.cert_sig = cert_path.read_bytes(), sig_path.read_bytes()
        else:  # first start, or the certificate runs out soon: a new key, certified afresh
            self.device = DeviceKey.generate()
            cert, sig = self.device.certify(identity, fingerprint, "titsd-gossip")
            self.cert, self.cert_sig = cert.to_bytes(), sig.encode()
            self.device.save(key_path)
            cert_path.write_bytes(self.cert)
            sig_path.write_bytes(self.cert_sig)
        self.armored_key = identity.export_public(fingerprint).encode()

    def sign_advert(self, advert: wire.Advert) -> wire.SignedAdvert:
        data = wire.encode(advert)
        return wire.SignedAdvert(
            advert=data,
            signature=self.device.sign(data),
            device=self.device.id,
            cert=self.cert,
            cert_sig=self.cert_sig,
            key=self.armored_key,
        )

    def sign_presence(self, presence: wire.Presence) -> wire.PresenceUpdate:
        data = wire.encode(presence)
        return wire.PresenceUpdate(
            presence=data, signature=self.device.sign(data), device=self.device.id
        )


class BrokerVerifier:
    """Checks adverts and presence from other brokers; learns their keys from their adverts."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.certs = CertificateCache(identity)
        self._refused: set[tuple[str, str, bytes]] = set()

    def advert(self, signed: wire.SignedAdvert) -> wire.Advert:
        advert = wire.ADVERT_DECODER.decode(signed.advert)
        broker = advert.broker
        if self.certs.get(broker, signed.device) is None:
            self._learn(broker, signed)
        self.certs.verify(broker, signed.device, signed.advert, signed.signature)
        return advert

    def _learn(self, broker: str, signed: wire.SignedAdvert) -> None:
        """A broker's gossip certificate seen for the first time: GnuPG checks it, once. All
        that can be checked without GnuPG is checked first, and refusals are remembered, so
        peer input cannot make the loop spend its time in gpg."""
        attempt = (broker, signed.device, wire.sha256(signed.cert + signed.cert_sig + signed.key))
        if attempt in self._refused:
            raise VerificationError(f"advert of {broker[:16]}: certificate refused before")
        cert = Certificate.parse(signed.cert)
        if cert.identity != broker or cert.device != signed.device:
            raise VerificationError(f"advert of {broker[:16]}: certificate of another device")
        try:
            if not self.identity.has_key(broker):
                scanned = {k["fingerprint"] for k in self.identity.gpg.scan_keys_mem(signed.key)}
                if scanned != {broker}:
                    raise VerificationError(f"advert of {broker[:16]} carries another key")
                self.identity.import_public(signed.key)
            self.certs.add(signed.cert, signed.cert_sig, expected_identity=broker)
        except (IdentityError, VerificationError) as exc:
            if len(self._refused) >= MAX_REFUSED:
                self._refused.clear()
            self._refused.add(attempt)
            raise VerificationError(f"advert of {broker[:16]}: {exc.message}") from None

    def presence(self, update: wire.PresenceUpdate) -> wire.Presence:
        presence = wire.PRESENCE_DECODER.decode(update.presence)
        self.certs.verify(presence.broker, update.device, update.presence, update.signature)
        return presence
