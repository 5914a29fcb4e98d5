"""The SQLite job journal: what each job did, so any run can be resumed exactly.

One database file holds the journals of every job into one target account (the default path is
derived from the target, see ``default_journal_path``) *and* that target's dedupe ledger
(``migrate.dedupe.ledger``). Two imports into one target therefore coordinate through one file:
SQLite in WAL mode serialises writers, and a per-target-folder file lock (``folder_lock``)
serialises the decide -> APPEND -> record step.

Tables
* ``jobs``      one row per (source, target) job; ``state`` running/done/...;
* ``runs``      one row per run of a job (pid, times, status, the JSON report);
* ``folders``   per job and source folder: the source's UIDVALIDITY/UIDNEXT/EXISTS/HIGHESTMODSEQ
                seen at the end of the last complete pass (for the fast no-op path);
* ``messages``  per job, source folder, UIDVALIDITY and UID: key, flags, outcome
                (copied / duplicate / failed), and the ledger row of the copy we made.
* ``folder_map`` per job and source folder: the target folder chosen the first time (after any
                rename the target forced), reused by every later run so a folder never moves;
* ``maildir_folders``/``maildir_uids``  the UIDs given to a *source* Maildir's files (a source
                is never written to, so they cannot live beside it).

Nothing secret is ever written here: only labels (login@host:port), folder names, keys, flags,
counts and server answers (passed through ``redact``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import JobLocked, UsageError, redact
from .report import utcnow

SCHEMA_VERSION = 1


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


@dataclass
class FolderRecord:
    source_folder: str
    target_folder: str | None
    uidvalidity: int | None
    uidnext: int | None
    exists: int | None
    highestmodseq: int | None
    complete: bool
    # The target folder as the last complete pass left it (UIDVALIDITY, UIDNEXT, EXISTS, MODSEQ).
    target_status: tuple[int | None, int | None, int | None, int | None] | None = None


@dataclass
class MessageRecord:
    uid: int
    key: str
    flags: tuple[str, ...]
    state: str  # copied | duplicate | failed
    ledger_id: int | None
    reason: str | None


class Journal:
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
        self._create()

    @property
    def db(self):  # type: ignore[no-untyped-def]
        """sqlite-utils view of the same connection, for the read-side queries (status, notify).
        Imported lazily: the copy path needs only sqlite3, and a no-op re-run should start fast."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    # --- schema -------------------------------------------------------------------------

    def _create(self) -> None:
        with self.tx():
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, source TEXT, target TEXT,"
                " source_email TEXT, target_email TEXT, state TEXT, created_at TEXT, updated_at TEXT,"
                " command TEXT, last_report TEXT)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT,"
                " pid INTEGER, started_at TEXT, finished_at TEXT, status TEXT, report TEXT,"
                " progress TEXT)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS folders (job_id TEXT, source_folder TEXT, target_folder TEXT,"
                " uidvalidity INTEGER, uidnext INTEGER, exists_ INTEGER, highestmodseq INTEGER,"
                " complete INTEGER DEFAULT 0, updated_at TEXT, PRIMARY KEY (job_id, source_folder))")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS messages (job_id TEXT, source_folder TEXT, uidvalidity INTEGER,"
                " uid INTEGER, key TEXT, flags TEXT, state TEXT, ledger_id INTEGER, reason TEXT,"
                " size INTEGER, PRIMARY KEY (job_id, source_folder, uidvalidity, uid))")
            self.conn.execute("CREATE INDEX IF NOT EXISTS messages_ledger ON messages (job_id, ledger_id)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, folder TEXT,"
                " uidvalidity INTEGER, uid INTEGER, key TEXT, state TEXT, job_id TEXT)")
            cols = {r[1] for r in self.conn.execute("PRAGMA table_info(ledger)")}
            if "owner" not in cols:
                self.conn.execute("ALTER TABLE ledger ADD COLUMN owner TEXT")
            if "src" not in cols:  # which source message a claim is for (exact crash recovery)
                self.conn.execute("ALTER TABLE ledger ADD COLUMN src TEXT")
            self.conn.execute("CREATE INDEX IF NOT EXISTS ledger_key ON ledger (folder, key)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS ledger_uid ON ledger (folder, uid)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS ledger_scan (folder TEXT PRIMARY KEY, uidvalidity INTEGER,"
                " scanned_uidnext INTEGER)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT,"
                " kind TEXT, recipients TEXT, lang TEXT, smtp TEXT, sender TEXT, state TEXT, error TEXT,"
                " attempts INTEGER, updated_at TEXT, reports TEXT)")
            # Where each source folder goes, decided once by the first run (see ``folder_map``).
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS folder_map (job_id TEXT, source_folder TEXT, target_folder TEXT,"
                " reason TEXT, updated_at TEXT, PRIMARY KEY (job_id, source_folder))")
            # UIDs of source Maildirs (``store`` = the Maildir's absolute path): kept here, never
            # beside the source, which is only ever read (see ``maildir_uids``).
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS maildir_folders (store TEXT, folder TEXT, uidvalidity INTEGER,"
                " uidnext INTEGER, PRIMARY KEY (store, folder))")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS maildir_uids (store TEXT, folder TEXT, uidvalidity INTEGER,"
                " filename_base TEXT, uid INTEGER, PRIMARY KEY (store, folder, uidvalidity, filename_base))")
            fcols = {r[1] for r in self.conn.execute("PRAGMA table_info(folders)")}
            for col in ("t_uidvalidity", "t_uidnext", "t_exists", "t_highestmodseq"):
                if col not in fcols:  # the target folder's state at the end of the last complete pass
                    self.conn.execute(f"ALTER TABLE folders ADD COLUMN {col} INTEGER")
            if "t_size" not in cols:  # RFC822.SIZE the target reports for our copy
                self.conn.execute("ALTER TABLE ledger ADD COLUMN t_size INTEGER")
            self.conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._check_key_version()

    def _check_key_version(self) -> None:
        """Dedupe keys computed by another version of ``key_of`` cannot be compared with ours.
        The journal is a cache of the target: forget every key (message outcomes, the ledger,
        completed passes) and let the next run rebuild them from both sides, as after a lost
        journal. Jobs, runs, notifications and the folder mapping stay."""
        from .dedupe.keys import KEY_VERSION  # not at module level: dedupe imports the journal

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
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: takes the write lock up front, so two
        processes never both decide on stale reads). Nested calls join the outer one."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self.conn
            finally:
                self._tx_depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._tx_depth = 1
        try:
            yield self.conn
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
        with self.tx() as c:
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
        with self.tx() as c:
            c.execute("UPDATE runs SET finished_at=?, status=?, report=? WHERE run_id=?",
                      (now, status, report_json, run_id))
            c.execute("UPDATE jobs SET state=?, updated_at=?, last_report=? WHERE job_id=?",
                      (status, now, report_json, job_id))

    def set_progress(self, run_id: int, progress: dict[str, object]) -> None:
        with self.tx() as c:
            c.execute("UPDATE runs SET progress=? WHERE run_id=?", (json.dumps(progress), run_id))

    def jobs(self) -> list[dict[str, object]]:
        return [dict(r) for r in self.db.query("SELECT * FROM jobs ORDER BY updated_at DESC")]

    def runs(self, job_id: str) -> list[dict[str, object]]:
        return [dict(r) for r in self.db.query(
            "SELECT * FROM runs WHERE job_id=? ORDER BY run_id DESC", [job_id])]

    # --- confirmation mails ----------------------------------------------------------------

    def add_notification(self, row: dict[str, object]) -> int:
        cols = ", ".join(row)
        with self.tx() as c:
            cur = c.execute(f"INSERT INTO notifications ({cols}) VALUES ({', '.join('?' * len(row))})",
                            tuple(row.values()))
            return int(cur.lastrowid or 0)

    def update_notification(self, nid: int, state: str, error: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE notifications SET state=?, error=?, attempts=attempts+1, updated_at=? WHERE id=?",
                      (state, redact(error) if error else None, utcnow().isoformat(), nid))

    def notifications(self, job: str | None = None, *, include_sent: bool = False) -> list[dict[str, object]]:
        sql = "SELECT * FROM notifications WHERE 1=1"
        args: list[object] = []
        if job:
            sql += " AND job_id LIKE ?"
            args.append(job + "%")
        if not include_sent:
            sql += " AND state <> 'sent'"
        return [dict(r) for r in self.db.query(sql + " ORDER BY id", args)]

    # --- folders ------------------------------------------------------------------------

    _FOLDER_COLS = ("source_folder, target_folder, uidvalidity, uidnext, exists_, highestmodseq, complete,"
                    " t_uidvalidity, t_uidnext, t_exists, t_highestmodseq")

    @staticmethod
    def _folder_record(r: tuple) -> FolderRecord:  # type: ignore[type-arg]
        target = None if r[7] is None else (r[7], r[8], r[9], r[10])
        return FolderRecord(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), target)

    def folder(self, job_id: str, source_folder: str) -> FolderRecord | None:
        row = self.conn.execute(f"SELECT {self._FOLDER_COLS} FROM folders WHERE job_id=? AND source_folder=?",
                                (job_id, source_folder)).fetchone()
        return self._folder_record(row) if row else None

    def folders(self, job_id: str) -> list[FolderRecord]:
        rows = self.conn.execute(f"SELECT {self._FOLDER_COLS} FROM folders WHERE job_id=? ORDER BY rowid",
                                 (job_id,)).fetchall()
        return [self._folder_record(r) for r in rows]

    def save_folder(self, job_id: str, rec: FolderRecord) -> None:
        with self.tx() as c:
            t = rec.target_status or (None, None, None, None)
            c.execute(
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
        with self.tx() as c:
            cur = c.execute("DELETE FROM messages WHERE job_id=? AND source_folder=? AND uidvalidity<>?",
                            (job_id, source_folder, keep))
            return cur.rowcount

    # --- messages -------------------------------------------------------------------------

    def messages(self, job_id: str, source_folder: str, uidvalidity: int,
                 uid_range: tuple[int, int] | None = None) -> dict[int, MessageRecord]:
        """What the journal knows of a folder's messages (only UIDs in ``uid_range``, if given)."""
        lo, hi = uid_range or (0, 1 << 32)
        rows = self.conn.execute(
            "SELECT uid, key, flags, state, ledger_id, reason FROM messages"
            " WHERE job_id=? AND source_folder=? AND uidvalidity=? AND uid BETWEEN ? AND ?",
            (job_id, source_folder, uidvalidity, lo, hi))
        return {r[0]: MessageRecord(r[0], r[1], tuple(json.loads(r[2] or "[]")), r[3], r[4], r[5])
                for r in rows}

    def record_messages(self, job_id: str, source_folder: str, uidvalidity: int,
                        rows: list[tuple[int, str, tuple[str, ...], str, int | None, str | None, int]]) -> None:
        """rows: (uid, key, flags, state, ledger_id, reason, size). Call inside ``tx()`` together
        with the ledger update it belongs to."""
        with self.tx() as c:
            c.executemany(
                "INSERT INTO messages (job_id, source_folder, uidvalidity, uid, key, flags, state, ledger_id,"
                " reason, size) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(job_id, source_folder, uidvalidity,"
                " uid) DO UPDATE SET key=excluded.key, flags=excluded.flags, state=excluded.state,"
                " ledger_id=excluded.ledger_id, reason=excluded.reason, size=excluded.size",
                [(job_id, source_folder, uidvalidity, uid, key, json.dumps(list(flags)), state, lid,
                  redact(reason) if reason else None, size)
                 for uid, key, flags, state, lid, reason, size in rows])

    def update_flags(self, job_id: str, source_folder: str, uidvalidity: int,
                     changes: list[tuple[int, tuple[str, ...]]]) -> None:
        with self.tx() as c:
            c.executemany(
                "UPDATE messages SET flags=? WHERE job_id=? AND source_folder=? AND uidvalidity=? AND uid=?",
                [(json.dumps(list(f)), job_id, source_folder, uidvalidity, uid) for uid, f in changes])

    def counts(self, job_id: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for folder, state, n in self.conn.execute(
                "SELECT source_folder, state, COUNT(*) FROM messages WHERE job_id=?"
                " GROUP BY source_folder, state", (job_id,)):
            out.setdefault(folder, {})[state] = n
        return out

    # --- folder mapping -----------------------------------------------------------------

    def folder_map(self, job_id: str) -> dict[str, str]:
        """Source folder -> target folder, as recorded by earlier runs of ``job_id``."""
        return dict(self.conn.execute(
            "SELECT source_folder, target_folder FROM folder_map WHERE job_id=?", (job_id,)).fetchall())

    def save_folder_map(self, job_id: str, rows: list[tuple[str, str, str]]) -> None:
        """rows: (source folder, target folder, reason); a source folder's earlier row is replaced."""
        now = utcnow().isoformat()
        with self.tx() as c:
            c.executemany(
                "INSERT INTO folder_map (job_id, source_folder, target_folder, reason, updated_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT(job_id, source_folder) DO UPDATE SET"
                " target_folder=excluded.target_folder, reason=excluded.reason, updated_at=excluded.updated_at",
                [(job_id, src, dst, redact(reason), now) for src, dst, reason in rows])

    # --- UIDs of source Maildirs ----------------------------------------------------------

    def maildir_uids(self, store: str, folder: str) -> tuple[int, int, dict[str, int]] | None:
        """(UIDVALIDITY, UIDNEXT, filename base -> UID) of one folder of a source Maildir, or None."""
        row = self.conn.execute("SELECT uidvalidity, uidnext FROM maildir_folders WHERE store=? AND folder=?",
                                (store, folder)).fetchone()
        if row is None:
            return None
        uids = dict(self.conn.execute(
            "SELECT filename_base, uid FROM maildir_uids WHERE store=? AND folder=? AND uidvalidity=?",
            (store, folder, row[0])).fetchall())
        return row[0], row[1], uids

    def assign_maildir_uids(self, store: str, folder: str, bases: list[str],
                            seed: Callable[[], tuple[int, int, dict[str, int]]]) -> tuple[int, int, dict[str, int]]:
        """Give the next UIDs to ``bases`` not numbered yet (in the given order); a folder seen for
        the first time starts from ``seed()`` (UIDVALIDITY, UIDNEXT, known UIDs). UIDs are never
        reused. One transaction: two connections numbering one folder agree."""
        with self.tx() as c:
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
            return uidvalidity, uidnext, uids


def read_folder_map(path: Path, job_id: str) -> dict[str, str]:
    """``Journal.folder_map`` without writing anything (no file, schema or WAL switch is created):
    for the dry run. {} when there is no journal or no mapping yet."""
    if not path.exists():
        return {}
    # With no -wal file beside it the file holds everything: read it as immutable, which makes
    # SQLite create no -wal/-shm files. Otherwise a writer is at work: read through its WAL.
    wal = path.with_name(path.name + "-wal").exists()
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{'' if wal else '&immutable=1'}",
                               uri=True, timeout=60)
    except sqlite3.Error:
        return {}
    try:
        return dict(conn.execute(
            "SELECT source_folder, target_folder FROM folder_map WHERE job_id=?", (job_id,)).fetchall())
    except sqlite3.Error:  # an older journal without the table
        return {}
    finally:
        conn.close()


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
