"""Dedupe keys: which messages are "the same message" across two servers.

A key must come out identical whether it is computed from the source copy or from the copy a
target server stored, so it is built only from parts servers keep (the identifying headers and
the start of the text), normalised against what servers are known to change:

* line endings: bare LF is stored as CRLF (Dovecot), so ``\\r\\n`` -> ``\\n`` first;
* NUL: Dovecot hands NUL back as 0x80 in ``BODY[]``, so NUL -> 0x80;
* folding and runs of white space in header values (some servers refold long headers);
* 8-bit bytes in header values: Cyrus stores each as ``X``, other servers as ``?``, so header
  values are compared without 8-bit bytes, ``X`` and ``?``;
* a lone CR: some servers drop it, so CR is removed after CRLF -> LF;
* trailing white space of the text: some servers add a CRLF at the end.

``KEY_VERSION`` names this recipe: a journal holding keys of another recipe forgets them (see
``SQLiteStore._check_key_version``) and rebuilds them from both sides.

Messages with a Message-ID: ``m:`` + hash(Message-ID, Date, From, Subject). Two *different*
messages sharing a Message-ID usually differ in one of the others; when they do not, the engine
still copies both, because it compares *counts* of each key (source vs target), never just
presence. Messages without a Message-ID: ``f:`` + hash(Date, From, To, Cc, Subject, start of the
text) - a content fingerprint, so Drafts without IDs are never collapsed into one.

The server-reported size is deliberately not part of the key: servers disagree on it
(imapsync's README calls including it "a mistake").
"""

from __future__ import annotations

import hashlib
import re

from ..models import MessageMeta

KEY_VERSION = 2

_FIELDS = (b"message-id", b"date", b"from", b"to", b"cc", b"subject")
_WS = re.compile(rb"[ \t\r\n]+")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
# How much of the text goes into a fingerprint. Endpoints fetch 4096 raw bytes; after CRLF->LF
# normalisation at least 2048 remain whenever the text is longer, so 1024 is safe on both sides.
TEXT_HEAD_BYTES = 1024


# What servers replace or drop in header values: 8-bit bytes (and the X or ? they become), CR.
_UNSTABLE = bytes(range(0x80, 0x100)) + b"X?\r\x00"


def _norm_bytes(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"").replace(b"\x00", b"\x80")


def _stable(value: bytes) -> bytes:
    return _WS.sub(b" ", value.translate(None, _UNSTABLE)).strip()


def parse_fields(header: bytes) -> dict[bytes, bytes]:
    """First occurrence of each identifying field, unfolded, value white space collapsed."""
    header = _FOLD.sub(b"", header.replace(b"\x00", b"\x80"))
    out: dict[bytes, bytes] = {}
    for line in re.split(rb"\r?\n", header):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().lower()
        if key in _FIELDS and key not in out:
            out[key] = _WS.sub(b" ", value).strip()
    return out


def _key_fields(header: bytes) -> dict[bytes, bytes]:
    """``parse_fields`` reduced to what every server keeps (see the module doc)."""
    out = parse_fields(header)
    for name, value in out.items():
        out[name] = _stable(value)
    return out


def normalize_message_id(value: bytes | None) -> str | None:
    """``<Abc@Host>`` -> ``abc@host``; None when there is no usable ID.

    Case is folded (as imapsync does): servers and clients are inconsistent about case in the
    domain part, and a false match would need two IDs differing only in case.
    """
    if not value:
        return None
    text = value.decode("utf-8", "replace").strip()
    m = re.search(r"<([^<>]*)>", text)
    ident = (m.group(1) if m else text).strip()
    ident = re.sub(r"\s+", "", ident)
    return ident.casefold() or None


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return h.hexdigest()[:40]


def message_key(header: bytes, text_head: bytes | None) -> str:
    fields = _key_fields(header)
    mid = normalize_message_id(fields.get(b"message-id"))
    if mid:
        return "m:" + _digest(mid.encode(), fields.get(b"date", b""), fields.get(b"from", b""),
                              fields.get(b"subject", b""))
    # Trailing white space only where the whole text is in the head (a CRLF a server added).
    text = _norm_bytes(text_head or b"")[:TEXT_HEAD_BYTES]
    if len(text) < TEXT_HEAD_BYTES:
        text = text.rstrip()
    return "f:" + _digest(*(fields.get(f, b"") for f in _FIELDS[1:]), text)


def key_of(meta: MessageMeta) -> str:
    return message_key(meta.header, meta.text_head)


def message_id_of(meta: MessageMeta) -> str | None:
    return normalize_message_id(parse_fields(meta.header).get(b"message-id"))


def subject_of(meta: MessageMeta) -> str | None:
    raw = parse_fields(meta.header).get(b"subject")
    return raw.decode("utf-8", "replace")[:200] if raw else None


def split_raw(body: bytes) -> tuple[bytes, bytes]:
    """Split a whole message into (identifying header lines, start of text) as an IMAP server
    would return ``BODY[HEADER.FIELDS (...)]`` and ``BODY[TEXT]<0.4096>``."""
    m = re.search(rb"\r?\n\r?\n", body)
    if m:
        head, text = body[: m.start()], body[m.end():]
    elif body.startswith((b"\r\n", b"\n")):
        head, text = b"", body.lstrip(b"\r\n")
    else:
        head, text = body, b""
    return head, text[:4096]


def key_of_raw(body: bytes) -> str:
    head, text = split_raw(body)
    fields = parse_fields(head)
    return message_key(head, None if fields.get(b"message-id") else text)
