"""The engine's locks as PostgreSQL advisory locks: across threads, processes and hosts.

The same three locks as the lock files beside a SQLite journal (``migrate.journal``), for a job
whose journal is a ``PgJournal``:

* the owner lock of one live attempt at a folder (``PgLocks.owner``): ledger claims name its
  token; ``alive(token)`` tells a running attempt's claims from those of one that died. A dead
  process's session ends and PostgreSQL frees its locks, so a SIGKILLed owner reads as dead;
* the target-folder lock around decide -> APPEND -> record (``PgLocks.folder``);
* one run of a job at a time (``PgJobGuard``).

Session-level advisory locks are re-entrant per session, so every lock held is held on a
connection of its own: two threads of one process then exclude each other like two hosts do.
Those connections come from a small per-process pool per database (``_Pool``): a lock taken per
batch costs no connect. The pool keeps idle connections only while a job of this process uses the
database (``PgLocks`` counts as a user until ``close()``); when the last one ends, every idle
connection is closed, so hundreds of jobs in one worker leave no connection behind.

Keys: the first 8 bytes of blake2b(namespace, kind, name), as PostgreSQL's signed bigint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import JobLocked
from .location import DatabaseLost, PgJournal

if TYPE_CHECKING:
    import psycopg

MAX_IDLE = 32  # idle connections kept per database while jobs run (locks, and a worker's stores)


def lock_key(namespace: str, kind: str, name: str) -> int:
    """A 64-bit advisory-lock key for (namespace, kind, name), as a signed int64."""
    digest = hashlib.blake2b(f"{namespace}\0{kind}\0{name}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Pool:
    """Idle autocommit connections to one database, handed out one holder at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.users = 0
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def get(self, *, fresh: bool = False) -> tuple[psycopg.Connection, bool]:
        """A connection and whether it was idle in the pool (the server may have ended it
        meanwhile: the caller tries a fresh one then). ``fresh``: never an idle one."""
        with self._lock:
            conn = self._idle.pop() if self._idle and not fresh else None
        if conn is not None and not conn.closed and not conn.broken:
            return conn, True
        if conn is not None:
            _close(conn)
        from ..errors import ConnectFailed
        from .postgres import connect

        try:
            return connect(self.url), False
        except ConnectFailed as exc:  # mid-job: the journal's database is gone, the job stops
            raise DatabaseLost(exc.message.replace("cannot reach", "lost the connection to", 1),
                               hint=DatabaseLost.HINT) from None

    def put(self, conn: psycopg.Connection) -> None:
        """Back to the pool (it holds no lock any more), or closed when unhealthy or unwanted."""
        from psycopg.pq import TransactionStatus

        healthy = not conn.closed and not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if healthy and self.users > 0 and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        _close(conn)

    def retain(self) -> None:
        with self._lock:
            self.users += 1

    def release(self) -> None:
        """A user is done; the last one closes every idle connection."""
        with self._lock:
            self.users = max(0, self.users - 1)
            idle, self._idle = (self._idle, []) if self.users == 0 else ([], self._idle)
        for conn in idle:
            _close(conn)

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)


_pools: dict[str, _Pool] = {}
_pools_lock = threading.Lock()


def pool_for(url: str) -> _Pool:
    """This process's lock-connection pool of the database at ``url``."""
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            pool = _pools[url] = _Pool(url)
        return pool


def _close(conn: psycopg.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.OperationalError, psycopg.InterfaceError)


class _Held:
    """One advisory lock held on a pooled connection of its own."""

    def __init__(self, where: PgJournal, pool: _Pool, key: int) -> None:
        self.where, self.pool, self.key = where, pool, key
        self.conn: psycopg.Connection | None = None

    def take(self, *, wait: bool = True) -> bool:
        conn, reused = self.pool.get()
        while True:
            try:
                if wait:
                    conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
                    got = True
                else:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                    got = bool(row and row[0])
                break
            except _errors() as exc:
                _close(conn)
                if not reused:
                    raise DatabaseLost.at(self.where.url, exc) from None
                conn, reused = self.pool.get(fresh=True)  # an idle one the server had ended
            except BaseException:
                _close(conn)  # interrupted while waiting: the session may still get the lock
                raise
        if got:
            self.conn = conn
        else:
            self.pool.put(conn)
        return got

    def let_go(self) -> None:
        """Unlock and give the connection back; a connection that dropped meanwhile already lost
        the lock with its session: it is closed, nothing is raised (the job is ending anyway)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except Exception:  # noqa: BLE001 - see the docstring
            _close(conn)
            return
        self.pool.put(conn)


class _OwnerToken:
    def __init__(self, held: _Held, token: str) -> None:
        self.held, self.token = held, token

    def __enter__(self) -> _OwnerToken:
        return self

    def __exit__(self, *exc: object) -> None:
        self.held.let_go()


class PgLocks:
    """``migrate.engine.locks.Locks`` on advisory locks of the ``PgJournal``'s database. Holds a
    share of the process's connection pool until ``close()`` (the job's end)."""

    def __init__(self, where: PgJournal) -> None:
        self.where = where
        self.pool = pool_for(where.url)
        self.pool.retain()
        self._closed = False

    def _key(self, kind: str, name: str) -> int:
        return lock_key(self.where.namespace, kind, name)

    def owner(self) -> _OwnerToken:
        token = f"{os.getpid()}-{os.urandom(6).hex()}"
        held = _Held(self.where, self.pool, self._key("owner", token))
        held.take()
        return _OwnerToken(held, token)

    @contextlib.contextmanager
    def folder(self, target_folder: str) -> Iterator[None]:
        held = _Held(self.where, self.pool, self._key("folder", target_folder))
        held.take()
        try:
            yield
        finally:
            held.let_go()

    def alive(self, token: str | None) -> bool:
        if not token:
            return False
        probe = _Held(self.where, self.pool, self._key("owner", token))
        if probe.take(wait=False):  # nobody holds it: its owner is gone
            probe.let_go()
            return False
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.pool.release()

    def __enter__(self) -> PgLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PgJobGuard:
    """Refuses a second concurrent run of a job, on any host (``migrate.journal.JobGuard``'s
    contract). The lock's connection is pooled while held and closed or given back on release."""

    def __init__(self, where: PgJournal, job_id: str) -> None:
        self.where, self.job_id = where, job_id
        self.pool = pool_for(where.url)
        self._held = _Held(where, self.pool, lock_key(where.namespace, "job", job_id))
        self._retained = False

    def acquire(self) -> None:
        self.pool.retain()
        self._retained = True
        try:
            got = self._held.take(wait=False)
        except BaseException:
            self.release()
            raise
        if not got:
            self.release()
            raise JobLocked(f"job {self.job_id} is already running (journal {self.where})",
                            hint="wait for it to finish, or watch it with 'mailmigrate status --follow'")

    def release(self) -> None:
        self._held.let_go()
        if self._retained:
            self._retained = False
            self.pool.release()

    @staticmethod
    def is_running(where: PgJournal, job_id: str) -> bool:
        probe = _Held(where, pool_for(where.url), lock_key(where.namespace, "job", job_id))
        if probe.take(wait=False):
            probe.let_go()
            return False
        return True


def lock_connections(url: str) -> dict[str, Any]:
    """This process's pool of ``url`` as numbers (for tests and diagnostics)."""
    pool = pool_for(url)
    return {"users": pool.users, "idle": pool.idle()}


__all__ = ["MAX_IDLE", "PgJobGuard", "PgLocks", "lock_connections", "lock_key", "pool_for"]
