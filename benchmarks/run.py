#!/usr/bin/env python3
"""Side-by-side throughput benchmark: mailmigrate vs Dovecot's dsync (`doveadm backup` over imapc).

    .venv/bin/python benchmarks/run.py --messages 5000 [--messages 20000] [--runs 2]

For every size: build a realistic mailbox deterministically (cached under /tmp), load it into a
source Dovecot, then in alternation copy it with mailmigrate (4 IMAP connections per side) and with
dsync into fresh, empty users of a second Dovecot instance, time the copy and the no-op re-run
(wall time; peak RSS from /usr/bin/time -v), check both copies, and print a markdown table (also
written to benchmarks/results.md). See benchmarks/README.md for what is measured and the caveats.
Must run as root (Dovecot test instances drop privileges per service).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.dovecot.harness as harness  # noqa: E402
from tests.dovecot.harness import DOVEADM, DovecotServer, available  # noqa: E402

# Dovecot's unprivileged processes must traverse every directory up to the passwd files and mail.
# The harness puts instances under /tmp, which breaks for the whole machine the moment anything
# chmods /tmp to 0700 (mailmigrate's journal chmods its parent directory to 0700: `--journal
# /tmp/x.sqlite` does exactly that). Keep the benchmark's instances in a folder of our own.
WORKDIR = Path(os.environ.get("MM_BENCH_WORKDIR", "/var/tmp/mailmigrate-bench"))


def _bench_mkdtemp(prefix: str) -> Path:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    for p in (WORKDIR, *WORKDIR.parents):
        if p.stat().st_mode & 0o005 != 0o005:  # others need r-x to reach the instance
            raise SystemExit(f"{p} is not world-traversable (mode {p.stat().st_mode & 0o7777:o}): Dovecot "
                             "cannot reach its files; pick another MM_BENCH_WORKDIR")
        if p == Path("/"):
            break
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=WORKDIR))
    d.chmod(0o755)
    return d


harness._mkdtemp = _bench_mkdtemp

CACHE = Path(os.environ.get("MM_BENCH_CACHE", "/tmp/mailmigrate-bench-cache")) / "v1"
CHUNK = 1000  # messages are generated and cached in chunks of this many
SEED = "mailmigrate-bench-v1"
PYTHON = ROOT / ".venv" / "bin" / "python"
TIME = "/usr/bin/time"
PASSWORD = "bench-Pw-1"

# folder, share of the messages, year range of the dates
FOLDERS: list[tuple[str, float, tuple[int, int]]] = [
    ("INBOX", 0.26, (2023, 2024)),
    ("Sent", 0.13, (2019, 2024)),
    ("Archive/2019", 0.06, (2019, 2019)),
    ("Archive/2020", 0.07, (2020, 2020)),
    ("Archive/2021", 0.07, (2021, 2021)),
    ("Archive/2022", 0.08, (2022, 2022)),
    ("Archive/2023", 0.08, (2023, 2023)),
    ("Projects/A", 0.07, (2021, 2024)),
    ("Projects/B", 0.05, (2022, 2024)),
    ("Lists/dev", 0.08, (2019, 2024)),
    ("Lists/announce", 0.02, (2019, 2024)),
    ("Drafts", 0.01, (2024, 2024)),
    ("Trash", 0.02, (2024, 2024)),
]
KEYWORDS = ["$Forwarded", "$label1"]  # maildir keyword letters a, b

_WORDS: list[str] | None = None


def _words() -> list[str]:
    global _WORDS
    if _WORDS is None:
        r = random.Random(SEED + ":words")
        syl = ["ka", "to", "ri", "men", "sa", "lo", "ver", "de", "in", "qua", "ul", "pro", "ex", "na", "tion", "be",
               "cor", "al", "is", "um", "ser", "fi", "ga", "mo", "ne", "ple", "st", "ra", "ti", "on"]
        ws = {"".join(r.choice(syl) for _ in range(r.randint(1, 4))) for _ in range(3000)}
        ws |= {"the", "and", "of", "to", "a", "in", "is", "for", "on", "that", "with", "we", "deploy", "release",
               "meeting", "invoice", "server", "mailbox", "Grüße", "café", "naïve", "résumé"}
        _WORDS = sorted(ws)
    return _WORDS


def _text(r: random.Random, nbytes: int) -> str:
    words = _words()
    out, line, size = [], [], 0
    while size < nbytes:
        chunk = r.choices(words, k=64)
        for w in chunk:
            line.append(w)
            if sum(map(len, line)) + len(line) > 70:
                s = " ".join(line)
                out.append(s)
                size += len(s) + 1
                line = []
                if r.random() < 0.12:
                    out.append("")
    return "\n".join(out) + "\n"


def _logu(r: random.Random, lo: float, hi: float) -> int:
    return int(math.exp(r.uniform(math.log(lo), math.log(hi))))


def _pick_folder(r: random.Random) -> tuple[str, tuple[int, int]]:
    x, acc = r.random() * sum(w for _, w, _ in FOLDERS), 0.0
    for name, w, years in FOLDERS:
        acc += w
        if x < acc:
            return name, years
    return FOLDERS[-1][0], FOLDERS[-1][2]


def make_message(i: int) -> tuple[bytes, dict]:
    """Message number i (LF line ends, as Dovecot stores it) and its metadata. Deterministic in i alone,
    so a 20,000-message mailbox starts with the same 5,000 messages as the 5,000 one."""
    r = random.Random(f"{SEED}:{i}")
    folder, (y0, y1) = _pick_folder(r)
    start = datetime(y0, 1, 1, tzinfo=UTC).timestamp()
    end = min(datetime(y1 + 1, 1, 1, tzinfo=UTC).timestamp(), datetime(2024, 11, 1, tzinfo=UTC).timestamp())
    ts = int(r.uniform(start, end))
    flags = []
    if folder == "Drafts":
        flags.append("D")
    if folder in ("Sent", "Drafts") or r.random() < 0.8:
        flags.append("S")
    if r.random() < 0.15:
        flags.append("R")
    if r.random() < 0.05:
        flags.append("F")
    kw = ""
    if r.random() < 0.05:
        kw += "a"
    if r.random() < 0.02:
        kw += "b"
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
    frm, to = r.sample(names, 2)
    date_hdr = datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    subject_words = " ".join(r.choices(_words(), k=r.randint(2, 8)))
    hdr = [
        f"Return-Path: <{frm}@example.org>",
        f"Received: from mx{r.randint(1, 9)}.example.net (mx.example.net [192.0.2.{r.randint(1, 254)}])\n"
        f"\tby mail.example.org with ESMTPS id {r.getrandbits(48):012x}\n\tfor <{to}@example.org>; {date_hdr}",
    ]
    if r.random() >= 0.01:  # ~1% without Message-ID
        hdr.append(f"Message-ID: <{i}.{r.getrandbits(64):016x}@bench.example.org>")
    hdr += [
        f"Date: {date_hdr}",
        f"From: {frm.title()} <{frm}@example.org>",
        f"To: {to.title()} <{to}@example.org>",
        f"Subject: [bench-{i:06d}] {subject_words}",
        "MIME-Version: 1.0",
    ]
    if i % 1000 == 500 or i == 3:
        kind, att = "huge", 10 * 1024 * 1024
    elif r.random() < 0.10:
        kind, att = "attachment", _logu(r, 60_000, 2_300_000)
    else:
        kind, att = "text", 0
    if not att:
        hdr += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        body = _text(r, _logu(r, 1_500, 19_000))
        data = ("\n".join(hdr) + "\n\n" + body).encode()
    else:
        boundary = f"=_bench_{r.getrandbits(64):016x}"
        raw = r.randbytes(att * 3 // 4)
        b64 = base64.encodebytes(raw)  # 76-char lines, LF
        name = r.choice(["report.pdf", "photo.jpg", "data.zip", "slides.pptx", "scan.tiff"])
        hdr.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        text = _text(r, _logu(r, 300, 4_000))
        data = (
            "\n".join(hdr) + "\n\nThis is a multi-part message in MIME format.\n\n"
            f"--{boundary}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{text}\n"
            f"--{boundary}\nContent-Type: application/octet-stream; name=\"{name}\"\n"
            f"Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"{name}\"\n\n"
        ).encode() + b64 + f"\n--{boundary}--\n".encode()
    meta = {"i": i, "folder": folder, "ts": ts, "flags": "".join(sorted(flags)) + kw, "kind": kind,
            "size": len(data), "vsize": len(data) + data.count(b"\n")}
    return data, meta


def _chunk_dir(k: int) -> Path:
    return CACHE / f"chunk{k:04d}"


def _gen_chunk(k: int) -> int:
    d = _chunk_dir(k)
    if (d / "meta.json").exists():
        return k
    tmp = CACHE / f".tmp-chunk{k:04d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    metas = []
    for i in range(k * CHUNK, (k + 1) * CHUNK):
        data, meta = make_message(i)
        (tmp / f"{i:06d}.eml").write_bytes(data)
        metas.append(meta)
    (tmp / "meta.json").write_text(json.dumps(metas))
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmp, d)
    return k


def ensure_corpus(n: int) -> list[dict]:
    chunks = list(range((n + CHUNK - 1) // CHUNK))
    todo = [k for k in chunks if not (_chunk_dir(k) / "meta.json").exists()]
    if todo:
        t0 = time.monotonic()
        log(f"generating {len(todo) * CHUNK} messages into {CACHE} ...")
        CACHE.mkdir(parents=True, exist_ok=True)
        with multiprocessing.Pool(min(len(todo), os.cpu_count() or 1)) as pool:
            for _ in pool.imap_unordered(_gen_chunk, todo):
                pass
        log(f"  generated in {time.monotonic() - t0:.1f}s")
    metas: list[dict] = []
    for k in chunks:
        metas += json.loads((_chunk_dir(k) / "meta.json").read_text())
    return metas[:n]


def msg_path(i: int) -> Path:
    return _chunk_dir(i // CHUNK) / f"{i:06d}.eml"


# --------------------------------------------------------------------------- helpers


def log(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


@dataclass
class Timed:
    wall: float
    rss_mb: float
    rc: int
    out: str
    user: float = float("nan")  # CPU seconds (from time -v)
    sys: float = float("nan")
    cpu_pct: str = "?"


def timed(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None) -> Timed:
    """Run cmd under /usr/bin/time -v; wall time from our own clock, peak RSS from time -v."""
    with tempfile.NamedTemporaryFile("r", prefix="mmbench-time-", suffix=".txt") as tf:
        t0 = time.monotonic()
        r = subprocess.run([TIME, "-v", "-o", tf.name, *cmd], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, env={**os.environ, **(env or {})}, cwd=cwd)
        wall = time.monotonic() - t0
        tv = tf.read()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    u = re.search(r"User time \(seconds\): ([\d.]+)", tv)
    s = re.search(r"System time \(seconds\): ([\d.]+)", tv)
    p = re.search(r"Percent of CPU this job got: (\S+)", tv)
    return Timed(wall, rss, r.returncode, (r.stdout + r.stderr)[-3000:], float(u.group(1)) if u else float("nan"),
                 float(s.group(1)) if s else float("nan"), p.group(1) if p else "?")


def folder_counts(srv: DovecotServer, user: str) -> dict[str, int]:
    out = srv.doveadm("-f", "tab", "mailbox", "status", "-u", user, "messages", "*").stdout.decode()
    res = {}
    for line in out.splitlines()[1:]:
        name, _, n = line.rpartition("\t")
        if name:
            res[name] = int(n)
    return res


def imap_counts(srv: DovecotServer, user: str) -> dict[str, int]:
    """Messages per selectable folder, as an IMAP client sees them (LIST + STATUS)."""
    with srv.client(user, PASSWORD) as c:
        return {name: c.folder_status(name, [b"MESSAGES"])[b"MESSAGES"]
                for flags, _sep, name in c.list_folders() if b"\\Noselect" not in flags}


# --------------------------------------------------------------------------- source loading


def load_source(srv: DovecotServer, user: str, metas: list[dict]) -> None:
    """Place the cached messages straight into the user's Maildir (LAYOUT=fs, LF line ends, S=/W= sizes,
    mtime = INTERNALDATE, flags and keywords in the file name), as Dovecot itself would have stored them;
    then let Dovecot index every folder once. Much faster than one `doveadm save` per message."""
    t0 = time.monotonic()
    srv.add_user(user, PASSWORD)
    home = srv.home(user)
    base = home / "Maildir"
    dirs: dict[str, Path] = {}
    for name, _, _ in FOLDERS:
        d = base if name == "INBOX" else base / name
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "dovecot-keywords").write_text("".join(f"{n} {kw}\n" for n, kw in enumerate(KEYWORDS)))
        dirs[name] = d
    for m in metas:
        i = m["i"]
        fn = f"{m['ts']}.M{i}P1.bench,S={m['size']},W={m['vsize']}:2,{m['flags']}"
        dst = dirs[m["folder"]] / "cur" / fn
        try:
            os.link(msg_path(i), dst)
        except OSError:
            shutil.copyfile(msg_path(i), dst)
        os.utime(dst, (m["ts"], m["ts"]))
    subprocess.run(["chown", "-R", f"{srv.uid}:{srv.gid}", str(home)], check=True)
    for name, _, _ in FOLDERS:
        srv.doveadm("mailbox", "subscribe", "-u", user, name)
    counts = folder_counts(srv, user)  # indexes every folder
    want: dict[str, int] = {}
    for m in metas:
        want[m["folder"]] = want.get(m["folder"], 0) + 1
    bad = {f: (counts.get(f), n) for f, n in want.items() if counts.get(f) != n}
    if bad:
        raise SystemExit(f"source load failed, (have, want) per folder: {bad}")
    # Warm the page cache and Dovecot's index/cache files so neither tool pays for the first read.
    srv.doveadm("fetch", "-u", user, "uid flags date.received size.virtual hdr.message-id", "mailbox", "*", "all")
    for d in dirs.values():
        for p in (d / "cur").iterdir():
            with open(p, "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass
    log(f"  loaded {len(metas)} messages into {user} in {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------- the two tools


def mailmigrate_cmd(src: DovecotServer, src_user: str, dst: DovecotServer, dst_user: str, journal: Path,
                    connections: int) -> tuple[list[str], dict]:
    env = {"MMBENCH_SRC_PW": PASSWORD, "MMBENCH_DST_PW": PASSWORD}
    args = [str(PYTHON), str(ROOT / "cli.py"), "import"]
    for role, srv, user, pw in (("source", src, src_user, "env:MMBENCH_SRC_PW"),
                                ("target", dst, dst_user, "env:MMBENCH_DST_PW")):
        args += [f"--{role}-email", f"{user}@example.test", f"--{role}-username", user,
                 f"--{role}-password", pw, f"--{role}-host", "127.0.0.1", f"--{role}-port", str(srv.port),
                 f"--{role}-security", "none", f"--{role}-provider", "imap"]
    args += ["--journal", str(journal), "--report", str(journal.with_suffix(".report.json")),
             "--connections", str(connections), "-q", "--no-notify"]
    return args, env


def dsync_conf(dst: DovecotServer) -> Path:
    """The target instance's config, except that the namespace takes its location from mail_location:
    dsync converts only such a namespace to imapc ("All your namespaces have a location setting")."""
    conf = dst.root / "dsync.conf"
    text = dst.conf_path.read_text()
    m = re.search(r"^  location = (\S+)$", text, re.M)
    if not m:
        raise SystemExit("unexpected target config: no namespace location")
    conf.write_text(text.replace(m.group(0), "  location =") + f"mail_location = {m.group(1)}\n")
    return conf


def dsync_cmd(src: DovecotServer, src_user: str, dst: DovecotServer, dst_user: str) -> list[str]:
    # Dovecot's documented imapc migration (doc: "Migration from other IMAP servers" / migration.md).
    opts = {
        "imapc_host": "127.0.0.1",
        "imapc_port": str(src.port),
        "imapc_user": src_user,
        "imapc_password": PASSWORD,
        "imapc_ssl": "no",
        "imapc_features": "rfc822.size fetch-headers",
        "mail_prefetch_count": "20",
        "mail_fsync": "never",
    }
    cmd = [DOVEADM, "-c", str(dsync_conf(dst))]
    for k, v in opts.items():
        cmd += ["-o", f"{k}={v}"]
    return cmd + ["backup", "-R", "-u", dst_user, "imapc:"]


# --------------------------------------------------------------------------- verification


def verify(src: DovecotServer, src_user: str, dst: DovecotServer, dst_user: str, metas: list[dict],
           spot: int) -> list[str]:
    """Problems found (empty = complete and exact): per-folder counts, then a byte-exact spot check of
    `spot` seeded-random messages (plus every huge one and one without Message-ID): BODY[], flags,
    INTERNALDATE against the source."""
    problems = []
    sc, dc = imap_counts(src, src_user), imap_counts(dst, dst_user)
    for f, n in sorted(sc.items()):
        if dc.get(f) != n:
            problems.append(f"folder {f}: source {n} messages, copy {dc.get(f)}")
    for f, n in sorted(dc.items()):
        if f not in sc and n:
            problems.append(f"extra folder {f} in copy with {n} messages")
    if not spot:
        return problems
    r = random.Random(f"{SEED}:spot:{len(metas)}")
    picks = {m["i"] for m in r.sample(metas, min(spot, len(metas)))}
    picks |= {m["i"] for m in metas if m["kind"] == "huge"}
    by_i = {m["i"]: m for m in metas}
    no_mid = [m["i"] for m in metas if b"Message-ID:" not in msg_path(m["i"]).read_bytes()[:2000]][:1]
    picks |= set(no_mid)
    per_folder: dict[str, list[int]] = {}
    for i in sorted(picks):
        per_folder.setdefault(by_i[i]["folder"], []).append(i)
    sconn, dconn = src.client(src_user, PASSWORD, timeout=120), dst.client(dst_user, PASSWORD, timeout=120)
    try:
        for c in (sconn, dconn):
            c.normalise_times = False
        for folder, idx in per_folder.items():
            got = {}
            for name, c in (("source", sconn), ("copy", dconn)):
                try:
                    c.select_folder(folder, readonly=True)
                except Exception as exc:  # noqa: BLE001 - a missing folder is already reported above
                    problems.append(f"{folder}: cannot select in {name}: {exc}")
                    for i in idx:
                        got.setdefault(i, {})[name] = None
                    continue
                for i in idx:
                    uids = c.search(["HEADER", "Subject", f"bench-{i:06d}]"])
                    if len(uids) != 1:
                        got.setdefault(i, {})[name] = None
                        problems.append(f"{folder} #{i}: {len(uids)} matches in {name}")
                        continue
                    v = c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])[uids[0]]
                    idate = v[b"INTERNALDATE"]
                    got.setdefault(i, {})[name] = (
                        v[b"BODY[]"],
                        tuple(sorted(f.decode() for f in v[b"FLAGS"] if f != b"\\Recent")),
                        int(idate.timestamp()),
                    )
            for i in idx:
                s, d = got[i].get("source"), got[i].get("copy")
                if s is None or d is None:
                    continue
                expect = msg_path(i).read_bytes().replace(b"\n", b"\r\n")
                if s[0] != expect:
                    problems.append(f"{folder} #{i}: SOURCE body differs from the generated message")
                if d[0] != s[0]:
                    problems.append(f"{folder} #{i}: body differs ({len(d[0])} vs {len(s[0])} bytes)")
                if d[1] != s[1]:
                    problems.append(f"{folder} #{i}: flags {d[1]} vs source {s[1]}")
                if d[2] != s[2]:
                    problems.append(f"{folder} #{i}: INTERNALDATE {d[2]} vs source {s[2]}")
    finally:
        for c in (sconn, dconn):
            with contextlib.suppress(Exception):
                c.logout()
    return problems


# --------------------------------------------------------------------------- benchmark


@dataclass
class Result:
    tool: str
    n: int
    mb: float
    copy: list[float] = field(default_factory=list)
    copy_rss: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    noop_rss: list[float] = field(default_factory=list)
    copy_cpu: list[float] = field(default_factory=list)  # user+sys CPU seconds of the tool's process
    problems: list[str] = field(default_factory=list)

    def med(self, xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")


def run_size(n: int, runs: int, src: DovecotServer, dst: DovecotServer, connections: int, spot: int,
             tools: list[str]) -> dict[str, Result]:
    metas = ensure_corpus(n)
    total = sum(m["vsize"] for m in metas)
    mb = total / 1e6
    kinds = {k: sum(1 for m in metas if m["kind"] == k) for k in ("text", "attachment", "huge")}
    log(f"== {n} messages, {mb:.0f} MB (avg {total / n / 1024:.0f} KiB; {kinds}) in "
        f"{len({m['folder'] for m in metas})} folders")
    src_user = f"src{n}"
    load_source(src, src_user, metas)
    results = {t: Result(t, n, mb) for t in tools}
    for run in range(runs):
        order = tools if run % 2 == 0 else list(reversed(tools))
        for tool in order:
            res = results[tool]
            dst_user = f"{'mm' if tool == 'mailmigrate' else 'ds'}{n}r{run}"
            dst.add_user(dst_user, PASSWORD)
            if tool == "mailmigrate":
                jdir = Path(tempfile.mkdtemp(prefix="mmbench-journal-", dir=WORKDIR))
                cmd, env = mailmigrate_cmd(src, src_user, dst, dst_user, jdir / "journal.sqlite", connections)
            else:
                cmd, env = dsync_cmd(src, src_user, dst, dst_user), None
            first = timed(cmd, env=env, cwd=ROOT)
            if first.rc != 0:
                res.problems.append(f"run {run}: copy exit {first.rc}: {first.out.strip()[-800:]}")
            again = timed(cmd, env=env, cwd=ROOT)
            if again.rc != 0:
                res.problems.append(f"run {run}: no-op re-run exit {again.rc}: {again.out.strip()[-800:]}")
            res.copy.append(first.wall)
            res.copy_rss.append(first.rss_mb)
            res.noop.append(again.wall)
            res.noop_rss.append(again.rss_mb)
            res.copy_cpu.append(first.user + first.sys)
            log(f"  run {run} {tool:11s} copy {first.wall:6.2f}s rss {first.rss_mb:5.0f} MB "
                f"cpu {first.user + first.sys:5.1f}s exit {first.rc} | "
                f"no-op {again.wall:5.2f}s rss {again.rss_mb:5.0f} MB exit {again.rc}")
            probs = verify(src, src_user, dst, dst_user, metas, spot if run == 0 else 0)
            if probs:
                res.problems += [f"run {run}: {p}" for p in probs]
                log(f"  run {run} {tool}: {len(probs)} PROBLEMS, first: {probs[:5]}")
            else:
                log(f"  run {run} {tool}: copy complete" + (f", spot check of {spot}+ messages exact"
                                                            if run == 0 and spot else ""))
            if tool == "mailmigrate":
                shutil.rmtree(jdir, ignore_errors=True)
            shutil.rmtree(dst.home(dst_user) / "Maildir", ignore_errors=True)  # keep the disk small
    shutil.rmtree(src.home(src_user) / "Maildir", ignore_errors=True)
    return results


def fmt(x: float, nd: int = 2) -> str:
    return "n/a" if x != x else f"{x:.{nd}f}"


def table(all_results: dict[int, dict[str, Result]], runs: int) -> str:
    lines = [
        f"Median of {runs} run(s); copy = into an empty target user on a second Dovecot instance; "
        "no-op = the same command again right after. MB = 10^6 bytes of IMAP message size (RFC822.SIZE). "
        "copy CPU s = user+sys of the tool's own process (not the Dovecot servers'): less sensitive to machine load "
        "than wall time.",
        "",
        "| tool | messages | MB | copy wall s | msgs/s | MB/s | peak RSS MB | no-op re-run s | no-op peak RSS MB "
        "| copy CPU s | complete |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ratio_lines = []
    for n, res in all_results.items():
        for r in res.values():
            c = r.med(r.copy)
            lines.append(f"| {r.tool} | {n} | {r.mb:.0f} | {fmt(c)} | {fmt(n / c, 0)} | {fmt(r.mb / c, 1)} | "
                         f"{fmt(max(r.copy_rss) if r.copy_rss else float('nan'), 0)} | {fmt(r.med(r.noop))} | "
                         f"{fmt(max(r.noop_rss) if r.noop_rss else float('nan'), 0)} | {fmt(r.med(r.copy_cpu), 1)} | "
                         f"{'yes' if not r.problems else 'NO'} |")
        if "mailmigrate" in res and "dsync" in res:
            m, d = res["mailmigrate"], res["dsync"]
            ratio_lines.append(
                f"| {n} | {fmt(m.med(m.copy) / d.med(d.copy))} | {fmt(m.med(m.noop) / d.med(d.noop))} | "
                f"{fmt(max(m.copy_rss) / max(d.copy_rss))} |")
    out = "\n".join(lines)
    if ratio_lines:
        out += ("\n\nRatio mailmigrate / dsync (lower is better for mailmigrate):\n\n"
                "| messages | copy time | no-op re-run time | peak RSS |\n|---:|---:|---:|---:|\n"
                + "\n".join(ratio_lines))
    sizes = sorted(all_results)
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[-1]
        scale = ["", f"Scaling {a} -> {b} messages ({b / a:.1f}x the messages):", "",
                 f"| tool | copy time {b}/{a} | no-op time {b}/{a} | peak RSS growth |", "|---|---:|---:|---:|"]
        for tool in all_results[a]:
            ra, rb = all_results[a][tool], all_results[b].get(tool)
            if rb is None:
                continue
            growth = max(rb.copy_rss) / max(ra.copy_rss) - 1
            scale.append(f"| {tool} | {fmt(rb.med(rb.copy) / ra.med(ra.copy))} | "
                         f"{fmt(rb.med(rb.noop) / ra.med(ra.noop))} | {growth * 100:+.0f}% |")
        out += "\n" + "\n".join(scale)
    raw = ["", "Per-run raw numbers (wall s / peak RSS MB / CPU s of the tool's own process, user+sys):", ""]
    for n, res in all_results.items():
        for r in res.values():
            raw.append(f"- {r.tool} {n}: copy " + ", ".join(f"{w:.2f}/{m:.0f}/{c:.1f}"
                                                             for w, m, c in zip(r.copy, r.copy_rss, r.copy_cpu, strict=True))
                       + "; no-op " + ", ".join(f"{w:.2f}/{m:.0f}" for w, m in zip(r.noop, r.noop_rss, strict=True)))
            raw += [f"  - PROBLEM: {p}" for p in r.problems[:20]]
    return out + "\n" + "\n".join(raw) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, action="append", help="mailbox size (repeatable; default 5000)")
    ap.add_argument("--runs", type=int, default=2, help="runs per tool and size (median is reported)")
    ap.add_argument("--connections", type=int, default=4, help="mailmigrate --connections")
    ap.add_argument("--spot", type=int, default=50, help="messages to compare byte for byte (first run)")
    ap.add_argument("--tools", default="mailmigrate,dsync", help="comma-separated subset")
    ap.add_argument("--no-write", action="store_true", help="do not overwrite benchmarks/results.md")
    a = ap.parse_args()
    sizes = a.messages or [5000]
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    if reason := available():
        raise SystemExit(f"cannot run: {reason}")
    if not os.path.exists(TIME):
        raise SystemExit(f"{TIME} missing: apt-get install -y time")
    # Time the code as installed, not its compilation: an editable checkout has no .pyc files of
    # its own, and with PYTHONDONTWRITEBYTECODE set every run would compile them again.
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", "cli.py", "migrate"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    started = datetime.now()
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    src = DovecotServer("slash", starttls=False, name="mmbench-src").start()
    dst = DovecotServer("slash", starttls=False, name="mmbench-dst").start()
    all_results: dict[int, dict[str, Result]] = {}
    failed = False
    try:
        for n in sizes:
            try:
                all_results[n] = run_size(n, a.runs, src, dst, a.connections, a.spot, tools)
            except Exception as exc:  # noqa: BLE001 - keep the sizes that did run
                log(f"size {n} aborted: {type(exc).__name__}: {exc}")
                failed = True
    finally:
        src.close()
        dst.close()
    head = (f"# mailmigrate vs dsync benchmark\n\n{started:%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs, "
            f"Dovecot {subprocess.run(['/usr/sbin/dovecot', '--version'], capture_output=True, text=True).stdout.strip()}, "
            f"loopback; mailmigrate --connections {a.connections}; "
            f"command: `benchmarks/run.py {' '.join(sys.argv[1:])}`\n\n")
    head += (f"Load average at start {load_start}, at end {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
             "(anything above ~1 means other work shared the 2 cores: wall times are noisy).\n\n")
    text = head + table(all_results, a.runs)
    print(text)
    if not a.no_write:
        (ROOT / "benchmarks" / "results.md").write_text(text)
    return 1 if failed or any(r.problems for res in all_results.values() for r in res.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
