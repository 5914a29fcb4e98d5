#!/usr/bin/env python3
"""25 mailboxes through `mailmigrate serve` (POST /api/batches) vs the same CSV through `mailmigrate batch`.

    .venv/bin/python benchmarks/serve_batch.py [--messages 300] [--mailboxes 25] [--parallel 4]
                                               [--runs 3] [--poll 0.1] [--profile] [--out PATH | --no-write]

Two Dovecot instances on 127.0.0.1 (tests/dovecot/harness.py, under MM_BENCH_WORKDIR like
benchmarks/run.py): the source holds ``--mailboxes`` users of 2/3..4/3 x ``--messages`` messages each
(200-400 for the default 300; mixed sizes: mostly 1-20 KB text, some 20-400 KB attachments, a few
0.5-2 MB), spread over 5 folders with flags, keywords and dates; the target as many empty users.
One CSV (literal passwords, a 0600 file) lists the pairs. ``--runs`` times each, alternating which
goes first, the target users emptied before every run (Dovecot stopped, their mail deleted, started
again on the same port):

- batch: ``mailmigrate batch <csv> --parallel N -q --no-notify`` as a process under /usr/bin/time -v;
  wall time around the process, start-up included;
- serve: ``mailmigrate serve --jobs N --allow-source-network 127.0.0.1/32`` as a process (operator
  token), started and idle first; ``POST /api/batches`` with the same CSV, then ``GET
  /api/batches/{id}`` every ``--poll`` s until every row is final; wall time from the POST to that
  answer; peak RSS is VmHWM of /proc/<pid>/status (the whole process), CPU from /proc/<pid>/stat.

After each run every target user is compared with its source, folder by folder, as a multiset of
(SHA-256 of the exact bytes, flags, INTERNALDATE). ``--profile``: one more run of each under py-spy
(``--gil``: where the Python CPU goes; `.venv/bin/pip install py-spy`), summarised in the report.
Prints a Markdown report and writes it to ``--out`` (default benchmarks/serve_batch.md; notes below
its "kept by serve_batch.py" line are kept). Exit 1 if a run failed or a target differs. Must run
as root (Dovecot test instances drop privileges).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks import run as bench  # noqa: E402  (its import keeps the instances under MM_BENCH_WORKDIR)
from tests.dovecot.harness import DovecotServer, available  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
TIME = "/usr/bin/time"
PASSWORD = "serve-Bench-pw1"
FOLDERS = (("INBOX", 0.40), ("Sent", 0.20), ("Archive/2022", 0.15), ("Archive/2023", 0.15), ("Lists/dev", 0.10))
KEYWORDS = ("$Forwarded", "$label1")  # Maildir keyword letters a, b
FINAL = ("done", "partial", "failed", "cancelled")
log = bench.log

# --------------------------------------------------------------------------- mailboxes

_POOL: str | None = None


def _pool() -> str:
    """2 MB of word salad; a message's text is a slice of it (fast, varied enough)."""
    global _POOL
    if _POOL is None:
        r = random.Random("serve-batch-pool")
        _POOL = bench._text(r, 2_000_000)
    return _POOL


@dataclass
class Msg:
    folder: str
    data: bytes  # LF line ends, as Dovecot stores a Maildir file
    ts: int
    flags: str  # Maildir info letters, e.g. "FRSa"


