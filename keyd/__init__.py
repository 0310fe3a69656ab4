"""ω IM key server (`tits-keyd`): HKP for stock GnuPG, plus device certificates.

One small module per concern:

    openpgp.py   packet framing, armor, third-party signature stripping (pure Python, no gpg)
    validate.py  GnuPG as the judge of an upload, in throwaway homes; device signature checks
    store.py     SQLite (WAL): armored keys and precomputed lookup rows, device certificates
    service.py   policy: what is searched, accepted, merged, refused (and with which status)
    limits.py    per-client token buckets for uploads and searches (429 + Retry-After)
    fallback.py  read-only `op=get` to configured public key servers on a miss
    http.py      aiohttp routes: /pks/lookup, /pks/add, /tits/devices, /tits/revocations
    server.py    lifecycle: bind, ready.json, SIGTERM
    config.py    TOML settings mirrored by flags
    main.py      the `tits-keyd` command
"""
