"""ω IM core: wire structs, GnuPG identity, device keys, session crypto, config and logging."""

__version__ = "0.1.0"
