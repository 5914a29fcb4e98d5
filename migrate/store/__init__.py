"""Where a job's journal and the target's dedupe ledger are kept: the ``Store`` interface
(``base``) and its implementations (``sqlite``: one file per target account; ``postgres``: one
database for many target accounts, each a namespace - a preview, see the README)."""

from __future__ import annotations

from pathlib import Path

from .base import (
    BudgetStore,
    FolderMapRow,
    FolderRecord,
    FolderStore,
    JobRow,
    JobStore,
    LedgerRow,
    LedgerScan,
    LedgerStore,
    MaildirUids,
    MaildirUidStore,
    MessageRow,
    MessageStore,
    NotificationRow,
    NotificationStore,
    RunRow,
    Store,
)
from .location import DatabaseLost, JournalLocation, PgJournal


def is_postgres_url(location: object) -> bool:
    """Is ``location`` a PostgreSQL URL (not a journal path)? No import of the PostgreSQL store:
    opening a SQLite journal stays as fast as before."""
    return isinstance(location, str) and location[:13].lower().startswith(("postgresql://", "postgres://"))


def open_store(location: Path | str | PgJournal, namespace: str | None = None) -> Store:
    """Open the store at ``location``: the path of a SQLite journal file, a ``PgJournal``, or a
    ``postgresql://`` URL together with the ``namespace`` (the target account label) whose rows to see."""
    if isinstance(location, PgJournal):
        from .postgres import PostgresStore

        return PostgresStore(location.url, location.namespace)
    if is_postgres_url(location):
        if not namespace:
            from ..errors import UsageError

            raise UsageError("a PostgreSQL store needs a namespace (the target account label)")
        from .postgres import PostgresStore

        return PostgresStore(str(location), namespace)
    from .sqlite import SQLiteStore

    return SQLiteStore(Path(location))


__all__ = [
    "BudgetStore", "DatabaseLost", "FolderMapRow", "FolderRecord", "FolderStore", "JobRow", "JobStore", "LedgerRow", "LedgerScan", "LedgerStore",
    "MaildirUidStore", "MaildirUids", "MessageRow", "MessageStore", "NotificationRow", "NotificationStore",
    "JournalLocation", "PgJournal", "RunRow", "Store", "is_postgres_url", "open_store",
]
