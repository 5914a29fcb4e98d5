"""The service's state: one SQLite file with jobs and sessions.

Passwords are only ever stored sealed (``crypto.SecretBox``) and erased when a job ends; session
tokens are stored as their SHA-256, never in clear."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

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
    finished_at REAL
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
"""

ACTIVE = ("queued", "running")
FINAL = ("done", "partial", "failed", "cancelled")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA secure_delete = ON")  # erased secrets do not linger in free pages
        self._db.executescript(SCHEMA)
        path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _all(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    # --- jobs ---------------------------------------------------------------------------------

    def add_job(self, job_id: str, *, owner: str, created_by: str, request: dict[str, Any],
                source_secret: bytes, target_secret: bytes) -> None:
        self._exec("INSERT INTO jobs (id, owner, created_by, state, request, source_secret, target_secret, "
                   "created_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                   (job_id, owner, created_by, json.dumps(request), source_secret, target_secret, time.time()))

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def jobs(self, owner: str | None = None) -> list[dict[str, Any]]:
        if owner is None:
            return self._all("SELECT * FROM jobs ORDER BY created_at DESC")
        return self._all("SELECT * FROM jobs WHERE owner = ? ORDER BY created_at DESC", (owner,))

    def active_job_ids(self) -> list[str]:
        rows = self._all("SELECT id FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at")
        return [r["id"] for r in rows]

    def claim(self, job_id: str) -> bool:
        """queued -> running; False if the job is no longer queued (cancelled meanwhile)."""
        cur = self._exec("UPDATE jobs SET state = 'running', started_at = ? WHERE id = ? AND state = 'queued'",
                         (time.time(), job_id))
        return cur.rowcount == 1

    def requeue(self, job_id: str) -> None:
        self._exec("UPDATE jobs SET state = 'queued' WHERE id = ? AND state = 'running'", (job_id,))

    def request_cancel(self, job_id: str) -> str | None:
        """Mark a job cancelled (queued: at once, secrets erased) or to be cancelled (running).
        Returns the state it was in."""
        with self._lock:
            row = self._db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["state"] == "queued":
                self._db.execute("UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?, "
                                 "source_secret = NULL, target_secret = NULL WHERE id = ?", (time.time(), job_id))
            elif row["state"] == "running":
                self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            return str(row["state"])

    def save_progress(self, job_id: str, report: dict[str, Any]) -> None:
        self._exec("UPDATE jobs SET report = ? WHERE id = ?", (json.dumps(report), job_id))

    def finish(self, job_id: str, state: str, report: dict[str, Any] | None, error: str | None) -> None:
        """The job's final state; its secrets are erased."""
        self._exec("UPDATE jobs SET state = ?, report = COALESCE(?, report), error = ?, finished_at = ?, "
                   "source_secret = NULL, target_secret = NULL WHERE id = ?",
                   (state, json.dumps(report) if report is not None else None, error, time.time(), job_id))

    # --- sessions -----------------------------------------------------------------------------

    def add_session(self, token: str, email: str, password: bytes, csrf: str, ttl_s: int) -> None:
        now = time.time()
        self._exec("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self._exec("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                   (token_hash(token), email, password, csrf, now, now + ttl_s))

    def session(self, token: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM sessions WHERE token_hash = ? AND expires_at >= ?",
                         (token_hash(token), time.time()))
        return rows[0] if rows else None

    def drop_session(self, token: str) -> None:
        self._exec("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))
