"""Server answers: ``NO [OVERQUOTA]`` stops the mailbox with a clear hint and the job resumes
once space exists; a message bigger than the target's limit (a provider preset's cap, checked
before sending, or the server's ``NO [LIMIT]``/TOOBIG answer) fails alone, with its reason."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from migrate.api import ImportRequest, spec_for
from migrate.engine.job import Job
from migrate.sides import build_side
from tests.reliability.kit import (
    FOLDERS,
    assert_untouched,
    compare,
    digest,
    identity,
    run_cli,
    run_job,
    seed,
    side_args,
)
from tests.support.mailbox import msg, side, snapshot

pytestmark = pytest.mark.dovecot


def test_over_quota_stops_with_hint_then_resumes(dovecot, new_user, tmp_path, tally, home):
    src = new_user(dovecot("slash"))
    qsrv = dovecot("quota")
    dst = new_user(qsrv)
    qsrv.add_user(dst.name, dst.password, quota_kb=150)
    counts = seed(src, 150, rnd=21, pad=3000)  # ~350 KB: about a third fits
    total = sum(counts.values())
    before = digest(src)
    journal = tmp_path / "j.sqlite"
    args = ["import", *side_args("source", src), *side_args("target", dst), "--journal", str(journal),
            "-q", "--no-notify", "--batch-size", "5", "--connections", "2"]
    # --force: the fit check would refuse to start; this is about a target that fills up mid-run.
    r = run_cli(*args, "--force", "--report", str(tmp_path / "r1.json"))
    tally.runs += 1
    tally.fault("over-quota")
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 4, out[-2000:]
    rep = json.loads((tmp_path / "r1.json").read_text())
    assert rep["error"]["reference"] == "target-over-quota", rep["error"]
    assert "free space" in rep["error"]["hint"] and "re-run" in rep["error"]["hint"], rep["error"]
    assert "free space" in out  # the user sees the hint, not only the report
    copied = rep["totals"]["copied"]
    used = qsrv.quota_get(dst.name)["STORAGE"]
    assert 0 < copied < total and used["value"] <= 150 + 8, (copied, used)  # + the one message in flight
    assert_untouched(tally, src, before)

    qsrv.add_user(dst.name, dst.password, quota_kb=100_000)  # the user freed space / raised the quota
    r = run_cli(*args, "--report", str(tmp_path / "r2.json"))
    tally.runs += 1
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    rep2 = json.loads((tmp_path / "r2.json").read_text())
    assert rep2["error"] is None
    # Every source message is accounted for once: copied now, or already there from run 1.
    t2 = rep2["totals"]
    assert (t2["copied"] + t2["skipped_duplicates"], t2["failed"]) == (total, 0), t2
    compare(tally, src, dst, identity(FOLDERS))
    assert_untouched(tally, src, before)


def _big(i: int, size: int) -> bytes:
    return msg(8000 + i, subject=f"big {i}", extra=b"X-Big: " + b"b" * size + b"\r\n")


def _seed_with_big(src, sizes: list[int]) -> Counter:
    seed(src, 36, folders=("INBOX", "Projects"), rnd=22, pad=2000)
    with src.client() as c:
        for i, size in enumerate(sizes):
            c.append("INBOX" if i % 2 else "Projects", _big(i, size), flags=[b"\\Seen"])
    return Counter(m for f in ("INBOX", "Projects") for m in snapshot(src, f).elements()
                   if b"X-Big: " in m[0])


def _check_only_big_failed(report, big: Counter, needle: str, *, identified: bool = True) -> None:
    assert report.exit_code == 1, (report.status, report.error)  # done, some messages failed
    assert report.error is None
    fails = report.failures()
    assert len(fails) == report.totals.failed == sum(big.values()), fails
    for f in fails:
        assert needle in f.reason.lower(), f.reason
        assert f.folder in ("INBOX", "Projects") and f.uid and f.size and f.size > 8000, f
        if identified:
            assert f.subject and f.subject.startswith("big "), f


def test_preset_size_limit_skips_only_the_big_messages(dovecot, new_user, tmp_path, tally):
    """A provider preset's size cap (JobSpec.append_limit): the engine does not even try."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    big = _seed_with_big(src, [9000, 12000, 30000])
    before = digest(src)

    def run():
        req = ImportRequest(source=side("source", src), target=side("target", dst),
                            journal=tmp_path / "j.sqlite", progress=False, retry_base=0.05, batch_count=5)
        spec = dataclasses.replace(spec_for(req, build_side(req.source), build_side(req.target)), append_limit=8000)
        tally.runs += 1
        return Job(spec).run()

    r = run()
    tally.fault("too-big", r.totals.failed)
    _check_only_big_failed(r, big, "too big")
    compare(tally, src, dst, identity(("INBOX", "Projects")), expected_missing=big)
    r2 = run()  # not retried forever, still reported, nothing else copied
    _check_only_big_failed(r2, big, "too big")  # still named (Message-ID, subject) on the re-run
    assert r2.totals.copied == 0
    compare(tally, src, dst, identity(("INBOX", "Projects")), expected_missing=big)
    assert_untouched(tally, src, before)


def test_server_size_refusal_fails_only_that_message(dovecot, new_user, tmp_path, tally):
    """Dovecot with quota_max_mail_size answers APPEND with NO [LIMIT] (no APPENDLIMIT advertised):
    the batch holding it is not lost, only that message fails, with the server's words."""
    src = new_user(dovecot("slash"))
    lsrv = dovecot("quota", extra_config="plugin {\n  quota_max_mail_size = 8k\n}\n")
    dst = new_user(lsrv)
    lsrv.add_user(dst.name, dst.password, quota_kb=100_000)
    big = _seed_with_big(src, [9000, 12000, 30000])
    before = digest(src)
    r, _ = run_job(src, dst, tmp_path, batch_count=5, tally=tally)
    tally.fault("too-big", r.totals.failed)
    _check_only_big_failed(r, big, "limit")
    compare(tally, src, dst, identity(("INBOX", "Projects")), expected_missing=big)
    r2, _ = run_job(src, dst, tmp_path, batch_count=5, tally=tally)
    _check_only_big_failed(r2, big, "limit", identified=False)
    assert r2.totals.copied == 0
    compare(tally, src, dst, identity(("INBOX", "Projects")), expected_missing=big)
    assert_untouched(tally, src, before)


def test_failed_message_still_identified_on_rerun(dovecot, new_user, tmp_path, tally):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    big = _seed_with_big(src, [9000])

    def run():
        req = ImportRequest(source=side("source", src), target=side("target", dst),
                            journal=tmp_path / "j.sqlite", progress=False, retry_base=0.05)
        spec = dataclasses.replace(spec_for(req, build_side(req.source), build_side(req.target)), append_limit=8000)
        tally.runs += 1
        return Job(spec).run()

    _check_only_big_failed(run(), big, "too big")
    _check_only_big_failed(run(), big, "too big")