def make_message(box: int, i: int) -> Msg:
    r = random.Random(f"serve-batch:{box}:{i}")
    x, acc, folder = r.random(), 0.0, FOLDERS[-1][0]
    for name, share in FOLDERS:
        acc += share
        if x < acc:
            folder = name
            break
    ts = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp()) + r.randrange(6 * 365 * 86400)
    pool = _pool()
    kind = r.random()
    text_size = bench._logu(r, 800, 20_000)
    start = r.randrange(len(pool) - text_size)
    text = pool[start:start + text_size]
    head = (f"Message-ID: <sb-{box}-{i}.{r.getrandbits(40):x}@bench.example>\n"
            f"From: Person {r.randrange(50)} <p{r.randrange(50)}@example.net>\nTo: box{box}@example.test\n"
            f"Date: {datetime.fromtimestamp(ts, UTC):%a, %d %b %Y %H:%M:%S +0000}\n"
            f"Subject: [sb-{box}-{i}] {' '.join(text.split()[:6])}\n")
    if kind < 0.85:
        data = (head + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + text).encode()
    else:
        size = bench._logu(r, 500_000, 2_000_000) if kind > 0.98 else bench._logu(r, 20_000, 400_000)
        b64 = "\n".join(_b64_lines(r.randbytes(size)))
        data = (head + 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="sb"\n\n--sb\n'
                "Content-Type: text/plain; charset=utf-8\n\n" + text + "\n--sb\n"
                "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
                + b64 + "\n--sb--\n").encode()
    flags = ""
    if r.random() < 0.05:
        flags += "F"
    if r.random() < 0.15:
        flags += "R"
    if r.random() < 0.80:
        flags += "S"
    if r.random() < 0.05:
        flags += "a"
    if r.random() < 0.02:
        flags += "b"
    return Msg(folder, data, ts, flags)


def _b64_lines(raw: bytes) -> list[str]:
    import base64

    s = base64.b64encode(raw).decode()
    return [s[k:k + 76] for k in range(0, len(s), 76)]


def vsize(m: Msg) -> int:
    """The size IMAP shows (CRLF line ends)."""
    return len(m.data) + m.data.count(b"\n")


def load_mailbox(srv: DovecotServer, user: str, msgs: list[Msg]) -> None:
    """Place the messages straight into the user's Maildir (as benchmarks/run.py does: S=/W= sizes,
    mtime = INTERNALDATE, flags in the name), then let Dovecot index every folder once."""
    srv.add_user(user, PASSWORD)
    home = srv.home(user)
    base = home / "Maildir"
    dirs = {}
    for name, _share in FOLDERS:
        d = base if name == "INBOX" else base / name
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "dovecot-keywords").write_text("".join(f"{n} {kw}\n" for n, kw in enumerate(KEYWORDS)))
        dirs[name] = d
    for n, m in enumerate(msgs):
        fn = f"{m.ts}.M{n}P1.sb,S={len(m.data)},W={vsize(m)}:2,{m.flags}"
        path = dirs[m.folder] / "cur" / fn
        path.write_bytes(m.data)
        os.utime(path, (m.ts, m.ts))
    subprocess.run(["chown", "-R", f"{srv.uid}:{srv.gid}", str(home)], check=True)
    for name, _share in FOLDERS:
        srv.doveadm("mailbox", "subscribe", "-u", user, name)
    counts = bench.folder_counts(srv, user)  # indexes every folder
    want = Counter(m.folder for m in msgs)
    if any(counts.get(f) != n for f, n in want.items()):
        raise SystemExit(f"loading {user} failed: have {counts}, want {dict(want)}")


def digest(srv: DovecotServer, user: str) -> dict[str, Counter]:
    """Per selectable folder that holds mail: multiset of (SHA-256 of the bytes, flags, INTERNALDATE)."""
    out: dict[str, Counter] = {}
    with srv.client(user, PASSWORD) as c:
        c.normalise_times = False
        for flags, _sep, name in c.list_folders():
            if b"\\Noselect" in flags:
                continue
            c.select_folder(name, readonly=True)
            uids = c.search("ALL")
            if not uids:
                continue
            got: Counter = Counter()
            for k in range(0, len(uids), 100):
                for v in c.fetch(uids[k:k + 100], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]).values():
                    fl = tuple(sorted(f.decode() for f in v[b"FLAGS"] if f != b"\\Recent"))
                    got[(hashlib.sha256(v[b"BODY[]"]).hexdigest(), fl, int(v[b"INTERNALDATE"].timestamp()))] += 1
            out[name] = got
    return out


