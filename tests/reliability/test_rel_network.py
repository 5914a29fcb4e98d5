"""Network faults: connections cut at random (seeded) byte offsets in both directions on the
source and on the target side, a BYE in the middle of a command, a server restarted (and
crashed) mid-run, a stalled link with a 1 s read timeout. Every job completes in
ONE run, exactly, and the source is untouched."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time

import pytest

from tests.dovecot.harness import DovecotServer, available
from tests.reliability.kit import (
    FOLDERS,
    CutSequence,
    TapProxy,
    WatchedProgress,
    answer_client,
    assert_untouched,
    compare,
    digest,
    identity,
    run_job,
    seed,
)

pytestmark = pytest.mark.dovecot

DIRECTIONS = ("upstream", "downstream")
# The random cuts leave logins alone while a cut during LOGIN is misreported as a wrong password
# (test_cut_during_login_is_retried). Once the engine is fixed: False, so logins get cut too.
SPARE_LOGIN = False


def _cut_plan(rng: random.Random, n: int, budget: dict[str, int]) -> list[tuple[str, int]]:
    """n cuts alternating direction, each at a random offset; a direction's offsets add up to at
    most about half of its traffic after the first APPEND (``budget``, measured on a clean run of
    this mailbox), so every cut falls inside the run."""
    per = {d: budget[d] // (n // 2 + 1) for d in DIRECTIONS}
    return [(d, rng.randint(1, max(2, per[d]))) for d in (DIRECTIONS[i % 2] for i in range(n))]


@pytest.mark.parametrize("rnd", [11, 12])
def test_random_cuts_both_sides(dovecot, new_user, tmp_path, tally, long_mode, rnd):
    srv = dovecot("slash")
    rng = random.Random(rnd)
    rounds = 4 if long_mode else 1
    per_side = 10 if long_mode else 6
    for r in range(rounds):
        src, dst = new_user(srv), new_user(srv)
        seed(src, 160, rnd=rnd * 100 + r)
        before = digest(src)
        with TapProxy("127.0.0.1", srv.port, spare_login=SPARE_LOGIN) as sp, \
                TapProxy("127.0.0.1", srv.port, spare_login=SPARE_LOGIN) as tp:
            # Traffic after the first APPEND of a clean run of such a mailbox: source ~4 KB up
            # (commands), ~350 KB down (bodies); target ~310 KB up (bodies), ~11 KB down (answers).
            plans = {"source": _cut_plan(rng, per_side, {"upstream": 2_200, "downstream": 175_000}),
                     "target": _cut_plan(rng, per_side, {"upstream": 155_000, "downstream": 5_500})}
            seqs = [CutSequence(sp, plans["source"]), CutSequence(tp, plans["target"])]

            def arm(*_, seqs=seqs):  # planning is over (cuts there: see test_cut_while_planning_is_retried)
                for seq in seqs:
                    seq.start()

            tp.on(b" APPEND ", "upstream", arm)
            report, progress = run_job(src, dst, tmp_path, src_port=sp.port, dst_port=tp.port, retries=30,
                                       batch_count=4, connections=2, journal=tmp_path / f"j{r}.sqlite",
                                       tally=tally)
            fired = [s.stop() for s in seqs]
            tally.cuts += sp.cuts + tp.cuts
            assert report.exit_code == 0, (report.status, report.error, plans)
            # Every planned cut fired during the run (else the offsets proved nothing).
            assert fired == [per_side, per_side], (fired, plans)
            assert progress.retries >= per_side, (progress.retries, fired)
        compare(tally, src, dst, identity(FOLDERS))
        again, _ = run_job(src, dst, tmp_path, journal=tmp_path / f"j{r}.sqlite", tally=tally)
        assert (again.exit_code, again.totals.copied) == (0, 0)
        assert_untouched(tally, src, before)


@pytest.mark.parametrize("where", ["source", "target"])
def test_cut_during_login_is_retried(dovecot, new_user, tmp_path, tally, where):
    """The second login on that side (a copy worker's; the first is planning's) loses its
    connection in the middle of the server's answer."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 20, rnd=13)
    before = digest(src)
    with TapProxy("127.0.0.1", srv.port) as sp, TapProxy("127.0.0.1", srv.port) as tp:
        proxy = sp if where == "source" else tp
        proxy.on(b"Logged in", "downstream", lambda *_: "cut", nth=2)
        report, _ = run_job(src, dst, tmp_path, src_port=sp.port, dst_port=tp.port, connections=1, tally=tally)
        tally.cuts += proxy.cuts
        assert proxy.cuts == 1
    assert_untouched(tally, src, before)
    assert report.exit_code == 0, (report.status, report.error)
    compare(tally, src, dst, identity(FOLDERS))


@pytest.mark.parametrize("where,pattern", [pytest.param("source", b" LIST ", id="source-LIST"),
                                           pytest.param("target", b" LIST ", id="target-LIST"),
                                           pytest.param("target", b" CREATE ", id="target-CREATE")])
def test_cut_while_planning_is_retried(dovecot, new_user, tmp_path, tally, where, pattern):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 30, rnd=3)
    before = digest(src)
    with TapProxy("127.0.0.1", srv.port) as sp, TapProxy("127.0.0.1", srv.port) as tp:
        proxy = sp if where == "source" else tp
        proxy.on(pattern, "upstream", lambda *_: "cut")
        report, _ = run_job(src, dst, tmp_path, src_port=sp.port, dst_port=tp.port, tally=tally)
        tally.cuts += proxy.cuts
        assert proxy.cuts == 1
    assert_untouched(tally, src, before)
    assert report.exit_code == 0, (report.status, report.error)
    compare(tally, src, dst, identity(FOLDERS))


