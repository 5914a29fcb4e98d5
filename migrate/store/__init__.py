"""Where a job's journal and the target's dedupe ledger are kept: the ``Store`` interface
(``base``) and its implementations (``sqlite``: one file per target account)."""

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


def open_store(location: Path | str) -> Store:
    """Open the store at ``location`` (today: the path of a SQLite journal file)."""
    from .sqlite import SQLiteStore

    return SQLiteStore(Path(location))


__all__ = [
    "BudgetStore", "FolderMapRow", "FolderRecord", "FolderStore", "JobRow", "JobStore", "LedgerRow", "LedgerScan", "LedgerStore",
    "MaildirUidStore", "MaildirUids", "MessageRow", "MessageStore", "NotificationRow", "NotificationStore",
    "RunRow", "Store", "open_store",
]
