"""The SQLite store: one database file per target account (the job journal).

One file holds the journals of every job into one target account (the default path is derived
from the target, see ``migrate.journal.default_journal_path``) *and* that target's dedupe ledger.
Two imports into one target therefore coordinate through one file: SQLite in WAL mode serialises
writers, and a per-target-folder file lock (``migrate.journal.folder_lock``) serialises the
decide -> APPEND -> record step.

Tables (the schema is managed by numbered migrations: ``migrate.store.sqlite_schema``)
* ``jobs``      one row per (source, target) job; ``state`` running/done/...;
* ``runs``      one row per run of a job (pid, times, status, the JSON report);
* ``folders``   per job and source folder: the source's UIDVALIDITY/UIDNEXT/EXISTS/HIGHESTMODSEQ
                seen at the end of the last complete pass (for the fast no-op path), and the
                target folder's then;
* ``messages``  per job, source folder, UIDVALIDITY and UID: key, flags, outcome
                (copied / duplicate / failed), and the ledger row of the copy we made;
* ``ledger``/``ledger_scan``  the dedupe ledger of each target folder and how far it was read;
* ``folder_map`` per job and source folder: the target folder chosen the first time (after any
                rename the target forced), reused by every later run so a folder never moves;
* ``notifications`` confirmation mails, to send again later;
* ``maildir_folders``/``maildir_uids``  the UIDs given to a *source* Maildir's files (a source
                is never written to, so they cannot live beside it);
* ``meta``      the key recipe the stored keys were made with (``key_version``).
* ``budget_usage`` bytes moved per provider account, direction and UTC day (the daily budgets:
                kept in a file of their own beside the journals, ``migrate.engine.budget``).

Nothing secret is ever written here: only labels (login@host:port), folder names, keys, flags,
counts and server answers (passed through ``redact``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ..errors import UsageError, redact
from ..report import utcnow
from . import sqlite_schema
from .base import (
    FolderMapRow,
    FolderRecord,
    JobRow,
    LedgerRow,
    LedgerScan,
    MaildirUids,
    MessageRow,
    NotificationRow,
    RunRow,
    Store,
)

SCHEMA_VERSION = 1  # the ``meta`` row older versions wrote; the schema itself is in ``_sqlite_migrations``

_LEDGER_COLS = "id, folder, uidvalidity, uid, key, state, job_id, owner, src, t_size"
_JOB_COLS = ("job_id, source, target, source_email, target_email, state, created_at, updated_at, command,"
             " last_report")
_RUN_COLS = "run_id, job_id, pid, started_at, finished_at, status, report, progress"
_NOTIFICATION_COLS = ("job_id, kind, recipients, lang, smtp, sender, state, error, attempts, updated_at,"
                      " reports, id")
_FOLDER_COLS = ("source_folder, target_folder, uidvalidity, uidnext, exists_, highestmodseq, complete,"
                " t_uidvalidity, t_uidnext, t_exists, t_highestmodseq")


def _ledger_row(r: tuple) -> LedgerRow:  # type: ignore[type-arg]
    return LedgerRow(*r)


def _folder_record(r: tuple) -> FolderRecord:  # type: ignore[type-arg]
    target = None if r[7] is None else (r[7], r[8], r[9], r[10])
    return FolderRecord(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), target)


class SQLiteStore(Store):
    """One connection to a journal database. Not shared between threads: open one per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.parent.exists():  # only a folder we create is made private: never chmod /tmp or cwd
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.chmod(path.parent, 0o700)
        new = not path.exists()
        try:
            self.conn = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise UsageError(f"cannot open journal {path}: {exc}", hint="pass --journal PATH to a writable file") from None
        if new:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)
        self.conn.execute("PRAGMA busy_timeout = 60000")
        # Switching to WAL takes an exclusive lock and SQLite does not wait for it (no busy
        # handler): two imports starting together into one target meet here. Retry briefly.
        for attempt in range(200):
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 199:
                    raise
                time.sleep(0.05)
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self._tx_depth = 0
        self._open()

    @property
    def db(self):  # type: ignore[no-untyped-def]
        """sqlite-utils view of the same connection, for ad-hoc read-side queries.
        Imported lazily: the copy path needs only sqlite3, and a no-op re-run should start fast."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    # --- schema -------------------------------------------------------------------------

    def _open(self) -> None:
        with self.tx():
            sqlite_schema.upgrade(self.conn)
            self.conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._check_key_version()

    def _check_key_version(self) -> None:
        """Dedupe keys computed by another version of ``key_of`` cannot be compared with ours.
        The journal is a cache of the target: forget every key (message outcomes, the ledger,
        completed passes) and let the next run rebuild them from both sides, as after a lost
        journal. Jobs, runs, notifications and the folder mapping stay."""
        from ..dedupe.keys import KEY_VERSION  # not at module level: dedupe imports the store

        row = self.conn.execute("SELECT value FROM meta WHERE name='key_version'").fetchone()
        if row and row[0] == str(KEY_VERSION):
            return
        if row is not None or self.conn.execute("SELECT 1 FROM ledger LIMIT 1").fetchone():
            self.conn.execute("DELETE FROM messages")
            self.conn.execute("DELETE FROM ledger")
            self.conn.execute("DELETE FROM ledger_scan")
            self.conn.execute("UPDATE folders SET complete=0")
        self.conn.execute("INSERT INTO meta (name, value) VALUES ('key_version', ?) ON CONFLICT(name)"
                          " DO UPDATE SET value=excluded.value", (str(KEY_VERSION),))

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        """A write transaction (BEGIN IMMEDIATE: takes the write lock up front, so two
        processes never both decide on stale reads). Nested calls join the outer one."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._tx_depth = 1
        try:
            yield
        except BaseException:
            self._tx_depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._tx_depth = 0
        self.conn.execute("COMMIT")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    # --- jobs and runs --------------------------------------------------------------------

    def start_job(self, job_id: str, source: str, target: str, *, source_email: str | None,
                  target_email: str | None, command: str | None) -> int:
        now = utcnow().isoformat()
        with self.tx():
            c = self.conn
            c.execute(
                "INSERT INTO jobs (job_id, source, target, source_email, target_email, state, created_at,"
                " updated_at, command) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(job_id) DO UPDATE SET"
                " state='running', updated_at=excluded.updated_at, command=excluded.command",
                (job_id, source, target, source_email, target_email, "running", now, now, command))
            c.execute("UPDATE jobs SET state='running' WHERE job_id=?", (job_id,))
            cur = c.execute("INSERT INTO runs (job_id, pid, started_at, status) VALUES (?,?,?,?)",
                            (job_id, os.getpid(), now, "running"))
            return int(cur.lastrowid or 0)

    def finish_run(self, job_id: str, run_id: int, status: str, report_json: str) -> None:
        now = utcnow().isoformat()
        with self.tx():
            self.conn.execute("UPDATE runs SET finished_at=?, status=?, report=? WHERE run_id=?",
                              (now, status, report_json, run_id))
            self.conn.execute("UPDATE jobs SET state=?, updated_at=?, last_report=? WHERE job_id=?",
                              (status, now, report_json, job_id))

    def set_progress(self, run_id: int, progress: dict[str, object]) -> None:
        with self.tx():
            self.conn.execute("UPDATE runs SET progress=? WHERE run_id=?", (json.dumps(progress), run_id))

    def jobs(self) -> list[JobRow]:
        return [JobRow(*r) for r in self.conn.execute(f"SELECT {_JOB_COLS} FROM jobs ORDER BY updated_at DESC")]

    def runs(self, job_id: str) -> list[RunRow]:
        return [RunRow(*r) for r in self.conn.execute(
            f"SELECT {_RUN_COLS} FROM runs WHERE job_id=? ORDER BY run_id DESC", (job_id,))]

    # --- confirmation mails ----------------------------------------------------------------

    def add_notification(self, row: NotificationRow) -> int:
        with self.tx():
            cur = self.conn.execute(
                "INSERT INTO notifications (job_id, kind, recipients, lang, smtp, sender, state, error, attempts,"
                " updated_at, reports) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (row.job_id, row.kind, row.recipients, row.lang, row.smtp, row.sender, row.state,
                 redact(row.error) if row.error else None, row.attempts, row.updated_at, row.reports))
            return int(cur.lastrowid or 0)

    def update_notification(self, nid: int, state: str, error: str | None) -> None:
        with self.tx():
            self.conn.execute(
                "UPDATE notifications SET state=?, error=?, attempts=attempts+1, updated_at=? WHERE id=?",
                (state, redact(error) if error else None, utcnow().isoformat(), nid))

    def notifications(self, job: str | None = None, *, include_sent: bool = False) -> list[NotificationRow]:
        sql = f"SELECT {_NOTIFICATION_COLS} FROM notifications WHERE 1=1"
        args: list[object] = []
        if job:
            sql += " AND job_id LIKE ?"
            args.append(job.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
            sql += " ESCAPE '\\'"
        if not include_sent:
            sql += " AND state <> 'sent'"
        return [NotificationRow(*r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    # --- folders ------------------------------------------------------------------------

    def folder(self, job_id: str, source_folder: str) -> FolderRecord | None:
        row = self.conn.execute(f"SELECT {_FOLDER_COLS} FROM folders WHERE job_id=? AND source_folder=?",
                                (job_id, source_folder)).fetchone()
        return _folder_record(row) if row else None

    def folders(self, job_id: str) -> list[FolderRecord]:
        rows = self.conn.execute(f"SELECT {_FOLDER_COLS} FROM folders WHERE job_id=? ORDER BY rowid",
                                 (job_id,)).fetchall()
        return [_folder_record(r) for r in rows]

    def save_folder(self, job_id: str, rec: FolderRecord) -> None:
        t = rec.target_status or (None, None, None, None)
        with self.tx():
            self.conn.execute(
                "INSERT INTO folders (job_id, source_folder, target_folder, uidvalidity, uidnext, exists_,"
                " highestmodseq, complete, updated_at, t_uidvalidity, t_uidnext, t_exists, t_highestmodseq)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(job_id, source_folder) DO UPDATE SET target_folder=excluded.target_folder,"
                " uidvalidity=excluded.uidvalidity, uidnext=excluded.uidnext, exists_=excluded.exists_,"
                " highestmodseq=excluded.highestmodseq, complete=excluded.complete,"
                " updated_at=excluded.updated_at, t_uidvalidity=excluded.t_uidvalidity,"
                " t_uidnext=excluded.t_uidnext, t_exists=excluded.t_exists,"
                " t_highestmodseq=excluded.t_highestmodseq",
                (job_id, rec.source_folder, rec.target_folder, rec.uidvalidity, rec.uidnext, rec.exists,
                 rec.highestmodseq, int(rec.complete), utcnow().isoformat(), *t))

    def forget_uidvalidity(self, job_id: str, source_folder: str, keep: int) -> int:
        """The source folder's UIDVALIDITY changed: its old UIDs mean nothing any more. Drop
        their rows; the ledger still knows what the target holds, so nothing is re-copied."""
        with self.tx():
            cur = self.conn.execute("DELETE FROM messages WHERE job_id=? AND source_folder=? AND uidvalidity<>?",
                                    (job_id, source_folder, keep))
            return cur.rowcount

    def folder_map(self, job_id: str) -> dict[str, str]:
        return dict(self.conn.execute(
            "SELECT source_folder, target_folder FROM folder_map WHERE job_id=?", (job_id,)).fetchall())

    def save_folder_map(self, job_id: str, rows: Sequence[FolderMapRow]) -> None:
        now = utcnow().isoformat()
        with self.tx():
            self.conn.executemany(
                "INSERT INTO folder_map (job_id, source_folder, target_folder, reason, updated_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT(job_id, source_folder) DO UPDATE SET"
                " target_folder=excluded.target_folder, reason=excluded.reason, updated_at=excluded.updated_at",
                [(job_id, src, dst, redact(reason), now) for src, dst, reason in rows])

    # --- messages -------------------------------------------------------------------------

    def messages(self, job_id: str, source_folder: str, uidvalidity: int,
                 uid_range: tuple[int, int] | None = None) -> dict[int, MessageRow]:
        lo, hi = uid_range or (0, 1 << 32)
        rows = self.conn.execute(
            "SELECT uid, key, flags, state, ledger_id, reason, size FROM messages"
            " WHERE job_id=? AND source_folder=? AND uidvalidity=? AND uid BETWEEN ? AND ?",
            (job_id, source_folder, uidvalidity, lo, hi))
        return {r[0]: MessageRow(r[0], r[1], tuple(json.loads(r[2] or "[]")), r[3], r[4], r[5], r[6])
                for r in rows}

    def record_messages(self, job_id: str, source_folder: str, uidvalidity: int,
                        rows: Sequence[MessageRow]) -> None:
        with self.tx():
            self.conn.executemany(
                "INSERT INTO messages (job_id, source_folder, uidvalidity, uid, key, flags, state, ledger_id,"
                " reason, size) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(job_id, source_folder, uidvalidity,"
                " uid) DO UPDATE SET key=excluded.key, flags=excluded.flags, state=excluded.state,"
                " ledger_id=excluded.ledger_id, reason=excluded.reason, size=excluded.size",
                [(job_id, source_folder, uidvalidity, r.uid, r.key, json.dumps(list(r.flags)), r.state, r.ledger_id,
                  redact(r.reason) if r.reason else None, r.size) for r in rows])

    def update_flags(self, job_id: str, source_folder: str, uidvalidity: int,
                     changes: Sequence[tuple[int, tuple[str, ...]]]) -> None:
        with self.tx():
            self.conn.executemany(
                "UPDATE messages SET flags=? WHERE job_id=? AND source_folder=? AND uidvalidity=? AND uid=?",
                [(json.dumps(list(f)), job_id, source_folder, uidvalidity, uid) for uid, f in changes])

    def counts(self, job_id: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for folder, state, n in self.conn.execute(
                "SELECT source_folder, state, COUNT(*) FROM messages WHERE job_id=?"
                " GROUP BY source_folder, state", (job_id,)):
            out.setdefault(folder, {})[state] = n
        return out

    def keys_elsewhere(self, job_id: str, source_folder: str) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT key FROM messages WHERE job_id=? AND source_folder<>?"
            " AND state IN ('copied','duplicate')", (job_id, source_folder))}

    # --- the dedupe ledger ------------------------------------------------------------------

    def ledger_row(self, row_id: int) -> LedgerRow | None:
        row = self.conn.execute(f"SELECT {_LEDGER_COLS} FROM ledger WHERE id=?", (row_id,)).fetchone()
        return _ledger_row(row) if row else None

    def ledger_rows(self, folder: str) -> list[LedgerRow]:
        return [_ledger_row(r) for r in self.conn.execute(
            f"SELECT {_LEDGER_COLS} FROM ledger WHERE folder=? ORDER BY id", (folder,))]

    def ledger_count(self, folder: str, key: str) -> int:
        (n,) = self.conn.execute("SELECT COUNT(*) FROM ledger WHERE folder=? AND key=?", (folder, key)).fetchone()
        return int(n)

    def ledger_present_ids(self, folder: str) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT id FROM ledger WHERE folder=? AND state='present'",
                                                (folder,))}

    def ledger_orphans(self, folder: str, job_id: str) -> list[LedgerRow]:
        return [_ledger_row(r) for r in self.conn.execute(
            f"SELECT {_LEDGER_COLS} FROM ledger l WHERE folder=? AND job_id=? AND state='present' AND NOT EXISTS"
            " (SELECT 1 FROM messages m WHERE m.job_id=l.job_id AND m.ledger_id=l.id) ORDER BY id",
            (folder, job_id))]

    def ledger_unplaced(self, folder: str, key: str) -> list[LedgerRow]:
        return [_ledger_row(r) for r in self.conn.execute(
            f"SELECT {_LEDGER_COLS} FROM ledger WHERE folder=? AND key=? AND uid IS NULL"
            " ORDER BY state='present' DESC, id", (folder, key))]

    def ledger_has_uid(self, folder: str, uidvalidity: int, uid: int) -> bool:
        return self.conn.execute("SELECT 1 FROM ledger WHERE folder=? AND uid=? AND uidvalidity=?",
                                 (folder, uid, uidvalidity)).fetchone() is not None

    def ledger_has_uids(self, folder: str) -> bool:
        return self.conn.execute("SELECT 1 FROM ledger WHERE folder=? AND uid IS NOT NULL LIMIT 1",
                                 (folder,)).fetchone() is not None

    def ledger_count_uids(self, folder: str, uidvalidity: int, lo: int, hi: int) -> int:
        (n,) = self.conn.execute(
            "SELECT COUNT(*) FROM ledger WHERE folder=? AND uidvalidity=? AND uid>=? AND uid<?",
            (folder, uidvalidity, lo, hi)).fetchone()
        return int(n)

    def ledger_placed(self, folder: str, below: int) -> list[LedgerRow]:
        return [_ledger_row(r) for r in self.conn.execute(
            f"SELECT {_LEDGER_COLS} FROM ledger WHERE folder=? AND uid IS NOT NULL AND uid<? ORDER BY id",
            (folder, below))]

    def ledger_count_placed(self, folder: str, below: int) -> int:
        (n,) = self.conn.execute("SELECT COUNT(*) FROM ledger WHERE folder=? AND uid IS NOT NULL AND uid<?",
                                 (folder, below)).fetchone()
        return int(n)

    def ledger_count_in_flight(self, folder: str) -> int:
        (n,) = self.conn.execute("SELECT COUNT(*) FROM ledger WHERE folder=? AND uid IS NULL AND state='claimed'",
                                 (folder,)).fetchone()
        return int(n)

    def ledger_claim_owners(self, folder: str) -> set[str | None]:
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT owner FROM ledger WHERE folder=? AND state='claimed' AND uid IS NULL", (folder,))}

    def ledger_present_unplaced(self, folder: str) -> list[LedgerRow]:
        return [_ledger_row(r) for r in self.conn.execute(
            f"SELECT {_LEDGER_COLS} FROM ledger WHERE folder=? AND state='present' AND uid IS NULL ORDER BY id",
            (folder,))]

    def ledger_insert(self, folder: str, key: str, state: str, *, uidvalidity: int | None = None,
                      uid: int | None = None, job_id: str | None = None, owner: str | None = None,
                      src: str | None = None) -> int:
        with self.tx():
            cur = self.conn.execute(
                "INSERT INTO ledger (folder, uidvalidity, uid, key, state, job_id, owner, src)"
                " VALUES (?,?,?,?,?,?,?,?)", (folder, uidvalidity, uid, key, state, job_id, owner, src))
            return int(cur.lastrowid or 0)

    def ledger_place(self, row_id: int, uid: int | None, uidvalidity: int | None) -> None:
        with self.tx():
            self.conn.execute("UPDATE ledger SET state='present', uid=COALESCE(?, uid),"
                              " uidvalidity=COALESCE(?, uidvalidity) WHERE id=?", (uid, uidvalidity, row_id))

    def ledger_unplace(self, row_ids: Iterable[int]) -> None:
        with self.tx():
            self.conn.executemany("UPDATE ledger SET uid=NULL, uidvalidity=NULL WHERE id=?",
                                  [(rid,) for rid in row_ids])

    def ledger_unplace_present(self, folder: str) -> None:
        with self.tx():
            self.conn.execute("UPDATE ledger SET uid=NULL, uidvalidity=NULL WHERE folder=? AND state='present'",
                              (folder,))

    def ledger_delete(self, row_ids: Iterable[int]) -> None:
        with self.tx():
            self.conn.executemany("DELETE FROM ledger WHERE id=?", [(rid,) for rid in row_ids])

    def ledger_delete_claims(self, folder: str, owner: str | None) -> None:
        with self.tx():
            self.conn.execute("DELETE FROM ledger WHERE folder=? AND state='claimed' AND uid IS NULL"
                              " AND owner IS ?", (folder, owner))

    def ledger_set_sizes(self, sizes: dict[int, int]) -> None:
        with self.tx():
            self.conn.executemany("UPDATE ledger SET t_size=? WHERE id=?", [(n, rid) for rid, n in sizes.items()])

    def ledger_scan(self, folder: str) -> LedgerScan | None:
        row = self.conn.execute("SELECT uidvalidity, scanned_uidnext FROM ledger_scan WHERE folder=?",
                                (folder,)).fetchone()
        return LedgerScan(row[0], row[1]) if row else None

    def ledger_set_scan(self, folder: str, uidvalidity: int, scanned_uidnext: int) -> None:
        with self.tx():
            self.conn.execute("INSERT INTO ledger_scan (folder, uidvalidity, scanned_uidnext) VALUES (?,?,?)"
                              " ON CONFLICT(folder) DO UPDATE SET uidvalidity=excluded.uidvalidity,"
                              " scanned_uidnext=excluded.scanned_uidnext", (folder, uidvalidity, scanned_uidnext))

    # --- UIDs of source Maildirs ----------------------------------------------------------

    def maildir_uids(self, store: str, folder: str) -> MaildirUids | None:
        row = self.conn.execute("SELECT uidvalidity, uidnext FROM maildir_folders WHERE store=? AND folder=?",
                                (store, folder)).fetchone()
        if row is None:
            return None
        uids = dict(self.conn.execute(
            "SELECT filename_base, uid FROM maildir_uids WHERE store=? AND folder=? AND uidvalidity=?",
            (store, folder, row[0])).fetchall())
        return MaildirUids(row[0], row[1], uids)

    def assign_maildir_uids(self, store: str, folder: str, bases: list[str],
                            seed: Callable[[], tuple[int, int, dict[str, int]]]) -> MaildirUids:
        with self.tx():
            c = self.conn
            got = self.maildir_uids(store, folder)
            if got is None:
                uidvalidity, uidnext, uids = seed()
                uidnext = max([uidnext, *(u + 1 for u in uids.values())])
                c.execute("INSERT INTO maildir_folders (store, folder, uidvalidity, uidnext) VALUES (?,?,?,?)",
                          (store, folder, uidvalidity, uidnext))
                c.executemany("INSERT OR REPLACE INTO maildir_uids (store, folder, uidvalidity, filename_base, uid)"
                              " VALUES (?,?,?,?,?)", [(store, folder, uidvalidity, b, u) for b, u in uids.items()])
            else:
                uidvalidity, uidnext, uids = got
            new = [b for b in dict.fromkeys(bases) if b not in uids]
            if new:
                c.executemany("INSERT INTO maildir_uids (store, folder, uidvalidity, filename_base, uid)"
                              " VALUES (?,?,?,?,?)",
                              [(store, folder, uidvalidity, b, uidnext + i) for i, b in enumerate(new)])
                uids.update((b, uidnext + i) for i, b in enumerate(new))
                uidnext += len(new)
                c.execute("UPDATE maildir_folders SET uidnext=? WHERE store=? AND folder=?", (uidnext, store, folder))
            return MaildirUids(uidvalidity, uidnext, uids)

    # --- daily budgets ---------------------------------------------------------------------

    def budget_used(self, account: str, direction: str, day: str) -> int:
        row = self.conn.execute("SELECT bytes FROM budget_usage WHERE account=? AND direction=? AND day=?",
                                (account, direction, day)).fetchone()
        return int(row[0]) if row else 0

    def add_budget_usage(self, account: str, direction: str, day: str, nbytes: int) -> None:
        with self.tx():
            self.conn.execute(
                "INSERT INTO budget_usage (account, direction, day, bytes, updated_at) VALUES (?,?,?,?,?)"
                " ON CONFLICT(account, direction, day) DO UPDATE SET bytes=bytes+excluded.bytes,"
                " updated_at=excluded.updated_at", (account, direction, day, nbytes, utcnow().isoformat()))


