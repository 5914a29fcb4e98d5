#!/usr/bin/env python3
"""Imports per hour against the number of `mailmigrate worker` processes on one PostgreSQL.

    .venv/bin/python benchmarks/workers.py [--workers 1,2,4] [--imports 12] [--messages 100]
                                           [--delay 0.020] [--runs 1] [--poll 0.2] [--out PATH | --no-write]

A fresh PostgreSQL (tests/servers/postgres.py) and two Dovecot instances on 127.0.0.1
(tests/dovecot/harness.py, under MM_BENCH_WORKDIR like benchmarks/run.py): the source holds
``--imports`` users of 90-110% x ``--messages`` small messages each (1-8 KB of text, 5 folders,
flags, keywords, dates), reached through tests/support/latency_proxy.py (``--delay`` one way, 40 ms
round trip by default, like a provider far away); the target holds as many empty users, reached
directly. For each worker count (``--runs`` times, alternating the order; the targets emptied
before every run):

- a new database, ``mailmigrate db upgrade --database URL``;
- one ``mailmigrate serve --database URL`` (operator token, the same MAILMIGRATE_SECRET_KEY as the
  workers) and N ``mailmigrate worker --database URL --concurrency C`` processes (``--concurrency``, 1), each with its own
  MAILMIGRATE_HOME (as on N hosts), all started and idle first;
- ``POST /api/batches`` with one CSV of every pair, then ``GET /api/batches/{id}`` every ``--poll``
  s until every row is final: wall time from the POST to that answer; imports/hour = imports /
  wall x 3600; speed-up against the first worker count; CPU seconds of the workers (from
  /proc/<pid>/stat) over the same span.

After each run every target user is compared with its source, folder by folder, as a multiset of
(SHA-256 of the exact bytes, flags, INTERNALDATE): nothing lost, nothing doubled. Prints a
Markdown report and writes it to ``--out`` (default benchmarks/workers.md; notes below its "kept by
workers.py" line are kept). Exit 1 if a run failed or a target differs. Must run as root (Dovecot
and PostgreSQL test instances drop privileges).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from benchmarks import run as bench  # noqa: E402  (its import keeps the instances under MM_BENCH_WORKDIR)
from benchmarks import serve_batch as sb  # noqa: E402  (mailbox loading, digests, target wipes)
from tests.dovecot.harness import DovecotServer  # noqa: E402
from tests.dovecot.harness import available as dovecot_available  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402
from tests.servers.postgres import available as postgres_available  # noqa: E402
from tests.support.latency_proxy import LatencyProxy  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
CLI = [str(PYTHON), str(ROOT / "cli.py")]
FINAL = sb.FINAL
log = bench.log


# --------------------------------------------------------------------------- mailboxes


def small_message(box: int, i: int) -> sb.Msg:
    """1-8 KB of text in one of serve_batch's 5 folders, with flags, keywords and a date."""
    r = random.Random(f"workers:{box}:{i}")
    x, acc, folder = r.random(), 0.0, sb.FOLDERS[-1][0]
    for name, share in sb.FOLDERS:
        acc += share
        if x < acc:
            folder = name
            break
    ts = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp()) + r.randrange(6 * 365 * 86400)
    pool = sb._pool()
    size = r.randrange(1_000, 8_000)
    start = r.randrange(len(pool) - size)
    text = pool[start:start + size]
    data = (f"Message-ID: <wk-{box}-{i}.{r.getrandbits(40):x}@bench.example>\n"
            f"From: Person {r.randrange(50)} <p{r.randrange(50)}@example.net>\nTo: box{box}@example.test\n"
            f"Date: {datetime.fromtimestamp(ts, UTC):%a, %d %b %Y %H:%M:%S +0000}\n"
            f"Subject: [wk-{box}-{i}] {' '.join(text.split()[:6])}\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + text).encode()
    flags = "".join(letter for letter, p in (("F", 0.05), ("R", 0.15), ("S", 0.8), ("a", 0.05), ("b", 0.02))
                    if r.random() < p)
    return sb.Msg(folder, data, ts, flags)


def batch_csv(source_port: int, dst: DovecotServer, pairs: list[tuple[str, str]]) -> str:
    """The operator's CSV: every source through the latency proxy, every target on the service's system."""
    from migrate.csvbatch.reader import COLUMNS

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for s, t in pairs:
        w.writerow({"source_email": s, "source_password": sb.PASSWORD, "source_provider": "imap",
                    "source_host": "127.0.0.1", "source_port": source_port, "source_security": "none",
                    "source_username": "", "target_email": t, "target_password": sb.PASSWORD,
                    "target_provider": "imap", "target_host": "127.0.0.1", "target_port": dst.port,
                    "target_security": "none", "target_username": "", "notify": ""})
    return buf.getvalue()


# Dovecot's "high-performance mode" (processes kept and re-used, as a provider runs it): by default
# every connection forks and execs an imap-login and an imap process, and on two cores shared with
# everything else that CPU, not the 40 ms, would set the pace of four workers.
DOVECOT_PERFORMANCE = """
service imap-login {
  service_count = 0
  process_min_avail = 2
}
service imap {
  service_count = 0
  process_min_avail = 4
}
"""

# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    workers: int
    wall: float = math.nan
    cpu_s: float = math.nan  # all workers, POST to the end
    rss_mb: float = math.nan  # the largest worker's peak
    pg_sessions: int = 0  # most sessions on the database at one poll (serve, workers; this probe not counted)
    pg_connects: int = 0  # sessions opened on the database from the POST to the end (pg_stat_database)
    machine_busy: float = math.nan  # share of all cores busy from the POST to the end (/proc/stat)
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _target_opts(dst: DovecotServer) -> list[str]:
    return ["--target-host", "127.0.0.1", "--target-port", str(dst.port), "--target-security", "none",
            "--allow-source-network", "127.0.0.1/32"]


def _start(cmd: list[str], env: dict[str, str], logfile: Path) -> subprocess.Popen:
    with logfile.open("wb") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_for(what: str, ready, procs: dict[str, tuple[subprocess.Popen, Path]], timeout: float = 60) -> None:
    """Poll ``ready()`` until true; a process that exits meanwhile ends the run with its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        for name, (p, logfile) in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}) before {what}: "
                                   f"{logfile.read_text(errors='replace')[-1500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.05)


def _stop(procs: dict[str, tuple[subprocess.Popen, Path]], run: Run) -> None:
    """SIGTERM to all (a worker hands back what it runs, here nothing), then wait; SIGKILL after 60 s."""
    for p, _log in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for name, (p, _log) in procs.items():
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            run.notes.append(f"{name} did not stop within 60 s of SIGTERM: killed")
            p.kill()
            p.wait()


def run_workers(n: int, *, db_url: str, text: str, imports: int, dst: DovecotServer, work: Path, concurrency: int,
                poll: float) -> Run:
    run = Run(n)
    r = subprocess.run([*CLI, "db", "upgrade", "--database", db_url], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        run.problems.append(f"db upgrade: exit {r.returncode}: {(r.stdout + r.stderr)[-1000:]}")
        return run
    token, key = "bench-" + uuid.uuid4().hex, _fernet_key()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MAILMIGRATE_")}
    base_env |= {"MAILMIGRATE_SECRET_KEY": key, "MAILMIGRATE_ADMIN_TOKEN": token}
    port = sb._free_port()
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        home = work / "serve-home"
        home.mkdir()
        procs["serve"] = (_start([*CLI, "serve", "--database", db_url, "--port", str(port), *_target_opts(dst)],
                                 {**base_env, "MAILMIGRATE_HOME": str(home)}, work / "serve.log"), work / "serve.log")
        for k in range(n):
            home = work / f"worker{k}-home"
            home.mkdir()
            logfile = work / f"worker{k}.log"
            procs[f"worker {k}"] = (_start([*CLI, "worker", "--database", db_url, "--concurrency", str(concurrency),
                                            "--public-url", f"http://127.0.0.1:{port}", *_target_opts(dst)],
                                           {**base_env, "MAILMIGRATE_HOME": str(home)}, logfile), logfile)
        worker_logs = [lf for name, (_p, lf) in procs.items() if name.startswith("worker")]
        _wait_for("all workers waiting for imports",
                  lambda: all("waiting for imports" in lf.read_text(errors="replace") for lf in worker_logs), procs)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as h:
            def healthy() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return h.get("/healthz").status_code == 200
                return False

            _wait_for("serve answering /healthz", healthy, procs)
            pids = [p.pid for name, (p, _lf) in procs.items() if name.startswith("worker")]
            cpu0 = sum(sb._cpu_s(pid) for pid in pids)
            serve_pid = procs["serve"][0].pid
            serve_cpu0 = sb._cpu_s(serve_pid)
            t0 = time.monotonic()
            resp = h.post("/api/batches", content=text.encode(), headers={**auth, "Content-Type": "text/csv"})
            if resp.status_code != 202:
                run.problems.append(f"POST /api/batches: {resp.status_code} {resp.text[:1500]}")
                return run
            batch_id = resp.json()["id"]
            probe = psycopg.connect(db_url, autocommit=True)
            connects0 = _connects(probe)
            busy0 = _machine_ticks()
            while True:
                sessions = probe.execute("SELECT count(*) - 1 FROM pg_stat_activity "
                                         "WHERE datname = current_database()").fetchone()[0]
                run.pg_sessions = max(run.pg_sessions, sessions)
                b = h.get(f"/api/batches/{batch_id}", headers=auth).json()
                if len(b["rows"]) == imports and all(row["state"] in FINAL for row in b["rows"]):
                    break
                if time.monotonic() - t0 > 3600:
                    run.problems.append("the batch did not end within an hour")
                    return run
                for name, (p, lf) in procs.items():
                    if p.poll() is not None:
                        run.problems.append(f"{name} exited ({p.returncode}) during the batch: "
                                            f"{lf.read_text(errors='replace')[-1500:]}")
                        return run
                time.sleep(poll)
            run.wall = time.monotonic() - t0
            run.pg_connects = _connects(probe) - connects0
            busy1 = _machine_ticks()
            run.machine_busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
            probe.close()
            run.cpu_s = sum(sb._cpu_s(pid) for pid in pids) - cpu0
            run.notes.append(f"serve's CPU during the batch: {sb._cpu_s(serve_pid) - serve_cpu0:.1f} s")
            run.rss_mb = max(sb._proc_status(pid, "VmHWM") for pid in pids) / 1024
            states = Counter(row["state"] for row in b["rows"])
            run.ok = states == Counter({"done": imports})
            views = [h.get(f"/api/imports/{row['import_id']}", headers=auth).json() for row in b["rows"]]
            if not run.ok:
                errors = sorted({str(v.get("error")) for v in views if v["state"] != "done"})
                run.problems.append(f"row states: {dict(states)}; errors: {'; '.join(errors)[:1000]}")
            run.notes += timeline(views)
            run.notes.append(f"PostgreSQL sessions opened during the batch: {run.pg_connects} "
                             f"({run.pg_connects / imports:.1f} per import); the machine's cores were "
                             f"{100 * run.machine_busy:.0f}% busy (everything: Dovecot, PostgreSQL, proxy, serve)")
    except RuntimeError as exc:
        run.problems.append(str(exc))
    finally:
        _stop(procs, run)
    return run


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores so far (/proc/stat: idle and iowait are not busy)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def _connects(probe: psycopg.Connection) -> int:
    row = probe.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else 0


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def timeline(views: list[dict]) -> list[str]:
    """How long an import ran, and how many ran at once (from their own timestamps)."""
    def ts(s: str | None) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else math.nan

    spans = [(ts(v.get("started_at")), ts(v.get("finished_at"))) for v in views]
    spans = [(a, b) for a, b in spans if not (math.isnan(a) or math.isnan(b))]
    if not spans:
        return []
    runs = [b - a for a, b in spans]
    events = sorted([(a, 1) for a, _b in spans] + [(b, -1) for _a, b in spans])
    now = peak = 0
    for _t, step in events:
        now += step
        peak = max(peak, now)
    created = min(ts(v["created_at"]) for v in views)
    return [f"imports ran {min(runs):.1f}-{max(runs):.1f} s each (median {statistics.median(runs):.1f} s), at most "
            f"{peak} at once; the last started {max(a for a, _b in spans) - created:.1f} s after the POST"]


def check(run: Run, dst: DovecotServer, pairs: list[tuple[str, str]], want: dict[str, dict[str, Counter]]) -> None:
    for s, t in pairs:
        got = sb.digest(dst, t)
        if got != want[s]:
            folders = sorted(set(got) | set(want[s]))
            diff = {f: (sum(got.get(f, Counter()).values()), sum(want[s].get(f, Counter()).values()))
                    for f in folders if got.get(f) != want[s].get(f)}
            run.problems.append(f"{t} differs from {s}: (target, source) messages per folder {diff}")
    run.ok = run.ok and not run.problems


# --------------------------------------------------------------------------- report


KEEP = "<!-- kept by workers.py: notes below this line survive a new run -->"


def report(runs: list[Run], *, counts: list[int], imports: int, messages: int, mbytes: float, delay: float,
           poll: float, started: datetime, load: tuple[str, str], argv: str, concurrency: int = 1) -> str:
    by = {n: [r for r in runs if r.workers == n] for n in counts}
    med = {n: statistics.median(r.wall for r in rs) for n, rs in by.items()}
    base = med[counts[0]]
    lines = [
        f"# Imports per hour against the number of `mailmigrate worker`s ({imports} imports)",
        "",
        f"{started:%Y-%m-%d %H:%M}; {sb.machine()}; PostgreSQL, serve, the workers and both Dovecots on this "
        f"one machine. Command: `.venv/bin/python benchmarks/workers.py{(' ' + argv) if argv else ''}`",
        "",
        f"Load average at start {load[0]}, at end {load[1]}.",
        "",
        f"The batch: {imports} source mailboxes, {messages} small messages (1-8 KB), {mbytes:.1f} MB, 5 folders "
        f"each, into {imports} empty target users on a second Dovecot. The sources are reached through a "
        f"proxy adding {delay * 1000:.0f} ms each way ({2 * delay * 1000:.0f} ms round trip); the target "
        "directly. One `mailmigrate serve --database` takes `POST /api/batches`; each worker is `mailmigrate "
        f"worker --database URL --concurrency {concurrency}` (its own MAILMIGRATE_HOME, as on its own host). A new database "
        f"and emptied targets for every run; {len(by[counts[0]])} run(s) per row, medians below.",
        "",
        "| workers | wall s | imports/hour | speed-up | msgs/s | CPU s (all workers) | CPU % of one core | "
        "peak RSS MB (a worker) | peak PostgreSQL sessions | all targets = sources |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, rs in by.items():
        cpu = statistics.median(r.cpu_s for r in rs)
        lines.append(f"| {n} | {med[n]:.1f} | {imports / med[n] * 3600:.0f} | {base / med[n]:.2f}x | "
                     f"{messages / med[n]:.0f} | {cpu:.1f} | {100 * cpu / med[n]:.0f}% | "
                     f"{max(r.rss_mb for r in rs):.0f} | {max(r.pg_sessions for r in rs)} | "
                     f"{'yes' if all(r.ok for r in rs) else 'NO'} |")
    lines += [
        "",
        f"Wall time: from the `POST /api/batches` to the first `GET /api/batches/{{id}}` (polled every {poll} s) "
        f"that shows every row final. Speed-up: wall time with {counts[0]} worker(s) / this wall time. CPU s: "
        "user + system of the worker processes over the same span (serve, PostgreSQL and Dovecot not counted).",
        "",
        "Per run (wall s / CPU s):",
        "",
    ]
    for n, rs in by.items():
        lines.append(f"- {n} worker(s): " + ", ".join(f"{r.wall:.1f} / {r.cpu_s:.1f}" for r in rs))
    lines.append("")
    for n, rs in by.items():
        for note in rs[-1].notes:
            lines.append(f"- {n} worker(s) (last run): {note}")
        for r in rs:
            for p in r.problems:
                lines.append(f"- {n} worker(s): PROBLEM: {p}")
    if all(r.ok for r in runs):
        lines.append("- every run: every target equals its source (SHA-256 of the bytes, flags, INTERNALDATE, "
                     "folder): nothing lost, nothing doubled")
    return "\n".join(lines).rstrip() + "\n"


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--workers {text!r}: give worker counts like 1,2,4") from None
    if not counts or any(not 1 <= c <= 32 for c in counts) or len(set(counts)) != len(counts):
        raise SystemExit(f"--workers {text!r}: distinct counts of 1-32, like 1,2,4")
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4", help="worker counts to time (default 1,2,4)")
    ap.add_argument("--imports", type=int, default=12, help="imports in the batch (1-25, default 12)")
    ap.add_argument("--messages", type=int, default=100, help="average messages per mailbox (default 100)")
    ap.add_argument("--delay", type=float, default=0.020, help="seconds added each way to the sources (0.020)")
    ap.add_argument("--runs", type=int, default=1, help="runs per worker count, alternating the order (1)")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between two GET /api/batches/{id} (0.2)")
    ap.add_argument("--concurrency", type=int, default=1, help="each worker's --concurrency (1)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "workers.md")
    ap.add_argument("--no-write", action="store_true", help="print the report only")
    a = ap.parse_args()
    counts = parse_counts(a.workers)
    if not 1 <= a.imports <= 25 or a.messages < 3 or a.runs < 1 or not 0 <= a.delay <= 1:
        raise SystemExit("--imports must be 1-25, --messages at least 3, --runs at least 1, --delay 0-1 s")
    for reason in (dovecot_available(), postgres_available()):
        if reason:
            raise SystemExit(f"cannot run: {reason}")
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", "cli.py", "migrate"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)  # time the code, not its compilation (see run.py)
    started, load0 = datetime.now(), " ".join(f"{x:.1f}" for x in os.getloadavg())
    pg = PostgresServer().start()
    src = DovecotServer("slash", starttls=False, name="mmwk-src", extra_config=DOVECOT_PERFORMANCE).start()
    dst = DovecotServer("slash", starttls=False, name="mmwk-dst", extra_config=DOVECOT_PERFORMANCE).start()
    # The proxy stands for the network to a provider: it gets the CPU first (nice -10), so its
    # 40 ms stay 40 ms when the machine is busy with Dovecot, PostgreSQL and the workers.
    proxy = LatencyProxy("127.0.0.1", src.port, delay=a.delay, priority=10).start()
    work = bench._bench_mkdtemp("workers-")
    runs: list[Run] = []
    try:
        t0 = time.monotonic()
        rng = random.Random("workers-sizes")
        pairs, want = [], {}
        total_msgs = total_bytes = 0
        for k in range(a.imports):
            s, t = f"wk-src{k:02d}@example.test", f"wk-dst{k:02d}@example.test"
            n = rng.randint(a.messages * 9 // 10, a.messages * 11 // 10)
            msgs = [small_message(k, i) for i in range(n)]
            sb.load_mailbox(src, s, msgs)
            dst.add_user(t, sb.PASSWORD)
            pairs.append((s, t))
            total_msgs += n
            total_bytes += sum(sb.vsize(m) for m in msgs)
        log(f"loaded {a.imports} mailboxes, {total_msgs} messages, {total_bytes / 1e6:.1f} MB "
            f"in {time.monotonic() - t0:.1f}s; reading them back for the checks ...")
        for s, _t in pairs:
            want[s] = sb.digest(src, s)
        assert proxy.port is not None
        text = batch_csv(proxy.port, dst, pairs)
        targets = [t for _s, t in pairs]
        for i in range(a.runs):
            for n in (counts if i % 2 == 0 else counts[::-1]):
                sb.wipe_targets(dst, targets)
                run_dir = work / f"w{n}-{i}"
                run_dir.mkdir()
                log(f"run {i + 1}: {n} worker(s) ...")
                r = run_workers(n, db_url=pg.create_database(f"mm_workers_{n}_{i}_{secrets.token_hex(3)}"),
                                text=text, imports=a.imports, dst=dst, work=run_dir, poll=a.poll,
                                concurrency=a.concurrency)
                log(f"  {r.wall:.1f}s, {a.imports / r.wall * 3600:.0f} imports/hour, workers' CPU {r.cpu_s:.1f}s; "
                    "checking the targets ...")
                if not r.problems:
                    check(r, dst, pairs, want)
                for problem in r.problems:
                    log(f"  PROBLEM: {problem}")
                runs.append(r)
    finally:
        proxy.stop()
        src.close()
        dst.close()
        pg.close()
        if all(r.ok for r in runs):
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs of the runs kept in {work}")
    if any(math.isnan(r.wall) for r in runs):
        log("a run did not finish: no report")
        return 1
    out = report(runs, concurrency=a.concurrency, counts=counts, imports=a.imports, messages=total_msgs, mbytes=total_bytes / 1e6,
                 delay=a.delay, poll=a.poll, started=started,
                 load=(load0, " ".join(f"{x:.1f}" for x in os.getloadavg())), argv=" ".join(sys.argv[1:]))
    print(out)
    if not a.no_write:
        # A hand-written analysis below the marker survives a new run.
        kept = a.out.read_text().partition(KEEP)[2] if a.out.exists() and KEEP in a.out.read_text() else ""
        a.out.write_text(out + (f"\n{KEEP}{kept}" if kept else ""))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
