"""A home for app tests whose store is filled directly (no gpg, no broker): fixed people,
a 1:1 chat with unread messages, a group with its membership log, wide and hostile texts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from tits.client import memberlog as ml
from tits.client.model import Message
from tits.client.store import LocalStore
from tits.config import write_toml
from tits.session import direct_conversation_id

ME = "A" * 40
BOB = "B0B0" * 10
CAROL = "C0C0" * 10
DAVE = "D0D0" * 10
NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC).timestamp()  # a Tuesday, 下午 03:30 UTC
DAY = 86_400_000


def at(days_ago: int, hh: int, mm: int) -> int:
    d = datetime(2026, 12, 1, hh, mm, tzinfo=UTC).timestamp() * 1000
    return int(d) - days_ago * DAY


def _id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def _fake_sign(raw: bytes, fp: str) -> str:
    return "not checked: the stored log is trusted as verified"


def make_group(store: LocalStore, name: str, members: list[str], ts: int) -> bytes:
    gid_hex = ml.new_group_id(ME)
    log = ml.MemberLog(gid_hex)
    create = ml.make_entry(None, "create", ME, group=gid_hex, name=name, ts=ts)
    log.add_own(ml.sign_entry(create, _fake_sign))
    invite = ml.make_entry(log.state, "invite", ME, group=gid_hex, targets=members, ts=ts + 60_000)
    log.add_own(ml.sign_entry(invite, _fake_sign))
    gid = bytes.fromhex(gid_hex)
    store.put_group(gid, name, False, msgspec.msgpack.encode(log.entries()))
    return gid


def fill(home: Path, *, group_id_out: list[bytes] | None = None) -> Path:
    """Write config, contacts and a store; return the home."""
    home.mkdir(parents=True, exist_ok=True)
    write_toml(home / "config.toml", {"fingerprint": ME, "name": "我"})
    lines = [f"{json.dumps(n, ensure_ascii=False)} = {json.dumps(fp)}"
             for n, fp in (("bob", BOB), ("小美", CAROL), ("dave", DAVE))]  # fmt: skip
    (home / "contacts.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = LocalStore(home)
    try:
        store.confirm(BOB, ["X"])
        bob_conv = direct_conversation_id(ME, BOB)
        dave_conv = direct_conversation_id(ME, DAVE)
        gid = make_group(store, "讀書會 📚", [CAROL, BOB], at(1, 9, 0))
        if group_id_out is not None:
            group_id_out.append(gid)
        msgs = [
            Message(id=_id(1), conv=bob_conv, sender=ME, to=[BOB], group=None, kind="text",
                    text="晚安 🌙", verified=True, ts=at(1, 22, 10), outgoing=True, read=True),
            Message(id=_id(2), conv=bob_conv, sender=BOB, to=[ME], group=None, kind="text",
                    text="早安！今天要開會嗎？", verified=True, ts=at(0, 9, 5), read=False),
            Message(id=_id(3), conv=bob_conv, sender=BOB, to=[ME], group=None, kind="text",
                    text="[bold]不是標記[/] \x1b[2K\u202eevil", verified=True, ts=at(0, 9, 6),
                    read=False),
            Message(id=_id(4), conv=gid, sender=CAROL, to=[ME, BOB], group=gid, kind="text",
                    text="大家好 👋 我是小美", verified=True, ts=at(0, 14, 0), read=False),
            Message(id=_id(5), conv=gid, sender=ME, to=[CAROL, BOB], group=gid, kind="text",
                    text="歡迎！Welcome 😀", verified=True, ts=at(0, 14, 2), outgoing=True,
                    read=True),
            Message(id=_id(7), conv=dave_conv, sender=DAVE, to=[ME], group=None, kind="text",
                    text=None, verified=True, ts=at(40, 7, 0), read=True, unsent=True),
            Message(id=_id(6), conv=dave_conv, sender=DAVE, to=[ME], group=None, kind="text",
                    text="see you", verified=True, ts=at(40, 8, 0), read=True),
        ]  # fmt: skip
        store.record(msgs)
    finally:
        store.close()
    return home


def fill_gestures(home: Path, gid: bytes) -> None:
    """Add LINE's gestures to a filled home's group: an unread text from Bob naming me, two
    reactions to my welcome, a 公告, a text that vanishes 10 minutes after it is shown and one
    that already has."""
    from tits.client.model import Announced

    store = LocalStore(home)
    try:
        store.record([
            Message(id=_id(8), conv=gid, sender=BOB, to=[ME, CAROL], group=gid, kind="text",
                    text="@我 週六有空嗎？", verified=True, ts=at(0, 14, 5), read=False,
                    mentions=[ME]),
            Message(id=_id(9), conv=gid, sender=CAROL, to=[ME, BOB], group=gid, kind="text",
                    text="看完就消失", verified=True, ts=at(0, 14, 6), read=False,
                    lifetime_s=600),
            Message(id=_id(10), conv=gid, sender=CAROL, to=[ME, BOB], group=gid, kind="text",
                    text=None, verified=True, ts=at(0, 14, 7), read=True, expired=True),
        ])  # fmt: skip
        store.db.execute("UPDATE messages SET expired=1 WHERE id=?", (_id(10),))
        store.record([
            Message(id=_id(12), conv=gid, sender=BOB, to=[ME, CAROL], group=gid, kind="text",
                    text="我也到了", verified=True, ts=at(0, 14, 8), read=False, reply_to=_id(4)),
        ])  # fmt: skip
        store.add_receipts(CAROL, [_id(5)])  # 已讀 2 under my welcome
        store.add_receipts(BOB, [_id(5)])
        store.extras.react(_id(5), CAROL, "love")
        store.extras.react(_id(5), BOB, "haha")
        store.extras.announce(Announced(conv=gid, by=CAROL, text="週六晚上 7 點 聚餐 🍲",
                                        ts=at(0, 14, 1), id=_id(11)))  # fmt: skip
    finally:
        store.close()


def fill_key_changed(home: Path, me: str, bob: str) -> None:
    """A real home (its GnuPG keyring holds Bob's key) whose user once confirmed Bob with
    other subkeys than his key has now: his key changed since."""
    write_toml(home / "config.toml", {"fingerprint": me, "name": "我"})
    (home / "contacts.toml").write_text(f'bob = "{bob}"\n', encoding="utf-8")
    store = LocalStore(home)
    try:
        store.confirm(bob, ["0123456789ABCDEF"])  # what Alice compared, long ago
        conv = direct_conversation_id(me, bob)
        store.record([
            Message(id=_id(1), conv=conv, sender=bob, to=[me], group=None, kind="text",
                    text="我換手機了，幫我轉帳好嗎？", verified=True, ts=at(0, 9, 5), read=False),
        ])  # fmt: skip
    finally:
        store.close()


def fill_media(home: Path) -> bytes:
    """Add to a filled home's chat with Bob: a picture (its signed manifest carrying a small
    thumbnail, not fetched yet) and a sticker of a built-in pack. Returns the chat's id."""
    import io

    from PIL import Image

    from tits import wire

    img = Image.new("RGB", (32, 16), "#d0021b")
    img.paste(Image.new("RGB", (16, 16), "#06c755"), (16, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    picture = wire.Manifest(
        sha256=b"\x11" * 32, size=2_400_000, chunks=[b"\x22" * 32] * 3, mime="image/jpeg",
        name="夜市.jpg", thumb=buf.getvalue(), thumb_mime="image/png", width=64, height=32,
    )  # fmt: skip
    sticker = wire.Manifest(
        sha256=b"\x33" * 32, size=900, chunks=[b"\x33" * 32], mime="image/png",
        name="(love).png", sticker="tits-faces/(love)",
    )  # fmt: skip
    conv = direct_conversation_id(ME, BOB)
    store = LocalStore(home)
    try:
        store.record([
            Message(id=_id(20), conv=conv, sender=BOB, to=[ME], group=None, kind="media",
                    text=None, verified=True, ts=at(0, 9, 10), read=False, mime="image/jpeg",
                    manifest=wire.encode(picture)),
            Message(id=_id(21), conv=conv, sender=BOB, to=[ME], group=None, kind="media",
                    text=None, verified=True, ts=at(0, 9, 11), read=False, mime="image/png",
                    manifest=wire.encode(sticker)),
        ])  # fmt: skip
    finally:
        store.close()
    return conv
