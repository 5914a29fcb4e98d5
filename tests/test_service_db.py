"""The service's state (migrate/service/db.py) on both databases it runs on: SQLite
(``service.sqlite``, one process) and a real PostgreSQL server from the ``postgres`` fixture (many
``serve``/``worker`` processes on one database, migration 2 of ``migrate/store/postgres_schema``).

Every Store method's behaviour runs on both; two Store objects are two connections, as two
processes would have, racing for the same rows. PostgreSQL alone: a database whose schema is behind
is refused in one line, and a terminated backend is reconnected to.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from migrate.errors import ConnectFailed, UsageError
from migrate.service.config import ServiceConfig
from migrate.service.db import (
    BUDGET_WAITING,
    WAITING,
    ServiceDatabaseError,
    Store,
    open_service_store,
    token_hash,
)
from migrate.store import postgres_schema
from migrate.store.postgres import upgrade

PASSWORD = "pg-s3cret-pw"  # in the URL of the PostgreSQL stores: never in an error's text


def _with_password(url: str) -> str:
    # The fixture's server trusts 127.0.0.1 and ignores it: only what errors show matters.
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(request, tmp_path) -> Iterator[Callable[[], Store]]:
    """Opens another Store on this test's database (another connection, as another process has)."""
    database = None
    if request.param == "postgres":
        database = _with_password(request.getfixturevalue("postgres").create_database())
        upgrade(database)
    cfg = ServiceConfig(target_host="127.0.0.1", home=tmp_path, database=database)
    opened: list[Store] = []

    def make() -> Store:
        opened.append(open_service_store(cfg))
        return opened[-1]

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store) -> Store:
    return open_store()


def _job(store: Store, job_id: str, *, owner: str = "anna@example.org", state: str = "queued") -> None:
    store.add_job(job_id, owner=owner, created_by=owner, request={"source": {"email": "a@old.example"}},
                  source_secret=b"sealed-source", target_secret=b"sealed-target", state=state)


def _running(store: Store, job_id: str) -> None:
    _job(store, job_id)
    assert store.claim(job_id)


def _state(store: Store, job_id: str) -> str:
    row = store.job(job_id)
    assert row is not None
    return str(row["state"])


# --- jobs -----------------------------------------------------------------------------------------


def test_add_job_then_job_and_jobs_by_owner(store):
    _job(store, "j1", owner="anna@example.org")
    _job(store, "j2", owner="ben@example.org")
    _job(store, "j3", owner="anna@example.org")
    row = store.job("j1")
    assert row is not None
    assert (row["owner"], row["state"], row["cancel_requested"]) == ("anna@example.org", "queued", 0)
    assert row["request"] == '{"source": {"email": "a@old.example"}}'
    assert bytes(row["source_secret"]) == b"sealed-source" and bytes(row["target_secret"]) == b"sealed-target"
    assert isinstance(row["created_at"], float) and row["started_at"] is None
    assert store.job("nope") is None
    assert [r["id"] for r in store.jobs("anna@example.org")] == ["j3", "j1"]  # newest first
    assert [r["id"] for r in store.jobs(["anna@example.org", "ben@example.org"])] == ["j3", "j2", "j1"]
    assert [r["id"] for r in store.jobs()] == ["j3", "j2", "j1"]
    assert store.active_job_ids() == ["j1", "j2", "j3"]


def test_claim_queued_once_take_over_a_running_one_never_an_ended_one(store):
    _job(store, "j1")
    assert store.claim("j1") is True
    first = store.job("j1")["started_at"]
    assert _state(store, "j1") == "running" and first is not None
    assert store.claim("j1") is False  # already running: a second worker does not get it
    assert store.claim("j1", take_over=True) is True  # its worker died: another one takes it over
    assert _state(store, "j1") == "running" and store.job("j1")["started_at"] >= first
    store.finish("j1", "done", {"copied": 1}, None)
    assert store.claim("j1") is False and store.claim("j1", take_over=True) is False
    assert _state(store, "j1") == "done"
    assert store.claim("missing") is False


def test_requeue_only_a_running_job(store):
    _running(store, "j1")
    store.requeue("j1")
    assert _state(store, "j1") == "queued"
    store.request_cancel("j1")
    store.requeue("j1")
    assert _state(store, "j1") == "cancelled"


@pytest.mark.parametrize("state", ["queued", WAITING, BUDGET_WAITING])
def test_request_cancel_of_a_job_not_running_ends_it_and_erases_its_secrets(store, state):
    _job(store, "j1", state=state)
    assert store.request_cancel("j1") == state
    row = store.job("j1")
    assert (row["state"], row["cancel_requested"]) == ("cancelled", 1)
    assert row["source_secret"] is None and row["target_secret"] is None and row["finished_at"] is not None


