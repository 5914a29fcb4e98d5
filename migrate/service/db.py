"""The service's state: jobs, batches, sessions and a session's mailboxes and sign-ins.

In one SQLite file (``service.sqlite``, one service process) or in a PostgreSQL database shared by
``mailmigrate serve`` and ``worker`` processes on several hosts (``--database URL``,
``migrate/service/db_postgres.py``; its tables are migration 2 of ``migrate/store/postgres_schema``).
``Store`` holds every query once, in SQL both understand; a ``Connection`` runs it in its dialect.
Every state change is one conditional statement or one transaction, as other processes change the
same rows at the same time.

Passwords are only ever stored sealed (``crypto.SecretBox``) and erased when a job ends; session
tokens are stored as their SHA-256, never in clear."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MigrateError

if TYPE_CHECKING:
    from .config import ServiceConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_by TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    source_secret BLOB,
    target_secret BLOB,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    report TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    batch_id TEXT,
    batch_line INTEGER,
    progress TEXT,
    resume_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    password BLOB NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS session_mailboxes (
    token_hash TEXT NOT NULL,
    email TEXT NOT NULL,
    password BLOB NOT NULL,
    added_at REAL NOT NULL,
    PRIMARY KEY (token_hash, email)
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""
# Columns added after the first release: (table, column, declaration) for databases made before.
_ADDED_COLUMNS = (("jobs", "batch_id", "TEXT"), ("jobs", "batch_line", "INTEGER"), ("jobs", "progress", "TEXT"),
                  ("jobs", "resume_at", "REAL"))

ACTIVE = ("queued", "running")
FINAL = ("done", "partial", "failed", "cancelled")
WAITING = "waiting_signin"  # a Google/Microsoft source without a password: runs once signed in
BUDGET_WAITING = "waiting"  # stopped at a provider's daily budget: queued again at resume_at, secrets kept


_INSERT_JOB = ("INSERT INTO jobs (id, owner, created_by, state, request, source_secret, target_secret, created_at, "
               "batch_id, batch_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_CLAIM = "UPDATE jobs SET state = 'running', started_at = ? WHERE id = ? AND state "


class ServiceDatabaseError(MigrateError):
    """The service's database failed a request (connection lost, a change refused): one line
    naming the database, never its password."""

    reference = "service-database"


@dataclass
class Result:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rowcount: int = -1


class Connection:
    """What ``Store`` needs of a database: run one statement (``?`` placeholders), a transaction
    holding the write lock of what it changes from its first statement on, close."""

    for_update = ""  # what makes a SELECT in a transaction lock its rows ("" where the transaction already does)

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Result:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SqliteConnection(Connection):
    """``service.sqlite``: one file, made or brought up to date on opening."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA secure_delete = ON")  # erased secrets do not linger in free pages
        self._migrate()
        self._db.executescript(SCHEMA)
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_batch ON jobs(batch_id)")
        path.chmod(0o600)

    def _migrate(self) -> None:
        known = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)").fetchall()}
        if not known:
            return  # a new database: SCHEMA makes everything
        for table, column, decl in _ADDED_COLUMNS:
            if column not in known:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Result:
        cur = self._db.execute(sql, args)
        return Result([dict(r) for r in cur.fetchall()], cur.rowcount)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # the write lock first: no decision on a stale read
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


class _Rollback(Exception):
    """Raised inside ``Store._tx`` to undo the transaction quietly."""


