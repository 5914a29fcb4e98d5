"""Maildir++ on-disk layout: folder name <-> directory name, message file listing.

Folder ``A/B`` is directory ``.A.B`` under the root (INBOX is the root itself). Inside a name
part ``\\`` is stored as ``\\5c`` and ``.`` as ``\\2e`` (Dovecot ``listescape`` style); names are
UTF-8 on disk. Only canonical encodings are recognised, so the mapping is one-to-one.
"""

from __future__ import annotations

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


def encode_folder(name: str) -> str:
    """Folder name -> directory name under the root ("" for INBOX). Raises FolderRefused."""
    parts = name.split(DELIMITER)
    if parts[0].isascii() and parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    if parts == ["INBOX"]:
        return ""
    if any(not p or any(c in p for c in "\x00\r\n") for p in parts):
        raise FolderRefused(f"invalid folder name {name!r}", hint="empty levels and control characters are not allowed")
    rel = "." + ".".join(p.replace("\\", "\\5c").replace(".", "\\2e") for p in parts)
    try:
        too_long = len(rel.encode("utf-8")) > 255
    except UnicodeEncodeError:
        raise FolderRefused(f"invalid folder name {name!r}", hint="not valid Unicode") from None
    if too_long:
        raise FolderRefused(f"folder name too long for a Maildir directory: {name!r}")
    return rel


def decode_folder(dirname: str) -> str | None:
    """Directory name -> folder name, or None if it is not the canonical encoding of one."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    try:
        parts = [_UNESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), p).decode("utf-8")
                 for p in os.fsencode(dirname[1:]).split(b".")]
    except UnicodeDecodeError:
        return None
    name = DELIMITER.join(parts)
    try:
        return name if encode_folder(name) == dirname else None
    except FolderRefused:
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
