#!/usr/bin/env python3
"""Where does mailmigrate spend its time? Profile one copy of the benchmark mailbox.

    .venv/bin/python benchmarks/profile_mm.py --messages 5000 [--connections 4] [--mode py-spy|cprofile]

Loads the benchmark mailbox (benchmarks/run.py) into a source Dovecot, then runs one mailmigrate copy
into an empty target user under py-spy (`pip install py-spy`; sampling, all threads, native-free) or
cProfile, and prints the hottest functions by own time and by inclusive time, plus the CPU time of the
process. py-spy output: /var/tmp/mailmigrate-bench/profile-<N>-c<C>[-idle].txt (collapsed stacks, open in
speedscope.app). With --idle (wall-clock view: waiting threads count too) it also splits the worker
threads' time into phases (APPEND, body FETCH, metadata FETCH, journal, ...).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (also patches the harness to keep instances out of /tmp)


def summarize_collapsed(path: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        cnt = int(n)
        total += cnt
        frames = stack.split(";")
        if frames and frames[0].startswith("thread"):
            threads[frames[0]] += cnt
            frames = frames[1:]
        if frames and frames[0].startswith("process"):
            frames = frames[1:]
        names = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")" if " (" in f else f for f in frames]
        if names:
            own[names[-1]] += cnt
        for nm in set(names):
            incl[nm] += cnt
    out = [f"{total} samples"]
    if threads:
        out += ["", "samples per thread:"] + [f"  {c:6d} {100 * c / total:5.1f}%  {t}" for t, c in threads.most_common(12)]
    out += ["", f"top {top} by own time:"] + [f"  {c:6d} {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", f"top {top} by inclusive time:"] + [f"  {c:6d} {100 * c / total:5.1f}%  {f}"
                                                    for f, c in incl.most_common(top)]
    return "\n".join(out)


PHASES = [  # first match along the stack wins
    ("APPEND to target (incl. waiting for the server)", "append_items"),
    ("FETCH bodies from source", "ImapEndpoint.fetch_messages"),
    ("FETCH flags/headers from source (fetch_meta)", "ImapEndpoint.fetch_meta"),
    ("ledger reconcile with target", "reconcile_with_target"),
    ("journal transactions", "SQLiteStore.tx"),
    ("journal record_messages", "SQLiteStore.record_messages"),
    ("ledger claim/confirm", "Ledger.claim"),
    ("SELECT/STATUS", "ImapEndpoint.status"),
    ("connect + login", "open_client"),
    ("folder lock", "folder_lock"),
]


def phases(path: Path) -> str:
    acc: collections.Counter[str] = collections.Counter()
    workers = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not stack or "folder_" not in frames[0]:  # worker threads are named folder_N
            continue
        cnt = int(n)
        workers += cnt
        acc[next((name for name, key in PHASES if any(key in f for f in frames)),
                 "other: " + frames[-1].split(" (")[0])] += cnt
    lines = [f"worker-thread time by phase ({workers} samples):"]
    lines += [f"  {c:6d} {100 * c / max(workers, 1):5.1f}%  {k}" for k, c in acc.most_common(15)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--mode", choices=("py-spy", "cprofile"), default="py-spy")
    ap.add_argument("--idle", action="store_true", help="py-spy: include waiting threads (wall-clock view)")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    metas = run.ensure_corpus(a.messages)
    src = run.DovecotServer("slash", starttls=False, name="mmprof-src").start()
    dst = run.DovecotServer("slash", starttls=False, name="mmprof-dst").start()
    jdir = Path(tempfile.mkdtemp(prefix="mmprof-journal-", dir=run.WORKDIR))
    try:
        run.load_source(src, "src", metas)
        dst.add_user("dst", run.PASSWORD)
        cmd, env = run.mailmigrate_cmd(src, "src", dst, "dst", jdir / "journal.sqlite", a.connections)
        suffix = f"{a.messages}-c{a.connections}{'-idle' if a.idle else ''}"
        if a.mode == "py-spy":
            spy = shutil.which("py-spy") or str(run.ROOT / ".venv" / "bin" / "py-spy")
            run.WORKDIR.mkdir(parents=True, exist_ok=True)
            out = run.WORKDIR / f"profile-{suffix}.txt"
            full = [spy, "record", "--format", "raw", "--threads", "-r", str(a.rate), "-o", str(out),
                    *(["--idle"] if a.idle else []), "--", *cmd]
        else:
            out = jdir / "cprofile.out"
            full = [cmd[0], "-m", "cProfile", "-o", str(out), *cmd[1:]]
        t = run.timed(full, env=env, cwd=run.ROOT)
        print(f"exit {t.rc}, wall {t.wall:.2f}s (profiler overhead included), peak RSS {t.rss_mb:.0f} MB, "
              f"user {t.user:.2f}s sys {t.sys:.2f}s ({t.cpu_pct}% CPU)")
        if t.rc:
            print(t.out)
        if a.mode == "py-spy":
            print(summarize_collapsed(out, a.top))
            if a.idle:
                print("\n" + phases(out))
            print(f"\ncollapsed stacks: {out}")
        else:
            import pstats
            st = pstats.Stats(str(out))
            st.sort_stats("tottime").print_stats(a.top)
            st.sort_stats("cumulative").print_stats(a.top)
        probs = run.verify(src, "src", dst, "dst", metas, 0)
        print("copy complete" if not probs else f"PROBLEMS: {probs[:10]}")
    finally:
        src.close()
        dst.close()
        shutil.rmtree(jdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
