"""Hostile mail under faults: the whole real-world corpus (/work/shared/corpus/real) plus the
generated hostile cases of tests/test_hostile.py (no Message-ID, shared IDs, byte twins, NUL,
bare LF, lone CR, 8-bit headers, a 200 KB header line, 30-level MIME, dates 1970..2038, every
flag and keyword, deep and non-ASCII folders; the 20 MB message is left to that file), copied
while connections are cut at random (seeded) offsets: the source side in both directions, the
target side in the middle of APPEND literals. Everything arrives exactly, once.

Kills and cuts that leave an APPEND done but unrecorded are not used here: the corpus holds
messages that share a dedupe key (byte-identical files given different flags and dates), which
trips the engine bug pinned by test_rel_crashes.py::test_kill_after_append_with_two_messages_sharing_a_key.
"""

from __future__ import annotations

import random

import pytest

from tests.reliability.kit import (
    TapProxy,
    assert_untouched,
    compare,
    digest,
    identity,
    run_job,
)
from tests.test_hostile import _corpus_plan, _generated_plan, _raw_seed

pytestmark = pytest.mark.dovecot


def test_hostile_mail_through_random_cuts(dovecot, new_user, tmp_path, tally):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    plan = _corpus_plan()
    for folder, items in _generated_plan().items():
        if folder != "Big":
            plan.setdefault(folder, []).extend(items)
    n = sum(len(v) for v in plan.values())
    assert n >= 440, n
    assert _raw_seed(src, plan) == []
    before = digest(src)
    journal = tmp_path / "j.sqlite"
    rng = random.Random(7)
    with TapProxy("127.0.0.1", srv.port) as sp, TapProxy("127.0.0.1", srv.port) as tp:
        planned = []

        def arm(*_):
            for proxy, d, k, volume in ((tp, "upstream", 5, 400_000), (sp, "downstream", 4, 400_000),
                                        (sp, "upstream", 2, 2_000)):
                for _ in range(k):
                    at = rng.randint(1, volume)
                    proxy.cut_after(at, d)
                    planned.append((d, at))

        tp.on(b" APPEND ", "upstream", arm)
        report, progress = run_job(src, dst, tmp_path, src_port=sp.port, dst_port=tp.port, journal=journal,
                                   batch_count=10, connections=2, retries=30, tally=tally)
        tally.cuts += sp.cuts + tp.cuts
        assert (sp.armed, tp.armed) == (0, 0), (planned, sp.armed, tp.armed)
    assert report.exit_code == 0, (report.status, report.error, report.failures()[:3])
    assert progress.retries >= 6, progress.retries  # a retry can absorb two cuts (both sides of one worker)
    compare(tally, src, dst, identity(plan), hostile=True)
    again, _ = run_job(src, dst, tmp_path, journal=journal, tally=tally)
    assert (again.exit_code, again.totals.copied, again.totals.failed) == (0, 0, 0)
    assert again.totals.skipped_duplicates == n
    assert_untouched(tally, src, before)
