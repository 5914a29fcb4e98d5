"""What a user sees of a job, against real Dovecot: the progress of a run (every folder read
first, then totals that never move while copying), ``status`` (one line per job, details with
``status JOB``, every failure with ``--failures``, ``--json``; plain text in a file or a pipe) and
``status --follow`` (redrawn in place on a terminal, a line per change elsewhere)."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from migrate.api import ImportRequest, run_import
from migrate.engine.progress import Progress
from migrate.journal import JobGuard, Journal
from tests.support.mailbox import ROOT, cli, cli_args, msg, side
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

BOX = set("│┃┆┊║─━┄┈═┌┐└┘├┤┬┴┼╭╮╯╰")


def _pad(i: int, size: int = 3000) -> bytes:
    return msg(i, extra=b"X-Pad: " + b"x" * size + b"\r\n")


# --------------------------------------------------------------------------- progress of a run


@dataclass
class _Recorder(Progress):
    """Progress that notes what the UI would show at every step of the engine."""

    steps: list[tuple[str, dict]] = field(default_factory=list)

    def folder_state(self, source: str, state: str) -> None:
        super().folder_state(source, state)
        self.steps.append((f"{state} {source}", self.snapshot()))

    def count(self, source: str, **kw: int) -> None:
        super().count(source, **kw)
        if kw.get("copied"):
            self.steps.append(("copied", self.snapshot()))


def test_every_folder_is_read_before_copying_and_totals_never_move(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    sizes = {"INBOX": 30, "Work": 12, "Sent": 6}
    n = 0
    for folder, count in sizes.items():
        for _ in range(count):
            src.save(folder, _pad(n, 1000 + 37 * n))
            n += 1
    progress = _Recorder()
    # One connection: folders one after the other, the case where the total used to grow while
    # messages were already being copied (134/152 -> 300).
    report = run_import(ImportRequest(source=side("source", src), target=side("target", dst),
                                      journal=tmp_path / "j.sqlite", progress=False, retry_base=0.05,
                                      connections=1, batch_count=5), progress=progress)
    assert report.status == "ok", report.error
    steps = progress.steps
    labels = [s for s, _ in steps]
    first_copy = labels.index("copied")
    copying = [snap for label, snap in steps[first_copy:]]
    final = progress.snapshot()
    assert final["total_messages"] == sum(sizes.values())
    assert final["total_bytes"] == report.totals.bytes > 0
    totals = [(s["total_messages"], s["total_bytes"]) for s in copying]
    # the denominators are final from the first copied message on
    assert set(totals) == {(final["total_messages"], final["total_bytes"])}, totals
    assert {s["phase"] for s in copying} == {"copying"}
    scanned = [i for i, s in enumerate(labels) if s.startswith("scanned ")]
    assert {labels[i].split(" ", 1)[1] for i in scanned} >= set(sizes)  # every folder with mail was read ...
    assert max(scanned) < first_copy  # ... before the first message was copied
    scanning = [snap for label, snap in steps[:first_copy] if label.startswith("scanned ")]
    assert [s["phase"] for s in scanning] == ["scanning"] * len(scanning)
    assert [s["folders_scanned"] for s in scanning] == list(range(1, len(scanning) + 1))
    assert all(s["folders_scanned"] == s["folders_to_scan"] for s in copying)
    done = [s["done_messages"] for s in copying]
    pct = [s["percent"] for s in copying]
    assert done == sorted(done) and pct == sorted(pct)  # only ever forward
    assert (final["done_messages"], final["bytes_done"], final["percent"]) == (48, final["total_bytes"], 100)


# --------------------------------------------------------------------------- status


def _wrong_password(role: str, user) -> list[str]:
    args = cli_args(role, user)
    os.environ["MM_STATUS_WRONG_PW"] = "not-the-password"
    args[args.index(f"--{role}-password") + 1] = "env:MM_STATUS_WRONG_PW"
    return args


@pytest.fixture
def three_jobs(dovecot, new_user, tmp_path):
    """One journal, three jobs: ok, partial (two messages refused) and failed (login refused)."""
    from migrate.local.maildir import MaildirEndpoint
    from migrate.models import AppendItem

    srv = dovecot("slash")
    src, dst, locked = new_user(srv), new_user(srv), new_user(srv)
    for i in range(4):
        src.save("INBOX", msg(i))
    src.save("Projects/2024", msg(10))
    journal = tmp_path / "j.sqlite"
    common = ["--journal", str(journal), "-q", "--no-notify"]
    ok = cli("import", *cli_args("source", src), *cli_args("target", dst), *common)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    maildir = tmp_path / "old-mail"
    MaildirEndpoint(maildir, create=True).append("INBOX", [
        AppendItem(msg(20, subject="kept"), (), None), AppendItem(b"", (), None), AppendItem(b"", (), None)])
    partial = cli("import", "--source-maildir", str(maildir), "--source-email", "old@example.test",
                  *cli_args("target", dst), *common)
    assert partial.returncode == 1, partial.stdout + partial.stderr
    failed = cli("import", *cli_args("source", src), *_wrong_password("target", locked), *common)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    j = Journal(journal)
    try:
        jobs = {row.state: {"job_id": row.job_id, "source": row.source, "target": row.target} for row in j.jobs()}
    finally:
        j.close()
    assert set(jobs) == {"ok", "partial", "failed"}, jobs
    return journal, jobs


def test_status_one_line_per_job_plain_and_never_cut(three_jobs):
    journal, jobs = three_jobs
    r = cli("status", "--journal", str(journal))  # stdout is a pipe
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 + 3, r.stdout  # a header, then one line per job: no folder tables
    assert lines[0].split()[:4] == ["job", "source", "->", "target"]
    assert not BOX & set(r.stdout) and "…" not in r.stdout and "\x1b" not in r.stdout, r.stdout
    assert max(len(ln) for ln in lines) > 80  # long lines stay whole in a file
    by_id = {ln.split()[0]: ln for ln in lines[1:]}
    for state, job in jobs.items():
        line = by_id[job["job_id"]]
        assert f"{job['source']} -> {job['target']}" in line, line  # never "sou… tar…"
        cells = line.split()
        assert state in cells, line
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\s+\d+s", line), line  # started, duration
    ok, partial, failed = (by_id[jobs[s]["job_id"]] for s in ("ok", "partial", "failed"))
    assert re.search(r" ok\s+5\s+0\s+0 ", ok), ok  # copied / present / failed
    assert re.search(r" partial\s+1\s+0\s+2 ", partial), partial
    assert "Can't save a zero byte message" in partial  # the last error: the first failure ...
    assert "Authentication failed" in failed  # ... or why the job failed


def test_status_job_details_failures_json(three_jobs):
    journal, jobs = three_jobs
    partial = jobs["partial"]["job_id"]
    r = cli("status", partial[:5], "--journal", str(journal))  # a prefix of the id
    assert r.returncode == 0, r.stdout + r.stderr
    assert not BOX & set(r.stdout), r.stdout
    assert f"job       {partial}" in r.stdout and "state     partial" in r.stdout
    assert re.search(r"^INBOX\s+INBOX\s+1\s+0\s+2\s+complete$", r.stdout, re.M), r.stdout
    assert "failures (2):" in r.stdout
    assert len(re.findall(r"^  INBOX  uid \d+: Can't save a zero byte message", r.stdout, re.M)) == 2, r.stdout
    assert "re-run    mailmigrate import --source-maildir" in r.stdout

    r = cli("status", "--journal", str(journal), "--failures")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(ln.startswith(f"{partial}  INBOX  uid ") for ln in lines), r.stdout
    assert all(ln.endswith("Can't save a zero byte message.") for ln in lines), r.stdout

    r = cli("status", jobs["failed"]["job_id"], "--journal", str(journal))
    assert "error     login" in r.stdout and "(hint: check the login and password" in r.stdout, r.stdout

    data = json.loads(cli("status", "--journal", str(journal), "--json").stdout)
    assert len(data["jobs"]) == 3 and all("folders" not in j for j in data["jobs"])
    one = json.loads(cli("status", partial, "--journal", str(journal), "--json").stdout)["jobs"]
    assert len(one) == 1 and one[0]["job_id"] == partial
    assert (one[0]["copied"], one[0]["present"], one[0]["failed"]) == (1, 0, 2)
    assert [f["source"] for f in one[0]["folders"]] == ["INBOX"]
    assert [(f["folder"], f["reason"]) for f in one[0]["failures"]] == [("INBOX", "Can't save a zero byte message.")] * 2
    assert all(isinstance(f["uid"], int) for f in one[0]["failures"])

    missing = cli("status", "no-such-job", "--journal", str(journal))
    assert missing.returncode == 2 and "no job 'no-such-job'" in missing.stderr
    both = cli("status", "--journal", str(journal), "--json", "--follow")
    assert both.returncode == 2 and "cannot be combined" in both.stderr


# --------------------------------------------------------------------------- status --follow


def _held_job(src, dst, proxy: FaultProxy, journal: Path) -> tuple[subprocess.Popen, str]:
    """An import whose target is held by ``proxy``: it runs (holds its lock, publishes its
    progress) but cannot get past planning until ``proxy.release()``."""
    target = cli_args("target", dst)
    target[target.index("--target-port") + 1] = str(proxy.port)
    proxy.hold()
    job = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "import", *cli_args("source", src), *target,
                            "--journal", str(journal), "--no-notify", "-q", "--connections", "1",
                            "--batch-size", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    job_id = _wait_for(lambda: _published(journal), "the job never published its progress")
    return job, job_id


def _published(journal: Path) -> str | None:
    """The id of the running job once it has written a progress row."""
    if not journal.exists():
        return None
    j = Journal(journal)
    try:
        for row in j.jobs():
            runs = j.runs(row.job_id)
            if runs and runs[0].progress and JobGuard.is_running(journal, row.job_id):
                return row.job_id
    finally:
        j.close()
    return None


def _elapsed(journal: Path, job_id: str) -> float:
    j = Journal(journal)
    try:
        return float(json.loads(j.runs(job_id)[0].progress or "{}").get("elapsed_s", 0.0))
    finally:
        j.close()


def _wait_for(cond, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _seed(src, n: int = 30) -> None:
    with src.client() as c:
        for i in range(n):
            c.append("INBOX", _pad(i))


def test_follow_to_a_pipe_prints_a_line_per_change(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src)
    journal = tmp_path / "j.sqlite"
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        job, job_id = _held_job(src, dst, proxy, journal)
        try:
            follow = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "status", job_id, "--journal",
                                       str(journal), "--follow"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            lines: queue.Queue[str] = queue.Queue()
            reader = threading.Thread(target=lambda: [lines.put(ln) for ln in follow.stdout], daemon=True)
            reader.start()
            first = lines.get(timeout=60)
            assert first == f"{job_id} running: planning: listing and creating folders\n", first
            # The job stays held for several more of its progress updates (one a second), and
            # so for several polls of --follow: nothing changed, nothing more is printed.
            start = _elapsed(journal, job_id)
            _wait_for(lambda: _elapsed(journal, job_id) >= start + 3, "the held job stopped publishing")
        finally:
            proxy.release()
        assert follow.wait(timeout=120) == 0, follow.stderr.read()
        reader.join(timeout=10)
        assert job.wait(timeout=120) == 0, job.stderr.read()
    out = [first.rstrip("\n")]
    while not lines.empty():
        out.append(lines.get().rstrip("\n"))
    assert all(a != b for a, b in zip(out, out[1:], strict=False)), out  # a line per change, no repeats
    assert out.count(out[0]) == 1, out
    assert not any("\x1b" in ln or "\r" in ln for ln in out), out
    assert re.fullmatch(rf"{job_id} ok: copied 30, present 0, failed 0 in (\d+m)?\d+s", out[-1]), out


def test_follow_on_a_terminal_redraws_in_place(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src)
    journal = tmp_path / "j.sqlite"
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        job, job_id = _held_job(src, dst, proxy, journal)
        argv = [sys.executable, str(ROOT / "cli.py"), "status", job_id, "--journal", str(journal), "--follow"]
        pid, fd = pty.fork()
        if pid == 0:  # the child: --follow on a terminal
            os.execve(argv[0], argv, {**os.environ, "TERM": "xterm", "COLUMNS": "200", "LINES": "40"})
        seen = b""
        try:
            deadline = time.monotonic() + 120
            released = False
            while time.monotonic() < deadline:
                if not released and seen.count(b"planning: listing") >= 4:  # redrawn, nothing changed
                    proxy.release()
                    released = True
                if not select.select([fd], [], [], 0.2)[0]:
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            _, status = os.waitpid(pid, 0)
        finally:
            proxy.release()
            os.close(fd)
        assert job.wait(timeout=120) == 0, job.stderr.read()
    text = seen.decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert os.waitstatus_to_exitcode(status) == 0, text
    renders = text.count(job_id)
    assert renders >= 5, text  # the progress was drawn again and again ...
    assert text.count("\n") <= 3, text  # ... in place, not a new line each time
    assert re.search(rf"{job_id} ok: copied 30, present 0, failed 0 in (\d+m)?\d+s\r?\n", plain), text
