"""Interruptions: kill -9 at many points, connections cut mid-command, UIDVALIDITY changes.
After each, running the same import again leaves the target exactly equal to the source."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.mailbox import (
    ROOT,
    append,
    cli,
    cli_args,
    count,
    folders,
    import_job,
    msg,
    snapshot,
)
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

FOLDERS = ("INBOX", "Archive", "Archive/Deep", "Sent")


def _seed(user, n: int) -> None:
    with user.client() as c:
        for f in FOLDERS:
            if f != "INBOX" and not c.folder_exists(f):
                c.create_folder(f)
        for i in range(n):
            f = FOLDERS[i % len(FOLDERS)]
            flags = [b"\\Seen"] if i % 3 else [b"\\Flagged", b"$Label1"]
            body = msg(i, mid=None if i % 17 == 0 else "auto", extra=b"X-Pad: " + b"p" * (i * 37 % 4000) + b"\r\n")
            c.append(f, body, flags=flags)
        if n > 10:  # twins
            c.append("INBOX", msg(1000))
            c.append("INBOX", msg(1000))


def _assert_equal(src, dst) -> None:
    for f in FOLDERS:
        assert snapshot(dst, f) == snapshot(src, f), f


def test_kill_at_many_points_then_resume(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src, 240)
    journal = tmp_path / "j.sqlite"
    args = ["import", *cli_args("source", src), *cli_args("target", dst), "--journal", str(journal), "-q",
            "--connections", "2", "--batch-size", "7"]
    # Deterministic points: right after the Nth APPEND returned, before its journal commit.
    for n in (1, 3, 9, 14, 20, 1, 30):
        r = cli(*args, env={"MAILMIGRATE_FAULT": f"after-append:{n}"})
        assert r.returncode == -signal.SIGKILL, r.stderr
    # Timed points: whatever the process was doing.
    for delay in (0.3, 0.8):
        p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
    final = cli(*args)
    assert final.returncode == 0, final.stdout + final.stderr
    _assert_equal(src, dst)
    again = cli(*args, "--report", str(tmp_path / "r.json"))
    assert again.returncode == 0
    import json
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["totals"]["copied"] == 0
    assert rep["totals"]["skipped_duplicates"] == 242


@pytest.mark.parametrize("where", ["after-commit", "mid-literal"])
def test_target_connection_cut_during_append(dovecot, new_user, tmp_path, where):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src, 60)
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        if where == "after-commit":
            # The server committed the APPEND; the client never sees its OK.
            proxy.cut_when(b"[APPENDUID", "downstream")
            proxy.cut_when(b"[APPENDUID", "downstream")
        else:
            proxy.cut_when(b"APPEND", "upstream", offset=300)
        r = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port})
        assert proxy.cuts >= 1
    assert r.exit_code == 0, r.error
    _assert_equal(src, dst)


def test_source_connection_cut_and_stall(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src, 60)
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        proxy.cut_when(b"BODY.PEEK[]", "upstream")  # while asking for bodies
        proxy.cut_when(b"BODY[] {", "downstream", offset=2000)  # in the middle of a body literal
        r = import_job(src, dst, tmp_path, src_kw={"port": proxy.port})
        assert proxy.cuts >= 2
    assert r.exit_code == 0, r.error
    _assert_equal(src, dst)


def test_stalled_server_times_out_and_reconnects(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src, 20)
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        proxy.cut_when(b"APPEND", "upstream", offset=10)  # first cut, then a stall on the reconnect
        r = None

        def stall_soon() -> None:
            time.sleep(0.3)
            proxy.stall(3.0)

        import threading
        threading.Thread(target=stall_soon, daemon=True).start()
        r = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port, "timeout": 1.0})
    assert r.exit_code == 0, r.error
    _assert_equal(src, dst)


def test_uidvalidity_change_rescans_without_recopying(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(6):
        append(src, "Projects", msg(i))
    assert import_job(src, dst, tmp_path).totals.copied == 6
    # Recreate the folder on the source: same messages, new UIDVALIDITY, new UIDs.
    with src.client() as c:
        c.rename_folder("Projects", "Projects-old")
        c.create_folder("Projects")
        c.select_folder("Projects-old")
        c.copy(c.search("ALL"), "Projects")
        c.close_folder()
        c.delete_folder("Projects-old")
    append(src, "Projects", msg(99))
    r = import_job(src, dst, tmp_path)
    proj = next(f for f in r.folders if f.source == "Projects")
    assert proj.copied == 1
    assert "UIDVALIDITY" in (proj.note or "")
    assert count(dst, "Projects") == 7
    assert "Projects-old" not in folders(dst)


def _running_job(journal) -> bool:
    """Does a live process hold the lock of a job of this journal? (The first run's own lock.)"""
    from migrate.journal import JobGuard, lock_dir

    d = lock_dir(journal, create=False)
    return d.exists() and any(JobGuard.is_running(journal, p.name[4:-5]) for p in d.glob("job-*.lock"))


def test_rerun_while_running_is_refused(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src, 40)
    journal = tmp_path / "j.sqlite"
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        target = cli_args("target", dst)
        target[target.index("--target-port") + 1] = str(proxy.port)
        args = ["import", *cli_args("source", src), *target, "--journal", str(journal), "-q", "--connections", "1"]
        proxy.hold_when(b"APPEND")  # the first run waits at its first APPEND until we release it
        p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=dict(os.environ))
        try:
            deadline = time.monotonic() + 30
            while not _running_job(journal):
                assert p.poll() is None, p.communicate()
                assert time.monotonic() < deadline, "the first run never took its job lock"
                time.sleep(0.02)
            second = cli(*args)
            assert p.poll() is None  # the first one is still running: the refusal is about it
            assert second.returncode == 2, second.stdout + second.stderr
            assert "already running" in second.stderr
        finally:
            proxy.release()
            p.wait(120)
    assert p.returncode == 0, p.stderr.read() if p.stderr else ""
    _assert_equal(src, dst)


def test_big_folder_split_across_connections(dovecot, new_user, tmp_path):
    """A folder big enough to be copied by several connections at once: twins that fall into
    different parts both arrive, a kill mid-way and a resume leave it exact."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    twin = msg(5000, extra=b"X-Twin: yes\r\n")
    with src.client() as c:
        c.append("INBOX", twin)
        for i in range(1300):
            c.append("INBOX", msg(i, mid=None if i % 50 == 0 else "auto"))
        c.append("INBOX", twin)  # same bytes as the first message: lands in another part
    journal = tmp_path / "j.sqlite"
    args = ["import", *cli_args("source", src), *cli_args("target", dst), "--journal", str(journal), "-q",
            "--connections", "4", "--batch-size", "20", "--no-notify"]
    r = cli(*args, env={"MAILMIGRATE_FAULT": "after-append:700"})
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    assert 0 < count(dst, "INBOX") < 1302
    final = cli(*args, "--report", str(tmp_path / "r.json"))
    assert final.returncode == 0, final.stdout + final.stderr
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    import json
    rep = json.loads((tmp_path / "r.json").read_text())
    inbox = next(f for f in rep["folders"] if f["source"] == "INBOX")
    assert inbox["copied"] + inbox["skipped_duplicates"] == 1302
    again = cli(*args, "--report", str(tmp_path / "r2.json"))
    assert again.returncode == 0
    assert json.loads((tmp_path / "r2.json").read_text())["totals"]["copied"] == 0
