"""The engine on a PostgreSQL journal (``PgJournal``), against real Dovecot and real PostgreSQL.

What it proves:

* an import with ``journal=PgJournal(url, target_label)`` is exact (bytes, flags, INTERNALDATE,
  folders), writes no file anywhere (no journal, lock file or ``_budgets.sqlite``: the daily budget
  is counted in the database's ``_budgets`` namespace), leaves no connection open (the database's
  ``pg_stat_activity`` count is back to what it was), and a re-run copies 0 - also after the
  namespace's rows were deleted (the target is the truth);
* two imports from two sources into ONE target, started together in two separate processes,
  bring the messages both sources hold exactly once (the folder lock is an advisory lock);
* the owner lock of a process reads alive while it lives and dead once it is SIGKILLed (PostgreSQL
  frees a dead session's locks); its folder lock makes a second holder in another process wait;
* a PostgreSQL connection dropped mid-job (``pg_terminate_backend``) ends the job with one
  classified line (``database-lost``, the database named without a password, no traceback), and
  a re-run completes the copy exactly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import psycopg
import pytest

from migrate.api import ImportRequest, start_import
from migrate.engine.budget import OVERRIDE_ENV
from migrate.store import DatabaseLost, PgJournal, open_store
from migrate.store.pg_locks import PgLocks, lock_connections, lock_key
from migrate.store.postgres import upgrade
from tests.support.mailbox import ROOT, append, folders, import_job, msg, side, snapshot
from tests.support.proxy import FaultProxy

pytestmark = [pytest.mark.postgres, pytest.mark.dovecot]


@pytest.fixture(scope="module")
def db(postgres) -> str:
    url = postgres.create_database()
    upgrade(url)
    return url


def _label(user) -> str:
    return f"{user.name}@example.test"


def _connections(url: str) -> int:
    """Sessions on the test database, this probe's own included."""
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").fetchone()[0]


def _until(check, what: str, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval only, never the synchronisation itself


def _forget_namespace(url: str, namespace: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        tables = [r[0] for r in c.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'namespace'"
            " AND table_schema = current_schema()")]
        for t in tables:
            c.execute(f"DELETE FROM {t} WHERE namespace = %s", (namespace,))  # type: ignore[arg-type]


def _seed(user) -> dict[str, int]:
    layout = {"INBOX": 6, "Archive/2024": 4, "Entwürfe": 2}
    n = 0
    for folder, k in layout.items():
        for _ in range(k):
            n += 1
            flags = [(), (b"\\Seen",), (b"\\Seen", b"\\Flagged", b"$Forwarded"), (b"\\Answered",)][n % 4]
            append(user, folder, msg(n), flags=flags, date=datetime(2001 + n, 1 + n % 12, 2, 3, 4, 5, tzinfo=UTC))
    return layout


def test_import_on_pg_journal_is_exact_writes_no_file_leaks_no_connection_and_reruns_copy_0(
        dovecot, new_user, tmp_path, db, monkeypatch):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    layout = _seed(src)
    home = tmp_path / "home"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(home))
    monkeypatch.setenv(OVERRIDE_ENV, "imap:download_mb_per_day=100")  # budgets counted: in the database
    where = PgJournal(db, _label(dst))
    before = _connections(db)

    report = import_job(src, dst, tmp_path, journal=where)
    assert report.exit_code == 0, report.error
    assert report.totals.copied == sum(layout.values())
    assert report.journal == str(where) and "postgresql://127.0.0.1:" in report.journal
    for name in layout:
        assert name in folders(dst)
        assert snapshot(dst, name) == snapshot(src, name), name
    # Nothing on disk: no journal, lock file or budget file anywhere under the test's folders.
    assert sorted(p.name for p in tmp_path.rglob("*")) == [], list(tmp_path.rglob("*"))
    with psycopg.connect(db) as c:
        used = c.execute("SELECT sum(bytes) FROM budget_usage WHERE namespace = '_budgets'").fetchone()[0]
    assert used and used > 0
    # Every connection the job opened is closed: the lock pool kept none once the job ended.
    assert lock_connections(db) == {"users": 0, "idle": 0}
    _until(lambda: _connections(db) == before, f"{before} sessions on the database again")

    store = open_store(where)
    try:
        runs = store.runs(report.job_id)
        assert [r.status for r in runs] == ["ok"]
    finally:
        store.close()

    again = import_job(src, dst, tmp_path, journal=where)
    assert again.exit_code == 0, again.error
    assert (again.totals.copied, again.totals.skipped_duplicates) == (0, sum(layout.values()))

    _forget_namespace(db, where.namespace)  # the journal is lost: the target still knows
    lost = import_job(src, dst, tmp_path, journal=where)
    assert lost.exit_code == 0, lost.error
    assert lost.totals.copied == 0 and lost.totals.skipped_duplicates == sum(layout.values())
    for name in layout:
        assert snapshot(dst, name) == snapshot(src, name), name
    assert sorted(p.name for p in tmp_path.rglob("*")) == []
    _until(lambda: _connections(db) == before, f"{before} sessions on the database again")


