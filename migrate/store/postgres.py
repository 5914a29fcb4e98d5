"""The PostgreSQL store: many target accounts' journals and ledgers in one database (preview).

``PostgresStore(url, namespace)`` keeps the same rows with the same semantics as the SQLite store
(``migrate.store.sqlite``), with every row keyed by ``namespace``: the target account label that
names a SQLite journal file. The schema comes from ``migrate.store.postgres_schema`` and is
applied by ``mailmigrate db upgrade``; a store refuses a database that is behind.

Transactions: ``tx()`` is PostgreSQL's transaction plus a transaction-level advisory lock on the
namespace, taken first: writers of one namespace queue up like SQLite's ``BEGIN IMMEDIATE`` and
never decide on stale reads, writers of two namespaces do not wait for each other. Outside
``tx()`` the connection is in autocommit: every read sees what is committed, every write method
commits on its own. One connection per store; like the SQLite store, one thread uses it at a time.

A job on a PostgreSQL journal (``migrate.store.location.PgJournal``) takes its locks as advisory
locks in the same database (``migrate.store.pg_locks``): workers on several machines exclude each
other. A connection that drops under a store (server restarted, backend terminated) is classified
here, once: ``DatabaseLost``, a one-line fatal error naming the database without its password.

Needs the optional extra ``postgres`` (psycopg 3): ``pip install 'mailmigrate[postgres]'``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import AuthFailed, ConnectFailed, UsageError, redact, register_secret
from ..report import utcnow
from . import postgres_schema
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
from .location import DatabaseLost

if TYPE_CHECKING:
    import psycopg

URL_SCHEMES = ("postgresql", "postgres")
URL_EXAMPLE = "postgresql://USER@HOST:5432/DATABASE"

_LEDGER_COLS = "id, folder, uidvalidity, uid, key, state, job_id, owner, src, t_size"
_JOB_COLS = ("job_id, source, target, source_email, target_email, state, created_at, updated_at, command,"
             " last_report")
_RUN_COLS = "run_id, job_id, pid, started_at, finished_at, status, report, progress"
_NOTIFICATION_COLS = ("job_id, kind, recipients, lang, smtp, sender, state, error, attempts, updated_at,"
                      " reports, id")
_FOLDER_COLS = ("source_folder, target_folder, uidvalidity, uidnext, exists_, highestmodseq, complete,"
                " t_uidvalidity, t_uidnext, t_exists, t_highestmodseq")


def _psycopg():  # type: ignore[no-untyped-def]
    try:
        import psycopg
    except ImportError:
        raise UsageError("PostgreSQL support is not installed",
                         hint="pip install 'mailmigrate[postgres]' (psycopg 3)") from None
    return psycopg


def check_url(url: str) -> None:
    """Refuse a URL that is not a PostgreSQL connection URL (UsageError, exit 2), before any
    connection attempt. Its password, if any, is registered as a secret first."""
    parts = urlsplit(url)
    if parts.password:
        register_secret(parts.password)
    if parts.scheme.lower() not in URL_SCHEMES:
        raise UsageError(f"--database must be a postgresql:// URL, not {redact(url)!r}", hint=f"e.g. {URL_EXAMPLE}")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"the port in --database {redact(url)!r} is not a number 1-65535",
                         hint=f"e.g. {URL_EXAMPLE}") from None
    if port == 0:
        raise UsageError(f"the port in --database {redact(url)!r} is not a number 1-65535", hint=f"e.g. {URL_EXAMPLE}")
    psycopg = _psycopg()
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"--database is not a valid PostgreSQL URL: {_first_line(exc)}",
                         hint=f"e.g. {URL_EXAMPLE}") from None


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n", 1)[0].split())
    return redact(text.removeprefix("connection failed: "))


def _where(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}/{parts.path.lstrip('/') or '(default database)'}"


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection, or a one-line error: bad URL (exit 2), refused login (exit 3),
    no such database (exit 2), server unreachable (exit 4). Nothing secret in the message."""
    check_url(url)
    psycopg = _psycopg()
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="mailmigrate")
    except psycopg.OperationalError as exc:
        reason = _first_line(exc)
        where = _where(url)
        if "authentication failed" in reason or "no pg_hba.conf entry" in reason:
            raise AuthFailed(f"PostgreSQL at {where} refused the login: {reason}",
                             hint="check the user and password in --database") from None
        if "does not exist" in reason:
            raise UsageError(f"PostgreSQL at {where}: {reason}",
                             hint="create it first (createdb NAME) or fix the name in --database") from None
        raise ConnectFailed(f"cannot reach PostgreSQL at {where}: {reason}",
                            hint="is the server running and the host and port in --database right?") from None


