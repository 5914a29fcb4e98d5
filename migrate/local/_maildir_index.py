"""Per-folder persistent state of a Maildir: UIDs and keyword names.

Files in each folder directory (the root for INBOX, ``.A.B`` for ``A/B``):

* ``mailmigrate-uidlist`` - first line ``mailmigrate-uidlist 1 V<uidvalidity> N<uidnext> G<gen>``,
  then one ``<uid> <filename base>`` line per message. New UIDs are *appended* (O_APPEND, one
  write per batch, fsync) so that a large folder is not rewritten per APPEND; a full rewrite
  (creation, compaction, repair of a torn last line) goes through a temp file + ``os.replace``.
  ``uidnext`` is max(header N, highest uid + 1), so UIDs are never reused. ``<gen>`` changes on
  every rewrite, which lets readers detect a rewrite even if the inode number is reused.
* ``dovecot-keywords`` - Dovecot's own format: ``<index> <keyword>`` lines, index 0..25 being
  the info letters ``a``..``z``.
* ``mailmigrate-keywords.json`` - only when a folder uses more than 26 keywords: the extra ones
  per filename base (``{"<base>": ["kw", ...]}``).
* ``mailmigrate-uidlist.lock`` - ``fcntl.flock`` target serialising every writer of this folder.

All writers hold the folder lock; readers never lock (they ignore a last line that is still
being written). These files belong to a Maildir we write to (a target). A *source* Maildir is
never written to: its UIDs live in the job journal instead (``SourceUids``, ``UidBook``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..gate import WriteGate
    from ..journal import Journal
    from ..store.location import PgJournal

UIDLIST = "mailmigrate-uidlist"
LOCKFILE = "mailmigrate-uidlist.lock"
KEYWORDS = "dovecot-keywords"
EXTRA_KEYWORDS = "mailmigrate-keywords.json"
_MAGIC = b"mailmigrate-uidlist 1 "
MAX_LETTER_KEYWORDS = 26


@contextlib.contextmanager
def folder_lock(folder_dir: Path) -> Iterator[None]:
    fd = os.open(folder_dir / LOCKFILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers and a crash see either the old or the new content."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _sig(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class UidList:
    """In-memory mirror of ``mailmigrate-uidlist``, refreshed incrementally from disk."""

    def __init__(self, folder_dir: Path, generation: Callable[[], str] = lambda: secrets.token_hex(4)) -> None:
        self.path = folder_dir / UIDLIST
        self._generation = generation  # a fresh token per rewrite (fixed only for the sample)
        self._reset()

    def _reset(self) -> None:
        self.exists = False
        self.uidvalidity = 0
        self.uidnext = 1
        self.by_base: dict[str, int] = {}
        self._header = b""
        self._ino = -1
        self._offset = 0
        self.torn = False  # the file does not end with a newline (crash mid-append)

    def refresh(self) -> None:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below, kept open across branches
        except FileNotFoundError:
            self._reset()
            return
        with f:
            st = os.fstat(f.fileno())
            header = f.readline()
            if not header.startswith(_MAGIC) or not header.endswith(b"\n"):
                self._reset()
                self.exists = True  # present but unusable: the caller recreates it
                return
            if st.st_ino != self._ino or header != self._header or st.st_size < self._offset:
                self._reset()
                self._parse_header(header)
                self._ino, self._header, self._offset = st.st_ino, header, len(header)
            if st.st_size == self._offset:
                self.torn = False
                return
            f.seek(self._offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1  # ignore a last line still being written (or torn)
        for line in data[:cut].splitlines():
            uid_s, _, base = line.partition(b" ")
            if uid_s.isdigit() and base:
                uid = int(uid_s)
                self.by_base[os.fsdecode(base)] = uid
                self.uidnext = max(self.uidnext, uid + 1)
        self._offset += cut
        self.torn = cut < len(data)

    def _parse_header(self, header: bytes) -> None:
        self.exists = True
        for tok in header[len(_MAGIC):].split():
            if tok[:1] == b"V" and tok[1:].isdigit():
                self.uidvalidity = int(tok[1:])
            elif tok[:1] == b"N" and tok[1:].isdigit():
                self.uidnext = max(1, int(tok[1:]))

    @property
    def valid(self) -> bool:
        return self.exists and self.uidvalidity > 0

    # --- writers: call with the folder lock held, right after refresh() ---------------------

    def rewrite(self, uidvalidity: int, uidnext: int, entries: dict[str, int]) -> None:
        header = b"mailmigrate-uidlist 1 V%d N%d G%s\n" % (uidvalidity, uidnext, self._generation().encode())
        lines = [b"%d %s\n" % (uid, os.fsencode(base)) for base, uid in sorted(entries.items(), key=lambda e: e[1])]
        atomic_write(self.path, header + b"".join(lines))
        self.refresh()

    def add(self, bases: list[str]) -> list[int]:
        """Assign the next UIDs to ``bases`` (in the given order) and persist them."""
        first = self.uidnext
        uids = list(range(first, first + len(bases)))
        if self.torn:  # repair: drop the torn line by rewriting the known entries
            self.rewrite(self.uidvalidity, self.uidnext, self.by_base)
        data = b"".join(b"%d %s\n" % (uid, os.fsencode(b)) for uid, b in zip(uids, bases, strict=True))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.refresh()
        return uids


@dataclass
class UidBook:
    """Where the UIDs of a source Maildir (``store``: its absolute path) are kept: the job journal,
    written through the job's gate. No journal (a dry run, or none bound): UIDs in memory."""

    store: str
    gate: WriteGate
    journal_path: Path | PgJournal | None = None  # bound when the job is planned (``migrate.api.spec_for``)

    def open(self) -> Journal | None:
        if self.journal_path is None or not self.gate.allow("journal", self.journal_path):
            return None
        from ..store import open_store
        return open_store(self.journal_path)  # a file, or a PgJournal (a queue worker's)


