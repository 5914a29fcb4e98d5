"""Issue 15, "know before copying", against real Dovecot servers.

* The fit check: a target whose quota (GETQUOTAROOT) is too small stops the job before anything is
  written (exit 2, one line saying how much is to copy and how much is free; ``--dry-run`` says the
  same; ``--force`` copies anyway); a target that holds most of the mail already fits, because
  what it holds is not counted as to copy; messages above the size limit are listed.
* Daily budgets, made small with ``MAILMIGRATE_BUDGET_OVERRIDE`` on the generic preset: a job
  stops at the budget with status "waiting" and the next 00:00 UTC, and goes on the next day
  (the budgets' clock is moved, no real waiting); the bytes moved add up across two invocations
  and across two batch rows of one source account; ``status`` shows the waiting job.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migrate.api import ImportRequest, spec_for
from migrate.csvbatch import read_batch, run_batch
from migrate.engine import budget as budget_module
from migrate.engine.budget import BUDGET_FILE, OVERRIDE_ENV, run_with_waits
from migrate.engine.job import Job
from migrate.engine.progress import Progress
from migrate.sides import build_side
from migrate.store import open_store
from tests.conftest import User
from tests.support.mailbox import append, cli, cli_args, count, folders, import_job, msg, side, snapshot
from tests.test_batch import csv_row, write_csv

pytestmark = pytest.mark.dovecot

BODY = "x" * 2900  # messages of about 3 KB: a few fill a small quota or budget


def seed(user: User, layout: dict[str, int], *, base: int = 0) -> list[bytes]:
    """``layout``: folder -> messages of about 3 KB; returns every message stored."""
    stored = []
    with user.client() as c:
        for folder, n in layout.items():
            if folder != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            for _ in range(n):
                body = msg(base + len(stored), body=BODY)
                c.append(folder, body)
                stored.append(body)
    return stored


def quota_user(server, kb: int) -> User:
    """A fresh user on the quota server with a quota of ``kb`` KiB."""
    name = f"fit_{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(12)
    server.add_user(name, password, quota_kb=kb)
    return User(server, name, password)


class Clock:
    """The budgets' clock, moved by the test: waiting for the next day takes no time."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.waits: list[datetime] = []

    def __call__(self) -> datetime:
        return self.now

    def wait_until(self, moment: datetime) -> None:
        self.waits.append(moment)
        self.now = max(self.now, moment + timedelta(seconds=1))


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(datetime(2024, 5, 1, 20, 0, tzinfo=UTC))
    monkeypatch.setattr(budget_module, "utc_now", c)
    return c


def used(store: Path, account: str, day: str) -> int:
    s = open_store(store)
    try:
        return s.budget_used(account.lower(), "download", day)
    finally:
        s.close()


# --- the fit check ---------------------------------------------------------------------------------


