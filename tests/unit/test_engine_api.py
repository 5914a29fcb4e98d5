"""The engine as a library (``migrate.engine``): the folder planner, the retry policy, and jobs
started through the API with their events, cancel and dry run - against in-memory endpoints
(``tests/support/memory_endpoint.py``): no server, no root."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from migrate.engine import JobHandle, JobSpec, events, start
from migrate.engine.folder_sync import Cancelled
from migrate.engine.planning import FolderCreator, Listing, count_refused, plan_job_folders
from migrate.engine.pool import RetryPolicy
from migrate.errors import AuthFailed, ConnectFailed, ConnectionLost, Throttled
from migrate.gate import WriteGate, dry_target
from migrate.report import FolderReport
from tests.support.memory_endpoint import MemoryMailbox


def msg(i: int, folder: str = "x") -> bytes:
    return (f"Message-ID: <m{i}.{folder}@example.test>\r\nFrom: a@example.test\r\nSubject: message {i}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody {i}\r\n").encode()


def mailbox(label: str, content: dict[str, int] | None = None, **kw) -> MemoryMailbox:
    box = MemoryMailbox(label, **kw)
    for folder, n in (content or {}).items():
        box.add_folder(folder)
        for i in range(n):
            box.add(folder, msg(i, folder), flags=("\\Seen",) if i % 2 else ())
    return box


def spec(src: MemoryMailbox, dst: MemoryMailbox, tmp_path: Path, **kw) -> JobSpec:
    return JobSpec(source_label=src.label, target_label=dst.label, src_factory=src.factory(),
                   dst_factory=dst.factory(), job_id="job-1", journal_path=tmp_path / "j.sqlite",
                   retry_base=0.01, **kw)


def collect(s: JobSpec, **kw) -> tuple[list[events.Event], JobHandle]:
    got: list[events.Event] = []
    handle = start(s, on_event=got.append, **kw)
    handle.wait(60)
    return got, handle


# --- the planner ------------------------------------------------------------------------------


def test_planner_maps_creates_and_records(tmp_path):
    src = mailbox("src", {"Work": 1, "Work/2023": 1, "Sent Items": 1})
    dst = mailbox("dst", {"Sent": 0})
    src.folders["Sent Items"].special_use = "\\Sent"
    dst.folders["Sent"].special_use = "\\Sent"
    s_ep, d_ep = src.factory()(), dst.factory()()
    listing = Listing.read(s_ep, d_ep)
    plan = plan_job_folders(listing, exclude=["Work/2023"])
    assert {m.source: m.target for m in plan.mappings} == {
        "INBOX": "INBOX", "Work": "Work", "Work/2023": None, "Sent Items": "Sent"}

    rows: list[list[tuple[str, str, str]]] = []
    created = FolderCreator(d_ep, listing, record=rows.append).create(plan)
    assert ("create", "Work") in dst.log and "Work" in dst.folders
    assert sorted(r[:2] for batch in rows for r in batch) == [("INBOX", "INBOX"), ("Sent Items", "Sent"),
                                                               ("Work", "Work")]
    assert created.refused == {} and created.renamed == []

    # A later run: what was recorded wins over the plan, and nothing is recorded twice.
    again = plan_job_folders(Listing.read(s_ep, d_ep), recorded={"Work": "Work-kept"})
    assert again.target_for("Work") == "Work-kept"


def test_planner_renames_refused_names_and_fails_a_folder_no_name_fits(tmp_path):
    src = mailbox("src", {"~backup": 1, "Bad": 2})
    dst = mailbox("dst", refuse_create=lambda name: name.startswith("~") or "Bad" in name)
    d_ep = dst.factory()()
    listing = Listing.read(src.factory()(), d_ep)
    refused: list[str] = []
    created = FolderCreator(d_ep, listing, reserved=["Files"],
                            on_refused=lambda source, why: refused.append(source)).create(plan_job_folders(listing))
    targets = {m.source: m.target for m in created.plan.mappings}
    assert targets["~backup"] == "_backup" and "_backup" in dst.folders
    assert [r["source"] for r in created.renamed] == ["~backup"]
    assert targets["Bad"] is None and refused == ["Bad"] and "refused" in created.refused["Bad"]

    reports = [FolderReport(source="Bad", target=None), FolderReport(source="~backup", target="_backup")]
    count_refused(reports, created.refused, {"Bad": 2})
    assert (reports[0].failed, reports[0].note.startswith("not created")) == (2, True)
    assert reports[1].failed == 0


def test_planner_behind_a_closed_gate_creates_nothing_and_the_folder_reads_empty():
    src = mailbox("src", {"Projects": 3})
    dst = mailbox("dst")
    gate, pending = WriteGate(open=False), set()
    d_ep = dry_target(dst.factory()(), gate, pending)
    listing = Listing.read(src.factory()(), d_ep)
    created = FolderCreator(d_ep, listing).create(plan_job_folders(listing))
    assert created.plan.target_for("Projects") == "Projects"
    assert "Projects" not in dst.folders and dst.log == []
    assert pending == {"Projects"} and [s.kind for s in gate.skipped] == ["create-folder"]
    assert d_ep.status("Projects").exists == 0 and list(d_ep.fetch_meta("Projects")) == []


# --- the retry policy ---------------------------------------------------------------------------


def test_retry_policy_waits_the_servers_hint_else_backs_off_with_jitter_capped():
    policy = RetryPolicy(retries=3, base=1.0, cancel=threading.Event())
    assert policy.delay(Throttled("slow down", delay=7.5), 5) == 7.5
    for n in range(10):
        d = policy.delay(ConnectionLost("gone"), n)
        full = min(2 ** n, 60)
        assert full / 2 <= d <= full


def test_retry_policy_stops_after_retries_without_headway_and_headway_resets_the_count():
    policy = RetryPolicy(retries=2, base=0.001, cancel=threading.Event())
    calls = []

    def fails() -> None:
        calls.append(1)
        raise ConnectionLost("gone")

    with pytest.raises(ConnectionLost):
        policy.call(fails)
    assert len(calls) == 3  # the attempt and two retries

    done = {"n": 0}
    retried: list[float] = []

    def moves_on() -> str:  # each attempt copies something before the connection drops
        done["n"] += 1
        if done["n"] < 6:
            raise ConnectionLost("gone again")
        return "finished"

    assert policy.call(moves_on, headway=lambda: done["n"], on_retry=lambda exc, d: retried.append(d)) == "finished"
    assert len(retried) == 5  # more than ``retries``: every attempt made headway


def test_retry_policy_first_connect_failure_is_fatal_later_ones_are_retried():
    policy = RetryPolicy(retries=3, base=0.001, cancel=threading.Event())
    calls = []

    def unreachable() -> None:
        calls.append(1)
        raise ConnectFailed("no route")

    with pytest.raises(ConnectFailed):
        policy.call(unreachable, first_connect_fatal=True)
    assert len(calls) == 1
    seq = iter([ConnectionLost("x"), ConnectFailed("restarting"), None])

    def flaky() -> str:
        exc = next(seq)
        if exc:
            raise exc
        return "ok"

    assert policy.call(flaky, first_connect_fatal=True) == "ok"
    with pytest.raises(AuthFailed):  # never retried
        policy.call(lambda: (_ for _ in ()).throw(AuthFailed("no")))


def test_retry_policy_wait_is_cancelled_by_the_jobs_event():
    cancel = threading.Event()
    policy = RetryPolicy(retries=5, base=30.0, cancel=cancel)
    threading.Timer(0.1, cancel.set).start()
    with pytest.raises(Cancelled):
        policy.call(lambda: (_ for _ in ()).throw(ConnectionLost("gone")))


# --- jobs through the API -------------------------------------------------------------------------


def test_events_in_order_and_the_report(tmp_path):
    src = mailbox("src", {"INBOX": 5, "Work": 7, "Empty": 0})
    dst = mailbox("dst")
    got, handle = collect(spec(src, dst, tmp_path, batch_count=3))
    report = handle.report
    assert handle.state == "done" and report.status == "ok" and report.totals.copied == 12
    assert sorted(dst.bodies("Work")) == sorted(src.bodies("Work"))

    kinds = [type(e).__name__ for e in got]
    planned = [e for e in got if isinstance(e, events.FolderPlanned)]
    assert kinds[:3] == ["FolderPlanned"] * 3 and kinds[-1] == "JobDone" and kinds.count("JobDone") == 1
    assert {(e.source, e.target, e.messages) for e in planned} == {
        ("INBOX", "INBOX", 5), ("Work", "Work", 7), ("Empty", "Empty", 0)}
    done = {e.report.source: e.report for e in got if isinstance(e, events.FolderDone)}
    assert sorted(done) == ["Empty", "INBOX", "Work"] and done["Work"].copied == 7
    progress = [e for e in got if isinstance(e, events.Progress)]
    assert progress and progress[-1].copied == 12 and progress[-1].total_messages == 12
    assert progress[-1].bytes == report.totals.bytes and progress[-1].total_bytes >= progress[-1].bytes
    assert [p.copied for p in progress] == sorted(p.copied for p in progress)
    assert got[-1].report is report

    # A re-run: nothing to copy; every folder done, unchanged.
    again, h2 = collect(spec(src, dst, tmp_path))
    assert h2.report.totals.copied == 0 and h2.report.totals.skipped_duplicates == 12
    assert len([e for e in again if isinstance(e, events.FolderDone)]) == 3


def test_event_iterator(tmp_path):
    src, dst = mailbox("src", {"INBOX": 2}), mailbox("dst")
    handle = start(spec(src, dst, tmp_path), stream=True)
    seen = [type(e).__name__ for e in handle.events()]
    assert seen[0] == "FolderPlanned" and seen[-1] == "JobDone" and "FolderDone" in seen
    with pytest.raises(RuntimeError):
        next(start(spec(src, dst, tmp_path)).events())


def test_message_failed_event(tmp_path):
    src, dst = mailbox("src"), mailbox("dst")
    src.add("INBOX", msg(1))
    src.add("INBOX", msg(2) + b"x" * 5000)  # over the target's size limit
    got, handle = collect(spec(src, dst, tmp_path, append_limit=2000))
    failed = [e for e in got if isinstance(e, events.MessageFailed)]
    assert [(e.folder, e.uid) for e in failed] == [("INBOX", 2)] and "too big" in failed[0].reason
    assert handle.report.status == "partial" and handle.report.totals.copied == 1


def test_a_dropped_connection_is_retried(tmp_path):
    src, dst = mailbox("src", {"INBOX": 6}), mailbox("dst")
    drops = {"n": 0}

    def fault(op: str, folder: str | None):
        if op == "append" and drops["n"] < 2:
            drops["n"] += 1
            return ConnectionLost("connection reset")
        return None

    dst.faults = fault
    got, handle = collect(spec(src, dst, tmp_path, batch_count=2))
    assert handle.report.status == "ok" and handle.report.totals.copied == 6
    assert handle.progress.retries == 2 and sorted(dst.bodies("INBOX")) == sorted(src.bodies("INBOX"))


def test_cancel_from_the_callback_stops_within_a_batch_and_a_rerun_completes(tmp_path):
    src, dst = mailbox("src", {"INBOX": 40, "Work": 40}), mailbox("dst")
    s = spec(src, dst, tmp_path, batch_count=5, connections=1)
    holder: dict[str, JobHandle] = {}
    got: list[events.Event] = []

    def on_event(e: events.Event) -> None:
        got.append(e)
        if isinstance(e, events.Progress) and e.copied:
            holder["h"].cancel()

    handle = holder["h"] = JobHandle(s, on_event=on_event)
    handle.start().wait(60)
    r = handle.report
    assert handle.state == "done" and r.status == "interrupted" and r.exit_code == 4
    assert r.error is not None and r.error.reference == "interrupted"
    in_target = sum(len(dst.bodies(f)) for f in dst.folders)
    assert 0 < r.totals.copied == in_target <= 10  # the batch in flight, and the prefetched one at most
    assert isinstance(got[-1], events.JobDone)
    assert len([e for e in got if isinstance(e, events.FolderDone)]) == len(r.folders)

    again, h2 = collect(s)
    assert h2.report.status == "ok" and h2.report.totals.copied == 80 - r.totals.copied
    for f in ("INBOX", "Work"):
        assert sorted(dst.bodies(f)) == sorted(src.bodies(f))


def test_cancel_before_start(tmp_path):
    src, dst = mailbox("src", {"INBOX": 3}), mailbox("dst")
    handle = JobHandle(spec(src, dst, tmp_path))
    handle.cancel("stopped by the service")
    report = handle.start().wait(60)
    assert report.status == "interrupted" and report.totals.copied == 0
    assert report.error.message == "stopped by the service" and dst.bodies("INBOX") == []


def test_job_that_cannot_begin_reports_and_reraises(tmp_path):
    src, dst = mailbox("src", {"INBOX": 1}), mailbox("dst")
    (tmp_path / "j.sqlite").write_text("not a database\n" * 100)
    got: list[events.Event] = []
    handle = start(spec(src, dst, tmp_path), on_event=got.append)
    with pytest.raises(Exception):  # noqa: B017 - whatever the journal raises, wait() re-raises it
        handle.wait(60)
    assert handle.state == "done" and isinstance(got[-1], events.JobDone)
    assert got[-1].report.status == "failed" and got[-1].report.error is not None


def test_dry_run_is_the_normal_path_with_the_gate_closed(tmp_path):
    src = mailbox("src", {"INBOX": 4, "Projects": 3})
    dst = mailbox("dst")
    dst.add("INBOX", msg(0, "INBOX"))  # already there
    gate = WriteGate(open=False)
    factory = dst.factory()

    def gated_factory():
        return factory()

    gated_factory.gate = gate  # as migrate.sides builds it: the job takes the target side's gate
    s = dataclasses.replace(spec(src, dst, tmp_path, batch_count=2), dst_factory=gated_factory, dry_run=True)
    got, handle = collect(s)
    r = handle.report
    assert r.status == "dry-run" and r.journal is None
    notes = {f.source: f.note for f in r.folders}
    assert notes["INBOX"].endswith("would copy 3, already present 1")
    assert notes["Projects"].endswith("would copy 3, already present 0")
    assert dst.log == [] and "Projects" not in dst.folders and len(dst.bodies("INBOX")) == 1
    assert list(tmp_path.iterdir()) == []  # no journal, no lock files
    kinds = {k.kind for k in gate.skipped}
    assert {"journal", "create-folder", "append"} <= kinds
    done = {e.report.source: e.report.copied for e in got if isinstance(e, events.FolderDone)}
    assert done == {"INBOX": 3, "Projects": 3}

    # What it said is what a real run then does.
    real, h = collect(spec(src, dst, tmp_path))
    assert {f.source: f.copied for f in h.report.folders} == done