def wipe_targets(dst: DovecotServer, users: list[str]) -> None:
    """Empty the target users: stop Dovecot, delete their mail and indexes, start on the same port."""
    dst.stop()
    for u in users:
        home = dst.home(u)
        for p in home.iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    dst.restart()
    for u in users:
        if sum(bench.folder_counts(dst, u).values()):
            raise SystemExit(f"{u} is not empty after the wipe")


# --------------------------------------------------------------------------- the batch


def batch_csv(src: DovecotServer, dst: DovecotServer, pairs: list[tuple[str, str]]) -> str:
    from migrate.csvbatch.reader import COLUMNS

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for s, t in pairs:
        w.writerow({"source_email": s, "source_password": PASSWORD, "source_provider": "imap",
                    "source_host": "127.0.0.1", "source_port": src.port, "source_security": "none",
                    "source_username": "", "target_email": t, "target_password": PASSWORD,
                    "target_provider": "imap", "target_host": "127.0.0.1", "target_port": dst.port,
                    "target_security": "none", "target_username": "", "notify": ""})
    return buf.getvalue()


@dataclass
class Run:
    kind: str  # "batch" | "serve"
    wall: float = math.nan
    rss_mb: float = math.nan
    cpu_s: float = math.nan
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# Only threads holding the GIL: where the process's Python CPU goes (waits and I/O drop out).
SPY_ARGS = ("--format", "raw", "--threads", "--gil", "-r", "100")


def _spy() -> str:
    spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not os.path.exists(spy):
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return spy


def run_cli_batch(csv_path: Path, parallel: int, work: Path, profile: Path | None = None) -> Run:
    run = Run("batch")
    env = {**os.environ, "MAILMIGRATE_HOME": str(work / "cli-home")}
    cmd = [str(PYTHON), str(ROOT / "cli.py"), "batch", str(csv_path), "--parallel", str(parallel),
           "--journal-dir", str(work / "cli-journals"), "--report", str(work / "cli-report.json"), "-q",
           "--no-notify"]
    if profile is not None:
        cmd = [_spy(), "record", *SPY_ARGS, "-o", str(profile), "--", *cmd]
    with tempfile.NamedTemporaryFile("r", prefix="sb-time-", suffix=".txt") as tf:
        t0 = time.monotonic()
        r = subprocess.run([TIME, "-v", "-o", tf.name, *cmd], capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL)
        run.wall = time.monotonic() - t0
        tv = tf.read()
    if m := re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv):
        run.rss_mb = int(m.group(1)) / 1024
    u = re.search(r"User time \(seconds\): ([\d.]+)", tv)
    s = re.search(r"System time \(seconds\): ([\d.]+)", tv)
    if u and s:
        run.cpu_s = float(u.group(1)) + float(s.group(1))
    run.ok = r.returncode == 0
    if not run.ok:
        run.problems.append(f"exit {r.returncode}: {(r.stdout + r.stderr)[-1500:]}")
    with contextlib.suppress(OSError, ValueError, KeyError):
        rep = json.loads((work / "cli-report.json").read_text())
        runs = [row["duration_s"] for row in rep["rows"]]
        conns = sorted({row["connections"] for row in rep["rows"]})
        run.notes.append(f"rows ran {min(runs):.2f}-{max(runs):.2f} s each (median {statistics.median(runs):.2f} s) "
                         f"with {'/'.join(map(str, conns))} IMAP connection(s) per side; the batch itself (its "
                         f"report's duration_s, start-up excluded) took {rep['duration_s']:.2f} s")
    return run


