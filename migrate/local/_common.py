"""Helpers shared by the local stores: identifying headers, flag letters, dates, special-use names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

# The header fields an IMAP endpoint fetches with BODY.PEEK[HEADER.FIELDS (...)].
KEY_FIELDS = frozenset({b"message-id", b"date", b"from", b"to", b"cc", b"subject"})
TEXT_HEAD_BYTES = 4096
# Extra raw bytes read past the text head so that mbox unquoting (one byte per quoted line)
# still leaves TEXT_HEAD_BYTES of text.
_HEAD_MARGIN = 1024
# A header section larger than this is pathological; we stop looking for its end.
_MAX_HEADER = 8 << 20

# Maildir info letters <-> IMAP system flags (letters are stored in ASCII order).
LETTER_TO_FLAG = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
FLAG_TO_LETTER = {v.lower(): k for k, v in LETTER_TO_FLAG.items()}
# Canonical order in which system flags are reported.
SYSTEM_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

# Top-level folder names we report as RFC 6154 special-use folders (case-insensitive).
_SPECIAL_NAMES = {
    "sent": "\\Sent", "sent messages": "\\Sent", "drafts": "\\Drafts", "trash": "\\Trash",
    "deleted messages": "\\Trash", "junk": "\\Junk", "spam": "\\Junk", "archive": "\\Archive",
    "archives": "\\Archive",
}

_BAD_KEYWORD = re.compile(r"[\s\x00-\x1f\x7f()*%\"\\\]{]")


def special_use_for(name: str) -> str | None:
    """Special-use attribute for a well-known top-level folder name, else None."""
    if "/" in name:
        return None
    return _SPECIAL_NAMES.get(name.casefold())


def split_flags(flags: tuple[str, ...] | list[str]) -> tuple[set[str], list[str]]:
    """IMAP flags -> (Maildir system letters, keywords in first-seen order, case-insensitively unique).

    ``\\Recent`` and unknown ``\\`` flags are dropped (a store cannot keep them); a keyword that
    is not a valid IMAP atom raises ValueError so the caller can refuse that one message.
    """
    letters: set[str] = set()
    keywords: list[str] = []
    seen: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            letter = FLAG_TO_LETTER.get(flag.lower())
            if letter:
                letters.add(letter)
            continue
        if not flag or _BAD_KEYWORD.search(flag):
            raise ValueError(f"invalid keyword {flag!r}")
        if flag.casefold() not in seen:
            seen.add(flag.casefold())
            keywords.append(flag)
    return letters, keywords


def order_flags(system: set[str] | frozenset[str], keywords: list[str]) -> tuple[str, ...]:
    return tuple(f for f in SYSTEM_ORDER if f in system) + tuple(keywords)


# --- dates ----------------------------------------------------------------------------------


def to_utc(dt: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_ns(dt: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond (no float rounding)."""
    delta = to_utc(dt) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def from_ns(ns: int) -> datetime:
    seconds, rest = divmod(ns, 10**9)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=rest // 1000)


# --- identifying headers --------------------------------------------------------------------


def header_end(buf: bytes | bytearray) -> int | None:
    """Offset where the body starts (after the first empty line), or None if not seen yet."""
    if buf.startswith(b"\n"):
        return 1
    if buf.startswith(b"\r\n"):
        return 2
    ends = [i for i in (buf.find(b"\n\n"), buf.find(b"\n\r\n")) if i >= 0]
    if not ends:
        return None
    i = min(ends)
    return i + (2 if buf[i + 1:i + 2] == b"\n" else 3)


def read_head(f: BinaryIO, limit: int | None = None) -> bytes:
    """Read just enough of a message for ``extract_keys``: the header plus the start of the text."""
    buf = bytearray()
    while limit is None or len(buf) < limit:
        want = 65536 if limit is None else min(65536, limit - len(buf))
        chunk = f.read(want)
        if not chunk:
            break
        buf += chunk
        end = header_end(buf)
        if end is not None and len(buf) >= end + TEXT_HEAD_BYTES + _HEAD_MARGIN:
            break
        if end is None and len(buf) > _MAX_HEADER:
            break
    return bytes(buf)


def extract_keys(head: bytes) -> tuple[bytes, bytes | None]:
    """(identifying header lines, text head or None).

    The header lines are Message-ID, Date, From, To, Cc and Subject, each whole (continuation
    lines included, not unfolded), in file order with their original line endings. The text
    head (first 4096 bytes after the empty line) is returned only when there is no usable
    Message-ID, matching what ``migrate.dedupe.keys`` expects from an IMAP server.
    """
    end = header_end(head)
    hdr = head if end is None else head[:end]
    body = b"" if end is None else head[end:]
    out: list[bytes] = []
    keep = False
    mid_value = b""
    mid_seen = False  # only the first Message-ID counts, as in dedupe.keys.parse_fields
    is_mid = False
    for line in re.findall(rb"[^\n]*\n|[^\n]+$", hdr):
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
                if is_mid:
                    mid_value += line
            continue
        name, sep, value = line.partition(b":")
        key = name.strip().lower()
        keep = bool(sep) and key in KEY_FIELDS
        is_mid = keep and key == b"message-id" and not mid_seen
        if keep:
            out.append(line)
            if is_mid:
                mid_seen, mid_value = True, value
    text_head = None if mid_value.strip() else body[:TEXT_HEAD_BYTES]
    return b"".join(out), text_head
