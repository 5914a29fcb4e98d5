"""A Maildir++ mailbox (the layout Dovecot uses) behind the Endpoint interface, read and write.

Layout and naming decisions:

* The root's ``cur/ new/ tmp/`` is INBOX. Folder ``A/B`` is the directory ``.A.B`` (with its own
  ``cur/ new/ tmp/`` and a ``maildirfolder`` marker). We list names with ``/`` as delimiter and
  an empty prefix. Directory names are modified UTF-7, as Dovecot writes and reads them
  (``Entwürfe`` is ``.Entw&APw-rfe``); a raw UTF-8 directory (``.Entwürfe``, written by earlier
  versions) is still read and used where it is the only one.
* Inside a name part, ``\\`` is stored as ``\\5c`` and ``.`` as ``\\2e`` (Dovecot ``listescape``
  style), so ``v1.2/notes`` <-> ``.v1\\2e2.notes``. A directory whose name is not the canonical
  encoding of some folder name is ignored (and logged).
* Creating ``A/B`` does not create ``A`` (as Dovecot does for Maildir++); such a parent is
  listed with ``\\Noselect``.
* Messages are kept byte for byte. Flags live in the standard ``:2,`` info suffix (D F R S T);
  keywords are letters ``a``..``z`` mapped by ``dovecot-keywords``; beyond 26 keywords per folder
  the rest go to a JSON sidecar (see ``_maildir_index``). INTERNALDATE is the file mtime.
* UIDs come from ``mailmigrate-uidlist`` (see ``_maildir_index``); files not listed yet get the
  next UIDs in (leading timestamp, name) order. Writers hold an ``fcntl.flock`` per folder.
* A Maildir we may not write to is still readable: UIDs are then assigned in memory.
* Every write passes the endpoint's ``WriteGate`` (``migrate.gate``): closed (a dry run), nothing
  is written, not even a uid list or a lock file, and a target that does not exist yet reads as an
  empty Maildir. A *source* has a sealed gate: it is only ever read, and its UIDs are kept in the
  job journal (``SourceUids``), never beside it.

One endpoint object is meant to be used by one thread at a time.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..endpoint import statuses_one_by_one
from ..errors import FatalError, FolderRefused, MessageError, OverQuota, UsageError
from ..gate import WriteGate
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
from ._common import (
    LETTER_TO_FLAG,
    extract_keys,
    from_ns,
    order_flags,
    read_head,
    special_use_for,
    split_flags,
    to_ns,
)
from ._maildir_index import UIDLIST, Keywords, SourceUids, UidBook, UidList, folder_lock, fsync_dir, write_all
from ._maildir_layout import (
    DELIMITER,
    base_order,
    decode_folder,
    dir_sig,
    encode_folder,
    info_of,
    is_folder_dir,
    legacy_folder_dir,
    list_files,
)

if TYPE_CHECKING:
    from ..journal import Journal

log = logging.getLogger(__name__)

_QUOTA_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_READONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
# Compact the uidlist once it holds this many more entries for vanished files than live ones.
_COMPACT_SLACK = 1000

@dataclass
class _Folder:
    dir: Path
    uids: UidList | SourceUids
    keywords: Keywords
    files: dict[str, str] = field(default_factory=dict)
    files_gen: int = 0
    dir_sig: tuple[object, ...] | None = None
    by_uid: dict[int, str] = field(default_factory=dict)  # live uid -> base
    order: list[int] = field(default_factory=list)
    built: tuple[int, ...] = ()
    read_only: bool = False  # could not lock/write: UIDs assigned in memory

    def relist(self) -> None:
        self.files = list_files(self.dir)
        self.files_gen += 1


class MaildirEndpoint:
    """``gate``: what may be written (default: everything); ``WriteGate.for_source`` opens the
    Maildir as a source, never written to, with its UIDs kept by ``uid_book`` (else in memory)."""

    def __init__(self, path: Path, *, create: bool = False, gate: WriteGate | None = None,
                 uid_book: UidBook | None = None) -> None:
        self.path = Path(path)
        self.label = f"maildir:{self.path}"
        self.gate = gate or WriteGate()
        self._book = uid_book
        self._journal: Journal | None = None  # the book's journal, opened on first use
        self._folders: dict[str, _Folder] = {}
        self._seq = 0
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"
        self._absent_root = False  # a target the gate did not let us create: reads as empty
        if create and not self._complete(self.path):
            if self.gate.allow("create-folder", self.path):
                try:
                    self._make_folder_dir(self.path, mark=False)
                except OSError as exc:
                    raise UsageError(f"cannot create Maildir {self.path}: {exc.strerror}") from None
            else:
                self._absent_root = not (self.path.is_dir() and is_folder_dir(self.path))
        elif not create and (not self.path.is_dir() or not is_folder_dir(self.path)):
            raise UsageError(f"{self.path} is not a Maildir (no cur/ new/ tmp/ inside)",
                             hint="check the path, or let the target be created")

    # --- hooks (overridden by scripts/make_sample.py for a reproducible sample) ---------------

    def _new_basename(self, internaldate: datetime | None) -> str:
        self._seq += 1
        sec, ns = divmod(time.time_ns(), 10**9)
        return f"{sec}.M{ns // 1000}P{os.getpid()}Q{self._seq}R{secrets.token_hex(4)}.{self._host}"

    def _new_uidvalidity(self) -> int:
        return int(time.time()) & 0xFFFFFFFF or 1

    def _new_generation(self) -> str:
        return secrets.token_hex(4)

    # --- Endpoint -------------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities(uidplus=True, multiappend=True, permanent_flags=None)

    def namespace(self) -> Namespace:
        return Namespace(prefix="", delimiter=DELIMITER)

    def list_folders(self) -> list[FolderInfo]:
        real = {"INBOX"}
        if self._absent_root and not self.path.is_dir():
            return [FolderInfo(name="INBOX", delimiter=DELIMITER, flags=frozenset({"\\HasNoChildren"}))]
        with os.scandir(self.path) as it:
            for entry in it:
                if entry.name.startswith(".") and entry.is_dir() and is_folder_dir(Path(entry.path)):
                    name = decode_folder(entry.name)
                    if name is None:
                        log.warning("%s: ignoring directory %r (not a Maildir++ folder name)", self.label, entry.name)
                    else:
                        real.add(name)
        parents = {n.rsplit(DELIMITER, 1)[0] for n in real if DELIMITER in n}
        ancestors = {DELIMITER.join(n.split(DELIMITER)[:i]) for n in real for i in range(1, n.count(DELIMITER) + 1)}
        out = []
        for name in sorted(real | ancestors, key=lambda n: (n != "INBOX", n)):
            flags = {"\\HasChildren" if name in parents or name in ancestors else "\\HasNoChildren"}
            if name not in real:
                flags.add("\\Noselect")
            out.append(FolderInfo(name=name, delimiter=DELIMITER, flags=frozenset(flags),
                                  special_use=special_use_for(name) if name in real else None))
        return out

    def create_folder(self, name: str) -> None:
        rel = self._rel(name)
        if not rel or not self.gate.allow("create-folder", f"{self.label}: {name}"):
            return
        try:
            self._make_folder_dir(self.path / rel, mark=True)
        except OSError as exc:
            raise FolderRefused(f"cannot create folder {name!r} in {self.label}: {exc.strerror}") from None

    def status(self, folder: str) -> FolderStatus:
        st = self._synced(folder)
        return FolderStatus(uidvalidity=st.uids.uidvalidity, uidnext=st.uids.uidnext, exists=len(st.order))

    def statuses(self, folders: Sequence[str]) -> dict[str, FolderStatus]:
        return statuses_one_by_one(self, folders)

    def fetch_meta(self, folder: str, uids: Sequence[int] | None = None, *,
                   changed_since: int | None = None, with_keys: bool = True) -> Iterator[MessageMeta]:
        st = self._synced(folder)  # eagerly, so a missing folder raises at the call
        wanted = list(st.order) if uids is None else sorted(set(uids) & st.by_uid.keys())
        return self._iter_meta(st, wanted, with_keys)

    def fetch_messages(self, folder: str, uids: Sequence[int]) -> Iterator[RawMessage]:
        st = self._synced(folder)
        return self._iter_messages(st, sorted(set(uids) & st.by_uid.keys()))

    def append(self, folder: str, items: Sequence[AppendItem]) -> list[AppendResult]:
        if not self.gate.allow("append", f"{self.label}: {len(items)} message(s) into {folder}"):
            return [AppendResult(ok=False, error="dry run: not written") for _ in items]
        st = self._folder(folder)
        results: list[AppendResult | None] = [None] * len(items)
        staged: list[tuple[int, str, set[str], list[str]]] = []
        try:
            for i, item in enumerate(items):
                try:
                    letters, keywords = split_flags(item.flags)
                except ValueError as exc:
                    results[i] = AppendResult(ok=False, error=str(exc))
                    continue
                base = self._new_basename(item.internaldate)
                try:
                    self._write_tmp(st.dir, base, item)
                except OSError as exc:
                    if exc.errno in _QUOTA_ERRNOS:
                        raise
                    results[i] = AppendResult(ok=False, error=f"cannot write message: {exc.strerror}")
                    continue
                staged.append((i, base, letters, keywords))
            if staged:
                with folder_lock(st.dir):
                    self._commit(st, staged, results)
        except OSError as exc:
            for _, base, _, _ in staged:
                (st.dir / "tmp" / base).unlink(missing_ok=True)
            if exc.errno in _QUOTA_ERRNOS:
                raise OverQuota(f"{self.label}: disk full or quota exceeded ({exc.strerror})") from None
            raise FatalError(f"cannot write to {st.dir}: {exc.strerror}", hint="check permissions and free space") from None
        return [r if r is not None else AppendResult(ok=False, error="not stored") for r in results]

    def set_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        if not self.gate.allow("set-flags", f"{self.label}: {folder} uid {uid}"):
            return
        st = self._synced(folder)
        base = st.by_uid.get(uid)
        if base is None:
            raise MessageError(f"{self.label}: no message with uid {uid} in {folder!r}")
        try:
            letters, keywords = split_flags(tuple(flags))
        except ValueError as exc:
            raise MessageError(str(exc)) from None
        try:
            with folder_lock(st.dir):
                st.keywords.ensure(keywords)
                kw_letters, overflow = st.keywords.letters_for(keywords)
                if overflow or base in st.keywords.extra:
                    st.keywords.set_extra({base: overflow})
                for attempt in (0, 1):
                    rel = st.files.get(base)
                    if rel is None:
                        raise MessageError(f"{self.label}: message uid {uid} vanished from {folder!r}")
                    # keep letters we do not map (e.g. P = passed) as they are
                    keep = {c for c in info_of(rel) if c.isupper() and c not in LETTER_TO_FLAG}
                    name = f"{base}:2,{''.join(sorted(keep | letters))}{kw_letters}"
                    try:
                        os.rename(st.dir / rel, st.dir / "cur" / name)
                        break
                    except FileNotFoundError:
                        if attempt:
                            raise
                        st.relist()  # renamed meanwhile by someone else: look again
                st.files[base] = f"cur/{name}"
        except OSError as exc:
            raise FatalError(f"cannot change flags in {st.dir}: {exc.strerror}") from None

    def abort(self) -> None:
        pass  # files: nothing blocks on a server

    def close(self) -> None:
        self._folders.clear()
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    # --- internals ------------------------------------------------------------------------------

    def _rel(self, name: str) -> str:
        """The folder's directory under the root: Dovecot's name (``encode_folder``), or the raw
        UTF-8 one an earlier version wrote when only that exists (existing targets keep working)."""
        rel = encode_folder(name)
        old = legacy_folder_dir(name) if rel else None
        if old is None or is_folder_dir(self.path / rel) or not is_folder_dir(self.path / old):
            return rel
        return old

    def _folder(self, name: str) -> _Folder:
        rel = self._rel(name)
        d = self.path / rel if rel else self.path
        if (not d.is_dir() or not is_folder_dir(d)) and not (rel == "" and self._absent_root):
            self._folders.pop(rel, None)
            raise FolderRefused(f"folder {name!r} does not exist in {self.label}", hint="create it first")
        st = self._folders.get(rel)
        if st is None:
            uids: UidList | SourceUids
            if self.gate.sealed:  # a source: never written to, its UIDs are kept in the journal
                store = str(self.path.resolve())
                folder = decode_folder(rel) or rel if rel else "INBOX"  # the canonical name
                uids = SourceUids(d, store, folder, self._uid_journal, self._new_uidvalidity)
            else:
                uids = UidList(d, self._new_generation)
            st = self._folders[rel] = _Folder(d, uids, Keywords(d))
        return st

    def _uid_journal(self) -> Journal | None:
        """The journal that keeps a source's UIDs (None in a dry run: UIDs in memory)."""
        if self._journal is None and self._book is not None:
            self._journal = self._book.open()
            if self._journal is None:
                self._book = None  # the gate is closed: do not ask again
        return self._journal

    def _synced(self, name: str) -> _Folder:
        """The folder with every message file numbered and the uid map up to date."""
        st = self._folder(name)
        sig = dir_sig(st.dir)
        if sig is None or sig != st.dir_sig:
            st.relist()
            st.dir_sig = sig
        st.uids.refresh()
        if not st.uids.valid or any(b not in st.uids.by_base for b in st.files):
            if isinstance(st.uids, SourceUids):
                st.uids.assign(sorted((b for b in st.files if b not in st.uids.by_base), key=base_order))
            elif not self.gate.allow("file", st.dir / UIDLIST):  # a dry run: number them in memory
                self._assign_in_memory(st, quiet=True)
            else:
                try:
                    with folder_lock(st.dir):
                        self._assign_locked(st)
                except OSError as exc:
                    if exc.errno not in _READONLY_ERRNOS:
                        raise FatalError(f"cannot update {st.dir / UIDLIST}: {exc.strerror}") from None
                    self._assign_in_memory(st)
        st.keywords.refresh()
        built = (st.files_gen, st.uids.uidvalidity, st.uids.uidnext, len(st.uids.by_base))
        if built != st.built:
            st.by_uid = {st.uids.by_base[b]: b for b in st.files if b in st.uids.by_base}
            st.order = sorted(st.by_uid)
            st.built = built
        return st

    def _assign_locked(self, st: _Folder) -> None:
        """Number files not in the uidlist yet (and create or compact it). Lock held."""
        st.uids.refresh()
        st.relist()  # fresh listing under the lock
        if not st.uids.valid:
            if st.uids.exists:
                log.warning("%s: %s unreadable; UIDs are renumbered", self.label, st.dir / UIDLIST)
            st.uids.rewrite(self._new_uidvalidity(), 1, {})
        known = st.uids.by_base
        unknown = sorted((b for b in st.files if b not in known), key=base_order)
        dead = len(known) - (len(st.files) - len(unknown))
        if dead > _COMPACT_SLACK + len(st.files):
            again = list_files(st.dir)  # one readdir may miss a file being renamed: confirm
            live = {b: u for b, u in known.items() if b in st.files or b in again}
            st.uids.rewrite(st.uids.uidvalidity, st.uids.uidnext, live)
        if unknown:
            st.uids.add(unknown)

    def _assign_in_memory(self, st: _Folder, *, quiet: bool = False) -> None:
        if not st.read_only:
            st.read_only = True
            if not quiet:
                log.warning("%s: %s is read-only; UIDs are kept in memory only", self.label, st.dir)
        if not st.uids.valid:
            st.uids.exists = True
            try:
                st.uids.uidvalidity = (os.stat(st.dir).st_ino & 0x7FFFFFFF) or 1
            except FileNotFoundError:  # a target not created (dry run)
                st.uids.uidvalidity = 1
        for b in sorted((b for b in st.files if b not in st.uids.by_base), key=base_order):
            st.uids.by_base[b] = st.uids.uidnext
            st.uids.uidnext += 1

    @staticmethod
    def _complete(d: Path) -> bool:
        """Does ``d`` hold everything ``_make_folder_dir`` would create (so nothing is written)?"""
        if not all((d / sub).is_dir() for sub in ("cur", "new", "tmp")):
            return False
        uids = UidList(d)
        uids.refresh()
        return uids.valid

    def _make_folder_dir(self, d: Path, *, mark: bool) -> None:
        d.mkdir(parents=not mark, exist_ok=True)
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(exist_ok=True)
        if mark:
            (d / "maildirfolder").touch()
        with folder_lock(d):
            uids = UidList(d, self._new_generation)
            uids.refresh()
            if not uids.valid:
                uids.rewrite(self._new_uidvalidity(), 1, {})

    def _write_tmp(self, d: Path, base: str, item: AppendItem) -> None:
        path = d / "tmp" / base
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # e.g. a Maildir from git, where empty tmp/ is not kept
            (d / "tmp").mkdir(exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, item.body)
            os.fsync(fd)
        finally:
            os.close(fd)
        if item.internaldate is not None:
            ns = to_ns(item.internaldate)
            os.utime(path, ns=(ns, ns))  # rename keeps the mtime

    def _commit(self, st: _Folder, staged: list[tuple[int, str, set[str], list[str]]],
                results: list[AppendResult | None]) -> None:
        """Move staged tmp/ files into cur/ and give them UIDs. Lock held."""
        st.uids.refresh()
        if not st.uids.valid:
            self._assign_locked(st)
        st.keywords.ensure([k for *_, kws in staged for k in kws])
        names, extra = [], {}
        for _, base, letters, kws in staged:
            kw_letters, overflow = st.keywords.letters_for(kws)
            if overflow:
                extra[base] = overflow
            names.append(f"{base}:2,{''.join(sorted(letters))}{kw_letters}")
        if extra:
            st.keywords.set_extra(extra)
        cur = st.dir / "cur"
        cur.mkdir(exist_ok=True)
        for (_, base, _, _), name in zip(staged, names, strict=True):
            os.rename(st.dir / "tmp" / base, cur / name)
        fsync_dir(cur)
        uids = st.uids.add([base for _, base, _, _ in staged])
        for (i, base, _, _), name, uid in zip(staged, names, uids, strict=True):
            st.files[base] = f"cur/{name}"
            results[i] = AppendResult(ok=True, uid=uid, uidvalidity=st.uids.uidvalidity)
        st.files_gen += 1

    def _open(self, st: _Folder, base: str) -> tuple[int, str] | None:
        """An open descriptor for the message's current file (found again if renamed)."""
        for attempt in (0, 1):
            rel = st.files.get(base)
            if rel is None:
                return None
            try:
                return os.open(st.dir / rel, os.O_RDONLY), rel
            except FileNotFoundError:
                if attempt:
                    return None
                st.relist()
        return None

    def _flags(self, st: _Folder, base: str, rel: str) -> tuple[str, ...]:
        info = info_of(rel)
        system = {LETTER_TO_FLAG[c] for c in info if c in LETTER_TO_FLAG}
        return order_flags(system, st.keywords.decode(base, "".join(c for c in info if "a" <= c <= "z")))

    def _iter_meta(self, st: _Folder, wanted: list[int], with_keys: bool) -> Iterator[MessageMeta]:
        for uid in wanted:
            base = st.by_uid[uid]
            got = self._open(st, base)
            if got is None:
                continue
            fd, rel = got
            with os.fdopen(fd, "rb") as f:
                s = os.fstat(fd)
                header, text_head = extract_keys(read_head(f)) if with_keys else (b"", None)
            yield MessageMeta(uid=uid, size=s.st_size, flags=self._flags(st, base, rel),
                              internaldate=from_ns(s.st_mtime_ns), header=header, text_head=text_head)

    def _iter_messages(self, st: _Folder, wanted: list[int]) -> Iterator[RawMessage]:
        for uid in wanted:
            base = st.by_uid[uid]
            got = self._open(st, base)
            if got is None:
                continue
            fd, rel = got
            with os.fdopen(fd, "rb") as f:
                s = os.fstat(fd)
                body = f.read()
            yield RawMessage(uid=uid, body=body, flags=self._flags(st, base, rel), internaldate=from_ns(s.st_mtime_ns))
