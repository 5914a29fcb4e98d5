"""The engine driven as a service would drive it (``migrate.engine``: start, events, cancel),
against real Dovecot: the events of a whole job in order, and a job cancelled from its event
callback that reports what it copied and is completed exactly by a re-run."""

from __future__ import annotations

from datetime import UTC, datetime

from migrate.api import ImportRequest, spec_for, start_import
from migrate.engine import JobHandle, events
from migrate.gate import WriteGate
from migrate.sides import build_side
from tests.support.mailbox import msg, side, snapshot

FOLDERS = ("INBOX", "Projects", "Archive/2023")


def seed(user, per_folder: dict[str, int]) -> None:
    with user.client() as c:
        for j, (folder, n) in enumerate(per_folder.items()):
            if not c.folder_exists(folder):
                c.create_folder(folder)
            for i in range(n):
                k = 1000 * j + i
                c.append(folder, msg(k, extra=f"X-Folder: {folder}\r\n".encode()),
                         flags=[b"\\Seen"] if i % 3 else [], msg_time=datetime(2020, 1 + i % 12, 3, tzinfo=UTC))


def request(src, dst, tmp_path, **kw) -> ImportRequest:
    return ImportRequest(source=side("source", src), target=side("target", dst), journal=tmp_path / "j.sqlite",
                         progress=False, retry_base=0.05, **kw)


def assert_exact(src, dst) -> None:
    for folder in FOLDERS:
        assert snapshot(dst, folder) == snapshot(src, folder), folder


def test_job_through_the_api_sends_its_events_in_order(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, {"INBOX": 12, "Projects": 7, "Archive/2023": 5})
    got: list[events.Event] = []
    handle = start_import(request(src, dst, tmp_path, batch_count=4), on_event=got.append)
    report = handle.wait(120)
    assert handle.state == "done" and report.status == "ok", report.error
    assert report.totals.copied == 24
    assert_exact(src, dst)

    kinds = [type(e).__name__ for e in got]
    planned = [e for e in got if isinstance(e, events.FolderPlanned)]
    n = len(planned)
    # Every folder planned first (the \Noselect parent "Archive" too), then the copy, JobDone last.
    assert kinds[:n] == ["FolderPlanned"] * n and kinds[-1] == "JobDone" and kinds.count("JobDone") == 1
    by_source = {e.source: e for e in planned}
    assert {f: by_source[f].messages for f in FOLDERS} == {"INBOX": 12, "Projects": 7, "Archive/2023": 5}
    assert all(by_source[f].target == f for f in FOLDERS)
    done = [e.report for e in got if isinstance(e, events.FolderDone)]
    assert sorted(r.source for r in done) == sorted(by_source)  # once per folder
    assert {r.source: r.copied for r in done if r.source in FOLDERS} == {"INBOX": 12, "Projects": 7, "Archive/2023": 5}
    progress = [i for i, k in enumerate(kinds) if k == "Progress"]
    last_done = max(i for i, k in enumerate(kinds) if k == "FolderDone")
    assert progress and n <= progress[0] < last_done
    final = got[progress[-1]]
    assert isinstance(final, events.Progress) and final.copied == 24 and final.bytes == report.totals.bytes
    assert got[-1].report is report


def test_cancel_from_the_callback_then_a_rerun_completes_exactly(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, {"INBOX": 150, "Projects": 60, "Archive/2023": 30})
    req = request(src, dst, tmp_path, batch_count=10, connections=1)
    gate = WriteGate()
    spec = spec_for(req, build_side(req.source, gate), build_side(req.target, gate))
    got: list[events.Event] = []
    holder: dict[str, JobHandle] = {}

    def on_event(e: events.Event) -> None:
        got.append(e)
        if isinstance(e, events.Progress) and e.copied:  # the first batch is in
            holder["job"].cancel()

    handle = holder["job"] = JobHandle(spec, on_event=on_event)
    first = handle.start().wait(120)
    assert handle.state == "done"
    assert (first.status, first.exit_code, first.error.reference) == ("interrupted", 4, "interrupted")
    in_target = 0
    with dst.client() as c:
        for folder in FOLDERS:
            if c.folder_exists(folder):
                in_target += c.select_folder(folder, readonly=True)[b"EXISTS"]
    # Stopped within the batch in flight (the next one may have been fetched, never sent).
    assert 0 < first.totals.copied == in_target <= 20
    assert isinstance(got[-1], events.JobDone) and got[-1].report is first
    assert len([e for e in got if isinstance(e, events.FolderDone)]) == len(first.folders)

    again = start_import(req).wait(300)
    assert again.status == "ok", again.error
    assert again.totals.copied == 240 - first.totals.copied and again.totals.failed == 0
    assert_exact(src, dst)
