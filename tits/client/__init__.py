"""The client library, in layers, shared by the `tits` commands and the full-screen app.

connection.py  BrokerURL, and a blocking DEALER link (tests, benchmarks, scripts)
link.py        the connection and login as a sans-IO state machine
store.py       the local store (SQLite, numbered migrations), one `Message` type
keyring.py     session keys: epochs, wrapping for many members in one gpg call, rotation
opener.py      the one function that opens a body and says whether it is verified
memberlog.py   group membership as a signed, hash-chained log (pure logic)
groups.py      groups on top of the log: bundles, invitations, rekeying
inbox.py       a delivery → one typed event
outbox.py      what was typed, durable before anything else, until a broker stores it
client.py      the asyncio client that composes them (zmq.asyncio; gpg in threads)
blocking.py    a blocking façade over it for commands and tests
"""

from .connection import BrokerURL, Connection, Incoming

__all__ = ["BrokerURL", "Connection", "Incoming"]
