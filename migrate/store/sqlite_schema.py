"""The SQLite store's schema, as numbered migrations (``sqlite_utils.Migrations``).

Every schema change is one more function at the end of ``MIGRATIONS``, never an edit of an
earlier one: a journal records what it has applied (table ``_sqlite_migrations``, set
``mailmigrate-journal``) and each open applies only what is missing, in order, inside the
opening write transaction (two processes opening one new journal at once do not race).

Journals written before migrations were recorded hold some or all of these tables and columns
already (earlier versions created them with ``IF NOT EXISTS`` and added columns after looking):
every step therefore creates only what is missing, so such a file upgrades in place, keeping its
data.

Opening an up-to-date journal reads the applied names with plain ``sqlite3`` and does not import
``sqlite_utils`` (about 0.1 s): a no-op re-run starts fast.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

MIGRATION_SET = "mailmigrate-journal"
MIGRATIONS_TABLE = "_sqlite_migrations"  # sqlite_utils.Migrations.migrations_table

# The tables as the first recorded schema had them (see ``migrate.store.sqlite`` for what each holds).
_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, source TEXT, target TEXT,"
    " source_email TEXT, target_email TEXT, state TEXT, created_at TEXT, updated_at TEXT,"
    " command TEXT, last_report TEXT)",
    "CREATE TABLE IF NOT EXISTS runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT,"
    " pid INTEGER, started_at TEXT, finished_at TEXT, status TEXT, report TEXT, progress TEXT)",
    "CREATE TABLE IF NOT EXISTS folders (job_id TEXT, source_folder TEXT, target_folder TEXT,"
    " uidvalidity INTEGER, uidnext INTEGER, exists_ INTEGER, highestmodseq INTEGER,"
    " complete INTEGER DEFAULT 0, updated_at TEXT, PRIMARY KEY (job_id, source_folder))",
    "CREATE TABLE IF NOT EXISTS messages (job_id TEXT, source_folder TEXT, uidvalidity INTEGER,"
    " uid INTEGER, key TEXT, flags TEXT, state TEXT, ledger_id INTEGER, reason TEXT,"
    " size INTEGER, PRIMARY KEY (job_id, source_folder, uidvalidity, uid))",
    "CREATE INDEX IF NOT EXISTS messages_ledger ON messages (job_id, ledger_id)",
    "CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, folder TEXT,"
    " uidvalidity INTEGER, uid INTEGER, key TEXT, state TEXT, job_id TEXT)",
    "CREATE INDEX IF NOT EXISTS ledger_key ON ledger (folder, key)",
    "CREATE INDEX IF NOT EXISTS ledger_uid ON ledger (folder, uid)",
    "CREATE TABLE IF NOT EXISTS ledger_scan (folder TEXT PRIMARY KEY, uidvalidity INTEGER,"
    " scanned_uidnext INTEGER)",
    "CREATE TABLE IF NOT EXISTS notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT,"
    " kind TEXT, recipients TEXT, lang TEXT, smtp TEXT, sender TEXT, state TEXT, error TEXT,"
    " attempts INTEGER, updated_at TEXT, reports TEXT)",
    # Where each source folder goes, decided once by the first run.
    "CREATE TABLE IF NOT EXISTS folder_map (job_id TEXT, source_folder TEXT, target_folder TEXT,"
    " reason TEXT, updated_at TEXT, PRIMARY KEY (job_id, source_folder))",
    # UIDs of source Maildirs (``store`` = the Maildir's absolute path): kept here, never beside
    # the source, which is only ever read.
    "CREATE TABLE IF NOT EXISTS maildir_folders (store TEXT, folder TEXT, uidvalidity INTEGER,"
    " uidnext INTEGER, PRIMARY KEY (store, folder))",
    "CREATE TABLE IF NOT EXISTS maildir_uids (store TEXT, folder TEXT, uidvalidity INTEGER,"
    " filename_base TEXT, uid INTEGER, PRIMARY KEY (store, folder, uidvalidity, filename_base))",
)


def _add_column(db: Database, table: str, column: str, kind: type) -> None:
    t = db[table]
    if column not in t.columns_dict:  # type: ignore[union-attr]
        t.add_column(column, kind)  # type: ignore[union-attr]


def m001_tables(db: Database) -> None:
    for sql in _TABLES:
        db.execute(sql)


def m002_ledger_claim_owner(db: Database) -> None:
    """Claims name their owner (one live attempt) and the source message they are for."""
    _add_column(db, "ledger", "owner", str)
    _add_column(db, "ledger", "src", str)


def m003_folder_target_status(db: Database) -> None:
    """The target folder's state at the end of the last complete pass."""
    for column in ("t_uidvalidity", "t_uidnext", "t_exists", "t_highestmodseq"):
        _add_column(db, "folders", column, int)


def m004_ledger_target_size(db: Database) -> None:
    """RFC822.SIZE the target reports for our copy."""
    _add_column(db, "ledger", "t_size", int)


def m005_budget_usage(db: Database) -> None:
    """Bytes moved per provider account, direction and UTC day: the daily budgets."""
    db.execute("CREATE TABLE IF NOT EXISTS budget_usage (account TEXT, direction TEXT, day TEXT,"
               " bytes INTEGER, updated_at TEXT, PRIMARY KEY (account, direction, day))")


# In order; a name never changes once released.
MIGRATIONS: tuple[tuple[str, Callable[[Database], None]], ...] = (
    ("001_tables", m001_tables),
    ("002_ledger_claim_owner", m002_ledger_claim_owner),
    ("003_folder_target_status", m003_folder_target_status),
    ("004_ledger_target_size", m004_ledger_target_size),
    ("005_budget_usage", m005_budget_usage),
)


def applied(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations this database has applied (plain sqlite3: no sqlite_utils import)."""
    try:
        return [r[0] for r in conn.execute(
            f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set=? ORDER BY rowid", (MIGRATION_SET,))]
    except sqlite3.OperationalError:  # no migrations table yet
        return []


def pending(conn: sqlite3.Connection) -> list[str]:
    done = set(applied(conn))
    return [name for name, _ in MIGRATIONS if name not in done]


def migrations():  # type: ignore[no-untyped-def]
    """The migration set, for ``sqlite_utils.Migrations.apply`` (or ``sqlite-utils migrate``)."""
    from sqlite_utils import Migrations

    m = Migrations(MIGRATION_SET)
    for name, fn in MIGRATIONS:
        m(name=name)(fn)
    return m


def upgrade(conn: sqlite3.Connection) -> list[str]:
    """Apply the pending migrations; returns their names. Call inside a write transaction."""
    todo = pending(conn)
    if todo:
        from sqlite_utils import Database

        migrations().apply(Database(conn, execute_plugins=False))  # no plugin may touch our connection
    return todo