def open_service_store(cfg: ServiceConfig) -> Store:
    """The PostgreSQL database of ``cfg.database`` (its schema up to date, else a one-line
    UsageError), or ``service.sqlite`` in the service's home."""
    if cfg.database:
        from .db_postgres import PostgresConnection

        return Store(PostgresConnection(cfg.database))
    return Store(cfg.db_path)


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Store:
    """The service's queries over one connection, used by one thread at a time (a lock)."""

    def __init__(self, where: Path | Connection) -> None:
        self._conn = where if isinstance(where, Connection) else SqliteConnection(where)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _exec(self, sql: str, args: tuple = ()) -> Result:
        with self._lock:
            return self._conn.execute(sql, args)

    def _all(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        return self._exec(sql, args).rows

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Callable[..., Result]]:
        """One transaction; yields the statement runner. ``raise _Rollback`` undoes it quietly."""
        with self._lock:
            try:
                with self._conn.transaction():
                    yield self._conn.execute
            except _Rollback:
                pass

    # --- jobs ---------------------------------------------------------------------------------

    def add_job(self, job_id: str, *, owner: str, created_by: str, request: dict[str, Any],
                source_secret: bytes | None, target_secret: bytes, state: str = "queued") -> None:
        self._exec(_INSERT_JOB, (job_id, owner, created_by, state, json.dumps(request), source_secret,
                                 target_secret, time.time(), None, None))

    def add_batch(self, batch_id: str, owner: str, jobs: list[dict[str, Any]]) -> None:
        """The batch and all its jobs at once (``jobs``: add_job's keywords plus ``id`` and
        ``line``): a batch is stored whole or not at all."""
        now = time.time()
        with self._tx() as q:
            q("INSERT INTO batches (id, owner, created_at) VALUES (?, ?, ?)", (batch_id, owner, now))
            for j in jobs:
                q(_INSERT_JOB, (j["id"], j["owner"], j["created_by"], j.get("state", "queued"),
                                json.dumps(j["request"]), j["source_secret"], j["target_secret"], now, batch_id,
                                j["line"]))

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM batches WHERE id = ?", (batch_id,))
        return rows[0] if rows else None

    def batch_jobs(self, batch_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM jobs WHERE batch_id = ? ORDER BY batch_line", (batch_id,))

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def jobs(self, owner: str | list[str] | None = None) -> list[dict[str, Any]]:
        """Every job (None), or those into one mailbox or any of several."""
        if owner is None:
            return self._all("SELECT * FROM jobs ORDER BY created_at DESC")
        owners = [owner] if isinstance(owner, str) else list(owner)
        marks = ", ".join("?" * len(owners))
        return self._all(f"SELECT * FROM jobs WHERE owner IN ({marks}) ORDER BY created_at DESC", tuple(owners))

    def active_job_ids(self) -> list[str]:
        rows = self._all("SELECT id FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at")
        return [r["id"] for r in rows]

    def claim(self, job_id: str, *, take_over: bool = False) -> bool:
        """queued -> running; False if the job is no longer queued (cancelled meanwhile, or another
        worker claimed it). ``take_over``: also running -> running, a job whose worker died."""
        states = "IN ('queued', 'running')" if take_over else "= 'queued'"
        return self._exec(_CLAIM + states, (time.time(), job_id)).rowcount == 1

    def save_live(self, job_id: str, report: dict[str, Any] | None, progress: dict[str, Any] | None) -> None:
        """A running job's current report and progress (what others show of it); never after it ended."""
        self._exec("UPDATE jobs SET report = COALESCE(?, report), progress = COALESCE(?, progress) "
                   "WHERE id = ? AND state = 'running'", (_json_or_none(report), _json_or_none(progress), job_id))

    def cancel_requested(self, job_ids: list[str]) -> set[str]:
        """Which of these running jobs someone asked to cancel."""
        if not job_ids:
            return set()
        marks = ", ".join("?" * len(job_ids))
        rows = self._all(f"SELECT id FROM jobs WHERE id IN ({marks}) AND state = 'running' "
                         "AND cancel_requested = 1", tuple(job_ids))
        return {r["id"] for r in rows}

    def jobs_in_state(self, *states: str) -> list[dict[str, Any]]:
        """(id, state, resume_at) of the jobs in these states, oldest first."""
        if not states:
            return []
        marks = ", ".join("?" * len(states))
        return self._all(f"SELECT id, state, resume_at FROM jobs WHERE state IN ({marks}) ORDER BY created_at, id",
                         tuple(states))

    def requeue(self, job_id: str) -> None:
        self._exec("UPDATE jobs SET state = 'queued' WHERE id = ? AND state = 'running'", (job_id,))

    def request_cancel(self, job_id: str) -> str | None:
        """Mark a job cancelled (queued: at once, secrets erased) or to be cancelled (running).
        Returns the state it was in."""
        with self._tx() as q:
            rows = q("SELECT state FROM jobs WHERE id = ?" + self._conn.for_update, (job_id,)).rows
            if not rows:
                return None
            state = str(rows[0]["state"])
            if state in ("queued", WAITING, BUDGET_WAITING):
                q("UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?, "
                  "source_secret = NULL, target_secret = NULL WHERE id = ?", (time.time(), job_id))
            elif state == "running":
                q("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return state

    def wait_for_budget(self, job_id: str, report: dict[str, Any], error: str | None, resume_at: float, *,
                        progress: dict[str, Any] | None = None) -> bool:
        """running -> waiting until ``resume_at`` (a daily budget is used up); the secrets stay
        sealed for the run that goes on. False if the job is no longer running."""
        cur = self._exec("UPDATE jobs SET state = ?, report = ?, error = ?, resume_at = ?, "
                         "progress = COALESCE(?, progress) WHERE id = ? AND state = 'running'",
                         (BUDGET_WAITING, json.dumps(report), error, resume_at, _json_or_none(progress), job_id))
        return cur.rowcount == 1

    def budget_waits(self) -> list[tuple[str, float]]:
        """(id, resume_at) of every job waiting for a daily budget."""
        rows = self._all("SELECT id, resume_at FROM jobs WHERE state = ? ORDER BY resume_at", (BUDGET_WAITING,))
        return [(r["id"], float(r["resume_at"] or 0)) for r in rows]

    def resume_waiting(self, job_id: str) -> bool:
        """waiting -> queued (its budget allows more now); False if it is no longer waiting (cancelled)."""
        cur = self._exec("UPDATE jobs SET state = 'queued', error = NULL, resume_at = NULL "
                         "WHERE id = ? AND state = ?", (job_id, BUDGET_WAITING))
        return cur.rowcount == 1

    def save_progress(self, job_id: str, report: dict[str, Any]) -> None:
        self._exec("UPDATE jobs SET report = ? WHERE id = ?", (json.dumps(report), job_id))

    def finish(self, job_id: str, state: str, report: dict[str, Any] | None, error: str | None, *,
               progress: dict[str, Any] | None = None) -> None:
        """The job's final state; its secrets are erased. ``progress``: the engine's last
        counters (``Progress.snapshot()``), what the job's progress shows from now on."""
        self._exec("UPDATE jobs SET state = ?, report = COALESCE(?, report), error = ?, finished_at = ?, "
                   "progress = COALESCE(?, progress), source_secret = NULL, target_secret = NULL WHERE id = ?",
                   (state, _json_or_none(report), error, time.time(), _json_or_none(progress), job_id))

    # --- sessions -----------------------------------------------------------------------------

    def add_session(self, token: str, email: str, password: bytes, csrf: str, ttl_s: int) -> None:
        now = time.time()
        self._exec("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self._exec("DELETE FROM session_mailboxes WHERE token_hash NOT IN (SELECT token_hash FROM sessions)")
        self._exec("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                   (token_hash(token), email, password, csrf, now, now + ttl_s))

    def session(self, token: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM sessions WHERE token_hash = ? AND expires_at >= ?",
                         (token_hash(token), time.time()))
        return rows[0] if rows else None

    def drop_session(self, token: str) -> None:
        self._exec("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))
        self._exec("DELETE FROM session_mailboxes WHERE token_hash = ?", (token_hash(token),))

    # --- a session's further mailboxes (the person proved each password by an IMAP LOGIN) ------

    def add_session_mailbox(self, session_hash: str, email: str, password: bytes) -> None:
        self._exec("INSERT INTO session_mailboxes VALUES (?, ?, ?, ?) ON CONFLICT (token_hash, email) "
                   "DO UPDATE SET password = excluded.password, added_at = excluded.added_at",
                   (session_hash, email, password, time.time()))

    def session_mailboxes(self, session_hash: str) -> list[dict[str, Any]]:
        return self._all("SELECT email, password FROM session_mailboxes WHERE token_hash = ? ORDER BY added_at",
                         (session_hash,))

    # --- sign-in with Google/Microsoft (signin.py): flows under way, a session's sign-ins, links --

    def add_oauth_state(self, state_hash: str, *, kind: str, verifier: bytes, session_hash: str | None,
                        link_hash: str | None, expected_email: str | None, next_path: str, lang: str,
                        ttl_s: float) -> None:
        now = time.time()
        self._exec("DELETE FROM oauth_states WHERE expires_at < ?", (now,))
        self._exec("INSERT INTO oauth_states VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (state_hash, kind, verifier, session_hash, link_hash, expected_email, next_path, lang,
                    now + ttl_s))

    def take_oauth_state(self, state_hash: str) -> dict[str, Any] | None:
        """The flow this state started, removed (a state is good for one callback); None if unknown
        or expired."""
        rows = self._all("DELETE FROM oauth_states WHERE state_hash = ? RETURNING *", (state_hash,))
        if not rows or rows[0]["expires_at"] < time.time():
            return None
        return rows[0]

    def add_oauth_source(self, session_hash: str, kind: str, email: str, secret: bytes) -> None:
        self._exec("INSERT INTO oauth_sources VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_hash, kind, email) "
                   "DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at",
                   (session_hash, kind, email.lower(), secret, time.time()))

    def oauth_sources(self, session_hash: str) -> list[dict[str, Any]]:
        return self._all("SELECT kind, email, secret FROM oauth_sources WHERE session_hash = ? "
                         "ORDER BY created_at", (session_hash,))

    def add_signin_link(self, link_hash: str, *, job_id: str, email: str, kind: str, ttl_s: float) -> None:
        now = time.time()
        self._exec("INSERT INTO signin_links (token_hash, job_id, email, kind, created_at, expires_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (link_hash, job_id, email, kind, now, now + ttl_s))

    def signin_link(self, link_hash: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM signin_links WHERE token_hash = ?", (link_hash,))
        return rows[0] if rows else None

    def complete_signin(self, link_hash: str, job_id: str, source_secret: bytes, request: dict[str, Any]) -> bool:
        """Use the link and queue its job with the sealed sign-in, both or neither: False when the
        link was used or expired meanwhile, or the job is no longer waiting (cancelled)."""
        now = time.time()
        ok = False
        with self._tx() as q:
            used = q("UPDATE signin_links SET used_at = ? WHERE token_hash = ? AND job_id = ? "
                     "AND used_at IS NULL AND expires_at >= ?", (now, link_hash, job_id, now))
            queued = q("UPDATE jobs SET state = 'queued', source_secret = ?, request = ?, error = NULL "
                       "WHERE id = ? AND state = ?", (source_secret, json.dumps(request), job_id, WAITING))
            ok = used.rowcount == 1 and queued.rowcount == 1
            if not ok:
                raise _Rollback
        return ok

    def set_waiting_note(self, job_id: str, note: str | None) -> None:
        """Why a job waiting for sign-in may wait in vain (the link mail failed), or None."""
        self._exec("UPDATE jobs SET error = ? WHERE id = ? AND state = ?", (note, job_id, WAITING))

    def keep_source_secret(self, job_id: str, source_secret: bytes) -> None:
        """A running job's renewed source secret (a rotated refresh token); never after it ended."""
        self._exec("UPDATE jobs SET source_secret = ? WHERE id = ? AND state = 'running'", (source_secret, job_id))


# Sign-in with Google/Microsoft (signin.py). Created with the other tables; a session's sign-ins
# and flows go with the session. States, verifiers and refresh tokens are stored sealed or hashed.
SCHEMA += """
CREATE TABLE IF NOT EXISTS oauth_states (
    state_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    verifier BLOB NOT NULL,
    session_hash TEXT,
    link_hash TEXT,
    expected_email TEXT,
    next_path TEXT NOT NULL,
    lang TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_sources (
    session_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    email TEXT NOT NULL,
    secret BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_hash, kind, email)
);
CREATE TABLE IF NOT EXISTS signin_links (
    token_hash TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE INDEX IF NOT EXISTS signin_links_job ON signin_links(job_id);
CREATE TRIGGER IF NOT EXISTS sessions_take_their_signins AFTER DELETE ON sessions BEGIN
    DELETE FROM oauth_sources WHERE session_hash = OLD.token_hash;
    DELETE FROM oauth_states WHERE session_hash = OLD.token_hash;
END;
"""
