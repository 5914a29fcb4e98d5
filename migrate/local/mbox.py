"""mbox files (one file, or a directory tree of them) behind the Endpoint interface, read-only.

Format decisions:

* A message starts after a ``From `` separator line: the first line of the file, or a later line
  that starts with ``From `` *and* carries an asctime-style date (as mutt and Dovecot check), so an
  unquoted "From here on ..." line in a body does not split a message.
* We read the mboxrd convention: a line starting with ``>From ``, ``>>From `` ... is unquoted by
  one ``>``. (On an mboxo file this also unquotes lines that had ``>From `` originally; mboxo
  cannot tell them apart.)
* The empty line the writer puts before the next separator (and at the very end) belongs to the
  format and is removed - only if it is there. Nothing else changes: CRLF, bare LF, NUL and
  8-bit bytes are kept; a last message without a final newline is kept as is.
* Flags come from ``Status`` (R = \\Seen), ``X-Status`` (A \\Answered, F \\Flagged, D \\Deleted,
  T \\Draft), ``X-Keywords`` and Thunderbird's ``X-Mozilla-Status``/``X-Mozilla-Keys``. Those
  headers stay in the message bytes.
* INTERNALDATE is the separator line's date (UTC unless it carries a numeric zone), else None.
* UID = 1-based position in the file; UIDVALIDITY is derived from the file's inode and ctime, so
  any change to the file (which may shift positions) gives a new UIDVALIDITY.
* A directory: each mbox file is a folder, subdirectories are hierarchy (delimiter ``/``), a
  Thunderbird ``X.sbd`` directory holds the children of file ``X``; dot files and ``.msf``
  indexes are skipped; a top-level ``Inbox`` file is INBOX. A single file is INBOX.

The file is indexed in one streaming pass (offsets only) and messages are read by seeking.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..endpoint import statuses_one_by_one
from ..errors import FolderRefused, UsageError
from ..models import (
    AppendItem,
    AppendResult,
    Capabilities,
    FolderInfo,
    FolderStatus,
    MessageMeta,
    Namespace,
    RawMessage,
)
from ._common import extract_keys, order_flags, read_head, special_use_for

log = logging.getLogger(__name__)

DELIMITER = "/"
_CHUNK = 1 << 16
_MONTHS = {m: i for i, m in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"), 1)}
_FROM_LINE = re.compile(
    rb"From .*?(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"\s+(?:([A-Z]{1,5}|[+-]\d{4})\s+)?(\d{4})(?:\s+([+-]\d{4}))?")
_QUOTED = re.compile(rb">+From ")
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)
_FLAG_FIELDS = frozenset({b"status", b"x-status", b"x-keywords", b"x-mozilla-status", b"x-mozilla-keys"})
_NOT_MBOX = frozenset({".msf", ".dat", ".html", ".json", ".sqlite", ".js", ".mab", ".log"})


def _from_date(line: bytes) -> datetime | None:
    m = _FROM_LINE.match(line)
    if not m:
        return None
    mon, day, hh, mm, ss, tz1, year, tz2 = m.groups()
    try:
        dt = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss or 0), tzinfo=UTC)
    except ValueError:
        return None
    tz = tz2 or (tz1 if tz1 and tz1[:1] in (b"+", b"-") else None)
    if tz:
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
        dt = dt - offset if tz[:1] == b"+" else dt + offset
    return dt


def _flags(fields: dict[bytes, bytes]) -> tuple[str, ...]:
    system: set[str] = set()
    if b"R" in fields.get(b"status", b""):
        system.add("\\Seen")
    xstatus = fields.get(b"x-status", b"")
    for letter, flag in ((b"A", "\\Answered"), (b"F", "\\Flagged"), (b"D", "\\Deleted"), (b"T", "\\Draft")):
        if letter in xstatus:
            system.add(flag)
    try:
        bits = int(fields.get(b"x-mozilla-status", b"").strip() or b"0", 16)
    except ValueError:
        bits = 0
    for bit, flag in ((1, "\\Seen"), (2, "\\Answered"), (4, "\\Flagged"), (8, "\\Deleted")):
        if bits & bit:
            system.add(flag)
    keywords: dict[str, str] = {}
    raw = fields.get(b"x-keywords", b"") + b" " + fields.get(b"x-mozilla-keys", b"")
    for tok in re.split(rb"[,\s]+", raw):
        kw = tok.decode("utf-8", "replace")
        if kw and not kw.startswith("\\") and not re.search(r"[\x00-\x1f\x7f()*%\"\]{\\]", kw):
            keywords.setdefault(kw.casefold(), kw)
    return order_flags(system, list(keywords.values()))


@dataclass
class _Index:
    uidvalidity: int
    starts: array[int] = field(default_factory=lambda: array("q"))
    ends: array[int] = field(default_factory=lambda: array("q"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    dates: list[datetime | None] = field(default_factory=list)
    flags: list[tuple[str, ...]] = field(default_factory=list)


class _Builder:
    """State of the message being indexed."""

    def __init__(self, start: int, date: datetime | None) -> None:
        self.start = start
        self.date = date
        self.quoted = 0
        self.in_header = True
        self.field: bytes | None = None
        self.fields: dict[bytes, bytes] = {}

    def line(self, chunk: bytes) -> None:
        """A chunk that begins a line."""
        if _QUOTED.match(chunk):
            self.quoted += 1
        if not self.in_header:
            return
        if chunk in (b"\n", b"\r\n"):
            self.in_header = False
        elif chunk[:1] in (b" ", b"\t"):
            if self.field:
                self.fields[self.field] += chunk
        else:
            name, sep, value = chunk.partition(b":")
            key = name.strip().lower()
            self.field = key if sep and key in _FLAG_FIELDS else None
            if self.field:
                self.fields[key] = self.fields.get(key, b"") + b" " + value


def build_index(path: Path) -> _Index:
    """One streaming pass over ``path``: offsets, sizes, dates and flags of every message."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        idx = _Index(uidvalidity=zlib.crc32(b"%d:%d" % (st.st_ino, st.st_ctime_ns)) & 0x7FFFFFFF or 1)
        interned: dict[tuple[str, ...], tuple[str, ...]] = {}

        def finish(msg: _Builder, end: int) -> None:
            end = max(end, msg.start)
            idx.starts.append(msg.start)
            idx.ends.append(end)
            idx.sizes.append(end - msg.start - msg.quoted)
            idx.dates.append(msg.date)
            flags = _flags(msg.fields)
            idx.flags.append(interned.setdefault(flags, flags))

        pos = 0
        at_start = True  # the next chunk begins a line
        blank = 0  # length of the last line if it was an empty line, else 0
        msg: _Builder | None = None
        while chunk := f.readline(_CHUNK):
            line_start, at_start = at_start, chunk.endswith(b"\n")
            if line_start and chunk.startswith(b"From ") and (pos == 0 or _FROM_LINE.match(chunk)):
                if msg:
                    finish(msg, pos - blank)
                sep = chunk
                pos += len(chunk)
                while not at_start and (more := f.readline(_CHUNK)):  # absurdly long separator
                    pos += len(more)
                    at_start = more.endswith(b"\n")
                msg, blank = _Builder(pos, _from_date(sep)), 0
                continue
            if msg is None:
                raise UsageError(f"{path} is not an mbox file (it does not start with 'From ')")
            if line_start:
                msg.line(chunk)
            blank = len(chunk) if line_start and chunk in (b"\n", b"\r\n") else 0
            pos += len(chunk)
        if msg:
            finish(msg, pos - blank)
    return idx


