"""The PostgreSQL store beyond the conformance suite (tests/unit/test_store.py runs that on both
backends): ``mailmigrate db upgrade`` as a real subprocess against the real server of the
``postgres`` fixture (empty database, again, two at once, bad URL, unreachable server, missing
database), a store refusing a database that was never upgraded, and many target accounts
(namespaces) in one database never seeing or waiting for each other's rows.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import psycopg
import pytest

from migrate.errors import UsageError
from migrate.store import FolderMapRow, FolderRecord, MessageRow, NotificationRow, open_store, postgres_schema
from migrate.store.postgres import PostgresStore, upgrade
from tests.support.mailbox import cli

pytestmark = pytest.mark.postgres

ALL_LABELS = [m.label for m in postgres_schema.MIGRATIONS]


def one_line_error(r) -> str:  # type: ignore[no-untyped-def]
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    return err


@pytest.fixture
def empty_db(postgres) -> str:
    return postgres.create_database()


@pytest.fixture(scope="module")
def journal_db(postgres) -> str:
    url = postgres.create_database()
    upgrade(url)
    return url


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as c:
        return [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY version")]


# --- mailmigrate db upgrade ----------------------------------------------------------------------


def test_db_upgrade_applies_every_migration_then_has_nothing_to_do(empty_db):
    r = cli("db", "upgrade", "--database", empty_db)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"applied: {', '.join(ALL_LABELS)}, task queue (procrastinate)"
    assert _versions(empty_db) == [m.version for m in postgres_schema.MIGRATIONS]
    PostgresStore(empty_db, "a@x").close()  # the schema a store needs is there
    with psycopg.connect(empty_db) as conn:  # and the task queue's (serve --database, worker)
        assert conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is not None

    again = cli("db", "upgrade", "--database", empty_db)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "database schema is up to date: nothing to do"
    assert _versions(empty_db) == [m.version for m in postgres_schema.MIGRATIONS]


def test_two_upgrades_at_once_one_applies_the_other_waits_and_finds_nothing(empty_db):
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(upgrade(empty_db))
        except BaseException as exc:  # reported below
            errors.append(exc)

    holder = psycopg.connect(empty_db, autocommit=True)
    try:
        # Hold the upgrade lock so both upgrades are surely in flight together, then let go.
        with holder.transaction():
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (postgres_schema.UPGRADE_LOCK,))
            threads = [threading.Thread(target=run) for _ in range(2)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while holder.execute("SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND NOT granted"
                                 ).fetchone()[0] < 2:  # type: ignore[index]
                assert time.monotonic() < deadline, "the upgrades never queued on the advisory lock"
                time.sleep(0.01)
        for t in threads:
            t.join(60)
    finally:
        holder.close()
    assert not errors
    assert sorted(results) == [[], ALL_LABELS]
    assert _versions(empty_db) == [m.version for m in postgres_schema.MIGRATIONS]


@pytest.mark.parametrize("url, says", [
    ("mysql://u:pw123456@db/x", "must be a postgresql:// URL"),
    ("postgresql://u@127.0.0.1:port/x", "is not a number 1-65535"),
    ("postgresql://u@127.0.0.1/x?frobnicate=1", "not a valid PostgreSQL URL"),
], ids=["scheme", "port", "option"])
def test_db_upgrade_bad_url_is_one_line_exit_2(url, says):
    r = cli("db", "upgrade", "--database", url)
    assert r.returncode == 2
    err = one_line_error(r)
    assert says in err and "pw123456" not in err


def test_db_upgrade_unreachable_server_is_one_line_exit_4():
    with socket.socket() as closed:  # bound, never listening: a connection to it is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        r = cli("db", "upgrade", "--database", f"postgresql://mm:s3cret-pw-42@127.0.0.1:{port}/mm")
    assert r.returncode == 4
    err = one_line_error(r)
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port}/mm" in err and "s3cret-pw-42" not in err


def test_db_upgrade_missing_database_is_one_line_exit_2(postgres):
    r = cli("db", "upgrade", "--database", postgres.url(f"nope_{uuid.uuid4().hex[:8]}"))
    assert r.returncode == 2
    assert "does not exist" in one_line_error(r)


# --- opening a store ----------------------------------------------------------------------------


def test_a_store_refuses_a_database_that_was_not_upgraded(empty_db):
    with pytest.raises(UsageError) as got:
        PostgresStore(empty_db, "a@x")
    line = got.value.one_line()
    assert "001_tables" in line and "mailmigrate db upgrade" in line and "\n" not in line


def test_open_store_takes_a_postgresql_url_and_a_namespace(journal_db, tmp_path):
    s = open_store(journal_db, "a@x")
    try:
        assert isinstance(s, PostgresStore) and s.namespace == "a@x"
    finally:
        s.close()
    with pytest.raises(UsageError, match="namespace"):
        open_store(journal_db)
    assert type(open_store(tmp_path / "j.sqlite", "ignored")).__name__ == "SQLiteStore"


# --- namespaces --------------------------------------------------------------------------------


def _fill(s: PostgresStore, tag: str) -> int:
    """The same job, folder and key names in every namespace, values that tell them apart."""
    run = s.start_job("j", f"src-{tag}", f"dst-{tag}", source_email=None, target_email=None, command=tag)
    s.save_folder("j", FolderRecord("INBOX", f"INBOX-{tag}", 1, 2, 1, None, True))
    s.save_folder_map("j", [FolderMapRow("INBOX", f"INBOX-{tag}", tag)])
    lid = s.ledger_insert("INBOX", "k", "present", uidvalidity=7, uid=1, job_id="j")
    s.record_messages("j", "INBOX", 1, [MessageRow(1, "k", (), "copied", lid, None, len(tag))])
    s.ledger_set_scan("INBOX", 7, 2)
    s.add_notification(NotificationRow("j", "job", "[]", "en", "{}", tag, "pending", None, 0, "t", "[]"))
    s.assign_maildir_uids("/m", "INBOX", [tag], lambda: (5, 1, {}))
    s.add_budget_usage("acct", "download", "2024-05-01", len(tag))
    return run


def test_two_namespaces_in_one_database_do_not_see_each_other(journal_db):
    a, b = PostgresStore(journal_db, f"a-{uuid.uuid4().hex[:6]}@x"), PostgresStore(journal_db, f"b-{uuid.uuid4().hex[:6]}@x")
    c = PostgresStore(journal_db, f"empty-{uuid.uuid4().hex[:6]}@x")
    try:
        run_a, run_b = _fill(a, "aa"), _fill(b, "bbbb")
        for s, tag, run in ((a, "aa", run_a), (b, "bbbb", run_b)):
            (job,) = s.jobs()
            assert (job.source, job.command) == (f"src-{tag}", tag)
            assert [r.run_id for r in s.runs("j")] == [run]
            assert [f.target_folder for f in s.folders("j")] == [f"INBOX-{tag}"]
            assert s.folder_map("j") == {"INBOX": f"INBOX-{tag}"}
            (row,) = s.ledger_rows("INBOX")
            assert s.ledger_count("INBOX", "k") == 1 and s.ledger_present_ids("INBOX") == {row.id}
            assert s.messages("j", "INBOX", 1)[1].size == len(tag) and s.counts("j") == {"INBOX": {"copied": 1}}
            assert s.ledger_orphans("INBOX", "j") == []
            assert [n.sender for n in s.notifications()] == [tag]
            assert s.maildir_uids("/m", "INBOX").uids == {tag: 1}  # type: ignore[union-attr]
            assert s.budget_used("acct", "download", "2024-05-01") == len(tag)
        # A row id of another namespace is not ours to read or change.
        (rb,) = b.ledger_rows("INBOX")
        assert a.ledger_row(rb.id) is None
        a.ledger_delete([rb.id])
        a.ledger_unplace_present("INBOX")
        assert b.ledger_row(rb.id) == rb
        assert c.jobs() == [] and c.ledger_rows("INBOX") == [] and c.notifications(include_sent=True) == []
        assert c.folder_map("j") == {} and c.ledger_scan("INBOX") is None and c.maildir_uids("/m", "INBOX") is None
    finally:
        for s in (a, b, c):
            s.close()


def test_writers_of_two_namespaces_do_not_wait_for_each_other(journal_db):
    a = PostgresStore(journal_db, f"a-{uuid.uuid4().hex[:6]}@x")
    other = PostgresStore(journal_db, f"b-{uuid.uuid4().hex[:6]}@x")
    same = PostgresStore(journal_db, a.namespace)
    entered = {"other": threading.Event(), "same": threading.Event()}

    def write(name: str, s: PostgresStore) -> None:
        with s.tx():
            entered[name].set()
            s.ledger_insert("INBOX", name, "claimed", owner=name)

    try:
        with a.tx():
            a.ledger_insert("INBOX", "a", "claimed", owner="a")
            threads = {n: threading.Thread(target=write, args=(n, s)) for n, s in (("other", other), ("same", same))}
            for t in threads.values():
                t.start()
            assert entered["other"].wait(30)  # another namespace goes ahead
            threads["other"].join(30)
            # Our namespace's writer queues behind us: its connection waits on the advisory lock.
            deadline = time.monotonic() + 30
            while not a.conn.execute("SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND NOT granted"
                                     " AND pid=%s", (same.conn.info.backend_pid,)).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the second writer of the namespace never waited"
                time.sleep(0.01)
            assert not entered["same"].is_set()
        threads["same"].join(30)
        assert entered["same"].is_set() and same.ledger_count("INBOX", "same") == 1
    finally:
        for s in (a, other, same):
            s.close()
