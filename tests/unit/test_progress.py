"""Progress: the phases (planning, scanning, copying), totals that never move once copying has
started, the ETA from bytes (bytes still to copy / byte rate measured since copying started), and
the progress line. A fake clock: no waiting."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.engine import JobSpec, start
from migrate.engine.progress import Progress, byte_rate, eta_seconds, percent
from migrate.errors import FolderRefused
from migrate.ui import human_duration, progress_line, progress_text
from tests.support.memory_endpoint import MemoryMailbox


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _scanned_job(clock: Clock) -> Progress:
    """Two folders planned (100 + 50 messages), both scanned: 4 MB and 1 MB to copy."""
    p = Progress(started=clock(), clock=clock)
    for name in ("INBOX", "Sent", "Excluded"):
        p.add_folder(name, None if name == "Excluded" else name)
    p.folder_state("Excluded", "skipped")
    p.planned({"INBOX": 100, "Sent": 50})
    p.scan_phase(2)
    for name, n, nbytes in (("INBOX", 100, 4_000_000), ("Sent", 50, 1_000_000)):
        p.folder_state(name, "scanning")
        p.folder_total(name, n)
        p.folder_bytes(name, nbytes)
        p.folder_state(name, "scanned")
    return p


def test_eta_arithmetic() -> None:
    assert byte_rate(1_000_000, 2.0) == 500_000
    assert byte_rate(1_000_000, 0.5) is None  # under a second of copying: nothing measured yet
    assert byte_rate(0, 10.0) is None
    assert eta_seconds(3_000_000, 500_000) == 6.0
    assert eta_seconds(0, None) == 0.0  # nothing left: done, whatever the rate
    assert eta_seconds(-5, 100.0) == 0.0
    assert eta_seconds(10, None) is None  # no rate yet: no ETA
    assert percent(1, 3) == 33 and percent(2, 3) == 66 and percent(3, 3) == 100
    assert percent(999, 1000) == 99  # 100 only when all of it is done
    assert percent(0, 0) == 100


def test_eta_from_bytes_measured_since_copying_started() -> None:
    clock = Clock()
    p = _scanned_job(clock)
    clock.t = 30.0  # the scan took 30 s: not part of the rate
    p.copy_phase()
    p.folder_state("INBOX", "copying")
    clock.t = 32.0
    p.count("INBOX", copied=20, nbytes=1_000_000)
    s = p.snapshot()
    assert s["phase"] == "copying"
    assert s["rate_bytes_s"] == 500_000  # 1 MB in the 2 s since copying started
    assert s["total_bytes"] == 5_000_000 and s["bytes_done"] == 1_000_000
    assert s["eta_s"] == 8  # 4 MB left at 0.5 MB/s
    assert s["percent"] == 20  # of the bytes
    assert (s["done_messages"], s["total_messages"]) == (20, 150)
    # messages found on the target are decided without being copied: fewer bytes left, same rate
    p.count("INBOX", duplicates=30, settled_bytes=2_000_000)
    s = p.snapshot()
    assert s["eta_s"] == 4 and s["percent"] == 60 and s["rate_bytes_s"] == 500_000
    # a folder that ends (done, failed) has nothing left to copy
    p.folder_state("INBOX", "done")
    clock.t = 34.0
    s = p.snapshot()
    assert s["bytes_done"] == 4_000_000 and s["eta_s"] == 4  # Sent's 1 MB at 0.25 MB/s


def test_totals_never_move_once_copying() -> None:
    clock = Clock()
    p = _scanned_job(clock)
    p.copy_phase()
    before = p.snapshot()
    p.folder_total("INBOX", 300)  # a late rescan must not move the denominators
    p.folder_bytes("Sent", 9_000_000)
    p.planned({"INBOX": 1})
    after = p.snapshot()
    assert (after["total_messages"], after["total_bytes"]) == (before["total_messages"], before["total_bytes"])
    assert (after["total_messages"], after["total_bytes"]) == (150, 5_000_000)
    p.count("INBOX", duplicates=200)  # counted twice (a retried part): never more than the total
    assert p.snapshot()["done_messages"] == 150


def test_scan_phase_counts_folders() -> None:
    clock = Clock()
    p = Progress(started=0.0, clock=clock)
    for name in ("INBOX", "Sent", "Work"):
        p.add_folder(name, name)
    p.planned({"INBOX": 10, "Sent": 5, "Work": 7})
    assert p.snapshot()["phase"] == "planning"
    p.scan_phase(3)
    p.folder_state("INBOX", "scanning")
    p.folder_state("INBOX", "scanned")
    p.folder_state("Sent", "scanning")
    p.folder_state("Sent", "failed")  # failed while being read: read as far as it goes
    s = p.snapshot()
    assert (s["phase"], s["folders_scanned"], s["folders_to_scan"], s["total_messages"]) == ("scanning", 2, 3, 22)
    assert s["eta_s"] is None
    assert progress_text(s) == "scanning folders: 2/3  22 messages"


def test_a_driver_without_phases_still_shows_copying() -> None:
    p = Progress(started=0.0, clock=lambda: 5.0)
    p.add_folder("INBOX", "INBOX")
    p.folder_state("INBOX", "copying")
    p.folder_total("INBOX", 10)
    p.count("INBOX", copied=5, nbytes=500)
    assert p.snapshot()["phase"] == "copying"


def test_progress_line_format() -> None:
    clock = Clock()
    p = _scanned_job(clock)
    p.add_folder("Work", "Work")
    clock.t = 10.0
    p.copy_phase()
    for name in ("INBOX", "Sent"):
        p.folder_state(name, "copying")
    clock.t = 12.0
    p.count("INBOX", copied=20, nbytes=1_000_000)
    p.count("Sent", failed=2, settled_bytes=2_000)
    p.retried("INBOX: connection-lost, retrying in 1.0s")
    s = p.snapshot()
    assert progress_text(s) == ("20%  messages 22/150  1.0 MB of 5.0 MB  500.0 KB/s  ETA 8s  failed 2  retries 1"
                                "  folders 1/4  copying INBOX, Sent  (INBOX: connection-lost, retrying in 1.0s)")
    line = progress_line(s)  # a terminal: the event on a second, dim line
    assert line.plain.splitlines() == [progress_text({**s, "last_event": ""}),
                                       "  INBOX: connection-lost, retrying in 1.0s"]
    assert "\n" not in progress_text(s)  # a log: one line per update


def test_progress_line_of_an_older_snapshot() -> None:
    """A journal written by an earlier version: no phase, no byte totals."""
    old = {"elapsed_s": 3.0, "copied": 5, "duplicates": 1, "failed": 0, "bytes": 2048, "total_messages": 12,
           "done_messages": 6, "rate_msgs_s": 2.0, "eta_s": None, "folders_done": 1, "folders_total": 3,
           "retries": 0, "last_event": ""}
    assert progress_text(old) == "50%  messages 6/12  2.0 KB  ETA -  folders 1/3"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (8.4, "8s"), (59.6, "1m00s"), (185, "3m05s"),
                                               (3720, "1h02m")])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


# --- the job's scan phase (in-memory endpoints, no server) -------------------------------------


def _box(label: str, content: dict[str, int]) -> MemoryMailbox:
    box = MemoryMailbox(label)
    for folder, n in content.items():
        box.add_folder(folder)
        for i in range(n):
            box.add(folder, (f"Message-ID: <m{i}.{folder}@example.test>\r\nSubject: {i}\r\n\r\n"
                             f"body {i} {'x' * (i % 50)}\r\n").encode())
    return box


def test_a_folder_that_fails_while_read_fails_whole_and_alone(tmp_path: Path) -> None:
    """The scan phase reads every folder first; a big folder (copied in parts) that the source
    refuses to list fails with all its messages, and the others are still copied."""
    src, dst = _box("src", {"INBOX": 30, "Big": 1200, "Work": 7}), _box("dst", {})
    src.faults = lambda op, folder: FolderRefused("NO cannot open Big") if (op, folder) == ("fetch_meta", "Big") else None
    progress = Progress()
    spec = JobSpec(source_label="src", target_label="dst", src_factory=src.factory(), dst_factory=dst.factory(),
                   job_id="job-1", journal_path=tmp_path / "j.sqlite", retry_base=0.01, connections=4)
    report = start(spec, progress=progress).wait(60)
    by_name = {f.source: f for f in report.folders}
    assert (by_name["Big"].failed, by_name["Big"].copied) == (1200, 0)  # every part of it, not one part's share
    assert "cannot open Big" in (by_name["Big"].note or "")
    assert (by_name["INBOX"].copied, by_name["Work"].copied) == (30, 7)
    assert report.status == "partial"
    snap = progress.snapshot()
    assert snap["phase"] == "copying" and snap["folders_scanned"] == snap["folders_to_scan"] == 3
    assert (snap["done_messages"], snap["total_messages"], snap["percent"], snap["eta_s"]) == (1237, 1237, 100, 0)