def test_bye_mid_command(dovecot, new_user, tmp_path, tally):
    """``* BYE`` in the middle of a command, injected by the proxy: on the target instead of the
    APPEND's tagged OK after the server stored the batch (the hard case: the copy exists, the
    engine was never told), and on the source in answer to a body fetch. Throttling answers
    ("NO [THROTTLED]", "Suggested Backoff Time", BYE before an APPEND) are covered per provider
    by tests/test_throttle.py."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 80, rnd=4)
    before = digest(src)
    byes = []

    def bye(conn, d, data):
        answer_client(conn, b"* BYE Server shutting down.\r\n")
        byes.append(d)
        return "cut"

    with TapProxy("127.0.0.1", srv.port) as sp, TapProxy("127.0.0.1", srv.port) as tp:
        tp.on(b"[APPENDUID", "downstream", bye, nth=3)  # stored, but the client hears BYE
        tp.on(b"[APPENDUID", "downstream", bye, nth=9)
        sp.on(b"BODY.PEEK[]", "upstream", bye, nth=5)  # the source hangs up on a body fetch
        report, progress = run_job(src, dst, tmp_path, src_port=sp.port, dst_port=tp.port, batch_count=4,
                                   connections=2, tally=tally)
        assert (sp.pending_taps, tp.pending_taps) == (0, 0), (sp.fired, tp.fired)
        tally.cuts += sp.cuts + tp.cuts
    tally.fault("bye", len(byes))
    assert report.exit_code == 0, (report.status, report.error)
    assert len(byes) == 3
    assert progress.retries >= 2, progress.retries  # two BYEs can land on one worker attempt
    compare(tally, src, dst, identity(FOLDERS))
    assert_untouched(tally, src, before)


@pytest.fixture
def own_server():
    """A Dovecot instance of this test alone (it gets restarted and crashed)."""
    if available() is not None:
        pytest.skip(f"real Dovecot unavailable: {available()}")
    srv = DovecotServer("slash").start()
    yield srv
    srv.close()


def test_server_restarted_and_crashed_mid_run(own_server, new_user, tmp_path, tally):
    """Mid-run, the server is stopped the way a service manager does it (SIGTERM to every
    process: sessions end, listeners close) and started again; later it crashes (SIGKILL to
    every process, in-flight APPENDs included) and is started again. Same data, same ports."""
    srv = own_server
    src, dst = new_user(srv), new_user(srv)
    counts = seed(src, 600, rnd=5, pad=1000)
    total = sum(counts.values())
    before = digest(src)
    events: list[tuple[str, int]] = []
    downtime: list[float] = []
    done = threading.Event()
    errors: list[BaseException] = []
    progress = WatchedProgress()
    # Triggered by the engine's own progress (commits), not by polling the server: a doveadm
    # poll racing the imap processes makes Dovecot 2.3 panic on an fcntl EDEADLK.
    plan = [("restart", progress.when_copied(50)), ("crash", progress.when_copied(300))]

    def saboteur() -> None:
        try:
            for kind, reached in plan:
                while not (reached.is_set() or done.is_set()):
                    reached.wait(0.05)
                if done.is_set():
                    return
                events.append((kind, progress.copied))
                if kind == "restart":
                    # A graceful stop by a service manager: SIGTERM to the whole process group, so
                    # the sessions say BYE and end (a SIGTERM to the master alone leaves them running).
                    master = int((srv.root / "run" / "master.pid").read_text().split()[0])
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(master, signal.SIGTERM)
                t0 = time.monotonic()
                srv.restart(graceful=kind == "restart")  # crash: SIGKILL to every process
                downtime.append(round(time.monotonic() - t0, 2))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    t = threading.Thread(target=saboteur, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        report, progress = run_job(src, dst, tmp_path, batch_count=1, connections=2, retries=12,
                                   retry_base=0.2, tally=tally, progress=progress)
    finally:
        done.set()
        t.join(30)
    print("restart test:", events, "downtime", downtime, "run", round(time.monotonic() - t0, 1), "s,",
          progress.retries, "retries")
    assert not errors, errors
    for kind, _ in events:
        tally.fault(f"server-{kind}")
    assert [k for k, _ in events] == ["restart", "crash"], (events, report.status, report.error)
    assert all(n < total for _, n in events), events  # both happened while copying
    assert report.exit_code == 0, (report.status, report.error)
    assert progress.retries >= 2, progress.retries  # both hit the run's connections
    compare(tally, src, dst, identity(FOLDERS))
    assert_untouched(tally, src, before)


def test_stalled_links_time_out_and_reconnect(dovecot, new_user, tmp_path, tally):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 60, rnd=6)
    before = digest(src)
    stalls = []
    with TapProxy("127.0.0.1", srv.port) as sp, TapProxy("127.0.0.1", srv.port) as tp:
        def stall(proxy, name):
            def act(*_):
                proxy.stall(2.5)  # longer than the 1 s read timeout
                stalls.append(name)
            return act
        tp.on(b" APPEND ", "upstream", stall(tp, "target"), nth=3)
        sp.on(b"BODY.PEEK[]", "upstream", stall(sp, "source"), nth=8)
        t0 = time.monotonic()
        report, progress = run_job(src, dst, tmp_path, src_port=sp.port, dst_port=tp.port, timeout=1.0,
                                   batch_count=4, connections=2, retries=10, tally=tally)
        elapsed = time.monotonic() - t0
    tally.fault("stall", len(stalls))
    assert sorted(stalls) == ["source", "target"]
    assert report.exit_code == 0, (report.status, report.error)
    assert progress.retries >= 2, progress.retries  # each stall ended in a timeout and a reconnect
    assert elapsed >= 2.5
    compare(tally, src, dst, identity(FOLDERS))
    assert_untouched(tally, src, before)
