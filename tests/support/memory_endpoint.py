"""An ``Endpoint`` (``migrate.endpoint``) kept in memory: folders, UIDs, UIDVALIDITY, flags, APPEND
with APPENDUID. No server, no files: for unit tests of the engine.

Several connections (endpoints) can share one ``MemoryMailbox`` (the account), as a job opens one
connection per worker: ``MemoryMailbox.factory()`` is an endpoint factory for a ``JobSpec``.
``faults`` injects errors: a callable ``(operation, folder) -> Exception | None`` asked before
each operation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from migrate.errors import FolderRefused, MessageError
from migrate.local._common import extract_keys
from migrate.models import (
    AppendItem,
    AppendResult,
    Capabilities,
    FolderInfo,
    FolderStatus,
    MessageMeta,
    Namespace,
    RawMessage,
)

Fault = Callable[[str, str | None], BaseException | None]


@dataclass
class _Message:
    body: bytes
    flags: tuple[str, ...]
    internaldate: datetime | None


@dataclass
class _Folder:
    uidvalidity: int
    uidnext: int = 1
    messages: dict[int, _Message] = field(default_factory=dict)
    special_use: str | None = None
    modseq: int = 1


class MemoryMailbox:
    """One account: its folders and their messages, shared by every connection to it."""

    def __init__(self, label: str = "memory", *, delimiter: str = "/", prefix: str = "",
                 folders: Sequence[str] = ("INBOX",), refuse_create: Callable[[str], bool] | None = None) -> None:
        self.label = label
        self.ns = Namespace(prefix=prefix, delimiter=delimiter)
        self.folders: dict[str, _Folder] = {}
        self.lock = threading.RLock()
        self.refuse_create = refuse_create
        self.faults: Fault | None = None
        self.connections = 0  # opened so far
        self.log: list[tuple[str, str | None]] = []  # (operation, folder) of every write
        self._next_uidvalidity = 1000
        for name in folders:
            self.add_folder(name)

    def add_folder(self, name: str, special_use: str | None = None) -> None:
        with self.lock:
            if name not in self.folders:
                self._next_uidvalidity += 1
                self.folders[name] = _Folder(uidvalidity=self._next_uidvalidity, special_use=special_use)

    def add(self, folder: str, body: bytes, flags: Sequence[str] = (), date: datetime | None = None) -> int:
        """Deliver a message (as another program would): its new UID."""
        with self.lock:
            self.add_folder(folder)
            f = self.folders[folder]
            uid = f.uidnext
            f.messages[uid] = _Message(body, tuple(flags), date or datetime(2024, 1, 1, tzinfo=UTC))
            f.uidnext += 1
            f.modseq += 1
            return uid

    def bodies(self, folder: str) -> list[bytes]:
        with self.lock:
            f = self.folders.get(folder)
            return [m.body for _, m in sorted(f.messages.items())] if f else []

    def factory(self) -> Callable[[], MemoryEndpoint]:
        def connect() -> MemoryEndpoint:
            with self.lock:
                self.connections += 1
            return MemoryEndpoint(self)
        return connect


class MemoryEndpoint:
    """One connection to a ``MemoryMailbox``."""

    def __init__(self, box: MemoryMailbox) -> None:
        self.box = box
        self.label = box.label
        self.closed = False

    def _check(self, op: str, folder: str | None = None) -> None:
        if self.closed:
            raise RuntimeError("connection closed")
        if self.box.faults is not None:
            exc = self.box.faults(op, folder)
            if exc is not None:
                raise exc

    def _folder(self, name: str) -> _Folder:
        f = self.box.folders.get(name)
        if f is None:
            raise FolderRefused(f"{self.label}: no folder {name!r}")
        return f

    # --- Endpoint -----------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        self._check("capabilities")
        return Capabilities(uidplus=True, multiappend=True, condstore=True, special_use=True)

    def namespace(self) -> Namespace:
        self._check("namespace")
        return self.box.ns

    def list_folders(self) -> list[FolderInfo]:
        self._check("list")
        delim = self.box.ns.delimiter
        with self.box.lock:
            out = [FolderInfo(name=n, delimiter=delim, special_use=f.special_use,
                              flags=frozenset({f.special_use} if f.special_use else ()))
                   for n, f in self.box.folders.items()]
        # Like an IMAP server: a parent that holds no messages of its own is listed \Noselect.
        names = {f.name for f in out}
        for name in list(names):
            parts = name.split(delim) if delim else [name]
            for i in range(1, len(parts)):
                parent = delim.join(parts[:i])
                if parent not in names:
                    names.add(parent)
                    out.append(FolderInfo(name=parent, delimiter=delim, flags=frozenset({"\\Noselect"})))
        return out

    def create_folder(self, name: str) -> None:
        self._check("create", name)
        if self.box.refuse_create is not None and self.box.refuse_create(name):
            raise FolderRefused(f"{self.label}: CREATE {name!r} refused")
        with self.box.lock:
            self.box.log.append(("create", name))
            self.box.add_folder(name)

    def create_special_folder(self, name: str, special_use: str) -> None:
        self.create_folder(name)
        with self.box.lock:
            self.box.folders[name].special_use = special_use

    def status(self, folder: str) -> FolderStatus:
        self._check("status", folder)
        with self.box.lock:
            f = self._folder(folder)
            return FolderStatus(uidvalidity=f.uidvalidity, uidnext=f.uidnext, exists=len(f.messages),
                                highestmodseq=f.modseq)

    def statuses(self, folders: Sequence[str]) -> dict[str, FolderStatus]:
        out = {}
        for name in folders:
            try:
                out[name] = self.status(name)
            except (FolderRefused, MessageError):
                continue
        return out

    def fetch_meta(self, folder: str, uids: Sequence[int] | None = None, *,
                   changed_since: int | None = None, with_keys: bool = True) -> Iterator[MessageMeta]:
        self._check("fetch_meta", folder)
        with self.box.lock:
            f = self._folder(folder)
            wanted = sorted(f.messages) if uids is None else sorted(set(uids) & f.messages.keys())
            items = [(u, f.messages[u]) for u in wanted]
        out = []
        for uid, m in items:
            header, text_head = extract_keys(m.body) if with_keys else (b"", None)
            out.append(MessageMeta(uid=uid, size=len(m.body), flags=m.flags, internaldate=m.internaldate,
                                   header=header, text_head=text_head))
        return iter(out)

    def fetch_messages(self, folder: str, uids: Sequence[int]) -> Iterator[RawMessage]:
        self._check("fetch", folder)
        with self.box.lock:
            f = self._folder(folder)
            items = [(u, f.messages[u]) for u in sorted(set(uids) & f.messages.keys())]
        return iter([RawMessage(uid=u, body=m.body, flags=m.flags, internaldate=m.internaldate) for u, m in items])

    def append(self, folder: str, items: Sequence[AppendItem]) -> list[AppendResult]:
        self._check("append", folder)
        out = []
        with self.box.lock:
            f = self._folder(folder)
            self.box.log.append(("append", folder))
            for item in items:
                uid = f.uidnext
                f.messages[uid] = _Message(item.body, tuple(item.flags), item.internaldate)
                f.uidnext += 1
                f.modseq += 1
                out.append(AppendResult(ok=True, uid=uid, uidvalidity=f.uidvalidity))
        return out

    def set_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        self._check("store", folder)
        with self.box.lock:
            f = self._folder(folder)
            if uid not in f.messages:
                raise MessageError(f"{self.label}: no message {uid} in {folder!r}")
            self.box.log.append(("store", folder))
            f.messages[uid].flags = tuple(flags)
            f.modseq += 1

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        pass
