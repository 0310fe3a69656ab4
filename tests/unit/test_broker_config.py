"""Broker settings and broker URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from zmq.utils import z85

from tits import wire
from tits.broker.config import BrokerConfig
from tits.client import BrokerURL
from tits.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_flags_win() -> None:
    seed = "tcp://x:1#" + "ab" * 32
    cfg = BrokerConfig.load(ROOT / "configs" / "titsd.toml", client_port=0, join=[seed])
    assert cfg.client_port == 0 and cfg.peer_port == 5571 and cfg.join == [seed]
    assert cfg.limits.garbage == 16 and cfg.durability == "full"


@pytest.mark.parametrize(
    "text",
    [
        "clinet_port = 1\n",
        "[limits]\nrat = 5\n",
        'durability = "sometimes"\n',
        "client_port = 70000\n",
        "client_port = [1]\n",
        'join = ["tcp://127.0.0.1:5571"]\n',  # no CURVE key: could never connect securely
        'join = ["garbage"]\n',
    ],
)
def test_bad_configs_are_refused(tmp_path: Path, text: str) -> None:
    p = tmp_path / "t.toml"
    p.write_text(text)
    with pytest.raises(ConfigError):
        BrokerConfig.load(p)


def test_a_frame_limit_below_a_media_chunk_is_refused(tmp_path: Path) -> None:
    """A config written when chunks were 1 MiB would stall every upload (libzmq drops the
    connection of a frame over ZMQ_MAXMSGSIZE): refused at load, with the number to use."""
    p = tmp_path / "t.toml"
    p.write_text(f'data = "{tmp_path / "d"}"\n[limits]\nmax_frame = 1114112\n')
    with pytest.raises(ConfigError) as err:
        BrokerConfig.load(p)
    assert f"at least {wire.MAX_CHUNK_FRAME}" in str(err.value)
    cfg = BrokerConfig.load(ROOT / "configs" / "titsd.toml")
    assert cfg.limits.max_frame >= wire.MAX_CHUNK_FRAME


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        BrokerConfig.load(tmp_path / "nope.toml")


def test_broker_url_round_trip() -> None:
    raw = bytes(range(32))
    url = f"tcp://127.0.0.1:5570#{raw.hex()}"
    parsed = BrokerURL.parse(url)
    assert parsed.address == "tcp://127.0.0.1:5570" and z85.decode(parsed.server_key) == raw
    assert str(parsed) == url
    assert BrokerURL.parse("tcp://h:1#" + z85.encode(raw).decode()).server_key == parsed.server_key


@pytest.mark.parametrize(
    "bad",
    ["", "tcp://127.0.0.1:5570", "tcp://127.0.0.1:5570#abcd", "http://h:1#" + "0" * 64],
)
def test_bad_broker_urls(bad: str) -> None:
    with pytest.raises(ConfigError):
        BrokerURL.parse(bad)
