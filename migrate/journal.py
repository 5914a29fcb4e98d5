"""Where a target's journal lives, and the locks beside it.

The journal itself (jobs, runs, folders, messages, the dedupe ledger, ...) is a store:
``migrate.store`` (the interface) and ``migrate.store.sqlite`` (one SQLite file per target
account). This module keeps what is about the journal's *file*: its default path, job ids, and the
file locks that serialise work on one target (``folder_lock``, ``OwnerLock``, ``JobGuard``). The
store's names are re-exported here for the modules that import them from here (``Journal`` is
the SQLite store).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import JobLocked
from .store import FolderRecord, MessageRow, Store, open_store
from .store.sqlite import SCHEMA_VERSION, read_folder_map
from .store.sqlite import SQLiteStore as Journal

MessageRecord = MessageRow  # the name earlier versions used

__all__ = [
    "SCHEMA_VERSION", "FolderRecord", "JobGuard", "Journal", "MessageRecord", "MessageRow", "OwnerLock", "Store",
    "default_journal_path", "folder_lock", "job_id_for", "lock_dir", "open_store", "owner_alive",
    "read_folder_map", "state_home",
]


def state_home() -> Path:
    base = os.environ.get("MAILMIGRATE_HOME")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "mailmigrate"


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9@._-]+", "_", text)[:80]
    return s or "default"


def default_journal_path(target_label: str) -> Path:
    """Per-target default: ``$MAILMIGRATE_HOME/journals/<target>.sqlite``."""
    return state_home() / "journals" / f"{_slug(target_label)}.sqlite"


def job_id_for(source_label: str, target_label: str) -> str:
    return hashlib.sha1(f"{source_label}\0{target_label}".encode()).hexdigest()[:12]


# --- locks ----------------------------------------------------------------------------------

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def folder_lock(journal_path: Path, target_folder: str) -> Iterator[None]:
    """Exclusive lock on one target folder, across threads and processes.

    Held while deciding which messages to append, appending them and recording the result, so
    that two sources importing into one target never both decide "missing" for one message.
    """
    digest = hashlib.sha1(target_folder.encode()).hexdigest()[:16]
    lock_path = lock_dir(journal_path) / f"{digest}.lock"
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(str(lock_path), threading.Lock())
    with tlock:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class OwnerLock:
    """Marks one live attempt at copying a folder. Ledger claims name their owner, so that a
    reconcile can tell claims of a running attempt (in flight: leave them) from claims of one that
    died or gave up (verify them against the target)."""

    def __init__(self, journal_path: Path) -> None:
        self.dir = lock_dir(journal_path)
        self.token = f"{os.getpid()}-{os.urandom(6).hex()}"
        self.path = self.dir / f"owner-{self.token}.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None  # type: ignore[assignment]

    def __enter__(self) -> OwnerLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_dir(journal_path: Path, *, create: bool = True) -> Path:
    """The folder of lock files beside a journal (created unless only probing)."""
    path = journal_path.parent / (journal_path.name + ".locks")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _held(path: Path) -> bool:
    """Does a live process hold the flock on ``path``? (A missing file: no.)"""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def owner_alive(journal_path: Path, token: str | None) -> bool:
    if not token:
        return False
    path = lock_dir(journal_path, create=False) / f"owner-{token}.lock"
    if _held(path):
        return True
    with contextlib.suppress(OSError):  # its owner is gone: the file is litter
        path.unlink()
    return False


class JobGuard:
    """Refuses a second concurrent run of the same job (``--detach`` or two terminals)."""

    def __init__(self, journal_path: Path, job_id: str) -> None:
        self.path = lock_dir(journal_path) / f"job-{job_id}.lock"
        self.fd: int | None = None
        self.job_id = job_id

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JobLocked(f"job {self.job_id} is already running (lock {self.path})",
                            hint="wait for it to finish, or watch it with 'mailmigrate status --follow'") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    @staticmethod
    def is_running(journal_path: Path, job_id: str) -> bool:
        return _held(lock_dir(journal_path, create=False) / f"job-{job_id}.lock")