def test_does_not_fit_stops_before_anything_is_written(dovecot, new_user, tmp_path):
    src = new_user(dovecot("slash"))
    stored = seed(src, {"INBOX": 6, "Projects": 6})
    qsrv = dovecot("quota")
    dst = quota_user(qsrv, kb=16)
    home = {"MAILMIGRATE_HOME": str(tmp_path / "home")}
    args = ["import", *cli_args("source", src), *cli_args("target", dst), "--no-notify", "-q"]

    dry = cli(*args, "--dry-run", env=home)
    assert dry.returncode == 2, dry.stdout + dry.stderr  # the real run would stop: the dry run says so
    assert "fit: does not fit: " in dry.stdout and "free on the target: 16.4 KB" in dry.stdout

    r = cli(*args, "--report", str(tmp_path / "r.json"), env=home)
    assert r.returncode == 2, r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()  # one line: what is wrong and what to do
    assert re.fullmatch(r"error: does not fit: \d+\.\d KB to copy, 16\.4 KB free \(hint: free space on the "
                        r"target .* --force copies what fits .*\)", line), line
    # Nothing was written to the target: no folder, no message, no byte of quota.
    assert "Projects" not in folders(dst) and count(dst, "INBOX") == 0
    assert qsrv.quota_get(dst.name)["STORAGE"]["value"] == 0

    report = json.loads((tmp_path / "r.json").read_text())
    fit = report["fit"]
    assert (report["status"], report["exit_code"], report["totals"]["copied"]) == ("failed", 2, 0)
    assert fit["outcome"] == "does_not_fit" and fit["text"] == line[len("error: "):line.index(" (hint")]
    assert fit["to_copy_messages"] == 12 and fit["to_copy_bytes"] == sum(len(b) for b in stored)
    assert (fit["free_bytes"], fit["used_bytes"]) == (16 * 1024, 0)
    assert {"name": "quota-storage", "value": 16 * 1024, "source": "GETQUOTAROOT (RFC 9208)"} in fit["limits"]
    assert fit["largest"]["size"] == max(len(b) for b in stored) and not fit["forced"]

    # --force goes past the check: the folders are made, the copy runs into the full target and
    # stops there, saying so (as a job that meets a full target always does).
    forced = cli(*args, "--force", "--report", str(tmp_path / "f.json"), env=home)
    assert forced.returncode == 4, forced.stdout + forced.stderr
    out = json.loads((tmp_path / "f.json").read_text())
    assert out["fit"]["forced"] and out["fit"]["outcome"] == "does_not_fit"
    assert out["error"]["reference"] == "target-over-quota" and "Projects" in folders(dst)
    assert count(dst, "INBOX") + count(dst, "Projects") == out["totals"]["copied"] < 12


def test_fits_when_the_target_holds_most_of_it_already(dovecot, new_user, tmp_path):
    src = new_user(dovecot("slash"))
    stored = seed(src, {"INBOX": 10})
    qsrv = dovecot("quota")
    dst = quota_user(qsrv, kb=40)
    for body in stored[:8]:  # there before this job: not to copy again, and not counted as such
        append(dst, "INBOX", body)
    quota = qsrv.quota_get(dst.name)["STORAGE"]
    assert sum(len(b) for b in stored) > (quota["limit"] - quota["value"]) * 1024  # all of it would not fit

    report = import_job(src, dst, tmp_path)
    assert report.exit_code == 0, report.error
    fit = report.fit
    assert fit is not None and (fit.outcome, fit.text) == ("fits", "fits")
    assert fit.to_copy_messages == 2 and fit.to_copy_bytes == sum(len(b) for b in stored[8:])
    assert fit.free_bytes == (quota["limit"] - quota["value"]) * 1024 and fit.target_messages == 8
    bodies = lambda user: sorted(k[0] for k in snapshot(user, "INBOX").elements())  # noqa: E731
    assert report.totals.copied == 2 and bodies(dst) == bodies(src)  # (the 8 put there first: their own dates)

    again = import_job(src, dst, tmp_path)  # nothing left to copy
    assert again.fit is not None and again.fit.to_copy_messages == 0 and again.fit.outcome == "fits"


def test_messages_too_big_are_listed_and_fail_alone(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, {"INBOX": 3})
    big = [msg(900 + i, subject=f"big {i}", body="y" * 6000) for i in range(2)]
    for body in big:
        append(src, "Archive", body)
    req = ImportRequest(source=side("source", src), target=side("target", dst), journal=tmp_path / "j.sqlite",
                        progress=False, retry_base=0.05)
    spec = dataclasses.replace(spec_for(req, build_side(req.source), build_side(req.target)), append_limit=4096)
    report = Job(spec, Progress()).run()

    fit = report.fit
    assert fit is not None and (fit.outcome, fit.text) == ("too_big", "fits, 2 messages too big (listed)")
    assert sorted((m.folder, m.subject, m.size) for m in fit.too_big) == [
        ("Archive", "big 0", len(big[0])), ("Archive", "big 1", len(big[1]))]
    assert {"name": "size-limit", "value": 4096, "source": "preset imap"} in [dataclasses.asdict(x) for x in fit.limits]
    assert fit.to_copy_messages == 3 and fit.largest is not None and fit.largest.size == len(big[0])
    # As before: the job copies the rest; each too big message fails alone, with its reason.
    assert (report.status, report.totals.copied, report.totals.failed) == ("partial", 3, 2)
    assert all(f.reason.startswith("too big") for f in report.failures())


