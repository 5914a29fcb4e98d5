"""The store: everything a job remembers, behind one small interface.

A store holds the journals of every job into one target account and that target's dedupe ledger
(``migrate.dedupe.ledger``). The engine, the ledger, ``status`` and ``notify`` talk to it only
through the operations below, so that another database (PostgreSQL next to SQLite) is one more
implementation of ``Store``, not a change to the engine. ``tests/unit/test_store.py`` is the
conformance suite every implementation passes.

Rules every implementation keeps:

* ``tx()`` is the one owner of transactions: a write transaction that takes the write lock up
  front (two processes never both decide on stale reads); nested ``tx()`` blocks join the outer
  one; an exception rolls the whole transaction back. Every write method is atomic on its own
  and joins the caller's ``tx()`` when there is one.
* One store object is used by one thread at a time: open one per thread.
* Nothing here does network I/O to a mail server; the ledger's rows are brought up to date by
  the engine (``migrate.dedupe.reconcile``), which reads the target and hands lists of
  ``(uid, key)`` to the ledger.
* Nothing secret is stored: only labels, folder names, keys, flags, counts and server answers
  (reasons and errors pass through ``migrate.errors.redact``).

Rows are typed (dataclasses, or NamedTuples where callers unpack them), never positional tuples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple

# --- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRow:
    """One (source, target) job."""

    job_id: str
    source: str
    target: str
    source_email: str | None
    target_email: str | None
    state: str  # running | ok | partial | interrupted | failed | ...
    created_at: str
    updated_at: str
    command: str | None
    last_report: str | None  # the JSON report of the last finished run


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run of a job."""

    run_id: int
    job_id: str
    pid: int | None
    started_at: str
    finished_at: str | None
    status: str
    report: str | None  # JSON
    progress: str | None  # JSON snapshot of ``migrate.engine.progress`` (``status --follow``)


@dataclass
class FolderRecord:
    """A source folder as the last pass over it left it (for the fast no-op path)."""

    source_folder: str
    target_folder: str | None
    uidvalidity: int | None
    uidnext: int | None
    exists: int | None
    highestmodseq: int | None
    complete: bool
    # The target folder as the last complete pass left it (UIDVALIDITY, UIDNEXT, EXISTS, MODSEQ).
    target_status: tuple[int | None, int | None, int | None, int | None] | None = None


class FolderMapRow(NamedTuple):
    """Where a source folder goes, decided once by the first run and reused by every later one."""

    source_folder: str
    target_folder: str
    reason: str


@dataclass(frozen=True, slots=True)  # one per message of a folder: keep it small
class MessageRow:
    """One source message's outcome, per job, source folder, UIDVALIDITY and UID."""

    uid: int
    key: str
    flags: tuple[str, ...]
    state: str  # copied | duplicate | failed
    ledger_id: int | None = None  # the ledger row of the copy we made (state copied)
    reason: str | None = None  # why it failed, or why a duplicate was left out on purpose
    size: int | None = None  # bytes sent (or the source's RFC822.SIZE)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One copy of a message in a target folder, by dedupe key (see ``migrate.dedupe.ledger``)."""

    id: int
    folder: str
    uidvalidity: int | None
    uid: int | None  # None: not placed yet (a claim, or a copy whose UID the server did not say)
    key: str
    state: str  # claimed | present
    job_id: str | None  # the job whose APPEND made it; None: found on the target
    owner: str | None  # the attempt that claimed it (``migrate.journal.OwnerLock`` token)
    src: str | None  # the source message a claim is for (exact crash recovery)
    t_size: int | None  # RFC822.SIZE the target reports for this copy


@dataclass(frozen=True, slots=True)
class LedgerScan:
    """How far the ledger has read a target folder: its UIDVALIDITY and UIDNEXT then."""

    uidvalidity: int | None
    scanned_uidnext: int | None


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """A confirmation mail, sent or to send again (``migrate.notify``)."""

    job_id: str
    kind: str  # job | batch
    recipients: str  # JSON list
    lang: str
    smtp: str  # JSON SmtpPlan (no secret: a password reference at most)
    sender: str
    state: str  # pending | sent | failed
    error: str | None
    attempts: int
    updated_at: str
    reports: str  # JSON list of reports
    id: int | None = None  # given by the store


class MaildirUids(NamedTuple):
    """The UIDs given to one folder of a source Maildir (which is never written to)."""

    uidvalidity: int
    uidnext: int
    uids: dict[str, int]  # filename base -> UID