def _proc_status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    raise KeyError(key)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_serve_batch(csv_text: str, dst: DovecotServer, jobs: int, work: Path, poll: float,
                    profile: Path | None = None) -> Run:
    run = Run("serve")
    token = "bench-" + uuid.uuid4().hex
    port = _free_port()
    env = {**os.environ, "MAILMIGRATE_HOME": str(work / "serve-home"), "MAILMIGRATE_ADMIN_TOKEN": token}
    env.pop("MAILMIGRATE_SECRET_KEY", None)
    logf = (work / "serve.log").open("wb")
    proc = subprocess.Popen([str(PYTHON), str(ROOT / "cli.py"), "serve", "--target-host", "127.0.0.1",
                             "--target-port", str(dst.port), "--target-security", "none", "--port", str(port),
                             "--jobs", str(jobs), "--allow-source-network", "127.0.0.1/32"],
                            env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    logf.close()
    auth = {"Authorization": f"Bearer {token}"}
    spy: subprocess.Popen | None = None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as h:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"serve exited: {(work / 'serve.log').read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if h.get("/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not answer /healthz within 30 s")
                time.sleep(0.05)
            idle_mb = _proc_status(proc.pid, "VmRSS") / 1024
            if profile is not None:
                spy = subprocess.Popen([_spy(), "record", *SPY_ARGS, "-o", str(profile), "--pid", str(proc.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cpu0 = _cpu_s(proc.pid)
            t0 = time.monotonic()
            r = h.post("/api/batches", content=csv_text.encode(), headers={**auth, "Content-Type": "text/csv"})
            if r.status_code != 202:
                run.problems.append(f"POST /api/batches: {r.status_code} {r.text[:1500]}")
                return run
            posted = time.monotonic() - t0
            batch_id = r.json()["id"]
            answered: list[float] = []  # how long each GET took: the service's cost of being watched
            while True:
                t1 = time.monotonic()
                b = h.get(f"/api/batches/{batch_id}", headers=auth).json()
                answered.append(time.monotonic() - t1)
                if b["rows"] and all(row["state"] in FINAL for row in b["rows"]):
                    break
                if time.monotonic() - t0 > 3600:
                    run.problems.append("the batch did not end within an hour")
                    return run
                time.sleep(poll)
            run.wall = time.monotonic() - t0
            run.cpu_s = _cpu_s(proc.pid) - cpu0
            run.rss_mb = _proc_status(proc.pid, "VmHWM") / 1024
            states = Counter(row["state"] for row in b["rows"])
            run.ok = states == Counter({"done": len(b["rows"])})
            views = [h.get(f"/api/imports/{row['import_id']}", headers=auth).json() for row in b["rows"]]
            if not run.ok:
                errors = sorted({str(v.get("error")) for v in views if v["state"] != "done"})
                run.problems.append(f"row states: {dict(states)}; errors: {'; '.join(errors)[:1000]}")
            run.notes += _timeline(views)
            run.notes.append(f"POST /api/batches answered in {posted * 1000:.0f} ms; {len(answered)} GET "
                             f"/api/batches/{{id}} (every {poll} s) answered in {statistics.median(answered) * 1000:.0f} "
                             f"ms (median), {max(answered) * 1000:.0f} ms at most; serve RSS idle {idle_mb:.0f} MB, "
                             f"peak (VmHWM) {run.rss_mb:.0f} MB")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return run


def _timeline(views: list[dict]) -> list[str]:
    """When the imports ran (from their own timestamps): run time, when the last started, the tail."""
    def ts(s: str | None) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else math.nan

    created = min(ts(v["created_at"]) for v in views)
    runs = [ts(v["finished_at"]) - ts(v["started_at"]) for v in views]
    ends = sorted(ts(v["finished_at"]) - created for v in views)
    return [f"imports ran {min(runs):.2f}-{max(runs):.2f} s each (median {statistics.median(runs):.2f} s) with "
            f"each server's connection cap shared among the imports at once (migrate/service/connections.py); "
            f"the last started "
            f"{max(ts(v['started_at']) for v in views) - created:.2f} s after the POST; the first ended at "
            f"{ends[0]:.2f} s, the last at {ends[-1]:.2f} s"]


def check(run: Run, dst: DovecotServer, pairs: list[tuple[str, str]], want: dict[str, dict[str, Counter]]) -> None:
    for s, t in pairs:
        got = digest(dst, t)
        if got != want[s]:
            folders = sorted(set(got) | set(want[s]))
            diff = {f: (sum(got.get(f, Counter()).values()), sum(want[s].get(f, Counter()).values()))
                    for f in folders if got.get(f) != want[s].get(f)}
            run.problems.append(f"{t} differs from {s}: (target, source) messages per folder {diff}")
    run.ok = run.ok and not run.problems


# --------------------------------------------------------------------------- profile summary


def profile_summary(path: Path, top: int = 12) -> list[str]:
    """Samples per thread kind (its name without a number or job id) and the hottest functions by
    own samples (py-spy raw format, ``--gil``: the thread holding the GIL, so Python CPU time)."""
    kinds: Counter[str] = Counter()
    own: Counter[str] = Counter()
    main_incl: Counter[str] = Counter()  # the event loop's thread: what the HTTP side costs
    total = main_total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        cnt, frames = int(n), stack.split(";")
        total += cnt
        name = frames[0].split(": ", 1)[1] if ": " in frames[0] else "(main)"
        kinds[re.sub(r"[_-]?([0-9a-f]{8,}|\d+)$", "", name)] += cnt
        parsed = [(m.group(1), m.group(2)) if (m := re.match(r"(.+?) \((.+?):\d+\)", f)) else (f, "")
                  for f in frames[1:]]
        if parsed:
            func, path = parsed[-1]
            own[f"{func} ({Path(path).name})"] += cnt
        if name == "MainThread":
            main_total += cnt
            for func, path in set(parsed):
                if "migrate/service/" in path or "migrate/report.py" in path:
                    main_incl[f"{func} ({Path(path).name})"] += cnt
    out = [f"{total} samples at 100 Hz ({total / 100:.1f} s holding the GIL); by thread kind: "
           + ", ".join(f"{k} {100 * c / max(total, 1):.0f}%" for k, c in kinds.most_common(8))]
    out += [f"  {100 * c / max(total, 1):5.1f}%  {f}" for f, c in own.most_common(top)]
    if main_incl:
        out += [f"MainThread (the event loop: {100 * main_total / max(total, 1):.0f}% of all samples), "
                "service functions including what they call:"]
        out += [f"  {100 * c / max(total, 1):5.1f}%  {f}" for f, c in main_incl.most_common(8)]
    return out


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        if m := re.search(r"model name\s*:\s*(.+)", f.read()):
            cpu = m.group(1).strip()
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        if m := re.search(r"MemTotal:\s*(\d+)", f.read()):
            mem = f"{int(m.group(1)) / 1024 / 1024:.0f} GB"
    dove = subprocess.run(["/usr/sbin/dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, Dovecot {dove}")


KEEP = "<!-- kept by serve_batch.py: notes below this line survive a new run -->"
NAMES = {"batch": "`mailmigrate batch --parallel {n}`", "serve": "`mailmigrate serve --jobs {n}` + `POST /api/batches`"}


def report(runs: list[Run], *, boxes: int, messages: int, mbytes: float, parallel: int, poll: float, started: datetime,
           load: tuple[str, str], argv: str, profiles: dict[str, list[str]]) -> str:
    by = {k: [r for r in runs if r.kind == k] for k in ("batch", "serve")}
    med = {k: statistics.median(r.wall for r in rs) for k, rs in by.items()}
    cpu = {k: statistics.median(r.cpu_s for r in rs) for k, rs in by.items()}
    rss = {k: max(r.rss_mb for r in rs) for k, rs in by.items()}
    ratio = med["serve"] / med["batch"]
    lines = [
        f"# `mailmigrate serve` vs `mailmigrate batch`: {boxes} mailboxes",
        "",
        f"{started:%Y-%m-%d %H:%M}; {machine()}; loopback, no TLS. Command: "
        f"`.venv/bin/python benchmarks/serve_batch.py{(' ' + argv) if argv else ''}`",
        "",
        f"Load average at start {load[0]}, at end {load[1]} (above ~1: other work shared the 2 cores and "
        "wall times are noisy; the CPU seconds of each tool's own process are steadier).",
        "",
        f"The batch: {boxes} source mailboxes, {messages} messages, {mbytes:.0f} MB (RFC822 sizes), 5 folders "
        f"each, into {boxes} empty target users on a second Dovecot; {parallel} mailboxes at a time; no "
        "confirmation mail (batch: `--no-notify`; serve: no SMTP server configured). "
        f"{len(by['batch'])} run(s) of each, alternating which goes first; the targets are emptied before "
        "every run; medians below.",
        "",
        "| run | wall s | msgs/s | MB/s | peak RSS MB | CPU s (own process) | all targets = sources |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for k, rs in by.items():
        lines.append(f"| {NAMES[k].format(n=parallel)} | {med[k]:.2f} | {messages / med[k]:.0f} | "
                     f"{mbytes / med[k]:.1f} | {rss[k]:.0f} | {cpu[k]:.1f} | "
                     f"{'yes' if all(r.ok for r in rs) else 'NO'} |")
    lines += [
        "",
        "| goal | measured | met |",
        "|---|---:|---|",
        f"| wall(serve) / wall(batch) <= 1.1 | {ratio:.2f} | {'yes' if ratio <= 1.1 else 'NO'} |",
        f"| serve peak RSS <= 250 MB | {rss['serve']:.0f} MB | {'yes' if rss['serve'] <= 250 else 'NO'} |",
        "",
        f"CPU s serve / batch: {cpu['serve'] / cpu['batch']:.2f}.",
        "",
        "Wall time: batch = the whole `mailmigrate batch` process (start-up included); serve = from the "
        f"`POST /api/batches` to the first `GET /api/batches/{{id}}` (polled every {poll} s) that shows every row "
        "final (the service was started and idle before). Peak RSS: batch = `/usr/bin/time -v`; serve = "
        "`VmHWM` of the serve process at the end of the batch (its peak since start, all threads). CPU s: "
        "user + system of that process during the same span.",
        "",
        "Per run (wall s / peak RSS MB / CPU s):",
        "",
    ]
    for k, rs in by.items():
        lines.append(f"- {k}: " + ", ".join(f"{r.wall:.2f} / {r.rss_mb:.0f} / {r.cpu_s:.1f}" for r in rs))
    lines.append("")
    for k, rs in by.items():
        for n in rs[-1].notes:
            lines.append(f"- {k} (last run): {n}")
        for r in rs:
            for p in r.problems:
                lines.append(f"- {k}: PROBLEM: {p}")
    if all(r.ok for r in runs):
        lines.append("- every run: every target equals its source (SHA-256 of the bytes, flags, INTERNALDATE, "
                     "folder)")
    if profiles:
        lines += ["", "## Where the Python CPU goes (py-spy --gil, one extra run of each, not timed)", ""]
        for k, summary in profiles.items():
            lines += [f"{NAMES[k].format(n=parallel)}:", "", "```", *summary, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=300, help="average messages per mailbox (each gets 2/3-4/3 "
                                                              "of it; default 300: 200-400)")
    ap.add_argument("--mailboxes", type=int, default=25, help="mailboxes in the batch (1-25, default 25)")
    ap.add_argument("--parallel", type=int, default=4, help="batch --parallel and serve --jobs (default 4)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each, alternating the order (default 3)")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between two GET /api/batches/{id} (0.1)")
    ap.add_argument("--profile", action="store_true", help="then one more run of each under py-spy")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "serve_batch.md")
    ap.add_argument("--no-write", action="store_true", help="print the report only")
    a = ap.parse_args()
    if not 1 <= a.mailboxes <= 25 or a.messages < 3 or a.parallel < 1 or a.runs < 1:
        raise SystemExit("--mailboxes must be 1-25, --messages at least 3, --parallel and --runs at least 1")
    if reason := available():
        raise SystemExit(f"cannot run: {reason}")
    if not os.path.exists(TIME):
        raise SystemExit(f"{TIME} missing: apt-get install -y time")
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", "cli.py", "migrate"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)  # time the code, not its compilation (see run.py)
    started, load0 = datetime.now(), " ".join(f"{x:.1f}" for x in os.getloadavg())
    src = DovecotServer("slash", starttls=False, name="mmsb-src").start()
    dst = DovecotServer("slash", starttls=False, name="mmsb-dst").start()
    work = bench._bench_mkdtemp("serve-batch-")
    runs: list[Run] = []
    profiles: dict[str, list[str]] = {}
    try:
        t0 = time.monotonic()
        rng = random.Random("serve-batch-sizes")
        pairs, want = [], {}
        total_msgs, total_bytes = 0, 0
        for k in range(a.mailboxes):
            s, t = f"sb-src{k:02d}@example.test", f"sb-dst{k:02d}@example.test"
            n = rng.randint(a.messages * 2 // 3, a.messages * 4 // 3)
            msgs = [make_message(k, i) for i in range(n)]
            load_mailbox(src, s, msgs)
            dst.add_user(t, PASSWORD)
            pairs.append((s, t))
            total_msgs += n
            total_bytes += sum(vsize(m) for m in msgs)
        log(f"loaded {a.mailboxes} mailboxes, {total_msgs} messages, {total_bytes / 1e6:.0f} MB "
            f"in {time.monotonic() - t0:.1f}s; reading them back for the checks ...")
        for s, _t in pairs:
            want[s] = digest(src, s)
        text = batch_csv(src, dst, pairs)
        csv_path = work / "batch.csv"
        csv_path.write_text(text)
        csv_path.chmod(0o600)  # literal passwords
        targets = [t for _s, t in pairs]

        def one(kind: str, i: int, profile: Path | None = None) -> Run:
            wipe_targets(dst, targets)
            run_dir = work / f"{kind}-{i}"
            run_dir.mkdir()
            log(f"run {i + 1} {kind}{' (profiled)' if profile else ''} ...")
            r = (run_cli_batch(csv_path, a.parallel, run_dir, profile) if kind == "batch"
                 else run_serve_batch(text, dst, a.parallel, run_dir, a.poll, profile))
            log(f"  {r.wall:.2f}s, CPU {r.cpu_s:.1f}s, peak RSS {r.rss_mb:.0f} MB; checking the targets ...")
            if not r.problems:
                check(r, dst, pairs, want)
            for problem in r.problems:
                log(f"  PROBLEM: {problem}")
            return r

        for i in range(a.runs):
            for kind in (("batch", "serve") if i % 2 == 0 else ("serve", "batch")):
                runs.append(one(kind, i))
        if a.profile:
            for kind in ("batch", "serve"):
                path = work / f"profile-{kind}.txt"
                one(kind, a.runs, path)
                profiles[kind] = profile_summary(path)
    finally:
        src.close()
        dst.close()
        shutil.rmtree(work, ignore_errors=True)
    text = report(runs, boxes=a.mailboxes, messages=total_msgs, mbytes=total_bytes / 1e6, parallel=a.parallel, poll=a.poll,
                  started=started, load=(load0, " ".join(f"{x:.1f}" for x in os.getloadavg())),
                  argv=" ".join(sys.argv[1:]), profiles=profiles)
    print(text)
    if not a.no_write:
        # A hand-written analysis below the marker survives a new run.
        kept = a.out.read_text().partition(KEEP)[2] if a.out.exists() and KEEP in a.out.read_text() else ""
        a.out.write_text(text + (f"\n{KEEP}{kept}" if kept else ""))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