def _read_only(path: Path) -> sqlite3.Connection | None:
    """A connection that writes nothing (no file, schema or WAL switch is created): for the dry
    run. None when there is no such file."""
    if not path.exists():
        return None
    # With no -wal file beside it the file holds everything: read it as immutable, which makes
    # SQLite create no -wal/-shm files. Otherwise a writer is at work: read through its WAL.
    wal = path.with_name(path.name + "-wal").exists()
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{'' if wal else '&immutable=1'}",
                               uri=True, timeout=60)
    except sqlite3.Error:
        return None


def read_budget_used(path: Path, account: str, direction: str, day: str) -> int:
    """``SQLiteStore.budget_used`` without writing anything (the dry run); 0 without a file."""
    conn = _read_only(path)
    if conn is None:
        return 0
    try:
        row = conn.execute("SELECT bytes FROM budget_usage WHERE account=? AND direction=? AND day=?",
                           (account, direction, day)).fetchone()
        return int(row[0]) if row else 0
    except sqlite3.Error:  # a file from before budgets were counted
        return 0
    finally:
        conn.close()


def read_folder_map(path: Path, job_id: str) -> dict[str, str]:
    """``SQLiteStore.folder_map`` without writing anything (no file, schema or WAL switch is
    created): for the dry run. {} when there is no journal or no mapping yet."""
    conn = _read_only(path)
    if conn is None:
        return {}
    try:
        return dict(conn.execute(
            "SELECT source_folder, target_folder FROM folder_map WHERE job_id=?", (job_id,)).fetchall())
    except sqlite3.Error:  # an older journal without the table
        return {}
    finally:
        conn.close()