_CHILD = textwrap.dedent("""
    import json, sys
    from migrate.api import ImportRequest, run_import
    from migrate.sides import SideOptions
    from migrate.store import PgJournal
    cfg = json.loads(sys.argv[1])
    def side(role, s):
        return SideOptions(role, email=s["email"], username=s["user"], password="env:" + s["env"],
                           host="127.0.0.1", port=s["port"], security="none", provider="imap",
                           interactive=False, timeout=20.0)
    req = ImportRequest(source=side("source", cfg["src"]), target=side("target", cfg["dst"]),
                        journal=PgJournal(cfg["url"], cfg["namespace"]), progress=False, retry_base=0.05,
                        batch_count=3, connections=2)
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start copying together
    r = run_import(req)
    print(json.dumps({"status": r.status, "copied": r.totals.copied, "error": r.error and r.error.message}))
""")


def _side_cfg(role: str, user) -> dict[str, object]:
    opts = side(role, user)  # puts the password in this process's environment, which the child inherits
    return {"email": opts.email, "user": user.name, "port": user.server.port,
            "env": str(opts.password).removeprefix("env:")}


def _bodies(user, folder: str) -> Counter:
    return Counter(body for (body, _flags, _date), n in snapshot(user, folder).items() for _ in range(n))


def test_two_processes_two_sources_one_target_shared_messages_arrive_once(dovecot, new_user, db):
    srv = dovecot("slash")
    a, b, dst = new_user(srv), new_user(srv), new_user(srv)
    shared = [msg(100 + i) for i in range(80)]
    for i, body in enumerate(shared):
        append(a, "INBOX", body)
        append(b, "INBOX", body)
        if i % 3 == 0:
            append(a, "Shared/Box", body)
            append(b, "Shared/Box", body)
    only_a, only_b = [msg(200 + i) for i in range(4)], [msg(300 + i) for i in range(4)]
    for body in only_a:
        append(a, "INBOX", body)
    for body in only_b:
        append(b, "INBOX", body)

    procs = []
    try:
        for src in (a, b):
            cfg = {"url": db, "namespace": _label(dst), "src": _side_cfg("source", src), "dst": _side_cfg("target", dst)}
            procs.append(subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg)], cwd=ROOT, text=True,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert "Traceback" not in err, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [r["status"] for r in results] == ["ok", "ok"], results
    assert sum(r["copied"] for r in results) == len(shared) + len(only_a) + len(only_b) + len(shared[::3])
    assert _bodies(dst, "INBOX") == Counter(shared + only_a + only_b)
    assert _bodies(dst, "Shared/Box") == Counter(shared[::3])


_HOLDER = textwrap.dedent("""
    import sys
    from migrate.store import PgJournal
    from migrate.store.pg_locks import PgLocks
    locks = PgLocks(PgJournal(sys.argv[1], sys.argv[2]))
    owner = locks.owner()
    folder = locks.folder("INBOX")
    folder.__enter__()
    print(owner.token, flush=True)
    sys.stdin.read()  # held until killed
""")


def _waiting_advisory_locks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                         " WHERE l.locktype = 'advisory' AND NOT l.granted"
                         " AND a.datname = current_database()").fetchone()[0]


def test_owner_lock_alive_while_its_process_lives_dead_after_sigkill_and_folder_lock_excludes(db):
    namespace = "owner-lock@example.test"
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, db, namespace], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    locks = PgLocks(PgJournal(db, namespace))
    got_folder = threading.Event()
    waiter: threading.Thread | None = None
    try:
        token = child.stdout.readline().strip()
        assert token, child.stderr.read()
        assert locks.alive(token) is True
        assert locks.alive(token) is True  # asking does not take it away
        assert locks.alive("12345-000000000000") is False  # nobody holds this one
        assert locks.alive(None) is False

        def take_folder() -> None:
            with locks.folder("INBOX"):
                got_folder.set()

        waiter = threading.Thread(target=take_folder, daemon=True)
        waiter.start()
        _until(lambda: _waiting_advisory_locks(db) == 1, "this process waiting for the child's folder lock")
        assert not got_folder.is_set()

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        _until(lambda: locks.alive(token) is False, "the killed owner to read as dead")
        _until(got_folder.is_set, "the folder lock to pass to this process")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if waiter is not None:
            waiter.join(10)
        locks.close()
    assert lock_connections(db) == {"users": 0, "idle": 0}