def _unquote(raw: bytes) -> bytes:
    return _UNQUOTE.sub(rb"\1", raw)


def _looks_like_mbox(path: Path) -> bool:
    if path.suffix.lower() in _NOT_MBOX:
        return False
    try:
        with open(path, "rb") as f:
            return f.read(5) in (b"", b"From ")
    except OSError:
        return False


class MboxEndpoint:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.label = f"mbox:{self.path}"
        self._single = self.path.is_file()
        if not self._single and not self.path.is_dir():
            raise UsageError(f"{self.path} does not exist", hint="pass an mbox file or a directory of mbox files")
        if self._single and not _looks_like_mbox(self.path):
            raise UsageError(f"{self.path} is not an mbox file (it does not start with 'From ')")
        self._map: dict[str, Path | None] | None = None
        self._indexes: dict[str, tuple[tuple[int, ...], _Index]] = {}

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def namespace(self) -> Namespace:
        return Namespace(prefix="", delimiter=DELIMITER)

    def list_folders(self) -> list[FolderInfo]:
        self._map = folders = self._scan()
        parents = {n.rsplit(DELIMITER, 1)[0] for n in folders if DELIMITER in n}
        out = []
        for name in sorted(folders, key=lambda n: (n != "INBOX", n)):
            flags = {"\\HasChildren" if name in parents else "\\HasNoChildren"}
            if folders[name] is None:
                flags.add("\\Noselect")
            out.append(FolderInfo(name=name, delimiter=DELIMITER, flags=frozenset(flags),
                                  special_use=special_use_for(name) if folders[name] else None))
        return out

    def create_folder(self, name: str) -> None:
        raise UsageError(f"mbox is read-only: cannot create folder {name!r} in {self.label}",
                         hint="use a Maildir or IMAP account as the target")

    def status(self, folder: str) -> FolderStatus:
        _, idx = self._index(folder)
        n = len(idx.starts)
        return FolderStatus(uidvalidity=idx.uidvalidity, uidnext=n + 1, exists=n)

    def statuses(self, folders: Sequence[str]) -> dict[str, FolderStatus]:
        return statuses_one_by_one(self, folders)

    def fetch_meta(self, folder: str, uids: Sequence[int] | None = None, *,
                   changed_since: int | None = None, with_keys: bool = True) -> Iterator[MessageMeta]:
        path, idx = self._index(folder)
        return self._iter_meta(path, idx, self._wanted(idx, uids), with_keys)

    def fetch_messages(self, folder: str, uids: Sequence[int]) -> Iterator[RawMessage]:
        path, idx = self._index(folder)
        return self._iter_messages(path, idx, self._wanted(idx, uids))

    def append(self, folder: str, items: Sequence[AppendItem]) -> list[AppendResult]:
        raise UsageError(f"mbox is read-only: cannot append to {folder!r} in {self.label}",
                         hint="use a Maildir or IMAP account as the target")

    def set_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        raise UsageError(f"mbox is read-only: cannot change flags in {self.label}",
                         hint="use a Maildir or IMAP account as the target")

    def close(self) -> None:
        self._indexes.clear()

    def abort(self) -> None:
        pass  # files: nothing blocks on a server

    # --- internals ------------------------------------------------------------------------------

    def _scan(self) -> dict[str, Path | None]:
        if self._single:
            return {"INBOX": self.path}
        out: dict[str, Path | None] = {}
        self._walk(self.path, "", out)
        return out

    def _walk(self, d: Path, prefix: str, out: dict[str, Path | None]) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            log.warning("%s: cannot read directory %s (%s)", self.label, d, exc.strerror)
            return
        for e in entries:
            if e.name.startswith(".") or not e.name.isprintable():
                continue
            try:
                e.name.encode("utf-8")
            except UnicodeEncodeError:
                log.warning("%s: skipping %r (name is not UTF-8)", self.label, e.name)
                continue
            if e.is_dir():
                leaf = e.name[:-4] if e.name.endswith(".sbd") and len(e.name) > 4 else e.name
                name = self._name(prefix, leaf)
                out.setdefault(name, None)
                self._walk(Path(e.path), name + DELIMITER, out)
            elif e.is_file() and _looks_like_mbox(Path(e.path)):
                name = self._name(prefix, e.name)
                if out.get(name) is not None:
                    log.warning("%s: skipping %s (folder %r already seen)", self.label, e.path, name)
                    continue
                out[name] = Path(e.path)

    @staticmethod
    def _name(prefix: str, leaf: str) -> str:
        return "INBOX" if not prefix and leaf.isascii() and leaf.upper() == "INBOX" else prefix + leaf

    def _index(self, folder: str) -> tuple[Path, _Index]:
        if self._map is None or folder not in self._map:
            self._map = self._scan()
        path = self._map.get(folder)
        if path is None:
            raise FolderRefused(f"folder {folder!r} does not exist in {self.label}" if folder not in self._map
                                else f"folder {folder!r} in {self.label} holds no messages (\\Noselect)")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FolderRefused(f"folder {folder!r} vanished from {self.label}") from None
        sig = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._indexes.get(folder)
        if cached is None or cached[0] != sig:  # new or changed file: index (again)
            cached = self._indexes[folder] = (sig, build_index(path))
        return path, cached[1]

    @staticmethod
    def _wanted(idx: _Index, uids: Sequence[int] | None) -> list[int]:
        n = len(idx.starts)
        return list(range(1, n + 1)) if uids is None else sorted(u for u in set(uids) if 1 <= u <= n)

    @staticmethod
    def _iter_meta(path: Path, idx: _Index, wanted: list[int], with_keys: bool) -> Iterator[MessageMeta]:
        with open(path, "rb") as f:
            for uid in wanted:
                i = uid - 1
                header, text_head = b"", None
                if with_keys:
                    f.seek(idx.starts[i])
                    header, text_head = extract_keys(_unquote(read_head(f, idx.ends[i] - idx.starts[i])))
                yield MessageMeta(uid=uid, size=idx.sizes[i], flags=idx.flags[i], internaldate=idx.dates[i],
                                  header=header, text_head=text_head)

    @staticmethod
    def _iter_messages(path: Path, idx: _Index, wanted: list[int]) -> Iterator[RawMessage]:
        with open(path, "rb") as f:
            for uid in wanted:
                i = uid - 1
                f.seek(idx.starts[i])
                body = _unquote(f.read(idx.ends[i] - idx.starts[i]))
                yield RawMessage(uid=uid, body=body, flags=idx.flags[i], internaldate=idx.dates[i])
