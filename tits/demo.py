"""`scripts/run` for now: two identities in throwaway homes, one text sealed by Alice and
opened by Bob, shown with Rich. Replaced by a real local cloud as the broker lands."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from . import wire
from .device import CertificateCache
from .home import Home
from .session import Envelope, SessionKey, direct_conversation_id, open_sealed, seal


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="tits-demo-") as tmp:
        alice, bob = Home(Path(tmp, "alice")), Home(Path(tmp, "bob"))
        fa, _ = alice.create("Alice 陳", "alice@example.org", "alice-laptop")
        fb, _ = bob.create("Bob 林", "bob@example.org", "bob-phone")
        alice.identity.import_public(bob.identity.export_public(fb))
        bob.identity.import_public(alice.identity.export_public(fa))
        console.print(f"Alice: [bold]{fa}[/]\nBob:   [bold]{fb}[/]")

        key = SessionKey.generate(direct_conversation_id(fa, fb), members=[fa, fb])
        wrapped = key.wrap(alice.identity, fa, fb)
        bob_key = SessionKey.unwrap(bob.identity, wrapped, fa)
        env = Envelope(wire.new_msg_id(), fa, [fb], None)
        body = seal(key, alice.device, env, "晚安，Bob！明天見 🌙".encode())

        _, cert_bytes, sig = alice.certificate
        certs = CertificateCache(bob.identity)
        certs.add(cert_bytes, sig, expected_identity=fa)
        opened = open_sealed(wire.BODY_DECODER.decode(body), bob_key, env, certs)
        console.print(
            Panel(
                opened.payload.decode(),
                title=f"Alice 陳 → Bob 林  ✓ {opened.certificate.name}",
                subtitle=f"{len(body)} bytes sealed, AES-256-GCM epoch {key.epoch}",
            )
        )


if __name__ == "__main__":
    main()