def test_two_threads_of_one_process_exclude_each_other(db):
    """Advisory locks are re-entrant per session: each holder has a connection of its own."""
    locks = PgLocks(PgJournal(db, "threads@example.test"))
    first_in, second_in, let_go = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with locks.folder("INBOX"):
            first_in.set()
            let_go.wait(20)

    def second() -> None:
        with locks.folder("INBOX"):
            second_in.set()

    t1 = threading.Thread(target=first, daemon=True)
    t1.start()
    _until(first_in.is_set, "the first thread to hold the folder lock")
    t2 = threading.Thread(target=second, daemon=True)
    t2.start()
    try:
        _until(lambda: _waiting_advisory_locks(db) == 1, "the second thread waiting")
        assert not second_in.is_set()
        let_go.set()
        _until(second_in.is_set, "the second thread to get the lock")
    finally:
        let_go.set()
        t1.join(10)
        t2.join(10)
        locks.close()


def _terminate_others(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        return len(c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())


def test_dropped_database_connection_ends_the_job_with_one_line_and_a_rerun_completes(dovecot, new_user, tmp_path,
                                                                                          db):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(30):
        append(src, "INBOX", msg(i), flags=(b"\\Seen",) if i % 2 else ())
    where = PgJournal(db, _label(dst))
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        proxy.hold_when(b"APPEND")  # the job is mid-copy when the database drops it
        req = ImportRequest(source=side("source", src), target=side("target", dst, port=proxy.port),
                            journal=where, progress=False, retry_base=0.05, batch_count=5, connections=1)
        handle = start_import(req)
        try:
            _until(lambda: proxy.holding, "the first APPEND")
            assert _terminate_others(db) > 0
        finally:
            proxy.release()
        report = handle.wait(timeout=60)
    assert report.status in ("failed", "interrupted"), report.status
    assert report.error is not None and report.error.reference == "database-lost", report.error
    assert report.error.message.startswith("lost the connection to PostgreSQL at 127.0.0.1:")
    assert "\n" not in report.error.message and "Traceback" not in report.to_json()
    assert report.error.hint == "the import resumes where it stopped when run again"
    assert lock_connections(db) == {"users": 0, "idle": 0}

    store = open_store(where)
    try:  # nothing recorded as copied that the target does not hold
        recorded = store.counts(report.job_id).get("INBOX", {}).get("copied", 0)
    finally:
        store.close()
    with dst.client() as c:
        on_target = c.select_folder("INBOX", readonly=True)[b"EXISTS"]
    assert recorded <= on_target < 30

    rerun = import_job(src, dst, tmp_path, journal=where)
    assert rerun.exit_code == 0, rerun.error
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    last = import_job(src, dst, tmp_path, journal=where)
    assert last.totals.copied == 0 and last.totals.skipped_duplicates == 30


def test_pg_journal_and_its_errors_never_show_a_password():
    where = PgJournal("postgresql://mm:s3cret-pw@127.0.0.1:5433/mm", "t@example.test")
    assert str(where) == "postgresql://127.0.0.1:5433/mm#t@example.test"
    assert "s3cret" not in repr(where)
    lost = DatabaseLost.at(where.url, psycopg.OperationalError(
        "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally"))
    assert lost.message == "lost the connection to PostgreSQL at 127.0.0.1:5433/mm: server closed the connection unexpectedly"
    keys = {lock_key("t@example.test", kind, "INBOX") for kind in ("owner", "folder", "job")}
    keys.add(lock_key("u@example.test", "folder", "INBOX"))
    assert len(keys) == 4 and all(-(2 ** 63) <= k < 2 ** 63 for k in keys)


def test_shared_pacer_keeps_one_mailbox_pace_over_every_caller_and_leaves_others_alone(db):
    """Microsoft's upload pace per mailbox over all workers: two callers (as two workers would)
    on one mailbox share one schedule in the database; another mailbox has its own."""
    from migrate.store.pg_locks import pool_for
    from migrate.store.pg_pace import SharedPacer

    rate, batches, n = 400.0, 20, 10  # 20 batches of 10 messages at 400/s: 0.5 s of schedule
    where = PgJournal(db, "paced@example.test")
    pool = pool_for(db)
    pool.retain()
    try:
        pacers = [SharedPacer(where, rate), SharedPacer(where, rate)]
        t0 = time.monotonic()
        threads = [threading.Thread(target=lambda p=p: [p(n) for _ in range(batches // 2)]) for p in pacers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        other_t0 = time.monotonic()
        SharedPacer(PgJournal(db, "other@example.test"), rate)(n)
        other = time.monotonic() - other_t0
    finally:
        pool.release()
    # The last batch may start once every earlier one had its share: (batches - 1) * n / rate.
    assert elapsed >= (batches - 1) * n / rate, elapsed
    assert other < (batches - 1) * n / rate, other  # not behind the first mailbox's schedule
    with psycopg.connect(db, autocommit=True) as c:
        names = {r[0] for r in c.execute("SELECT namespace FROM meta WHERE name = 'pace.next_at'")}
    assert {"paced@example.test", "other@example.test"} <= names