# SQLSTATE classes that mean the session is gone: 08 connection exception, 57P01-57P03 the server
# shut the backend down (pg_terminate_backend, restart) or cannot take it now.
_LOST_STATES = ("57P01", "57P02", "57P03")


def connection_lost(conn: psycopg.Connection, exc: BaseException) -> bool:
    """Did ``exc`` come from a connection that is gone (not from a bad statement)?"""
    psycopg = _psycopg()
    if conn.closed or conn.broken or isinstance(exc, psycopg.InterfaceError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith("08") or state in _LOST_STATES


def _read_only_query(url: str, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of one query, without writing anything (the dry run's look at the journal). A database
    that was never upgraded holds nothing yet: no rows."""
    conn = connect(url)
    try:
        if postgres_schema.pending(conn):
            return []
        try:
            return list(conn.execute(sql, args))  # type: ignore[arg-type]  # our own constant SQL
        except _psycopg().Error as exc:
            if connection_lost(conn, exc):
                raise DatabaseLost.at(url, exc) from None
            raise
    finally:
        conn.close()


def read_folder_map(url: str, namespace: str, job_id: str) -> dict[str, str]:
    """``PostgresStore.folder_map`` writing nothing (no key-version row either)."""
    return dict(_read_only_query(url, "SELECT source_folder, target_folder FROM folder_map"
                                 " WHERE namespace=%s AND job_id=%s", (namespace, job_id)))  # type: ignore[arg-type]


def read_budget_used(url: str, namespace: str, account: str, direction: str, day: str) -> int:
    """``PostgresStore.budget_used`` writing nothing."""
    rows = _read_only_query(url, "SELECT bytes FROM budget_usage WHERE namespace=%s AND account=%s"
                            " AND direction=%s AND day=%s", (namespace, account, direction, day))
    return int(rows[0][0]) if rows else 0


def _src_in(src: str | None) -> bytes | None:
    return None if src is None else src.encode("utf-8", "surrogatepass")


def _src_out(src: bytes | memoryview | None) -> str | None:
    return None if src is None else bytes(src).decode("utf-8", "surrogatepass")


def _text(value: str | None) -> str | None:
    """Server answers may hold NUL, which a TEXT column refuses: keep the rest of the line."""
    return None if value is None else redact(value).replace("\x00", "\ufffd")


def _ledger_row(r: Sequence[Any]) -> LedgerRow:
    return LedgerRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], _src_out(r[8]), r[9])


def _folder_record(r: Sequence[Any]) -> FolderRecord:
    target = None if r[7] is None else (r[7], r[8], r[9], r[10])
    return FolderRecord(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), target)


def _kept_connections(url: str) -> Any:
    """The process's pool of idle connections to ``url`` if something keeps it (a worker does,
    for its lifetime: ``pg_locks.keep_connections``), else None: a store connects and closes."""
    from .pg_locks import pool_for

    pool = pool_for(url)
    return pool if pool.users > 0 else None


def _answers(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except _psycopg().Error:
        return False
    return True


class PostgresStore(Store):
    """One connection to a PostgreSQL database, seeing only ``namespace``'s rows."""

    def __init__(self, url: str, namespace: str) -> None:
        if not namespace:
            raise UsageError("a PostgreSQL store needs a namespace (the target account label)")
        self.namespace = namespace
        self.url = url
        self._pool = _kept_connections(url)
        self._tx_depth = 0
        if self._pool is None:
            self.conn = connect(url)
        else:  # a long-lived process (a worker): connections are re-used from one store to the next
            self.conn, reused = self._pool.get()
            if reused and not _answers(self.conn):  # the server ended it while it was idle
                self.conn.close()
                self.conn = self._pool.get(fresh=True)[0]
        try:
            behind = postgres_schema.pending(self.conn)
            if behind:
                raise UsageError(f"the database {_where(url)} is missing schema migrations "
                                 f"{', '.join(m.label for m in behind)}",
                                 hint="run: mailmigrate db upgrade --database URL")
            with self.tx():
                self._check_key_version()
        except BaseException:
            self.close()
            raise

    def _q(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        with self._classified():
            return self.conn.execute(sql, args)  # type: ignore[arg-type]  # our own constant SQL

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self._classified(), self.conn.cursor() as cur:
                cur.executemany(sql, rows)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def _classified(self) -> Iterator[None]:
        """A dropped connection becomes ``DatabaseLost``; any other database error stays itself."""
        try:
            yield
        except DatabaseLost:
            raise
        except _psycopg().Error as exc:
            if connection_lost(self.conn, exc):
                raise DatabaseLost.at(self.url, exc) from None
            raise

    def _check_key_version(self) -> None:
        """As ``SQLiteStore._check_key_version``, for this namespace only."""
        from ..dedupe.keys import KEY_VERSION  # not at module level: dedupe imports the store

        ns = self.namespace
        row = self._q("SELECT value FROM meta WHERE namespace=%s AND name='key_version'", (ns,)).fetchone()
        if row and row[0] == str(KEY_VERSION):
            return
        if row is not None or self._q("SELECT 1 FROM ledger WHERE namespace=%s LIMIT 1", (ns,)).fetchone():
            for table in ("messages", "ledger", "ledger_scan"):
                self._q(f"DELETE FROM {table} WHERE namespace=%s", (ns,))
            self._q("UPDATE folders SET complete=FALSE WHERE namespace=%s", (ns,))
        self._q("INSERT INTO meta (namespace, name, value) VALUES (%s, 'key_version', %s)"
                " ON CONFLICT (namespace, name) DO UPDATE SET value=excluded.value", (ns, str(KEY_VERSION)))

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        """A write transaction holding the namespace's write lock from its start; nested calls
        join the outer one; an exception rolls everything back."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1
            return
        self._tx_depth = 1
        try:
            with self._classified(), self.conn.transaction():  # COMMIT too: it may find the connection gone
                self._q("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("mailmigrate:" + self.namespace,))
                yield
        finally:
            self._tx_depth = 0

    def close(self) -> None:
        if self._pool is not None and self._tx_depth == 0:
            self._pool.put(self.conn)  # closed instead when broken, in a transaction, or unwanted
            return
        with contextlib.suppress(Exception):
            self.conn.close()

    # --- jobs and runs --------------------------------------------------------------------

    def start_job(self, job_id: str, source: str, target: str, *, source_email: str | None,
                  target_email: str | None, command: str | None) -> int:
        now = utcnow().isoformat()
        ns = self.namespace
        with self.tx():
            self._q("INSERT INTO jobs (namespace, job_id, source, target, source_email, target_email, state,"
                    " created_at, updated_at, command) VALUES (%s,%s,%s,%s,%s,%s,'running',%s,%s,%s)"
                    " ON CONFLICT (namespace, job_id) DO UPDATE SET state='running',"
                    " updated_at=excluded.updated_at, command=excluded.command",
                    (ns, job_id, source, target, source_email, target_email, now, now, command))
            row = self._q("INSERT INTO runs (namespace, job_id, pid, started_at, status)"
                          " VALUES (%s,%s,%s,%s,'running') RETURNING run_id", (ns, job_id, os.getpid(), now)).fetchone()
            return int(row[0])  # type: ignore[index]

    def finish_run(self, job_id: str, run_id: int, status: str, report_json: str) -> None:
        now = utcnow().isoformat()
        with self.tx():
            self._q("UPDATE runs SET finished_at=%s, status=%s, report=%s WHERE namespace=%s AND run_id=%s",
                    (now, status, report_json, self.namespace, run_id))
            self._q("UPDATE jobs SET state=%s, updated_at=%s, last_report=%s WHERE namespace=%s AND job_id=%s",
                    (status, now, report_json, self.namespace, job_id))

    def set_progress(self, run_id: int, progress: dict[str, object]) -> None:
        with self.tx():
            self._q("UPDATE runs SET progress=%s WHERE namespace=%s AND run_id=%s",
                    (json.dumps(progress), self.namespace, run_id))

    def jobs(self) -> list[JobRow]:
        return [JobRow(*r) for r in self._q(
            f"SELECT {_JOB_COLS} FROM jobs WHERE namespace=%s ORDER BY updated_at DESC", (self.namespace,))]

    def runs(self, job_id: str) -> list[RunRow]:
        return [RunRow(*r) for r in self._q(
            f"SELECT {_RUN_COLS} FROM runs WHERE namespace=%s AND job_id=%s ORDER BY run_id DESC",
            (self.namespace, job_id))]

    # --- confirmation mails ----------------------------------------------------------------

    def add_notification(self, row: NotificationRow) -> int:
        with self.tx():
            got = self._q(
                "INSERT INTO notifications (namespace, job_id, kind, recipients, lang, smtp, sender, state, error,"
                " attempts, updated_at, reports) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                (self.namespace, row.job_id, row.kind, row.recipients, row.lang, row.smtp, row.sender, row.state,
                 _text(row.error) if row.error else None, row.attempts, row.updated_at, row.reports)).fetchone()
            return int(got[0])  # type: ignore[index]

    def update_notification(self, nid: int, state: str, error: str | None) -> None:
        with self.tx():
            self._q("UPDATE notifications SET state=%s, error=%s, attempts=attempts+1, updated_at=%s"
                    " WHERE namespace=%s AND id=%s",
                    (state, _text(error) if error else None, utcnow().isoformat(), self.namespace, nid))

    def notifications(self, job: str | None = None, *, include_sent: bool = False) -> list[NotificationRow]:
        sql = f"SELECT {_NOTIFICATION_COLS} FROM notifications WHERE namespace=%s"
        args: list[object] = [self.namespace]
        if job:
            sql += " AND job_id LIKE %s ESCAPE '\\'"
            args.append(job.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if not include_sent:
            sql += " AND state <> 'sent'"
        return [NotificationRow(*r) for r in self._q(sql + " ORDER BY id", args)]

    # --- folders ------------------------------------------------------------------------

    def folder(self, job_id: str, source_folder: str) -> FolderRecord | None:
        row = self._q(f"SELECT {_FOLDER_COLS} FROM folders WHERE namespace=%s AND job_id=%s AND source_folder=%s",
                      (self.namespace, job_id, source_folder)).fetchone()
        return _folder_record(row) if row else None

    def folders(self, job_id: str) -> list[FolderRecord]:
        return [_folder_record(r) for r in self._q(
            f"SELECT {_FOLDER_COLS} FROM folders WHERE namespace=%s AND job_id=%s ORDER BY seq",
            (self.namespace, job_id))]

    def save_folder(self, job_id: str, rec: FolderRecord) -> None:
        t = rec.target_status or (None, None, None, None)
        with self.tx():
            self._q(
                "INSERT INTO folders (namespace, job_id, source_folder, target_folder, uidvalidity, uidnext,"
                " exists_, highestmodseq, complete, updated_at, t_uidvalidity, t_uidnext, t_exists,"
                " t_highestmodseq) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (namespace, job_id, source_folder) DO UPDATE SET"
                " target_folder=excluded.target_folder, uidvalidity=excluded.uidvalidity,"
                " uidnext=excluded.uidnext, exists_=excluded.exists_, highestmodseq=excluded.highestmodseq,"
                " complete=excluded.complete, updated_at=excluded.updated_at,"
                " t_uidvalidity=excluded.t_uidvalidity, t_uidnext=excluded.t_uidnext,"
                " t_exists=excluded.t_exists, t_highestmodseq=excluded.t_highestmodseq",
                (self.namespace, job_id, rec.source_folder, rec.target_folder, rec.uidvalidity, rec.uidnext,
                 rec.exists, rec.highestmodseq, bool(rec.complete), utcnow().isoformat(), *t))

    def forget_uidvalidity(self, job_id: str, source_folder: str, keep: int) -> int:
        with self.tx():
            cur = self._q("DELETE FROM messages WHERE namespace=%s AND job_id=%s AND source_folder=%s"
                          " AND uidvalidity<>%s", (self.namespace, job_id, source_folder, keep))
            return cur.rowcount

    def folder_map(self, job_id: str) -> dict[str, str]:
        return {r[0]: r[1] for r in self._q(
            "SELECT source_folder, target_folder FROM folder_map WHERE namespace=%s AND job_id=%s",
            (self.namespace, job_id))}

    def save_folder_map(self, job_id: str, rows: Sequence[FolderMapRow]) -> None:
        now = utcnow().isoformat()
        with self.tx():
            self._many(
                "INSERT INTO folder_map (namespace, job_id, source_folder, target_folder, reason, updated_at)"
                " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (namespace, job_id, source_folder) DO UPDATE SET"
                " target_folder=excluded.target_folder, reason=excluded.reason, updated_at=excluded.updated_at",
                [(self.namespace, job_id, src, dst, _text(reason), now) for src, dst, reason in rows])

    # --- messages -------------------------------------------------------------------------

    def messages(self, job_id: str, source_folder: str, uidvalidity: int,
                 uid_range: tuple[int, int] | None = None) -> dict[int, MessageRow]:
        lo, hi = uid_range or (0, 1 << 32)
        rows = self._q(
            "SELECT uid, key, flags, state, ledger_id, reason, size FROM messages WHERE namespace=%s"
            " AND job_id=%s AND source_folder=%s AND uidvalidity=%s AND uid BETWEEN %s AND %s",
            (self.namespace, job_id, source_folder, uidvalidity, lo, hi))
        return {r[0]: MessageRow(r[0], r[1], tuple(json.loads(r[2] or "[]")), r[3], r[4], r[5], r[6])
                for r in rows}

    def record_messages(self, job_id: str, source_folder: str, uidvalidity: int,
                        rows: Sequence[MessageRow]) -> None:
        with self.tx():
            self._many(
                "INSERT INTO messages (namespace, job_id, source_folder, uidvalidity, uid, key, flags, state,"
                " ledger_id, reason, size) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (namespace, job_id, source_folder, uidvalidity, uid) DO UPDATE SET"
                " key=excluded.key, flags=excluded.flags, state=excluded.state, ledger_id=excluded.ledger_id,"
                " reason=excluded.reason, size=excluded.size",
                [(self.namespace, job_id, source_folder, uidvalidity, r.uid, r.key, json.dumps(list(r.flags)),
                  r.state, r.ledger_id, _text(r.reason) if r.reason else None, r.size) for r in rows])

    def update_flags(self, job_id: str, source_folder: str, uidvalidity: int,
                     changes: Sequence[tuple[int, tuple[str, ...]]]) -> None:
        with self.tx():
            self._many(
                "UPDATE messages SET flags=%s WHERE namespace=%s AND job_id=%s AND source_folder=%s"
                " AND uidvalidity=%s AND uid=%s",
                [(json.dumps(list(f)), self.namespace, job_id, source_folder, uidvalidity, uid) for uid, f in changes])

    def counts(self, job_id: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for folder, state, n in self._q(
                "SELECT source_folder, state, COUNT(*) FROM messages WHERE namespace=%s AND job_id=%s"
                " GROUP BY source_folder, state", (self.namespace, job_id)):
            out.setdefault(folder, {})[state] = int(n)
        return out

    def keys_elsewhere(self, job_id: str, source_folder: str) -> set[str]:
        return {r[0] for r in self._q(
            "SELECT DISTINCT key FROM messages WHERE namespace=%s AND job_id=%s AND source_folder<>%s"
            " AND state IN ('copied','duplicate')", (self.namespace, job_id, source_folder))}

    # --- the dedupe ledger ------------------------------------------------------------------

    def _ledger(self, where: str, args: Sequence[Any], order: str = "id") -> list[LedgerRow]:
        return [_ledger_row(r) for r in self._q(
            f"SELECT {_LEDGER_COLS} FROM ledger WHERE namespace=%s AND {where} ORDER BY {order}",
            (self.namespace, *args))]

    def _count(self, where: str, args: Sequence[Any]) -> int:
        row = self._q(f"SELECT COUNT(*) FROM ledger WHERE namespace=%s AND {where}", (self.namespace, *args)).fetchone()
        return int(row[0])  # type: ignore[index]

    def _exists(self, where: str, args: Sequence[Any]) -> bool:
        return self._q(f"SELECT 1 FROM ledger WHERE namespace=%s AND {where} LIMIT 1",
                       (self.namespace, *args)).fetchone() is not None

    def ledger_row(self, row_id: int) -> LedgerRow | None:
        found = self._ledger("id=%s", (row_id,))
        return found[0] if found else None

    def ledger_rows(self, folder: str) -> list[LedgerRow]:
        return self._ledger("folder=%s", (folder,))

    def ledger_count(self, folder: str, key: str) -> int:
        return self._count("folder=%s AND key=%s", (folder, key))

    def ledger_present_ids(self, folder: str) -> set[int]:
        return {r[0] for r in self._q("SELECT id FROM ledger WHERE namespace=%s AND folder=%s AND state='present'",
                                      (self.namespace, folder))}

    def ledger_orphans(self, folder: str, job_id: str) -> list[LedgerRow]:
        return self._ledger(
            "folder=%s AND job_id=%s AND state='present' AND NOT EXISTS (SELECT 1 FROM messages m"
            " WHERE m.namespace=ledger.namespace AND m.job_id=ledger.job_id AND m.ledger_id=ledger.id)",
            (folder, job_id))

    def ledger_unplaced(self, folder: str, key: str) -> list[LedgerRow]:
        return self._ledger("folder=%s AND key=%s AND uid IS NULL", (folder, key), order="state='present' DESC, id")

    def ledger_has_uid(self, folder: str, uidvalidity: int, uid: int) -> bool:
        return self._exists("folder=%s AND uid=%s AND uidvalidity=%s", (folder, uid, uidvalidity))

    def ledger_has_uids(self, folder: str) -> bool:
        return self._exists("folder=%s AND uid IS NOT NULL", (folder,))

    def ledger_count_uids(self, folder: str, uidvalidity: int, lo: int, hi: int) -> int:
        return self._count("folder=%s AND uidvalidity=%s AND uid>=%s AND uid<%s", (folder, uidvalidity, lo, hi))

    def ledger_placed(self, folder: str, below: int) -> list[LedgerRow]:
        return self._ledger("folder=%s AND uid IS NOT NULL AND uid<%s", (folder, below))

    def ledger_count_placed(self, folder: str, below: int) -> int:
        return self._count("folder=%s AND uid IS NOT NULL AND uid<%s", (folder, below))

    def ledger_count_in_flight(self, folder: str) -> int:
        return self._count("folder=%s AND uid IS NULL AND state='claimed'", (folder,))

    def ledger_claim_owners(self, folder: str) -> set[str | None]:
        return {r[0] for r in self._q("SELECT DISTINCT owner FROM ledger WHERE namespace=%s AND folder=%s"
                                      " AND state='claimed' AND uid IS NULL", (self.namespace, folder))}

    def ledger_present_unplaced(self, folder: str) -> list[LedgerRow]:
        return self._ledger("folder=%s AND state='present' AND uid IS NULL", (folder,))

    def ledger_insert(self, folder: str, key: str, state: str, *, uidvalidity: int | None = None,
                      uid: int | None = None, job_id: str | None = None, owner: str | None = None,
                      src: str | None = None) -> int:
        with self.tx():
            row = self._q("INSERT INTO ledger (namespace, folder, uidvalidity, uid, key, state, job_id, owner, src)"
                          " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                          (self.namespace, folder, uidvalidity, uid, key, state, job_id, owner,
                           _src_in(src))).fetchone()
            return int(row[0])  # type: ignore[index]

    def ledger_place(self, row_id: int, uid: int | None, uidvalidity: int | None) -> None:
        with self.tx():
            self._q("UPDATE ledger SET state='present', uid=COALESCE(%s, uid), uidvalidity=COALESCE(%s, uidvalidity)"
                    " WHERE namespace=%s AND id=%s", (uid, uidvalidity, self.namespace, row_id))

    def ledger_unplace(self, row_ids: Iterable[int]) -> None:
        with self.tx():
            self._q("UPDATE ledger SET uid=NULL, uidvalidity=NULL WHERE namespace=%s AND id = ANY(%s)",
                    (self.namespace, list(row_ids)))

    def ledger_unplace_present(self, folder: str) -> None:
        with self.tx():
            self._q("UPDATE ledger SET uid=NULL, uidvalidity=NULL WHERE namespace=%s AND folder=%s"
                    " AND state='present'", (self.namespace, folder))

    def ledger_delete(self, row_ids: Iterable[int]) -> None:
        with self.tx():
            self._q("DELETE FROM ledger WHERE namespace=%s AND id = ANY(%s)", (self.namespace, list(row_ids)))

    def ledger_delete_claims(self, folder: str, owner: str | None) -> None:
        with self.tx():
            self._q("DELETE FROM ledger WHERE namespace=%s AND folder=%s AND state='claimed' AND uid IS NULL"
                    " AND owner IS NOT DISTINCT FROM %s", (self.namespace, folder, owner))

    def ledger_set_sizes(self, sizes: dict[int, int]) -> None:
        with self.tx():
            self._many("UPDATE ledger SET t_size=%s WHERE namespace=%s AND id=%s",
                       [(n, self.namespace, rid) for rid, n in sizes.items()])

    def ledger_scan(self, folder: str) -> LedgerScan | None:
        row = self._q("SELECT uidvalidity, scanned_uidnext FROM ledger_scan WHERE namespace=%s AND folder=%s",
                      (self.namespace, folder)).fetchone()
        return LedgerScan(row[0], row[1]) if row else None

    def ledger_set_scan(self, folder: str, uidvalidity: int, scanned_uidnext: int) -> None:
        with self.tx():
            self._q("INSERT INTO ledger_scan (namespace, folder, uidvalidity, scanned_uidnext) VALUES (%s,%s,%s,%s)"
                    " ON CONFLICT (namespace, folder) DO UPDATE SET uidvalidity=excluded.uidvalidity,"
                    " scanned_uidnext=excluded.scanned_uidnext", (self.namespace, folder, uidvalidity, scanned_uidnext))

    # --- UIDs of source Maildirs ----------------------------------------------------------

    def maildir_uids(self, store: str, folder: str) -> MaildirUids | None:
        row = self._q("SELECT uidvalidity, uidnext FROM maildir_folders WHERE namespace=%s AND store=%s"
                      " AND folder=%s", (self.namespace, store, folder)).fetchone()
        if row is None:
            return None
        uids = {r[0]: r[1] for r in self._q(
            "SELECT filename_base, uid FROM maildir_uids WHERE namespace=%s AND store=%s AND folder=%s"
            " AND uidvalidity=%s", (self.namespace, store, folder, row[0]))}
        return MaildirUids(row[0], row[1], uids)

    def assign_maildir_uids(self, store: str, folder: str, bases: list[str],
                            seed: Callable[[], tuple[int, int, dict[str, int]]]) -> MaildirUids:
        ns = self.namespace
        with self.tx():  # the namespace lock: two connections numbering one folder take turns
            got = self.maildir_uids(store, folder)
            if got is None:
                uidvalidity, uidnext, uids = seed()
                uidnext = max([uidnext, *(u + 1 for u in uids.values())])
                self._q("INSERT INTO maildir_folders (namespace, store, folder, uidvalidity, uidnext)"
                        " VALUES (%s,%s,%s,%s,%s)", (ns, store, folder, uidvalidity, uidnext))
                self._many("INSERT INTO maildir_uids (namespace, store, folder, uidvalidity, filename_base, uid)"
                           " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (namespace, store, folder, uidvalidity,"
                           " filename_base) DO UPDATE SET uid=excluded.uid",
                           [(ns, store, folder, uidvalidity, b, u) for b, u in uids.items()])
            else:
                uidvalidity, uidnext, uids = got
            new = [b for b in dict.fromkeys(bases) if b not in uids]
            if new:
                self._many("INSERT INTO maildir_uids (namespace, store, folder, uidvalidity, filename_base, uid)"
                           " VALUES (%s,%s,%s,%s,%s,%s)",
                           [(ns, store, folder, uidvalidity, b, uidnext + i) for i, b in enumerate(new)])
                uids.update((b, uidnext + i) for i, b in enumerate(new))
                uidnext += len(new)
                self._q("UPDATE maildir_folders SET uidnext=%s WHERE namespace=%s AND store=%s AND folder=%s",
                        (uidnext, ns, store, folder))
            return MaildirUids(uidvalidity, uidnext, uids)

    # --- daily budgets ---------------------------------------------------------------------

    def budget_used(self, account: str, direction: str, day: str) -> int:
        row = self._q("SELECT bytes FROM budget_usage WHERE namespace=%s AND account=%s AND direction=%s AND day=%s",
                      (self.namespace, account, direction, day)).fetchone()
        return int(row[0]) if row else 0

    def add_budget_usage(self, account: str, direction: str, day: str, nbytes: int) -> None:
        with self.tx():
            self._q("INSERT INTO budget_usage (namespace, account, direction, day, bytes, updated_at)"
                    " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (namespace, account, direction, day) DO UPDATE SET"
                    " bytes=budget_usage.bytes+excluded.bytes, updated_at=excluded.updated_at",
                    (self.namespace, account, direction, day, nbytes, utcnow().isoformat()))


def upgrade(url: str) -> list[str]:
    """``mailmigrate db upgrade``: apply the pending migrations; returns their labels."""
    conn = connect(url)
    try:
        return postgres_schema.upgrade(conn)
    finally:
        conn.close()