def test_request_cancel_of_a_running_job_asks_its_worker(store):
    _running(store, "j1")
    _running(store, "j2")
    assert store.cancel_requested(["j1", "j2"]) == set()
    assert store.request_cancel("j1") == "running"
    row = store.job("j1")
    assert (row["state"], row["cancel_requested"]) == ("running", 1)
    assert bytes(row["source_secret"]) == b"sealed-source"  # the worker still needs them to stop cleanly
    assert store.cancel_requested(["j1", "j2", "missing"]) == {"j1"}
    assert store.cancel_requested([]) == set()
    store.finish("j1", "cancelled", None, None)
    assert store.cancel_requested(["j1"]) == set()  # only running jobs are asked


def test_request_cancel_of_an_ended_or_unknown_job_changes_nothing(store):
    _running(store, "j1")
    store.finish("j1", "done", {"copied": 3}, None)
    assert store.request_cancel("j1") == "done"
    assert (_state(store, "j1"), store.job("j1")["cancel_requested"]) == ("done", 0)
    assert store.request_cancel("missing") is None


def test_wait_for_budget_then_resume(store):
    _running(store, "j1")
    assert store.wait_for_budget("j1", {"copied": 5}, "daily budget used", 1234.5, progress={"done": 5}) is True
    row = store.job("j1")
    assert (row["state"], row["error"], row["resume_at"]) == (BUDGET_WAITING, "daily budget used", 1234.5)
    assert row["report"] == '{"copied": 5}' and row["progress"] == '{"done": 5}'
    assert bytes(row["source_secret"]) == b"sealed-source"  # kept for the run that goes on
    assert store.budget_waits() == [("j1", 1234.5)]
    assert store.wait_for_budget("j1", {}, None, 1.0) is False  # no longer running
    assert store.resume_waiting("j1") is True
    row = store.job("j1")
    assert (row["state"], row["error"], row["resume_at"]) == ("queued", None, None)
    assert store.resume_waiting("j1") is False and store.budget_waits() == []


def test_finish_erases_the_secrets_and_keeps_the_last_progress(store):
    _running(store, "j1")
    store.save_live("j1", {"copied": 1}, {"done": 1})
    store.finish("j1", "partial", {"copied": 2, "failed": 1}, "one message failed")
    row = store.job("j1")
    assert (row["state"], row["error"]) == ("partial", "one message failed")
    assert row["source_secret"] is None and row["target_secret"] is None and row["finished_at"] is not None
    assert row["report"] == '{"copied": 2, "failed": 1}' and row["progress"] == '{"done": 1}'


def test_save_live_only_while_running(store):
    _job(store, "j1")
    store.save_live("j1", {"copied": 1}, {"done": 1})
    assert store.job("j1")["report"] is None and store.job("j1")["progress"] is None  # not claimed yet
    store.claim("j1")
    store.save_live("j1", {"copied": 2}, {"done": 2})
    store.save_live("j1", None, {"done": 3})  # no new report: the last one stays
    row = store.job("j1")
    assert (row["report"], row["progress"]) == ('{"copied": 2}', '{"done": 3}')
    store.finish("j1", "done", {"copied": 4}, None, progress={"done": 4})
    store.save_live("j1", {"copied": 99}, {"done": 99})  # a late write of its worker changes nothing
    row = store.job("j1")
    assert (row["report"], row["progress"]) == ('{"copied": 4}', '{"done": 4}')


def test_jobs_in_state_oldest_first(store):
    for job_id, state in (("a1", "queued"), ("a2", BUDGET_WAITING), ("a3", "queued"), ("a4", "done")):
        _job(store, job_id, state=state)
    assert store.claim("a3")
    assert [(r["id"], r["state"]) for r in store.jobs_in_state("queued", "running")] == [("a1", "queued"),
                                                                                         ("a3", "running")]
    assert [sorted(r) for r in store.jobs_in_state(BUDGET_WAITING)] == [["id", "resume_at", "state"]]
    assert store.jobs_in_state("failed") == [] and store.jobs_in_state() == []


