"""Maildir++ on-disk layout: folder name <-> directory name, message file listing.

Folder ``A/B`` is directory ``.A.B`` under the root (INBOX is the root itself). Inside a name
part ``\\`` is stored as ``\\5c`` and ``.`` as ``\\2e`` (Dovecot ``listescape`` style).

Names are written as Dovecot writes them (the usual reader of a Maildir++): in modified UTF-7
(RFC 3501 5.1.3), ``Entwürfe`` -> ``.Entw&APw-rfe``, ``R&D`` -> ``.R&-D``. Earlier versions wrote
raw UTF-8 (``.Entwürfe``), which Dovecot lists but cannot open; such directories are still read
(``decode_folder`` accepts both, ``legacy_folder_dir`` names the old form) and used as they are.
Only canonical encodings are recognised, so each form maps one-to-one.
"""

from __future__ import annotations

import base64
import os
import re
import time
from pathlib import Path

from ..errors import FolderRefused
from ._maildir_index import UIDLIST

DELIMITER = "/"
_UNESCAPE = re.compile(rb"\\([0-9a-fA-F]{2})")
# A directory changed this recently may change again within the same mtime tick, so a cached
# listing of it is not trusted.
_MTIME_SLACK_NS = 2 * 10**9


def _utf7_encode(text: str) -> str:
    """Modified UTF-7 (RFC 3501 5.1.3) as IMAP servers and Dovecot's Maildir++ use it."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            raw = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            run.clear()

    for c in text:
        if " " <= c <= "~":
            flush()
            out.append("&-" if c == "&" else c)
        else:
            run.append(c)
    flush()
    return "".join(out)


_UTF7_RUN = re.compile(r"&([A-Za-z0-9+,]*)-")


def _utf7_decode(text: str) -> str | None:
    """The inverse of ``_utf7_encode``, or None if ``text`` is not modified UTF-7."""
    if not text.isascii():
        return None
    out: list[str] = []
    pos = 0
    for m in _UTF7_RUN.finditer(text):
        if "&" in text[pos:m.start()]:
            return None  # an '&' that starts no valid run
        out.append(text[pos:m.start()])
        b64 = m.group(1)
        if not b64:
            out.append("&")
        else:
            try:
                raw = base64.b64decode(b64.replace(",", "/") + "=" * (-len(b64) % 4), validate=True)
                out.append(raw.decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                return None
        pos = m.end()
    if "&" in text[pos:]:
        return None
    out.append(text[pos:])
    return "".join(out)


def _dir_name(name: str, *, legacy: bool) -> str:
    """Folder name -> directory name ("" for INBOX) in the current (modified UTF-7) or the
    legacy (raw UTF-8) form. Raises FolderRefused."""
    parts = name.split(DELIMITER)
    if parts[0].isascii() and parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    if parts == ["INBOX"]:
        return ""
    if any(not p or any(c in p for c in "\x00\r\n") for p in parts):
        raise FolderRefused(f"invalid folder name {name!r}", hint="empty levels and control characters are not allowed")
    try:
        "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise FolderRefused(f"invalid folder name {name!r}", hint="not valid Unicode") from None
    if not legacy:
        parts = [_utf7_encode(p) for p in parts]
    rel = "." + ".".join(p.replace("\\", "\\5c").replace(".", "\\2e") for p in parts)
    if len(rel.encode("utf-8")) > 255:
        raise FolderRefused(f"folder name too long for a Maildir directory: {name!r}")
    return rel


def encode_folder(name: str) -> str:
    """Folder name -> directory name under the root ("" for INBOX), as Dovecot names it
    (modified UTF-7). Raises FolderRefused."""
    return _dir_name(name, legacy=False)


def legacy_folder_dir(name: str) -> str | None:
    """The directory name earlier versions used for ``name`` (raw UTF-8), if it differs from
    ``encode_folder(name)``; None otherwise (or if the name is invalid)."""
    try:
        old = _dir_name(name, legacy=True)
        return old if old != _dir_name(name, legacy=False) else None
    except FolderRefused:
        return None


def _unescape(part: bytes) -> str:
    return _UNESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), part).decode("utf-8")


def decode_folder(dirname: str) -> str | None:
    """Directory name -> folder name, or None if it is not the canonical encoding of one, in
    the current (modified UTF-7) or the legacy (raw UTF-8) form."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    try:
        raw = [_unescape(p) for p in os.fsencode(dirname[1:]).split(b".")]
    except UnicodeDecodeError:
        return None
    decoded = [_utf7_decode(p) for p in raw]
    candidates = []
    if all(p is not None for p in decoded):
        candidates.append((DELIMITER.join(p for p in decoded if p is not None), False))
    candidates.append((DELIMITER.join(raw), True))
    for name, legacy in candidates:
        try:
            if _dir_name(name, legacy=legacy) == dirname:
                return name
        except FolderRefused:
            continue
    return None


def is_folder_dir(d: Path) -> bool:
    return any((d / s).is_dir() for s in ("cur", "new", "tmp")) or (d / "maildirfolder").exists() \
        or (d / UIDLIST).is_file()


def list_files(d: Path) -> dict[str, str]:
    """filename base -> "cur/<name>" or "new/<name>" for every message file."""
    files: dict[str, str] = {}
    for sub in ("new", "cur"):  # new/ first: a file moved new/ -> cur/ meanwhile is seen in cur/
        try:
            names = os.listdir(d / sub)
        except FileNotFoundError:
            continue
        for n in names:
            if not n.startswith(".") and "\n" not in n:  # dotfiles are not messages (Maildir spec)
                files[n.split(":", 1)[0]] = f"{sub}/{n}"
    return files


def dir_sig(d: Path) -> tuple[object, ...] | None:
    now = time.time_ns()
    sig: list[object] = []
    for sub in ("cur", "new"):
        try:
            s = os.stat(d / sub)
        except FileNotFoundError:
            sig.append(None)
            continue
        if now - s.st_mtime_ns < _MTIME_SLACK_NS:
            return None
        sig.append((s.st_ino, s.st_mtime_ns))
    return tuple(sig)


def base_order(base: str) -> tuple[int, str]:
    m = re.match(r"\d+", base)
    return (int(m.group()) if m else 0, base)


def info_of(rel: str) -> str:
    i = rel.find(":2,")
    return rel[i + 3:] if i >= 0 else ""
