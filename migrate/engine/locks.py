"""The locks a folder sync takes, and the dry run's stand-in for them.

A real run coordinates through lock files beside its journal file (``migrate.journal``), or
through advisory locks in its PostgreSQL journal's database (``migrate.store.pg_locks.PgLocks``,
across hosts; ``migrate.store.location.locks_for`` picks): an owner lock per live attempt (ledger
claims name it, so a reconcile tells in-flight claims from dead ones) and a lock per target folder
around decide -> APPEND -> record. A dry run keeps a private in-memory
journal that no other process or attempt can see, and writes nothing anywhere, not even a lock
file: ``NoLocks`` takes none and calls every owner alive (its claims are never in flight).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from ..journal import OwnerLock, folder_lock, owner_alive


class Owner(Protocol):
    token: str


class Locks(Protocol):
    def owner(self) -> AbstractContextManager[Owner]: ...

    def folder(self, target_folder: str) -> AbstractContextManager[None]: ...

    def alive(self, token: str | None) -> bool: ...

    def close(self) -> None:
        """The job is over: give back what the locks keep between two acquisitions."""


class FileLocks:
    """Lock files beside the journal at ``journal_path`` (across threads and processes)."""

    def __init__(self, journal_path: Path) -> None:
        self.journal_path = journal_path

    def owner(self) -> AbstractContextManager[Owner]:
        return OwnerLock(self.journal_path)

    def folder(self, target_folder: str) -> AbstractContextManager[None]:
        return folder_lock(self.journal_path, target_folder)

    def alive(self, token: str | None) -> bool:
        return owner_alive(self.journal_path, token)

    def close(self) -> None:
        pass  # nothing kept between two locks: every lock file is closed when let go


class _Token:
    def __init__(self) -> None:
        self.token = f"{os.getpid()}-dry-{os.urandom(6).hex()}"


class NoLocks:
    """A dry run: nothing to coordinate with, nothing written."""

    @contextlib.contextmanager
    def owner(self) -> Iterator[Owner]:
        yield _Token()

    def folder(self, target_folder: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def alive(self, token: str | None) -> bool:
        return True

    def close(self) -> None:
        pass