def test_keep_source_secret_and_waiting_note_only_in_their_state(store):
    _job(store, "w", state=WAITING)
    store.set_waiting_note("w", "the sign-in mail failed")
    assert store.job("w")["error"] == "the sign-in mail failed"
    _running(store, "r")
    store.set_waiting_note("r", "not for a running job")
    store.keep_source_secret("r", b"rotated")
    assert store.job("r")["error"] is None and bytes(store.job("r")["source_secret"]) == b"rotated"
    store.finish("r", "done", None, None)
    store.keep_source_secret("r", b"too late")
    assert store.job("r")["source_secret"] is None


# --- batches --------------------------------------------------------------------------------------


def _batch_row(job_id: str, line: int) -> dict:
    return {"id": job_id, "line": line, "owner": "op", "created_by": "op", "request": {"line": line},
            "source_secret": b"s", "target_secret": b"t"}


def test_add_batch_stores_the_batch_and_its_jobs(store):
    store.add_batch("b1", "operator", [_batch_row("x2", 3), _batch_row("x1", 2)])
    assert store.batch("b1")["owner"] == "operator" and store.batch("missing") is None
    assert [(r["id"], r["batch_line"], r["state"]) for r in store.batch_jobs("b1")] == [("x1", 2, "queued"),
                                                                                       ("x2", 3, "queued")]


def test_add_batch_with_a_failing_row_leaves_nothing(store):
    _job(store, "taken")
    with pytest.raises((sqlite3.IntegrityError, ServiceDatabaseError)):
        store.add_batch("b1", "operator", [_batch_row("y1", 2), _batch_row("taken", 3), _batch_row("y3", 4)])
    assert store.batch("b1") is None and store.batch_jobs("b1") == []
    assert store.job("y1") is None and [r["id"] for r in store.jobs()] == ["taken"]
    store.add_batch("b1", "operator", [_batch_row("y1", 2)])  # nothing half-made stands in the way
    assert [r["id"] for r in store.batch_jobs("b1")] == ["y1"]


# --- sessions, their mailboxes and sign-ins ------------------------------------------------------


def _signins_of(store: Store, token: str) -> None:
    h = token_hash(token)
    store.add_session_mailbox(h, "second@example.org", b"sealed-pw")
    store.add_oauth_source(h, "google", "Someone@Gmail.example", b"sealed-refresh")
    store.add_oauth_state("state-" + token, kind="google", verifier=b"v", session_hash=h, link_hash=None,
                          expected_email=None, next_path="/", lang="en", ttl_s=3600)


def test_session_is_found_by_its_token_until_it_expires(store):
    store.add_session("tok-1", "anna@example.org", b"sealed", "csrf-1", ttl_s=3600)
    row = store.session("tok-1")
    assert (row["email"], row["csrf"], bytes(row["password"])) == ("anna@example.org", "csrf-1", b"sealed")
    assert row["token_hash"] == token_hash("tok-1") and store.session("tok-2") is None
    store.add_session("old", "ben@example.org", b"sealed", "csrf-2", ttl_s=-5)
    assert store.session("old") is None


def test_expired_sessions_go_with_their_mailboxes_and_signins(store):
    store.add_session("old", "ben@example.org", b"sealed", "c", ttl_s=-5)
    _signins_of(store, "old")
    store.add_session("keep", "anna@example.org", b"sealed", "c", ttl_s=3600)  # purges the expired ones
    _signins_of(store, "keep")
    assert store.session_mailboxes(token_hash("old")) == []
    assert store.oauth_sources(token_hash("old")) == []
    assert store.take_oauth_state("state-old") is None
    assert [r["email"] for r in store.session_mailboxes(token_hash("keep"))] == ["second@example.org"]
    assert [(r["kind"], r["email"]) for r in store.oauth_sources(token_hash("keep"))] == [
        ("google", "someone@gmail.example")]


def test_drop_session_takes_its_mailboxes_and_signins(store):
    store.add_session("tok", "anna@example.org", b"sealed", "c", ttl_s=3600)
    _signins_of(store, "tok")
    store.drop_session("tok")
    h = token_hash("tok")
    assert store.session("tok") is None and store.session_mailboxes(h) == [] and store.oauth_sources(h) == []
    assert store.take_oauth_state("state-tok") is None


def test_a_mailbox_or_signin_added_again_replaces_the_first(store):
    h = token_hash("tok")
    store.add_session_mailbox(h, "second@example.org", b"first")
    store.add_session_mailbox(h, "second@example.org", b"again")
    store.add_oauth_source(h, "microsoft", "x@outlook.example", b"first")
    store.add_oauth_source(h, "microsoft", "X@outlook.example", b"again")
    assert [(r["email"], bytes(r["password"])) for r in store.session_mailboxes(h)] == [
        ("second@example.org", b"again")]
    assert [bytes(r["secret"]) for r in store.oauth_sources(h)] == [b"again"]


