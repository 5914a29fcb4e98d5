"""Conformance suite of the store (``migrate.store.Store``) and the ledger's rules on top of it.

Every test of the first parts is written against the interface and runs once per implementation
(``IMPLEMENTATIONS``: SQLite, and PostgreSQL on the session's real server from the ``postgres``
fixture, each test in a namespace of its own; without the server binaries those variants skip,
with MM_REQUIRE_POSTGRES=1 they fail). The ledger's rules (claims of live
and dead owners, full resyncs, a new UIDVALIDITY, released rows) are checked with lists of
``(uid, key)`` as the engine hands them over, and once through ``reconcile_with_target`` with a
target that lives in memory. The last part is about the SQLite file: its schema migrations (an
existing journal upgrades in place, data kept), the key recipe check, the read-only folder map.
The SQLite variants need no root and no server.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from migrate.dedupe import ledger as ledger_module
from migrate.dedupe.keys import KEY_VERSION, key_of
from migrate.dedupe.ledger import Ledger, ScanPlan
from migrate.dedupe.reconcile import reconcile_with_target
from migrate.errors import register_secret
from migrate.models import FolderStatus, MessageMeta
from migrate.store import (
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
    open_store,
    sqlite_schema,
)
from migrate.store.sqlite import SQLiteStore, read_budget_used, read_folder_map

ROOT = Path(__file__).resolve().parents[2]

@pytest.fixture(scope="session")
def postgres_journal_url(postgres) -> str:
    """One database for the session's PostgreSQL variants, schema applied once; every test gets a
    namespace of its own in it (which the conformance tests thereby check stay apart)."""
    from migrate.store.postgres import upgrade

    url = postgres.create_database()
    upgrade(url)
    return url


def _sqlite(request: pytest.FixtureRequest, tmp: Path) -> Callable[[], Store]:
    return lambda: SQLiteStore(tmp / "journal.sqlite")


def _postgres(request: pytest.FixtureRequest, tmp: Path) -> Callable[[], Store]:
    from migrate.store.postgres import PostgresStore

    url = request.getfixturevalue("postgres_journal_url")
    namespace = f"{request.node.name}@{uuid.uuid4().hex[:8]}"
    return lambda: PostgresStore(url, namespace)


# name -> opener(request, tmp_path) giving a fresh location; calling the opener again opens one
# more connection to the same store (another thread or process).
IMPLEMENTATIONS: dict[str, Callable[[pytest.FixtureRequest, Path], Callable[[], Store]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    opened: list[Store] = []
    make = IMPLEMENTATIONS[request.param](request, tmp_path)

    def open_one() -> Store:
        s = make()
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        s.close()


@pytest.fixture
def store(opener: Callable[[], Store]) -> Store:
    return opener()


F = "INBOX"  # the target folder of the ledger tests


def st(uidnext: int, exists: int, uidvalidity: int = 7) -> FolderStatus:
    return FolderStatus(uidvalidity=uidvalidity, uidnext=uidnext, exists=exists)


def alive_only(*owners: str) -> Callable[[str | None], bool]:
    return lambda owner: owner in owners


def nobody(owner: str | None) -> bool:
    return False


def rows(store: Store, folder: str = F) -> list[LedgerRow]:
    return store.ledger_rows(folder)


def by_uid(store: Store, folder: str = F) -> dict[int, str]:
    return {r.uid: r.key for r in rows(store, folder) if r.uid is not None}


# --- the interface -------------------------------------------------------------------------------


def test_implementations_implement_every_operation(store):
    assert isinstance(store, Store)
    assert not getattr(type(store), "__abstractmethods__", None), type(store)


def test_every_operation_is_exercised_here():
    """A new store operation needs a conformance test (here, or through the ledger's rules)."""
    here = Path(__file__).read_text()
    ledger_src = inspect.getsource(ledger_module)
    missing = sorted(n for n in Store.__abstractmethods__
                     if f".{n}(" not in here and f".{n}(" not in ledger_src)
    assert not missing


def test_open_store_gives_the_sqlite_store(tmp_path):
    s = open_store(tmp_path / "x.sqlite")
    try:
        assert isinstance(s, SQLiteStore) and isinstance(s, Store)
    finally:
        s.close()


# --- transactions ------------------------------------------------------------------------------


def test_tx_commits_and_is_seen_by_another_connection(opener):
    a, b = opener(), opener()
    with a.tx():
        a.save_folder_map("j", [FolderMapRow("A", "B", "r")])
    assert b.folder_map("j") == {"A": "B"}


def test_tx_rolls_back_everything_on_error_and_nested_blocks_join(opener):
    a = opener()
    with pytest.raises(RuntimeError), a.tx():
        a.save_folder_map("j", [FolderMapRow("A", "B", "r")])
        with a.tx():  # joins the outer one
            a.ledger_insert(F, "k", "present", uidvalidity=7, uid=1)
        raise RuntimeError("boom")
    assert a.folder_map("j") == {}
    assert a.ledger_count(F, "k") == 0
    with pytest.raises(RuntimeError), a.tx():
        with a.tx():
            a.ledger_insert(F, "k", "present", uidvalidity=7, uid=1)
        raise RuntimeError("the inner block's work goes too")
    assert a.ledger_count(F, "k") == 0
    with a.tx():  # usable again after a rollback
        a.ledger_insert(F, "k", "present", uidvalidity=7, uid=1)
    assert opener().ledger_count(F, "k") == 1


def test_tx_takes_the_write_lock_up_front(opener):
    """A second writer waits for the first to commit, then reads what it wrote: two processes
    never both decide on stale reads."""
    import threading

    a, b = opener(), opener()
    entered, seen = threading.Event(), []

    def second_writer() -> None:
        with b.tx():
            entered.set()
            seen.append(b.ledger_count(F, "k"))
            b.ledger_insert(F, "k", "claimed", owner="b")

    with a.tx():
        a.ledger_insert(F, "k", "claimed", owner="a")
        t = threading.Thread(target=second_writer)
        t.start()
        assert not entered.wait(0.5)  # without the lock it would be in by now
    t.join(60)
    assert seen == [1] and a.ledger_count(F, "k") == 2


def test_write_methods_commit_on_their_own(opener):
    a = opener()
    a.ledger_insert(F, "k", "claimed", job_id="j", owner="o")
    a.record_messages("j", "S", 1, [MessageRow(1, "k", (), "duplicate")])
    b = opener()
    assert b.ledger_count(F, "k") == 1 and 1 in b.messages("j", "S", 1)


# --- jobs and runs -----------------------------------------------------------------------------


def test_jobs_and_runs(store):
    r1 = store.start_job("j1", "src", "dst", source_email="a@x", target_email="b@y", command="mm import")
    store.set_progress(r1, {"done_messages": 3})
    store.finish_run("j1", r1, "ok", '{"status": "ok"}')
    (job,) = store.jobs()
    assert isinstance(job, JobRow)
    assert (job.job_id, job.source, job.target, job.source_email, job.target_email, job.state, job.command,
            job.last_report) == ("j1", "src", "dst", "a@x", "b@y", "ok", "mm import", '{"status": "ok"}')
    r2 = store.start_job("j1", "src", "dst", source_email=None, target_email=None, command="again")
    assert r2 > r1
    assert store.jobs()[0].state == "running" and store.jobs()[0].command == "again"
    runs = store.runs("j1")
    assert [r.run_id for r in runs] == [r2, r1] and all(isinstance(r, RunRow) for r in runs)
    assert runs[1].status == "ok" and runs[1].report == '{"status": "ok"}' and runs[1].finished_at
    assert json.loads(runs[1].progress or "{}") == {"done_messages": 3}
    assert runs[0].status == "running" and runs[0].finished_at is None and runs[0].pid
    store.start_job("j2", "s2", "dst", source_email=None, target_email=None, command=None)
    assert [j.job_id for j in store.jobs()] == ["j2", "j1"]  # most recently updated first
    assert store.runs("nope") == []


# --- folders and the folder map ------------------------------------------------------------------


def test_folders(store):
    assert store.folder("j", "INBOX") is None and store.folders("j") == []
    store.save_folder("j", FolderRecord("INBOX", "INBOX", 5, 10, 9, None, False))
    store.save_folder("j", FolderRecord("Sent", "Sent Items", 6, 3, 2, 44, True, (1, 2, 3, 4)))
    store.save_folder("j", FolderRecord("INBOX", "INBOX", 5, 12, 11, 80, True, (9, 8, 7, None)))  # replaces
    assert store.folder("j", "INBOX") == FolderRecord("INBOX", "INBOX", 5, 12, 11, 80, True, (9, 8, 7, None))
    assert store.folder("j", "Sent") == FolderRecord("Sent", "Sent Items", 6, 3, 2, 44, True, (1, 2, 3, 4))
    assert [f.source_folder for f in store.folders("j")] == ["INBOX", "Sent"]  # first saved first
    assert store.folders("other") == []


def test_forget_uidvalidity_drops_only_other_uidvalidities(store):
    store.record_messages("j", "S", 1, [MessageRow(1, "a", (), "copied", 1), MessageRow(2, "b", (), "failed")])
    store.record_messages("j", "S", 2, [MessageRow(1, "c", (), "copied", 2)])
    store.record_messages("j", "T", 1, [MessageRow(1, "d", (), "copied", 3)])
    assert store.forget_uidvalidity("j", "S", keep=2) == 2
    assert store.messages("j", "S", 1) == {} and set(store.messages("j", "S", 2)) == {1}
    assert set(store.messages("j", "T", 1)) == {1}


def test_folder_map(store):
    assert store.folder_map("j") == {}
    store.save_folder_map("j", [FolderMapRow("A", "A", "same"), FolderMapRow("B/C", "B.C", "separator")])
    store.save_folder_map("j", [FolderMapRow("A", "A-1", "renamed: refused")])  # replaces A's row
    store.save_folder_map("k", [FolderMapRow("A", "Z", "other job")])
    assert store.folder_map("j") == {"A": "A-1", "B/C": "B.C"}
    assert store.folder_map("k") == {"A": "Z"}


# --- messages ----------------------------------------------------------------------------------


def test_messages_round_trip_typed_rows(store):
    register_secret("hunter2-store-test")
    store.record_messages("j", "S", 9, [
        MessageRow(1, "m:a", ("\\Seen", "$Label"), "copied", 11, None, 100),
        MessageRow(2, "m:b", (), "duplicate", None, "filed in another folder", 200),
        MessageRow(5, "m:c", ("\\Flagged",), "failed", None, "refused: hunter2-store-test", 300),
    ])
    got = store.messages("j", "S", 9)
    assert got == {
        1: MessageRow(1, "m:a", ("\\Seen", "$Label"), "copied", 11, None, 100),
        2: MessageRow(2, "m:b", (), "duplicate", None, "filed in another folder", 200),
        5: MessageRow(5, "m:c", ("\\Flagged",), "failed", None, "refused: ********", 300),
    }
    assert set(store.messages("j", "S", 9, uid_range=(2, 5))) == {2, 5}  # inclusive
    assert set(store.messages("j", "S", 9, uid_range=(3, 4))) == set()
    assert store.messages("j", "S", 8) == {} and store.messages("k", "S", 9) == {}
    store.record_messages("j", "S", 9, [MessageRow(5, "m:c", (), "copied", 12, None, 301)])  # a retry
    assert store.messages("j", "S", 9)[5] == MessageRow(5, "m:c", (), "copied", 12, None, 301)
    store.update_flags("j", "S", 9, [(1, ("\\Answered",)), (2, ("\\Seen",))])
    got = store.messages("j", "S", 9)
    assert got[1].flags == ("\\Answered",) and got[2].flags == ("\\Seen",) and got[1].state == "copied"


def test_counts_and_keys_elsewhere(store):
    store.record_messages("j", "INBOX", 1, [MessageRow(1, "a", (), "copied", 1), MessageRow(2, "b", (), "duplicate"),
                                            MessageRow(3, "c", (), "failed")])
    store.record_messages("j", "Label", 1, [MessageRow(1, "a", (), "duplicate"), MessageRow(2, "d", (), "copied", 2)])
    store.record_messages("k", "INBOX", 1, [MessageRow(1, "e", (), "copied", 3)])
    assert store.counts("j") == {"INBOX": {"copied": 1, "duplicate": 1, "failed": 1},
                                 "Label": {"duplicate": 1, "copied": 1}}
    assert store.keys_elsewhere("j", "All Mail") == {"a", "b", "d"}  # not the failed one
    assert store.keys_elsewhere("j", "INBOX") == {"a", "d"}
    assert store.keys_elsewhere("k", "X") == {"e"}


# --- ledger rows (storage only) -------------------------------------------------------------------


def test_ledger_rows(store):
    c = store.ledger_insert(F, "k", "claimed", job_id="j", owner="o1", src="S\x001\x005")
    p = store.ledger_insert(F, "k", "present", uidvalidity=7, uid=3)
    assert p > c
    assert store.ledger_row(c) == LedgerRow(c, F, None, None, "k", "claimed", "j", "o1", "S\x001\x005", None)
    assert store.ledger_row(999_999) is None
    assert store.ledger_count(F, "k") == 2 and store.ledger_count(F, "x") == 0 and store.ledger_count("Other", "k") == 0
    assert store.ledger_present_ids(F) == {p}
    assert store.ledger_has_uid(F, 7, 3) and not store.ledger_has_uid(F, 8, 3) and not store.ledger_has_uid(F, 7, 4)
    assert store.ledger_has_uids(F) and not store.ledger_has_uids("Other")
    assert store.ledger_count_uids(F, 7, 3, 4) == 1 and store.ledger_count_uids(F, 7, 4, 9) == 0
    assert [r.id for r in store.ledger_placed(F, 4)] == [p] and store.ledger_placed(F, 3) == []
    assert store.ledger_count_placed(F, 4) == 1 and store.ledger_count_placed(F, 3) == 0
    assert store.ledger_count_in_flight(F) == 1
    assert store.ledger_claim_owners(F) == {"o1"}
    store.ledger_place(c, None, None)  # a server without UIDPLUS: present, UID unknown
    assert store.ledger_row(c).state == "present" and store.ledger_row(c).uid is None  # type: ignore[union-attr]
    assert [r.id for r in store.ledger_present_unplaced(F)] == [c]
    q = store.ledger_insert(F, "k", "claimed", job_id="j", owner="o2")
    assert [r.id for r in store.ledger_unplaced(F, "k")] == [c, q]  # present first, then by id
    store.ledger_place(c, 4, 7)
    store.ledger_place(c, None, None)  # keeps the UID a reconcile attached
    assert (store.ledger_row(c).uid, store.ledger_row(c).uidvalidity) == (4, 7)  # type: ignore[union-attr]
    store.ledger_set_sizes({c: 1234, p: 99})
    assert store.ledger_row(c).t_size == 1234 and store.ledger_row(p).t_size == 99  # type: ignore[union-attr]
    store.ledger_unplace([c])
    assert store.ledger_row(c).uid is None and store.ledger_row(c).uidvalidity is None  # type: ignore[union-attr]
    store.ledger_unplace_present(F)
    assert not store.ledger_has_uids(F)
    n = store.ledger_insert(F, "x", "claimed", owner=None)
    store.ledger_delete_claims(F, "o2")
    assert store.ledger_row(q) is None and store.ledger_row(n) is not None
    store.ledger_delete_claims(F, None)  # claims without an owner
    assert store.ledger_row(n) is None
    store.ledger_delete([c, p])
    assert store.ledger_count(F, "k") == 0


def test_ledger_orphans_are_present_rows_of_the_job_no_message_points_at(store):
    a = store.ledger_insert(F, "k1", "present", uidvalidity=7, uid=1, job_id="j", src="S\x001\x001")
    b = store.ledger_insert(F, "k2", "present", uidvalidity=7, uid=2, job_id="j")
    store.ledger_insert(F, "k3", "claimed", job_id="j", owner="o")  # a claim: not an orphan
    store.ledger_insert(F, "k4", "present", uidvalidity=7, uid=4, job_id="other")
    store.ledger_insert(F, "k5", "present", uidvalidity=7, uid=5)  # found on the target
    assert [r.id for r in store.ledger_orphans(F, "j")] == [a, b]
    store.record_messages("j", "S", 1, [MessageRow(1, "k1", (), "copied", a)])
    assert [r.id for r in store.ledger_orphans(F, "j")] == [b]
    ledger = Ledger(store)
    assert ledger.orphans_of_job(F, "j") == ({}, {"k2": [b]})
    store.record_messages("j", "S", 1, [MessageRow(1, "k1", (), "failed")])  # nothing points at a now
    assert ledger.orphans_of_job(F, "j") == ({"S\x001\x001": a}, {"k2": [b]})


def test_ledger_scan_state(store):
    assert store.ledger_scan(F) is None
    store.ledger_set_scan(F, 7, 10)
    store.ledger_set_scan(F, 8, 3)
    assert store.ledger_scan(F) == LedgerScan(8, 3) and store.ledger_scan("Other") is None


# --- notifications and Maildir UIDs ------------------------------------------------------------


def _note(job: str, **kw: object) -> NotificationRow:
    base: dict[str, object] = dict(job_id=job, kind="job", recipients='["a@x"]', lang="en", smtp="{}", sender="me@x",
                                   state="pending", error=None, attempts=0, updated_at="2024-01-01T00:00:00",
                                   reports="[]")
    base.update(kw)
    return NotificationRow(**base)  # type: ignore[arg-type]


def test_notifications(store):
    register_secret("hunter2-smtp-test")
    n1 = store.add_notification(_note("abc123"))
    n2 = store.add_notification(_note("abd999", kind="batch"))
    assert n2 > n1
    got = store.notifications()
    assert [n.id for n in got] == [n1, n2] and got[0] == _note("abc123", id=n1)
    store.update_notification(n1, "failed", "535 auth failed for hunter2-smtp-test")
    store.update_notification(n2, "sent", None)
    (pending,) = store.notifications()
    assert pending.id == n1 and pending.state == "failed" and pending.attempts == 1
    assert pending.error == "535 auth failed for ********" and pending.updated_at != "2024-01-01T00:00:00"
    assert [n.id for n in store.notifications(include_sent=True)] == [n1, n2]
    assert [n.id for n in store.notifications("abd", include_sent=True)] == [n2]  # a job id prefix
    assert store.notifications("abd") == [] and store.notifications("zz", include_sent=True) == []


def test_maildir_uids(opener):
    a, b = opener(), opener()
    assert a.maildir_uids("/m", "INBOX") is None
    seeded: list[int] = []

    def seed() -> tuple[int, int, dict[str, int]]:
        seeded.append(1)
        return 4242, 5, {"old": 7}  # adopted from an earlier uidlist: UIDNEXT follows its UIDs

    got = a.assign_maildir_uids("/m", "INBOX", ["x", "y", "x", "old"], seed)
    assert isinstance(got, MaildirUids)
    assert got == MaildirUids(4242, 10, {"old": 7, "x": 8, "y": 9})
    got = b.assign_maildir_uids("/m", "INBOX", ["z", "y"], seed)  # another connection agrees
    assert got == MaildirUids(4242, 11, {"old": 7, "x": 8, "y": 9, "z": 10}) and seeded == [1]
    uidvalidity, uidnext, uids = a.maildir_uids("/m", "INBOX")  # type: ignore[misc]
    assert (uidvalidity, uidnext, uids) == (4242, 11, {"old": 7, "x": 8, "y": 9, "z": 10})
    assert a.maildir_uids("/m", "Sent") is None and a.maildir_uids("/other", "INBOX") is None
    got = a.assign_maildir_uids("/m", "Sent", [], lambda: (1, 1, {}))
    assert got == MaildirUids(1, 1, {})


def test_budget_usage_adds_up_per_account_direction_and_day(opener):
    a, b = opener(), opener()  # two runs (or batch rows) of one account, side by side
    assert a.budget_used("alice@imap.x:993", "download", "2024-05-01") == 0
    a.add_budget_usage("alice@imap.x:993", "download", "2024-05-01", 1_000)
    b.add_budget_usage("alice@imap.x:993", "download", "2024-05-01", 234)
    assert a.budget_used("alice@imap.x:993", "download", "2024-05-01") == 1_234
    assert b.budget_used("alice@imap.x:993", "download", "2024-05-01") == 1_234
    # Each direction, day and account counts apart.
    assert a.budget_used("alice@imap.x:993", "upload", "2024-05-01") == 0
    assert a.budget_used("alice@imap.x:993", "download", "2024-05-02") == 0
    assert a.budget_used("bob@imap.x:993", "download", "2024-05-01") == 0


# --- the ledger's rules, with lists of (uid, key) ---------------------------------------------------


def test_ledger_takes_no_endpoint():
    """The ledger only talks to the store: reading the target is the engine's (reconcile.py)."""
    src = inspect.getsource(ledger_module)
    assert "fetch_meta" not in src and "import Endpoint" not in src
    for name in ("begin_scan", "learn", "resync", "finish_scan", "agrees"):
        params = inspect.signature(getattr(Ledger, name)).parameters
        assert "target" not in params


def test_first_scan_is_full_and_learns_every_message(store):
    ledger = Ledger(store)
    s = st(uidnext=4, exists=3)
    assert ledger.begin_scan(F, s) == ScanPlan(full=True)
    assert ledger.resync(F, s, [(1, "a"), (2, "b"), (3, "a"), (9, "c")], nobody) == 3  # 9 >= UIDNEXT: later
    ledger.finish_scan(F, s, nobody)
    assert by_uid(store) == {1: "a", 2: "b", 3: "a"}
    assert ledger.counts(F, ["a", "b", "c"]) == {"a": 2, "b": 1, "c": 0}
    assert ledger.agrees(F, s)
    assert store.ledger_scan(F) == LedgerScan(7, 4)
    assert ledger.begin_scan(F, s) == ScanPlan(full=False)  # nothing new
    assert ledger.begin_scan(F, st(uidnext=6, exists=5)) == ScanPlan(full=False, uids=[4, 5])


def test_incremental_learn_and_own_appends(store):
    ledger = Ledger(store)
    s = st(uidnext=3, exists=2)
    ledger.resync(F, s, [(1, "a"), (2, "b")], nobody)
    ledger.finish_scan(F, s, nobody)
    # Our own APPEND with APPENDUID: every UID since the scan is known, nothing to read.
    rid = ledger.claim(F, "c", "j", "me", "src")
    ledger.confirm(rid, 3, 7)
    assert ledger.begin_scan(F, st(uidnext=4, exists=3)) == ScanPlan(full=False)
    # Another tool put two messages there: read them.
    s2 = st(uidnext=6, exists=5)
    plan = ledger.begin_scan(F, s2)
    assert plan == ScanPlan(full=False, uids=[3, 4, 5])
    assert ledger.learn(F, 7, [(3, "c"), (4, "d"), (5, "a")], nobody) == 2  # UID 3 is known already
    ledger.finish_scan(F, s2, nobody)
    assert by_uid(store) == {1: "a", 2: "b", 3: "c", 4: "d", 5: "a"}
    assert ledger.agrees(F, s2)
    assert ledger.uid_of(rid) == 3 and ledger.uid_of(999_999) is None
    assert ledger.present_ids(F) == {r.id for r in rows(store)}


def test_claim_of_a_live_owner_is_in_flight(store):
    ledger = Ledger(store)
    s = st(uidnext=2, exists=1)
    ledger.resync(F, s, [(1, "a")], nobody)
    ledger.finish_scan(F, s, nobody)
    live = ledger.claim(F, "k", "j", "live", "S\x001\x001")
    assert ledger.counts(F, ["k"])["k"] == 1  # counts as present for every other decision
    # The target shows a message with that key: most likely the live attempt's own APPEND.
    s2 = st(uidnext=3, exists=2)
    assert ledger.begin_scan(F, s2) == ScanPlan(full=False, uids=[2])
    assert ledger.learn(F, 7, [(2, "k")], alive_only("live")) == 0
    ledger.finish_scan(F, s2, alive_only("live"))
    assert store.ledger_row(live).state == "claimed"  # type: ignore[union-attr]
    assert ledger.agrees(F, s2)  # 1 row with a UID + 1 in flight covers the 2 messages
    ledger.confirm(live, 2, 7)  # its APPENDUID arrives
    assert by_uid(store) == {1: "a", 2: "k"} and len(rows(store)) == 2


def test_claim_of_a_dead_owner_found_on_the_target_becomes_present(store):
    """The APPEND happened but its OK never arrived: no second copy."""
    ledger = Ledger(store)
    s = st(uidnext=2, exists=1)
    ledger.resync(F, s, [(1, "a")], nobody)
    ledger.finish_scan(F, s, nobody)
    dead = ledger.claim(F, "k", "j", "dead", "S\x001\x001")
    s2 = st(uidnext=3, exists=2)
    assert ledger.begin_scan(F, s2) == ScanPlan(full=False, uids=[2])
    assert ledger.learn(F, 7, [(2, "k")], alive_only("live")) == 1
    ledger.finish_scan(F, s2, alive_only("live"))
    row = store.ledger_row(dead)
    assert row is not None and (row.state, row.uid, row.uidvalidity, row.src) == ("present", 2, 7, "S\x001\x001")
    assert len(rows(store)) == 2 and ledger.agrees(F, s2)
    assert ledger.orphans_of_job(F, "j") == ({"S\x001\x001": dead}, {})  # credited to its source message


def test_claim_of_a_dead_owner_not_found_is_deleted(store):
    """The APPEND never reached the target: the message is copied again."""
    ledger = Ledger(store)
    s = st(uidnext=1, exists=0)
    ledger.resync(F, s, [], nobody)
    dead = ledger.claim(F, "x", "j", "dead")
    unowned = ledger.claim(F, "y", "j", None)  # type: ignore[arg-type]
    live = ledger.claim(F, "k", "j", "live")
    ledger.finish_scan(F, s, alive_only("live"))
    assert store.ledger_row(dead) is None and store.ledger_row(unowned) is None
    assert store.ledger_row(live) is not None
    assert ledger.counts(F, ["x", "k"]) == {"x": 0, "k": 1}


def test_a_present_row_waiting_for_its_uid_is_preferred(store):
    """A server without UIDPLUS: our copy is present without a UID; the next scan attaches it,
    rather than adding a row for 'someone else's' message."""
    ledger = Ledger(store)
    s = st(uidnext=2, exists=1)
    ledger.resync(F, s, [(1, "a")], nobody)
    ledger.finish_scan(F, s, nobody)
    dead = ledger.claim(F, "k", "j", "dead")
    mine = ledger.claim(F, "k", "j", "me")
    ledger.confirm(mine, None, None)
    assert ledger.learn(F, 7, [(2, "k")], nobody) == 1
    assert store.ledger_row(mine).uid == 2 and store.ledger_row(dead).uid is None  # type: ignore[union-attr]
    ledger.finish_scan(F, st(uidnext=3, exists=2), nobody)
    assert store.ledger_row(dead) is None  # a second copy never arrived
    assert len(rows(store)) == 2


def test_full_resync_when_counts_disagree_releases_vanished_rows(store):
    ledger = Ledger(store)
    s = st(uidnext=4, exists=3)
    ledger.resync(F, s, [(1, "a"), (2, "b"), (3, "c")], nobody)
    ledger.finish_scan(F, s, nobody)
    ids = {r.uid: r.id for r in rows(store)}
    # Message 2 was expunged on the target: same UIDNEXT, one message fewer.
    s2 = st(uidnext=4, exists=2)
    assert ledger.begin_scan(F, s2) == ScanPlan(full=False)
    ledger.finish_scan(F, s2, nobody)
    assert not ledger.agrees(F, s2)
    assert ledger.resync(F, s2, [(1, "a"), (3, "c")], nobody) == 0
    assert by_uid(store) == {1: "a", 3: "c"}
    assert {r.uid: r.id for r in rows(store)} == {1: ids[1], 3: ids[3]}  # rows keep their ids
    assert ledger.agrees(F, s2)


def test_full_resync_leaves_a_live_attempts_row_waiting_for_its_uid(store):
    ledger = Ledger(store)
    s = st(uidnext=2, exists=1)
    ledger.resync(F, s, [(1, "a")], nobody)
    live = ledger.claim(F, "b", "j", "live")
    ledger.confirm(live, None, None)  # present, UID not known yet
    dead = ledger.claim(F, "c", "j", "dead")
    ledger.confirm(dead, None, None)
    assert ledger.resync(F, s, [(1, "a")], alive_only("live")) == 0
    assert store.ledger_row(live) is not None  # waits for the next scan
    assert store.ledger_row(dead) is None  # its message is not on the target: gone


def test_full_resync_drops_a_second_row_claiming_one_uid(store):
    ledger = Ledger(store)
    s = st(uidnext=2, exists=1)
    a = store.ledger_insert(F, "a", "present", uidvalidity=7, uid=1)
    b = store.ledger_insert(F, "a", "present", uidvalidity=7, uid=1)  # a UID guessed for the wrong row
    ledger.finish_scan(F, s, nobody)
    assert not ledger.agrees(F, s)
    assert ledger.resync(F, s, [(1, "a")], nobody) == 0
    assert store.ledger_row(a).uid == 1 and store.ledger_row(b) is None  # type: ignore[union-attr]


def test_new_uidvalidity_rematches_every_row_by_key_before_dead_claims_go(store):
    ledger = Ledger(store)
    s = st(uidnext=3, exists=2)
    ledger.resync(F, s, [(1, "a"), (2, "b")], nobody)
    ledger.finish_scan(F, s, nobody)
    ids = {r.key: r.id for r in rows(store)}
    dead = ledger.claim(F, "c", "j", "dead")  # APPENDed by a run that died, just before the change
    # The target folder was recreated: new UIDVALIDITY, new UIDs, "b" is gone, "c" did arrive.
    s2 = st(uidnext=3, exists=2, uidvalidity=8)
    assert ledger.begin_scan(F, s2) == ScanPlan(full=True)
    assert not store.ledger_has_uids(F)  # every stored UID meant nothing any more
    assert ledger.resync(F, s2, [(1, "a"), (2, "c")], nobody) == 0  # all of them were ours
    ledger.finish_scan(F, s2, nobody)
    assert {r.uid: r.id for r in rows(store)} == {1: ids["a"], 2: dead}
    assert all(r.uidvalidity == 8 for r in rows(store))
    assert store.ledger_scan(F) == LedgerScan(8, 3)


def test_unknown_uidvalidity_with_uids_is_a_full_scan(store):
    """Rows with UIDs but no scan state (a journal from before scans were kept)."""
    store.ledger_insert(F, "a", "present", uidvalidity=7, uid=1)
    assert Ledger(store).begin_scan(F, st(uidnext=2, exists=1)) == ScanPlan(full=True)
    assert not store.ledger_has_uids(F)


def test_set_target_sizes_and_release(store):
    ledger = Ledger(store)
    rid = ledger.claim(F, "k", "j", "me")
    with store.tx():
        ledger.confirm(rid, 5, 7)
        ledger.set_target_sizes({rid: 4321})
    assert store.ledger_row(rid).t_size == 4321  # type: ignore[union-attr]
    ledger.release(rid)
    assert store.ledger_row(rid) is None


# --- the engine's half: reading the target -----------------------------------------------------


class MemoryTarget:
    """A target folder in memory: fetch_meta is all the reconcile reads."""

    def __init__(self, uidvalidity: int = 7) -> None:
        self.uidvalidity = uidvalidity
        self.msgs: dict[int, bytes] = {}
        self.uidnext = 1
        self.reads: list[list[int] | None] = []

    def add(self, mid: str) -> int:
        uid = self.uidnext
        self.msgs[uid] = f"Message-ID: <{mid}@x>\r\nSubject: {mid}\r\n".encode()
        self.uidnext += 1
        return uid

    def status(self, folder: str) -> FolderStatus:
        return FolderStatus(self.uidvalidity, self.uidnext, len(self.msgs))

    def fetch_meta(self, folder: str, uids: list[int] | None, *, with_keys: bool = True,
                   changed_since: int | None = None) -> Iterator[MessageMeta]:
        self.reads.append(None if uids is None else list(uids))
        for uid in sorted(self.msgs):
            if uids is None or uid in uids:
                yield MessageMeta(uid=uid, size=10, flags=(), internaldate=None, header=self.msgs[uid])

    def key(self, uid: int) -> str:
        return key_of(MessageMeta(uid=uid, size=10, flags=(), internaldate=None, header=self.msgs[uid]))


def test_reconcile_with_target_reads_only_what_is_needed(store):
    ledger, t = Ledger(store), MemoryTarget()
    for i in range(3):
        t.add(f"m{i}")
    assert reconcile_with_target(ledger, t, F, t.status(F), nobody) == 3  # type: ignore[arg-type]
    assert t.reads == [None]  # never scanned: everything
    t.reads.clear()
    assert reconcile_with_target(ledger, t, F, t.status(F), nobody) == 0  # type: ignore[arg-type]
    assert t.reads == []  # nothing new: nothing read
    new = t.add("m3")
    assert reconcile_with_target(ledger, t, F, t.status(F), nobody) == 1  # type: ignore[arg-type]
    assert t.reads == [[new]]
    t.reads.clear()
    del t.msgs[2]  # expunged by someone: the counts disagree -> everything again
    assert reconcile_with_target(ledger, t, F, t.status(F), nobody) == 0  # type: ignore[arg-type]
    assert t.reads == [None]
    assert by_uid(store) == {u: t.key(u) for u in t.msgs}


def test_reconcile_with_target_recovers_a_crashed_append(store):
    ledger, t = Ledger(store), MemoryTarget()
    t.add("m0")
    reconcile_with_target(ledger, t, F, t.status(F), nobody)  # type: ignore[arg-type]
    landed = t.add("m1")  # its APPEND landed, the OK never came back
    done = ledger.claim(F, t.key(landed), "j", "dead", "S\x001\x001")
    lost = ledger.claim(F, "m:never@x", "j", "dead", "S\x001\x002")  # never reached the target
    live = ledger.claim(F, "m:inflight@x", "j", "live", "S\x001\x003")
    reconcile_with_target(ledger, t, F, t.status(F), alive_only("live"))  # type: ignore[arg-type]
    assert store.ledger_row(done).uid == landed  # type: ignore[union-attr]
    assert store.ledger_row(lost) is None and store.ledger_row(live) is not None
    assert ledger.orphans_of_job(F, "j") == ({"S\x001\x001": done}, {})


def test_reconcile_with_target_learns_in_batches(store, monkeypatch):
    from migrate.dedupe import reconcile as reconcile_module

    monkeypatch.setattr(reconcile_module, "LEARN_BATCH", 2)
    ledger, t = Ledger(store), MemoryTarget()
    t.add("m0")
    reconcile_with_target(ledger, t, F, t.status(F), nobody)  # type: ignore[arg-type]
    for i in range(5):
        t.add(f"n{i}")
    calls: list[int] = []
    real = ledger.learn
    monkeypatch.setattr(ledger, "learn", lambda f, v, found, alive: calls.append(len(found)) or real(f, v, found, alive))
    assert reconcile_with_target(ledger, t, F, t.status(F), nobody) == 5  # type: ignore[arg-type]
    assert calls == [2, 2, 1]


# --- the SQLite file: migrations, key recipe, read-only folder map ------------------------------------

# The schema of a journal written by the version before migrations were recorded (every table and
# column it had, in the order it created them), and of an older one still (before claims named
# their owner and before the target's sizes and state were kept).
OLD_SCHEMA = [
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, source TEXT, target TEXT, source_email TEXT, target_email TEXT,"
    " state TEXT, created_at TEXT, updated_at TEXT, command TEXT, last_report TEXT)",
    "CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT, pid INTEGER, started_at TEXT,"
    " finished_at TEXT, status TEXT, report TEXT, progress TEXT)",
    "CREATE TABLE folders (job_id TEXT, source_folder TEXT, target_folder TEXT, uidvalidity INTEGER,"
    " uidnext INTEGER, exists_ INTEGER, highestmodseq INTEGER, complete INTEGER DEFAULT 0, updated_at TEXT,"
    " t_uidvalidity INTEGER, t_uidnext INTEGER, t_exists INTEGER, t_highestmodseq INTEGER,"
    " PRIMARY KEY (job_id, source_folder))",
    "CREATE TABLE messages (job_id TEXT, source_folder TEXT, uidvalidity INTEGER, uid INTEGER, key TEXT,"
    " flags TEXT, state TEXT, ledger_id INTEGER, reason TEXT, size INTEGER,"
    " PRIMARY KEY (job_id, source_folder, uidvalidity, uid))",
    "CREATE INDEX messages_ledger ON messages (job_id, ledger_id)",
    "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, folder TEXT, uidvalidity INTEGER, uid INTEGER,"
    " key TEXT, state TEXT, job_id TEXT, owner TEXT, src TEXT, t_size INTEGER)",
    "CREATE INDEX ledger_key ON ledger (folder, key)",
    "CREATE INDEX ledger_uid ON ledger (folder, uid)",
    "CREATE TABLE ledger_scan (folder TEXT PRIMARY KEY, uidvalidity INTEGER, scanned_uidnext INTEGER)",
    "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT, kind TEXT, recipients TEXT,"
    " lang TEXT, smtp TEXT, sender TEXT, state TEXT, error TEXT, attempts INTEGER, updated_at TEXT, reports TEXT)",
    "CREATE TABLE folder_map (job_id TEXT, source_folder TEXT, target_folder TEXT, reason TEXT, updated_at TEXT,"
    " PRIMARY KEY (job_id, source_folder))",
    "CREATE TABLE maildir_folders (store TEXT, folder TEXT, uidvalidity INTEGER, uidnext INTEGER,"
    " PRIMARY KEY (store, folder))",
    "CREATE TABLE maildir_uids (store TEXT, folder TEXT, uidvalidity INTEGER, filename_base TEXT, uid INTEGER,"
    " PRIMARY KEY (store, folder, uidvalidity, filename_base))",
]
OLDER_SCHEMA = [
    sql.replace(", owner TEXT, src TEXT, t_size INTEGER", "").replace(
        " t_uidvalidity INTEGER, t_uidnext INTEGER, t_exists INTEGER, t_highestmodseq INTEGER,", "")
    for sql in OLD_SCHEMA if "maildir" not in sql and "folder_map" not in sql
]


def _old_journal(path: Path, schema: list[str], *, key_version: object = KEY_VERSION) -> None:
    full = schema is OLD_SCHEMA
    with sqlite3.connect(path) as c:
        for sql in schema:
            c.execute(sql)
        c.execute("INSERT INTO meta VALUES ('schema', '1')")
        c.execute("INSERT INTO meta VALUES ('key_version', ?)", (str(key_version),))
        c.execute("INSERT INTO jobs VALUES ('j', 'src', 'dst', NULL, 'b@y', 'ok', 'c', 'u', 'cmd', '{}')")
        c.execute("INSERT INTO runs (job_id, pid, started_at, status, report) VALUES ('j', 1, 's', 'ok', '{}')")
        if full:
            c.execute("INSERT INTO folders VALUES ('j', 'INBOX', 'INBOX', 5, 10, 9, 77, 1, 'u', 1, 2, 3, 4)")
            c.execute("INSERT INTO ledger VALUES (1, 'INBOX', 7, 1, 'm:a', 'present', 'j', 'o', 's', 123)")
            c.execute("INSERT INTO folder_map VALUES ('j', 'INBOX', 'INBOX', 'same', 'u')")
            c.execute("INSERT INTO maildir_folders VALUES ('/m', 'INBOX', 42, 3)")
            c.execute("INSERT INTO maildir_uids VALUES ('/m', 'INBOX', 42, 'f1', 2)")
        else:
            c.execute("INSERT INTO folders VALUES ('j', 'INBOX', 'INBOX', 5, 10, 9, 77, 1, 'u')")
            c.execute("INSERT INTO ledger VALUES (1, 'INBOX', 7, 1, 'm:a', 'present', 'j')")
        c.execute("INSERT INTO ledger_scan VALUES ('INBOX', 7, 2)")
        c.execute("INSERT INTO messages VALUES ('j', 'INBOX', 5, 1, 'm:a', '[\"\\\\Seen\"]', 'copied', 1, NULL, 100)")
        c.execute("INSERT INTO notifications (job_id, kind, recipients, lang, smtp, sender, state, attempts,"
                  " updated_at, reports) VALUES ('j', 'job', '[]', 'en', '{}', 's', 'failed', 1, 'u', '[]')")
    c.close()


def test_fresh_journal_records_every_migration(tmp_path):
    s = SQLiteStore(tmp_path / "j.sqlite")
    try:
        assert sqlite_schema.applied(s.conn) == [name for name, _ in sqlite_schema.MIGRATIONS]
        assert sqlite_schema.pending(s.conn) == []
        assert s.conn.execute("SELECT value FROM meta WHERE name='key_version'").fetchone()[0] == str(KEY_VERSION)
    finally:
        s.close()


@pytest.mark.parametrize("schema", [OLD_SCHEMA, OLDER_SCHEMA], ids=["before-migrations", "older"])
def test_existing_journal_upgrades_in_place_and_keeps_its_data(tmp_path, schema):
    path = tmp_path / "j.sqlite"
    _old_journal(path, schema)
    s = SQLiteStore(path)
    try:
        assert sqlite_schema.pending(s.conn) == []
        cols = {r[1] for r in s.conn.execute("PRAGMA table_info(ledger)")}
        assert {"owner", "src", "t_size"} <= cols
        assert {"t_uidvalidity", "t_highestmodseq"} <= {r[1] for r in s.conn.execute("PRAGMA table_info(folders)")}
        (job,) = s.jobs()
        assert (job.job_id, job.target_email, job.state) == ("j", "b@y", "ok")
        assert [r.status for r in s.runs("j")] == ["ok"]
        rec = s.folder("j", "INBOX")
        assert rec is not None and (rec.uidvalidity, rec.uidnext, rec.complete) == (5, 10, True)
        assert rec.target_status == ((1, 2, 3, 4) if schema is OLD_SCHEMA else None)
        assert s.messages("j", "INBOX", 5) == {1: MessageRow(1, "m:a", ("\\Seen",), "copied", 1, None, 100)}
        row = s.ledger_row(1)
        assert row is not None and (row.key, row.state, row.uid) == ("m:a", "present", 1)
        assert s.ledger_scan("INBOX") == LedgerScan(7, 2)
        assert [n.state for n in s.notifications()] == ["failed"]
        if schema is OLD_SCHEMA:
            assert (row.owner, row.src, row.t_size) == ("o", "s", 123)
            assert s.folder_map("j") == {"INBOX": "INBOX"}
            assert s.maildir_uids("/m", "INBOX") == MaildirUids(42, 3, {"f1": 2})
        # and the upgraded file works like a new one
        rid = Ledger(s).claim("INBOX", "m:b", "j", "o2", "src")
        s.save_folder_map("j", [FolderMapRow("Sent", "Sent", "same")])
        s.save_folder("j", FolderRecord("Sent", "Sent", 1, 1, 0, None, True, (1, 1, 0, None)))
        assert s.ledger_row(rid) is not None and s.folder("j", "Sent").target_status == (1, 1, 0, None)  # type: ignore[union-attr]
    finally:
        s.close()
    s = SQLiteStore(path)  # opens again with nothing to do
    try:
        assert sqlite_schema.applied(s.conn) == [name for name, _ in sqlite_schema.MIGRATIONS]
    finally:
        s.close()


def test_journal_with_keys_of_another_recipe_forgets_them_after_the_upgrade(tmp_path):
    path = tmp_path / "j.sqlite"
    _old_journal(path, OLD_SCHEMA, key_version=KEY_VERSION - 1)
    s = SQLiteStore(path)
    try:
        assert s.messages("j", "INBOX", 5) == {} and s.ledger_row(1) is None and s.ledger_scan("INBOX") is None
        assert s.folder("j", "INBOX").complete is False  # type: ignore[union-attr]
        assert s.jobs() and s.folder_map("j") == {"INBOX": "INBOX"} and s.notifications()  # these stay
        assert s.maildir_uids("/m", "INBOX") is not None
    finally:
        s.close()


def test_up_to_date_journal_opens_without_sqlite_utils(tmp_path):
    """A no-op re-run starts fast: the migration check is plain sqlite3."""
    path = tmp_path / "j.sqlite"
    SQLiteStore(path).close()
    code = ("import sys; from pathlib import Path; from migrate.store.sqlite import SQLiteStore;"
            f" SQLiteStore(Path({str(path)!r})).close(); print('sqlite_utils' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_two_connections_opening_a_new_journal_together(tmp_path):
    import threading

    path = tmp_path / "j.sqlite"
    errors: list[BaseException] = []
    stores: list[SQLiteStore] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            s = SQLiteStore(path)
            with lock:
                stores.append(s)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert not errors
    with sqlite3.connect(path) as c:
        n = c.execute("SELECT COUNT(*) FROM _sqlite_migrations").fetchone()[0]
    c.close()
    assert n == len(sqlite_schema.MIGRATIONS)


def test_read_folder_map_writes_nothing(tmp_path):
    path = tmp_path / "j.sqlite"
    assert read_folder_map(path, "j") == {} and not path.exists()
    s = SQLiteStore(path)
    s.save_folder_map("j", [FolderMapRow("A", "B", "r")])
    s.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert read_folder_map(path, "j") == {"A": "B"} and read_folder_map(path, "k") == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_read_budget_used_writes_nothing(tmp_path):
    path = tmp_path / "_budgets.sqlite"
    assert read_budget_used(path, "a@h:993", "download", "2024-05-01") == 0 and not path.exists()
    s = SQLiteStore(path)
    s.add_budget_usage("a@h:993", "download", "2024-05-01", 77)
    s.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert read_budget_used(path, "a@h:993", "download", "2024-05-01") == 77
    assert read_budget_used(path, "a@h:993", "upload", "2024-05-01") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_journal_module_keeps_its_names():
    from migrate import journal

    assert journal.Journal is SQLiteStore and journal.MessageRecord is MessageRow
    for name in ("FolderRecord", "JobGuard", "OwnerLock", "folder_lock", "owner_alive", "lock_dir",
                 "read_folder_map", "default_journal_path", "job_id_for", "state_home", "open_store"):
        assert hasattr(journal, name), name