# --- the interface, by area ------------------------------------------------------------------


class JobStore(ABC):
    @abstractmethod
    def start_job(self, job_id: str, source: str, target: str, *, source_email: str | None,
                  target_email: str | None, command: str | None) -> int:
        """Create or restart a job (state running) and open a run; returns the run id."""

    @abstractmethod
    def finish_run(self, job_id: str, run_id: int, status: str, report_json: str) -> None: ...

    @abstractmethod
    def set_progress(self, run_id: int, progress: dict[str, object]) -> None: ...

    @abstractmethod
    def jobs(self) -> list[JobRow]:
        """Every job, most recently updated first."""

    @abstractmethod
    def runs(self, job_id: str) -> list[RunRow]:
        """The job's runs, newest first."""


class FolderStore(ABC):
    @abstractmethod
    def folder(self, job_id: str, source_folder: str) -> FolderRecord | None: ...

    @abstractmethod
    def folders(self, job_id: str) -> list[FolderRecord]:
        """In the order they were first saved."""

    @abstractmethod
    def save_folder(self, job_id: str, rec: FolderRecord) -> None: ...

    @abstractmethod
    def forget_uidvalidity(self, job_id: str, source_folder: str, keep: int) -> int:
        """Drop the folder's message rows of every UIDVALIDITY but ``keep``; returns how many."""

    @abstractmethod
    def folder_map(self, job_id: str) -> dict[str, str]:
        """Source folder -> target folder, as recorded by earlier runs of ``job_id``."""

    @abstractmethod
    def save_folder_map(self, job_id: str, rows: Sequence[FolderMapRow]) -> None:
        """A source folder's earlier row is replaced."""


class MessageStore(ABC):
    @abstractmethod
    def messages(self, job_id: str, source_folder: str, uidvalidity: int,
                 uid_range: tuple[int, int] | None = None) -> dict[int, MessageRow]:
        """What the store knows of a folder's messages (only UIDs in ``uid_range``, inclusive)."""

    @abstractmethod
    def record_messages(self, job_id: str, source_folder: str, uidvalidity: int,
                        rows: Sequence[MessageRow]) -> None:
        """Insert or replace; call inside ``tx()`` together with the ledger update it belongs to."""

    @abstractmethod
    def update_flags(self, job_id: str, source_folder: str, uidvalidity: int,
                     changes: Sequence[tuple[int, tuple[str, ...]]]) -> None:
        """changes: (uid, flags)."""

    @abstractmethod
    def counts(self, job_id: str) -> dict[str, dict[str, int]]:
        """source folder -> state -> number of messages."""

    @abstractmethod
    def keys_elsewhere(self, job_id: str, source_folder: str) -> set[str]:
        """Keys of messages this job copied or found present from any other source folder."""