def test_an_oauth_state_is_good_for_one_callback_and_not_after_it_expires(store):
    store.add_oauth_state("s1", kind="google", verifier=b"v1", session_hash=None, link_hash="l",
                          expected_email="a@gmail.example", next_path="/imports", lang="de", ttl_s=600)
    store.add_oauth_state("s2", kind="google", verifier=b"v2", session_hash=None, link_hash=None,
                          expected_email=None, next_path="/", lang="en", ttl_s=-1)
    got = store.take_oauth_state("s1")
    assert (got["kind"], bytes(got["verifier"]), got["link_hash"], got["lang"]) == ("google", b"v1", "l", "de")
    assert store.take_oauth_state("s1") is None
    assert store.take_oauth_state("s2") is None


def test_complete_signin_is_single_use_and_all_or_nothing(store):
    _job(store, "w1", state=WAITING)
    store.set_waiting_note("w1", "mail failed")
    store.add_signin_link("link1", job_id="w1", email="a@gmail.example", kind="google", ttl_s=3600)
    assert store.signin_link("link1")["used_at"] is None and store.signin_link("nope") is None
    assert store.complete_signin("link1", "w1", b"sealed-refresh", {"source": "signed in"}) is True
    row = store.job("w1")
    assert (row["state"], row["error"], row["request"]) == ("queued", None, '{"source": "signed in"}')
    assert bytes(row["source_secret"]) == b"sealed-refresh" and store.signin_link("link1")["used_at"] is not None
    assert store.complete_signin("link1", "w1", b"other", {}) is False  # used
    assert bytes(store.job("w1")["source_secret"]) == b"sealed-refresh"

    _job(store, "w2", state=WAITING)
    store.add_signin_link("link2", job_id="w2", email="a@gmail.example", kind="google", ttl_s=3600)
    store.request_cancel("w2")
    assert store.complete_signin("link2", "w2", b"s", {}) is False  # job cancelled meanwhile
    assert store.signin_link("link2")["used_at"] is None  # the link's use was rolled back with it
    assert _state(store, "w2") == "cancelled" and store.job("w2")["source_secret"] is None

    _job(store, "w3", state=WAITING)
    store.add_signin_link("link3", job_id="w3", email="a@gmail.example", kind="google", ttl_s=-1)
    assert store.complete_signin("link3", "w3", b"s", {}) is False  # expired
    assert _state(store, "w3") == WAITING
    store.add_signin_link("link4", job_id="w1", email="a@gmail.example", kind="google", ttl_s=3600)
    assert store.complete_signin("link4", "w3", b"s", {}) is False  # a link is for its own job only


# --- two processes at once ------------------------------------------------------------------------


def _race(a: Callable[[], object], b: Callable[[], object]) -> tuple[object, object]:
    """Runs a and b in two threads released together; their results."""
    start = threading.Barrier(2)
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def run(i: int, fn: Callable[[], object]) -> None:
        try:
            start.wait(timeout=10)
            results[i] = fn()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results[0], results[1]


def test_two_stores_racing_to_claim_a_job_exactly_one_wins(open_store):
    one, two = open_store(), open_store()
    for i in range(20):
        _job(one, f"race{i}")
        won = _race(lambda i=i: one.claim(f"race{i}"), lambda i=i: two.claim(f"race{i}"))
        assert sorted(won) == [False, True], (i, won)
        assert _state(two, f"race{i}") == "running"


def test_cancel_racing_a_claim_leaves_one_consistent_outcome(open_store):
    one, two = open_store(), open_store()
    for i in range(20):
        _job(one, f"c{i}")
        claimed, was = _race(lambda i=i: one.claim(f"c{i}"), lambda i=i: two.request_cancel(f"c{i}"))
        row = one.job(f"c{i}")
        if claimed:  # claimed first: the cancel asks the worker
            assert (was, row["state"], row["cancel_requested"]) == ("running", "running", 1)
            assert one.cancel_requested([f"c{i}"]) == {f"c{i}"}
        else:  # cancelled first: nothing runs, the secrets are gone
            assert (was, row["state"], row["source_secret"]) == ("queued", "cancelled", None)


def test_two_stores_completing_one_signin_link_only_one_succeeds(open_store):
    one, two = open_store(), open_store()
    for i in range(10):
        _job(one, f"w{i}", state=WAITING)
        one.add_signin_link(f"l{i}", job_id=f"w{i}", email="a@gmail.example", kind="google", ttl_s=60)
        got = _race(lambda i=i: one.complete_signin(f"l{i}", f"w{i}", b"a", {}),
                    lambda i=i: two.complete_signin(f"l{i}", f"w{i}", b"b", {}))
        assert sorted(got) == [False, True], (i, got)


