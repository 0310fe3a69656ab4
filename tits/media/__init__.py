"""Media: content-addressed files, cut into chunks, each chunk named by its SHA-256.

- `manifest`: read a file once (bounded memory) into a `wire.Manifest`, and check one.
- `names`: a sender-given file name made safe to save under (no path, no control chars).
- `sniff`: the MIME type from the content, never from the name.
- `thumb`: the small picture a sender makes so a chat can show a photo at once.
- `assembly`: a receiver's partial file, each chunk checked before it is written.

Media is never encrypted, in any chat; the manifest travels as a `MediaBody` signed by the
sender's device key (see tits/session.py `sign_media`).
"""
