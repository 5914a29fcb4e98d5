"""The PostgreSQL store's schema, as numbered migrations (``mailmigrate db upgrade``).

One database holds the journals and ledgers of many target accounts: every table has a
``namespace`` column (the target account label a SQLite journal's file name encodes) in its key,
so two targets never see each other's rows. Ids that SQLite numbers per file (ledger rows, runs,
notifications) come from sequences shared by every namespace: they still only grow.

Every schema change is one more ``Migration`` at the end of ``MIGRATIONS``, never an edit of an
earlier one. ``schema_migrations`` records what a database has applied. ``upgrade`` applies what
is missing in one transaction (PostgreSQL's DDL is transactional: a failed step leaves nothing
behind) under an advisory lock, so a second upgrade started at the same time waits and then finds
nothing to do. A store never changes the schema itself: it refuses a database that is behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

# pg_advisory_xact_lock key of "schema change in progress" (any constant: ours alone in this db).
UPGRADE_LOCK = 0x6D6D_6462_0001  # "mmdb" 1


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"


_TABLES = (
    "CREATE TABLE meta (namespace TEXT NOT NULL, name TEXT NOT NULL, value TEXT,"
    " PRIMARY KEY (namespace, name))",
    "CREATE TABLE jobs (namespace TEXT NOT NULL, job_id TEXT NOT NULL, source TEXT, target TEXT,"
    " source_email TEXT, target_email TEXT, state TEXT, created_at TEXT, updated_at TEXT,"
    " command TEXT, last_report TEXT, PRIMARY KEY (namespace, job_id))",
    "CREATE TABLE runs (run_id BIGSERIAL PRIMARY KEY, namespace TEXT NOT NULL, job_id TEXT NOT NULL,"
    " pid INTEGER, started_at TEXT, finished_at TEXT, status TEXT, report TEXT, progress TEXT)",
    "CREATE INDEX runs_job ON runs (namespace, job_id)",
    # seq: the order folders were first saved in (SQLite's rowid); an update keeps it.
    "CREATE TABLE folders (namespace TEXT NOT NULL, job_id TEXT NOT NULL, source_folder TEXT NOT NULL,"
    " target_folder TEXT, uidvalidity BIGINT, uidnext BIGINT, exists_ BIGINT, highestmodseq BIGINT,"
    " complete BOOLEAN NOT NULL DEFAULT FALSE, updated_at TEXT, t_uidvalidity BIGINT, t_uidnext BIGINT,"
    " t_exists BIGINT, t_highestmodseq BIGINT, seq BIGSERIAL,"
    " PRIMARY KEY (namespace, job_id, source_folder))",
    "CREATE TABLE messages (namespace TEXT NOT NULL, job_id TEXT NOT NULL, source_folder TEXT NOT NULL,"
    " uidvalidity BIGINT NOT NULL, uid BIGINT NOT NULL, key TEXT, flags TEXT, state TEXT, ledger_id BIGINT,"
    " reason TEXT, size BIGINT, PRIMARY KEY (namespace, job_id, source_folder, uidvalidity, uid))",
    "CREATE INDEX messages_ledger ON messages (namespace, job_id, ledger_id)",
    # src is the engine's "folder NUL uidvalidity NUL uid": bytes, as TEXT cannot hold NUL.
    "CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, namespace TEXT NOT NULL, folder TEXT NOT NULL,"
    " uidvalidity BIGINT, uid BIGINT, key TEXT NOT NULL, state TEXT NOT NULL, job_id TEXT, owner TEXT,"
    " src BYTEA, t_size BIGINT)",
    "CREATE INDEX ledger_key ON ledger (namespace, folder, key)",
    "CREATE INDEX ledger_uid ON ledger (namespace, folder, uid)",
    "CREATE TABLE ledger_scan (namespace TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity BIGINT,"
    " scanned_uidnext BIGINT, PRIMARY KEY (namespace, folder))",
    "CREATE TABLE notifications (id BIGSERIAL PRIMARY KEY, namespace TEXT NOT NULL, job_id TEXT, kind TEXT,"
    " recipients TEXT, lang TEXT, smtp TEXT, sender TEXT, state TEXT, error TEXT, attempts INTEGER,"
    " updated_at TEXT, reports TEXT)",
    "CREATE INDEX notifications_ns ON notifications (namespace, state)",
    "CREATE TABLE folder_map (namespace TEXT NOT NULL, job_id TEXT NOT NULL, source_folder TEXT NOT NULL,"
    " target_folder TEXT, reason TEXT, updated_at TEXT, PRIMARY KEY (namespace, job_id, source_folder))",
    "CREATE TABLE maildir_folders (namespace TEXT NOT NULL, store TEXT NOT NULL, folder TEXT NOT NULL,"
    " uidvalidity BIGINT, uidnext BIGINT, PRIMARY KEY (namespace, store, folder))",
    "CREATE TABLE maildir_uids (namespace TEXT NOT NULL, store TEXT NOT NULL, folder TEXT NOT NULL,"
    " uidvalidity BIGINT NOT NULL, filename_base TEXT NOT NULL, uid BIGINT,"
    " PRIMARY KEY (namespace, store, folder, uidvalidity, filename_base))",
    "CREATE TABLE budget_usage (namespace TEXT NOT NULL, account TEXT NOT NULL, direction TEXT NOT NULL,"
    " day TEXT NOT NULL, bytes BIGINT NOT NULL, updated_at TEXT,"
    " PRIMARY KEY (namespace, account, direction, day))",
)

# The web service's own state (``mailmigrate serve``/``worker``, migrate/service/db.py): a schema of
# its own, as the journal above already has a ``jobs`` table. The service's connection puts
# ``service`` on its search_path, so its SQL is the same text as on SQLite. The trigger is the
# SQLite one's: a session's Google/Microsoft sign-ins and flows go with the session.
_SERVICE_TABLES = (
    "CREATE SCHEMA service",
    "CREATE TABLE service.jobs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_by TEXT NOT NULL,"
    " state TEXT NOT NULL, request TEXT NOT NULL, source_secret BYTEA, target_secret BYTEA,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0, report TEXT, error TEXT, created_at DOUBLE PRECISION NOT NULL,"
    " started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, batch_id TEXT, batch_line INTEGER, progress TEXT,"
    " resume_at DOUBLE PRECISION)",
    "CREATE INDEX jobs_owner ON service.jobs (owner)",
    "CREATE INDEX jobs_state ON service.jobs (state)",
    "CREATE INDEX jobs_batch ON service.jobs (batch_id)",
    "CREATE TABLE service.sessions (token_hash TEXT PRIMARY KEY, email TEXT NOT NULL, password BYTEA NOT NULL,"
    " csrf TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE service.session_mailboxes (token_hash TEXT NOT NULL, email TEXT NOT NULL, password BYTEA NOT NULL,"
    " added_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (token_hash, email))",
    "CREATE TABLE service.batches (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE service.oauth_states (state_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, verifier BYTEA NOT NULL,"
    " session_hash TEXT, link_hash TEXT, expected_email TEXT, next_path TEXT NOT NULL, lang TEXT NOT NULL,"
    " expires_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE service.oauth_sources (session_hash TEXT NOT NULL, kind TEXT NOT NULL, email TEXT NOT NULL,"
    " secret BYTEA NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (session_hash, kind, email))",
    "CREATE TABLE service.signin_links (token_hash TEXT PRIMARY KEY, job_id TEXT NOT NULL, email TEXT NOT NULL,"
    " kind TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL,"
    " used_at DOUBLE PRECISION)",
    "CREATE INDEX signin_links_job ON service.signin_links (job_id)",
    "CREATE FUNCTION service.sessions_take_their_signins() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN"
    " DELETE FROM service.oauth_sources WHERE session_hash = OLD.token_hash;"
    " DELETE FROM service.oauth_states WHERE session_hash = OLD.token_hash;"
    " RETURN NULL;"
    " END $$",
    "CREATE TRIGGER sessions_take_their_signins AFTER DELETE ON service.sessions FOR EACH ROW"
    " EXECUTE FUNCTION service.sessions_take_their_signins()",
)

# In order; a version and its name never change once released.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tables", _TABLES),
    Migration(2, "service", _SERVICE_TABLES),
)

_CREATE_MIGRATIONS_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")


def applied(conn: psycopg.Connection) -> list[int]:
    """Versions this database has applied ([] for an empty database). Outside a transaction."""
    row = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return []
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def pending(conn: psycopg.Connection) -> list[Migration]:
    done = set(applied(conn))
    return [m for m in MIGRATIONS if m.version not in done]


def upgrade(conn: psycopg.Connection) -> list[str]:
    """Apply the pending migrations in one transaction; returns their labels ([]: up to date).
    ``conn`` must be in autocommit mode (no transaction of the caller's open)."""
    with conn.transaction():
        # Two upgrades at once: the second waits here, then reads that nothing is left to do.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
        conn.execute(_CREATE_MIGRATIONS_TABLE)
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        todo = [m for m in MIGRATIONS if m.version not in done]
        for m in todo:
            for sql in m.statements:
                conn.execute(sql)  # type: ignore[arg-type]  # our own constant SQL
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name))
    return [m.label for m in todo]