# --- PostgreSQL only --------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("applied", [0, 1])
def test_a_database_whose_schema_is_behind_is_refused_in_one_line(postgres, tmp_path, monkeypatch, applied):
    url = _with_password(postgres.create_database())
    if applied:
        with monkeypatch.context() as m:  # a database upgraded by a mailmigrate without the service tables
            m.setattr(postgres_schema, "MIGRATIONS", postgres_schema.MIGRATIONS[:applied])
            upgrade(url)
    cfg = ServiceConfig(target_host="127.0.0.1", home=tmp_path, database=url)
    with pytest.raises(UsageError) as got:
        open_service_store(cfg)
    where = url.rsplit("@", 1)[1]
    need = postgres_schema.MIGRATIONS[-1].version
    assert got.value.one_line() == (f"error: the database at {where} is at schema version {applied}, this "
                                    f"mailmigrate needs {need}: run `mailmigrate db upgrade --database URL`")
    assert not (tmp_path / "service.sqlite").exists()


@pytest.mark.postgres
def test_an_unreachable_database_is_one_line_without_its_password(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    cfg = ServiceConfig(target_host="127.0.0.1", home=tmp_path,
                        database=f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/service")
    with pytest.raises(ConnectFailed) as got:
        open_service_store(cfg)
    line = got.value.one_line()
    assert f"127.0.0.1:{port}/service" in line and PASSWORD not in line and "\n" not in line


def _terminate_backend_of(store: Store, admin_url: str) -> None:
    pid = store._conn.conn.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        # Waits (up to 10 s) until the backend is gone, as after a server restart.
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()[0] is True


@pytest.mark.postgres
def test_a_terminated_backend_is_reconnected_to(postgres, tmp_path):
    url = _with_password(postgres.create_database())
    upgrade(url)
    store = open_service_store(ServiceConfig(target_host="127.0.0.1", home=tmp_path, database=url))
    try:
        _job(store, "j1")
        _terminate_backend_of(store, postgres.url())
        assert _state(store, "j1") == "queued"  # a read: reconnected and read again

        _terminate_backend_of(store, postgres.url())
        with pytest.raises(ServiceDatabaseError) as got:  # a change is never sent twice: reported
            store.claim("j1")
        line = got.value.one_line()
        assert line.startswith(f"error: lost the connection to the service database at {url.rsplit('@', 1)[1]}: ")
        assert PASSWORD not in line and "\n" not in line
        assert store.claim("j1") is True  # the next request connects again
        assert _state(store, "j1") == "running"

        _terminate_backend_of(store, postgres.url())
        with pytest.raises(ServiceDatabaseError):  # in a transaction: undone, reported
            store.add_batch("b1", "operator", [_batch_row("x1", 2)])
        assert store.batch("b1") is None
        store.add_batch("b1", "operator", [_batch_row("x1", 2)])
        assert [r["id"] for r in store.batch_jobs("b1")] == ["x1"]
    finally:
        store.close()


@pytest.mark.postgres
def test_service_tables_live_in_their_own_schema_beside_the_journal(postgres, tmp_path):
    url = postgres.create_database()
    upgrade(url)
    store = open_service_store(ServiceConfig(target_host="127.0.0.1", home=tmp_path, database=url))
    try:
        _job(store, "j1")
    finally:
        store.close()
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM service.jobs").fetchone()[0] == 1
        assert c.execute("SELECT count(*) FROM public.jobs").fetchone()[0] == 0  # the journal's, untouched
    assert not (tmp_path / "service.sqlite").exists()


def test_without_a_database_url_the_state_is_service_sqlite(tmp_path):
    store = open_service_store(ServiceConfig(target_host="127.0.0.1", home=tmp_path))
    try:
        _job(store, "j1")
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "service.sqlite") as db:
        assert db.execute("SELECT id, state FROM jobs").fetchall() == [("j1", "queued")]
    assert (tmp_path / "service.sqlite").stat().st_mode & 0o777 == 0o600


@pytest.mark.postgres
def test_a_closed_store_does_not_reconnect(postgres, tmp_path):
    url = postgres.create_database()
    upgrade(url)
    store = open_service_store(ServiceConfig(target_host="127.0.0.1", home=tmp_path, database=url))
    store.close()
    with pytest.raises(ServiceDatabaseError, match="is closed"):
        store.job("j1")
