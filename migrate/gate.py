"""The one gate every write passes (rclone's design for ``--dry-run``).

A job has one ``WriteGate``. Everything that would change something asks it first with
``gate.allow(kind, what)``: folder creation, APPEND and flag changes on the target, the journal,
the report, the confirmation mail and every file a local store writes (Maildir directories, uid
lists, keyword files, lock files). An open gate says yes; a closed gate (``--dry-run``) says no and
records what would have been done, so nothing is written anywhere.

A *source* gets a sealed gate (``WriteGate.source``): a source is read-only in every run, dry or
not, and a write that reaches its gate is a bug, so it raises ``SourceWrite`` instead of being
recorded. (Source endpoints never ask it on their read paths: a Maildir source keeps its UIDs in
the job journal, which passes the job's gate.)

IMAP endpoints have no write of their own to check, so ``gated`` wraps one: its
``create_folder``/``append``/``set_flags`` pass the gate, everything else goes straight through.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import FatalError

Kind = Literal["create-folder", "append", "set-flags", "journal", "report", "mail", "file"]
KINDS: tuple[Kind, ...] = ("create-folder", "append", "set-flags", "journal", "report", "mail", "file")


class SourceWrite(FatalError):
    """Something tried to write to a source. Never expected: stop the job before harm is done."""

    reference = "source-write"


@dataclass(frozen=True)
class Skipped:
    """A write a closed gate refused: what a real run would have done."""

    kind: Kind
    what: str


class WriteGate:
    def __init__(self, open: bool = True, *, source: str | None = None) -> None:  # noqa: A002
        self.source = source  # the source's label: sealed, every write raises
        self.open = open and source is None
        self._skipped: list[Skipped] = []
        self._lock = threading.Lock()

    @classmethod
    def for_source(cls, label: str) -> WriteGate:
        return cls(False, source=label)

    @property
    def sealed(self) -> bool:
        return self.source is not None

    def allow(self, kind: Kind, what: object) -> bool:
        """May this write happen? A closed gate records it and says no; a sealed one raises."""
        if self.open:
            return True
        if self.source is not None:
            raise SourceWrite(f"refused to write to the source {self.source}: {kind} {what}",
                              hint="a source is only ever read; please report this as a bug")
        with self._lock:
            self._skipped.append(Skipped(kind, str(what)))
        return False

    @property
    def skipped(self) -> list[Skipped]:
        """What a closed gate refused, in order."""
        with self._lock:
            return list(self._skipped)

    def __repr__(self) -> str:
        state = f"sealed source {self.source}" if self.sealed else "open" if self.open else "closed"
        return f"WriteGate({state})"


def job_gate(spec: Any) -> WriteGate:
    """The gate of a job (``JobSpec``): the target side's gate when the sides were built with one
    (``migrate.sides.build_side``), else a new one, closed in a dry run."""
    gate = getattr(spec.dst_factory, "gate", None)
    if isinstance(gate, WriteGate) and not gate.sealed and gate.open == (not spec.dry_run):
        return gate
    return WriteGate(open=not spec.dry_run)


class GatedEndpoint:
    """An endpoint whose writes pass ``gate``; every read goes straight to the wrapped one.

    A folder a closed gate kept from being created is remembered in ``pending`` (shared by every
    connection of a dry run when the caller passes one set) and reads as the empty folder a real
    run would have made: a dry run then goes down the normal sync path."""

    def __init__(self, inner: Any, gate: WriteGate, *, pending: set[str] | None = None) -> None:
        self._inner = inner
        self.gate = gate
        self.pending = pending if pending is not None else set()

    def __getattr__(self, name: str) -> Any:  # reads, close(), label, capabilities, ...
        return getattr(self._inner, name)

    def create_folder(self, name: str) -> None:
        if self.gate.allow("create-folder", f"{self._inner.label}: {name}"):
            self._inner.create_folder(name)
        else:
            self.pending.add(name)

    def create_special_folder(self, name: str, special_use: str) -> None:
        if not self.gate.allow("create-folder", f"{self._inner.label}: {name} ({special_use})"):
            self.pending.add(name)
            return
        create = getattr(self._inner, "create_special_folder", None)
        if create is not None:
            create(name, special_use)
        else:
            self._inner.create_folder(name)

    # --- reads of a folder the closed gate did not create: empty -----------------------------

    def status(self, folder: str) -> Any:
        if folder in self.pending:
            from .models import FolderStatus
            return FolderStatus(uidvalidity=0, uidnext=1, exists=0)
        return self._inner.status(folder)

    def statuses(self, folders: Sequence[str]) -> dict[str, Any]:
        out = self._inner.statuses([f for f in folders if f not in self.pending])
        out.update((f, self.status(f)) for f in folders if f in self.pending)
        return out  # type: ignore[no-any-return]

    def fetch_meta(self, folder: str, uids: Sequence[int] | None = None, **kw: Any) -> Any:
        if folder in self.pending:
            return iter(())
        return self._inner.fetch_meta(folder, uids, **kw)

    def fetch_messages(self, folder: str, uids: Sequence[int]) -> Any:
        if folder in self.pending:
            return iter(())
        return self._inner.fetch_messages(folder, uids)

    def permanent_flags(self, folder: str) -> Any:
        getter = getattr(self._inner, "permanent_flags", None)
        return None if getter is None or folder in self.pending else getter(folder)

    def append(self, folder: str, items: Sequence[Any]) -> list[Any]:
        if self.gate.allow("append", f"{self._inner.label}: {len(items)} message(s) into {folder}"):
            return self._inner.append(folder, items)  # type: ignore[no-any-return]
        from .models import AppendResult
        return [AppendResult(ok=False, error="dry run: not written") for _ in items]

    def set_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        if self.gate.allow("set-flags", f"{self._inner.label}: {folder} uid {uid}"):
            self._inner.set_flags(folder, uid, flags)


def gated(endpoint: Any, gate: WriteGate) -> Any:
    """``endpoint`` behind ``gate`` (an endpoint that checks its own gate is returned as is)."""
    if getattr(endpoint, "gate", None) is gate:
        return endpoint
    return GatedEndpoint(endpoint, gate)


def dry_target(endpoint: Any, gate: WriteGate, pending: set[str]) -> Any:
    """The target of a dry run (``gate`` closed): every write is recorded by ``gate``, and a folder
    it kept from being created (kept in ``pending``, shared by the job's connections) reads as
    empty, on any store (a Maildir checks its own gate but knows nothing of such folders)."""
    if isinstance(endpoint, GatedEndpoint) and endpoint.gate is gate:
        endpoint.pending = pending
        return endpoint
    return GatedEndpoint(endpoint, gate, pending=pending)