class SourceUids:
    """The UIDs of one folder of a source Maildir; same read side as ``UidList``, but nothing is
    ever written beside the source.

    They are kept in the job journal (``journal()`` gives it, or None: then in memory, numbered
    in (timestamp, name) order with the folder's inode as UIDVALIDITY, stable while no file comes or
    goes). A folder met for the first time adopts its own ``mailmigrate-uidlist`` if it has one
    (only read), so the UIDs stay those earlier versions gave it.
    """

    def __init__(self, folder_dir: Path, store: str, folder: str, journal: Callable[[], Journal | None],
                 new_uidvalidity: Callable[[], int]) -> None:
        self.dir = folder_dir
        self.store, self.folder = store, folder
        self._journal = journal
        self._new_uidvalidity = new_uidvalidity
        self.exists = False
        self.uidvalidity = 0
        self.uidnext = 1
        self.by_base: dict[str, int] = {}
        self._loaded = False

    @property
    def valid(self) -> bool:
        return self.uidvalidity > 0

    def refresh(self) -> None:
        """Load what the journal knows, once (files numbered later go through ``assign``)."""
        if self._loaded:
            return
        self._loaded = True
        journal = self._journal()
        got = journal.maildir_uids(self.store, self.folder) if journal is not None else None
        if got is not None:
            self._set(*got)

    def assign(self, bases: list[str]) -> None:
        """Number ``bases`` (in this order) that have no UID yet."""
        journal = self._journal()
        if journal is not None:
            self._set(*journal.assign_maildir_uids(self.store, self.folder, bases, self._seed))
            return
        if not self.valid:
            self._set(*self._seed(in_memory=True))
        for base in bases:
            if base not in self.by_base:
                self.by_base[base] = self.uidnext
                self.uidnext += 1

    def _seed(self, in_memory: bool = False) -> tuple[int, int, dict[str, int]]:
        own = UidList(self.dir)
        own.refresh()  # only reads
        if own.valid:
            return own.uidvalidity, own.uidnext, dict(own.by_base)
        if not in_memory:
            return self._new_uidvalidity(), 1, {}
        try:
            return (os.stat(self.dir).st_ino & 0x7FFFFFFF) or 1, 1, {}
        except FileNotFoundError:
            return 1, 1, {}

    def _set(self, uidvalidity: int, uidnext: int, by_base: dict[str, int]) -> None:
        self.exists = True
        self.uidvalidity, self.uidnext, self.by_base = uidvalidity, uidnext, by_base


class Keywords:
    """Keyword names of one folder: ``dovecot-keywords`` letters plus the JSON overflow."""

    def __init__(self, folder_dir: Path) -> None:
        self.path = folder_dir / KEYWORDS
        self.extra_path = folder_dir / EXTRA_KEYWORDS
        self.names: list[str] = []  # index -> keyword (letter = chr(97 + index))
        self.extra: dict[str, list[str]] = {}
        self._sig: tuple[int, int, int] | None = None
        self._extra_sig: tuple[int, int, int] | None = None

    def refresh(self) -> None:
        sig = _sig(self.path)
        if sig != self._sig:
            self._sig = sig
            names: dict[int, str] = {}
            if sig is not None:
                for line in self.path.read_bytes().decode("utf-8", "replace").splitlines():
                    idx, _, name = line.partition(" ")
                    if idx.isdigit() and int(idx) < MAX_LETTER_KEYWORDS and name:
                        names[int(idx)] = name
            self.names = [names.get(i, "") for i in range(max(names, default=-1) + 1)]
        sig = _sig(self.extra_path)
        if sig != self._extra_sig:
            self._extra_sig = sig
            self.extra = json.loads(self.extra_path.read_bytes()) if sig is not None else {}

    def decode(self, base: str, letters: str) -> list[str]:
        out = [self.names[ord(c) - 97] for c in letters if ord(c) - 97 < len(self.names)]
        return [k for k in out if k] + self.extra.get(base, [])

    def letters_for(self, keywords: list[str]) -> tuple[str, list[str]]:
        """(letters, overflow keywords) for keywords already known; unknown ones go to overflow."""
        index = {n.casefold(): i for i, n in enumerate(self.names) if n}
        letters, overflow = [], []
        for k in keywords:
            i = index.get(k.casefold())
            (letters.append(chr(97 + i)) if i is not None else overflow.append(k))
        return "".join(sorted(letters)), overflow

    # --- writers: call with the folder lock held ----------------------------------------------

    def ensure(self, keywords: list[str]) -> None:
        """Give letters to new keywords while any of the 26 are free."""
        self.refresh()
        known = {n.casefold() for n in self.names if n}
        new = [k for k in dict.fromkeys(keywords) if k.casefold() not in known]
        if not new or len(self.names) >= MAX_LETTER_KEYWORDS:
            return
        names = list(self.names)
        for k in new:
            if k.casefold() in known or len(names) >= MAX_LETTER_KEYWORDS:
                continue
            known.add(k.casefold())
            names.append(k)
        atomic_write(self.path, "".join(f"{i} {n}\n" for i, n in enumerate(names) if n).encode())
        self.refresh()

    def set_extra(self, updates: dict[str, list[str]]) -> None:
        self.refresh()
        merged = dict(self.extra)
        for base, kws in updates.items():
            if kws:
                merged[base] = kws
            else:
                merged.pop(base, None)
        if merged != self.extra:
            atomic_write(self.extra_path, json.dumps(merged, ensure_ascii=False, sort_keys=True).encode())
            self.refresh()