# --- daily budgets -----------------------------------------------------------------------------------


def test_download_budget_waits_and_goes_on_the_next_day(dovecot, new_user, tmp_path, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    stored = seed(src, {"INBOX": 6, "Projects": 4})
    per_day = 4 * len(stored[0]) + 500  # four messages a day
    monkeypatch.setenv(OVERRIDE_ENV, f"imap:download_mb_per_day={per_day / 1e6}")
    waited = []

    report = run_with_waits(lambda: import_job(src, dst, tmp_path, connections=2), wait_until=clock.wait_until,
                            on_wait=waited.append)

    assert report.status == "ok" and report.exit_code == 0, report.error
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX") and snapshot(dst, "Projects") == snapshot(src, "Projects")
    assert [w.status for w in waited] == ["waiting", "waiting"]  # 4 + 4 + 2 messages
    first = waited[0]
    assert first.resume_at == datetime(2024, 5, 2, tzinfo=UTC) and first.exit_code == 4
    assert first.error is not None and first.error.message == (
        f"Generic IMAP server allows {per_day / 1e6:.2f} MB a day from one account; "
        f"{4 * len(stored[0]) / 1e6:.2f} MB were read today; going on at 00:00 UTC (in 4 h)")
    assert [w.totals.copied for w in waited] == [4, 4] and report.totals.copied == 2
    store = tmp_path / BUDGET_FILE
    days = ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert [used(store, report.source, d) for d in days] == [4 * len(stored[0]), 4 * len(stored[0]),
                                                             2 * len(stored[0])]


def test_upload_budget_of_the_target_account(dovecot, new_user, tmp_path, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    stored = seed(src, {"INBOX": 5})
    monkeypatch.setenv(OVERRIDE_ENV, f"imap:upload_mb_per_day={(2 * len(stored[0]) + 100) / 1e6}")

    report = import_job(src, dst, tmp_path)

    assert (report.status, report.exit_code, report.totals.copied) == ("waiting", 4, 2)
    assert report.error is not None and " a day into one account; " in report.error.message
    assert " were written today; going on at 00:00 UTC (in 4 h)" in report.error.message
    assert count(dst, "INBOX") == 2
    s = open_store(tmp_path / BUDGET_FILE)
    try:  # what the target stored, counted against the target account
        assert s.budget_used(report.target.lower(), "upload", "2024-05-01") == 2 * len(stored[0])
        assert s.budget_used(report.source.lower(), "download", "2024-05-01") == 0  # no download budget here
    finally:
        s.close()


def test_budget_adds_up_across_two_invocations(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    stored = seed(src, {"INBOX": 3, "Projects": 5})
    size = len(stored[0])
    env = {"MAILMIGRATE_HOME": str(tmp_path / "home"), OVERRIDE_ENV: f"imap:download_mb_per_day={(5 * size + 100) / 1e6}"}
    args = ["import", *cli_args("source", src), *cli_args("target", dst), "--no-notify", "-q", "--no-wait",
            "--journal", str(tmp_path / "j.sqlite")]

    one = cli(*args, "--include", "INBOX", env=env)  # 3 of the day's 5
    assert one.returncode == 0, one.stdout + one.stderr
    two = cli(*args, "--report", str(tmp_path / "two.json"), env=env)  # 2 more, then the budget is used up
    assert two.returncode == 4, two.stdout + two.stderr
    mb = f"{(5 * size + 100) / 1e6:.2f}"
    assert re.search(rf"waiting: Generic IMAP server allows {mb} MB a day from one account; {mb} MB were read "
                     r"today; going on at 00:00 UTC \(in [^)]+\) \(hint: the job goes on", two.stderr), two.stderr
    assert "status: waiting for a daily budget (exit 4)" in two.stdout
    report = json.loads((tmp_path / "two.json").read_text())
    assert report["status"] == "waiting" and report["totals"]["copied"] == 2
    resume = datetime.fromisoformat(report["resume_at"].replace("Z", "+00:00"))
    assert resume > datetime.now(UTC) and (resume.hour, resume.minute) == (0, 0)
    assert count(dst, "INBOX") + count(dst, "Projects") == 5

    three = cli(*args, env=env)  # the same day: nothing more
    assert three.returncode == 4 and count(dst, "INBOX") + count(dst, "Projects") == 5

    status = cli("status", "--journal", str(tmp_path / "j.sqlite"), report["job_id"], env=env)
    assert status.returncode == 0, status.stderr
    assert re.search(r"^state +waiting$", status.stdout, re.M), status.stdout
    assert re.search(r"^waiting +going on at \d{4}-\d\d-\d\d 00:00 UTC \(in ", status.stdout, re.M), status.stdout


def test_budget_holds_across_two_batch_rows_of_one_source(dovecot, new_user, tmp_path, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst_a, dst_b = new_user(srv), new_user(srv), new_user(srv)
    stored = seed(src, {"INBOX": 4, "Projects": 2})
    size = len(stored[0])
    per_day = 5 * size + 100  # both rows together: five messages a day
    monkeypatch.setenv(OVERRIDE_ENV, f"imap:download_mb_per_day={per_day / 1e6}")
    path = write_csv(tmp_path / "batch.csv", [csv_row(src, dst_a), csv_row(src, dst_b)])
    rows = read_batch(path)
    waits: list[list[int]] = []

    report = run_batch(rows, parallel=2, journal_dir=tmp_path / "journals", wait_until=clock.wait_until,
                       on_wait=lambda waiting, resume: waits.append([r.line for r in waiting]))

    assert report.status == "ok" and report.exit_code == 0, [(r.line, r.status, r.error) for r in report.rows]
    for dst in (dst_a, dst_b):  # both rows complete in the end, exactly
        assert snapshot(dst, "INBOX") == snapshot(src, "INBOX") and snapshot(dst, "Projects") == snapshot(src, "Projects")
    # 12 messages read in all, five a day at most whichever row read them: three days.
    store = tmp_path / "journals" / BUDGET_FILE
    account = report.rows[0].source_account or ""
    per_day_used = [used(store, account, d) for d in ("2024-05-01", "2024-05-02", "2024-05-03")]
    assert per_day_used == [5 * size, 5 * size, 2 * size]
    assert len(waits) == 2 and all(waits)


def test_batch_no_wait_leaves_rows_waiting_and_exits_4(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst_a, dst_b = new_user(srv), new_user(srv), new_user(srv)
    stored = seed(src, {"INBOX": 4, "Projects": 2})
    size = len(stored[0])
    env = {"MAILMIGRATE_HOME": str(tmp_path / "home"), OVERRIDE_ENV: f"imap:download_mb_per_day={(3 * size + 100) / 1e6}"}
    path = write_csv(tmp_path / "batch.csv", [csv_row(src, dst_a), csv_row(src, dst_b)])

    r = cli("batch", str(path), "-q", "--no-notify", "--no-wait", "--report", str(tmp_path / "b.json"), env=env)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "waiting for a daily budget: run the same command again after the time shown (exit 4)" in r.stdout
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["status"] == "waiting" and report["totals"]["waiting"] >= 1
    # Both rows read from one account: three messages today between them, not three each.
    copied = [row["report"]["totals"]["copied"] for row in report["rows"]]
    assert sum(copied) == 3 and count(dst_a, "INBOX") + count(dst_b, "INBOX") <= 3
    for row in report["rows"]:
        if row["status"] == "waiting":
            assert row["exit_code"] == 4 and row["report"]["resume_at"].endswith("T00:00:00Z")
            assert re.search(rf"^line {row['line']}: .*: waiting: Generic IMAP server allows ", r.stdout, re.M)
