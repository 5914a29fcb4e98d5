"""Where a job's journal lives: a SQLite file (a ``Path``) or a namespace of a PostgreSQL
database (``PgJournal``), and what follows from the choice: the store, the locks, the job guard,
the daily budgets' store and the read-only looks of a dry run.

Nothing here imports psycopg: a job on a SQLite journal never loads it. A ``PgJournal`` job
writes no file anywhere: its locks are advisory locks in the same database
(``migrate.store.pg_locks``) and its budgets are rows of the fixed namespace ``BUDGET_NAMESPACE``,
so that jobs on every worker count one account together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union
from urllib.parse import urlsplit

from ..errors import ExitCode, FatalError

if TYPE_CHECKING:
    from ..engine.locks import Locks

BUDGET_NAMESPACE = "_budgets"  # the daily budgets of every job in one database: shared by all workers
BUDGET_FILE = "_budgets.sqlite"  # beside a SQLite journal: shared by every job whose journal is there


@dataclass(frozen=True)
class PgJournal:
    """A job's journal in PostgreSQL: the database ``url`` and the target account's ``namespace``."""

    url: str
    namespace: str

    def __post_init__(self) -> None:
        # The password, if any, never shows in a message, a report or a log from now on.
        from ..errors import register_secret

        register_secret(urlsplit(self.url).password)

    @property
    def where(self) -> str:
        """``127.0.0.1:5432/mm``: the server and database, never the user or password."""
        return database_where(self.url)

    def __str__(self) -> str:
        return f"postgresql://{self.where}#{self.namespace}"

    def __repr__(self) -> str:
        return f"PgJournal({str(self)!r})"


JournalLocation = Union[Path, PgJournal]  # noqa: UP007 - a runtime alias, read by isinstance users too


def database_where(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL (nothing secret)."""
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"{parts.hostname or 'localhost'}:{port}/{parts.path.lstrip('/') or '(default database)'}"


class DatabaseLost(FatalError):
    """The connection to the PostgreSQL journal dropped in the middle of a job (server restarted,
    backend terminated, network gone). The whole job stops: nothing that was not recorded counts
    as done, and a re-run resumes where it stopped."""

    reference = "database-lost"
    exit_code = ExitCode.CONNECTION
    HINT = "the import resumes where it stopped when run again"

    @classmethod
    def at(cls, url: str, exc: BaseException) -> DatabaseLost:
        reason = " ".join(str(exc).split("\n", 1)[0].split()) or type(exc).__name__
        return cls(f"lost the connection to PostgreSQL at {database_where(url)}: {reason}", hint=cls.HINT)


def is_pg(location: object) -> bool:
    return isinstance(location, PgJournal)


def resolve(location: JournalLocation) -> JournalLocation:
    """A path made absolute (``~`` expanded); a ``PgJournal`` as it is."""
    return location if isinstance(location, PgJournal) else Path(location).expanduser().resolve()


def budget_location(journal: JournalLocation) -> JournalLocation:
    """Where a job on ``journal`` counts its daily budgets: ``_budgets.sqlite`` beside a journal
    file; the namespace ``BUDGET_NAMESPACE`` of a PostgreSQL journal's database."""
    if isinstance(journal, PgJournal):
        return PgJournal(journal.url, BUDGET_NAMESPACE)
    return Path(journal).parent / BUDGET_FILE


def read_folder_map(location: JournalLocation, job_id: str) -> dict[str, str]:
    """The job's recorded folder map, writing nothing (the dry run reads it too)."""
    if isinstance(location, PgJournal):
        from .postgres import read_folder_map as pg_read

        return pg_read(location.url, location.namespace, job_id)
    from .sqlite import read_folder_map as sqlite_read

    return sqlite_read(Path(location), job_id)


def read_budget_used(location: JournalLocation, account: str, direction: str, day: str) -> int:
    """Bytes recorded for (account, direction, day), writing nothing (the dry run)."""
    if isinstance(location, PgJournal):
        from .postgres import read_budget_used as pg_read

        return pg_read(location.url, location.namespace, account, direction, day)
    from .sqlite import read_budget_used as sqlite_read

    return sqlite_read(Path(location), account, direction, day)


def locks_for(location: JournalLocation) -> Locks:
    """The locks of a real run: advisory locks in the database of a ``PgJournal`` (across hosts),
    lock files beside a journal file (across processes of one host). Close it (``close()``) when
    the job ends: a ``PgLocks`` gives its pooled connections back."""
    if isinstance(location, PgJournal):
        from .pg_locks import PgLocks

        return PgLocks(location)
    from ..engine.locks import FileLocks

    return FileLocks(Path(location))


def job_guard(location: JournalLocation, job_id: str):  # type: ignore[no-untyped-def]
    """One run of ``job_id`` at a time: ``acquire()`` (``JobLocked`` if it runs) and ``release()``."""
    if isinstance(location, PgJournal):
        from .pg_locks import PgJobGuard

        return PgJobGuard(location, job_id)
    from ..journal import JobGuard

    return JobGuard(Path(location), job_id)


def job_is_running(location: JournalLocation, job_id: str) -> bool:
    """Does a live process (on any host, for a ``PgJournal``) run ``job_id`` now?"""
    if isinstance(location, PgJournal):
        from .pg_locks import PgJobGuard

        return PgJobGuard.is_running(location, job_id)
    from ..journal import JobGuard

    return JobGuard.is_running(Path(location), job_id)


__all__ = [
    "BUDGET_FILE", "BUDGET_NAMESPACE", "DatabaseLost", "JournalLocation", "PgJournal", "budget_location",
    "database_where", "is_pg", "job_guard", "job_is_running", "locks_for", "read_budget_used",
    "read_folder_map", "resolve",
]