class LedgerStore(ABC):
    """The rows of the dedupe ledger, per target folder. Only storage: what the rows mean and how
    they follow the target is ``migrate.dedupe.ledger.Ledger``'s business."""

    # reading
    @abstractmethod
    def ledger_row(self, row_id: int) -> LedgerRow | None: ...

    @abstractmethod
    def ledger_rows(self, folder: str) -> list[LedgerRow]:
        """Every row of the folder, by id (for inspection: the engine never needs them all)."""

    @abstractmethod
    def ledger_count(self, folder: str, key: str) -> int:
        """Rows of ``key`` in ``folder``, whatever their state."""

    @abstractmethod
    def ledger_present_ids(self, folder: str) -> set[int]:
        """Ids of the rows in state present."""

    @abstractmethod
    def ledger_orphans(self, folder: str, job_id: str) -> list[LedgerRow]:
        """Present rows of ``job_id`` that no message row of that job points at, by id."""

    @abstractmethod
    def ledger_unplaced(self, folder: str, key: str) -> list[LedgerRow]:
        """Rows of ``key`` without a UID: present ones first, then by id."""

    @abstractmethod
    def ledger_has_uid(self, folder: str, uidvalidity: int, uid: int) -> bool: ...

    @abstractmethod
    def ledger_has_uids(self, folder: str) -> bool:
        """Does any row of the folder have a UID?"""

    @abstractmethod
    def ledger_count_uids(self, folder: str, uidvalidity: int, lo: int, hi: int) -> int:
        """Rows of this UIDVALIDITY with lo <= uid < hi."""

    @abstractmethod
    def ledger_placed(self, folder: str, below: int) -> list[LedgerRow]:
        """Rows with a UID below ``below``, by id."""

    @abstractmethod
    def ledger_count_placed(self, folder: str, below: int) -> int:
        """Rows with a UID below ``below``."""

    @abstractmethod
    def ledger_count_in_flight(self, folder: str) -> int:
        """Claims without a UID."""

    @abstractmethod
    def ledger_claim_owners(self, folder: str) -> set[str | None]:
        """Owners of the claims without a UID."""

    @abstractmethod
    def ledger_present_unplaced(self, folder: str) -> list[LedgerRow]:
        """Present rows without a UID, by id."""

    # writing
    @abstractmethod
    def ledger_insert(self, folder: str, key: str, state: str, *, uidvalidity: int | None = None,
                      uid: int | None = None, job_id: str | None = None, owner: str | None = None,
                      src: str | None = None) -> int:
        """A new row; returns its id (ids grow: a later row has a bigger id)."""

    @abstractmethod
    def ledger_place(self, row_id: int, uid: int | None, uidvalidity: int | None) -> None:
        """State present; the UID and UIDVALIDITY where given (None keeps the row's own)."""

    @abstractmethod
    def ledger_unplace(self, row_ids: Iterable[int]) -> None:
        """These rows forget their UID and UIDVALIDITY."""

    @abstractmethod
    def ledger_unplace_present(self, folder: str) -> None:
        """Every present row of the folder forgets its UID and UIDVALIDITY."""

    @abstractmethod
    def ledger_delete(self, row_ids: Iterable[int]) -> None: ...

    @abstractmethod
    def ledger_delete_claims(self, folder: str, owner: str | None) -> None:
        """Delete ``owner``'s claims without a UID (``owner`` None: claims without an owner)."""

    @abstractmethod
    def ledger_set_sizes(self, sizes: dict[int, int]) -> None:
        """row id -> RFC822.SIZE the target reports for that copy."""

    @abstractmethod
    def ledger_scan(self, folder: str) -> LedgerScan | None: ...

    @abstractmethod
    def ledger_set_scan(self, folder: str, uidvalidity: int, scanned_uidnext: int) -> None: ...


class NotificationStore(ABC):
    @abstractmethod
    def add_notification(self, row: NotificationRow) -> int:
        """Store a notification (its ``id`` is ignored); returns its id."""

    @abstractmethod
    def update_notification(self, nid: int, state: str, error: str | None) -> None:
        """New state and error; one attempt more."""

    @abstractmethod
    def notifications(self, job: str | None = None, *, include_sent: bool = False) -> list[NotificationRow]:
        """By id; ``job`` is a prefix of the job id."""


class MaildirUidStore(ABC):
    @abstractmethod
    def maildir_uids(self, store: str, folder: str) -> MaildirUids | None:
        """The UIDs of one folder of a source Maildir (``store``: its absolute path), or None."""

    @abstractmethod
    def assign_maildir_uids(self, store: str, folder: str, bases: list[str],
                            seed: Callable[[], tuple[int, int, dict[str, int]]]) -> MaildirUids:
        """Give the next UIDs to ``bases`` not numbered yet (in the given order); a folder seen
        for the first time starts from ``seed()`` (UIDVALIDITY, UIDNEXT, known UIDs). UIDs are
        never reused. One transaction: two connections numbering one folder agree."""


class BudgetStore(ABC):
    """Bytes moved per provider account, direction ("download"/"upload") and day (an ISO date,
    UTC): what the daily budgets count (``migrate.engine.budget``), across runs and processes."""

    @abstractmethod
    def budget_used(self, account: str, direction: str, day: str) -> int:
        """Bytes recorded for that account, direction and day (0 if none)."""

    @abstractmethod
    def add_budget_usage(self, account: str, direction: str, day: str, nbytes: int) -> None:
        """Add ``nbytes`` to what that account moved in that direction that day."""


class Store(JobStore, FolderStore, MessageStore, LedgerStore, NotificationStore, MaildirUidStore, BudgetStore):
    """Everything the engine keeps. One object per thread; ``tx()`` owns every transaction."""

    @abstractmethod
    def tx(self) -> AbstractContextManager[None]:
        """A write transaction; nested blocks join the outer one (see the module docstring)."""

    @abstractmethod
    def close(self) -> None: ...
