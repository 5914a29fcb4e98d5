#!/usr/bin/env python3
"""Exactness between two makes of real IMAP server: Dovecot and Cyrus IMAP, both directions.

    .venv/bin/python benchmarks/cross_server.py [--messages 3000] [--out benchmarks/cross_server.md]

The hostile mailbox of tests/support/hostile.py (the real corpus of shared/corpus/real, generated
edge cases and filler over 60 awkwardly named folders) is seeded into a fresh user of the source
server with exact APPENDs, copied by mailmigrate (in-process, ``import_job``) into a fresh user of
the other make, read back and judged message by message; then the same job runs again with the
same journal, and once more with the journal deleted (both must copy nothing). The flow is that of
tests/test_cross_server.py, at benchmark size. Writes a Markdown report (one table per direction).
Must run as root (Dovecot and Cyrus test instances drop privileges). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dovecot.harness import DOVECOT, DovecotServer  # noqa: E402
from tests.dovecot.harness import available as dovecot_available  # noqa: E402
from tests.servers import cyrus as cyrus_mod  # noqa: E402
from tests.servers.cyrus import CyrusServer  # noqa: E402
from tests.servers.cyrus import available as cyrus_available  # noqa: E402
from tests.support import hostile  # noqa: E402
from tests.support.mailbox import import_job  # noqa: E402

PASSWORD = "xs-Bench-pw1"
MAKES = {"dovecot": DovecotServer, "cyrus": CyrusServer}
# (source make, flavor), (target make, flavor)
DIRECTIONS = {
    "dovecot-slash->cyrus-dot": (("dovecot", "slash"), ("cyrus", "dot")),
    "cyrus-dot->dovecot-slash": (("cyrus", "dot"), ("dovecot", "slash")),
    "dovecot-dot->cyrus-slash": (("dovecot", "dot"), ("cyrus", "slash")),
    "cyrus-slash->dovecot-dot": (("cyrus", "slash"), ("dovecot", "dot")),
}


@dataclass
class User:
    """What tests/conftest.py's User is: a server, a name, a password, ``.client()``."""

    server: object
    name: str
    password: str

    def client(self, *, tls: bool = False):
        c = self.server.client(self.name, self.password, tls=tls)
        # imaplib sends an APPEND literal in pieces: with Nagle on, each append of the seeding
        # waits for the server's delayed ACK (~45 ms per message on Cyrus). Only our test client.
        with contextlib.suppress(OSError, AttributeError):
            c._imap.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c


@dataclass
class Result:
    name: str
    src_label: str
    dst_label: str
    seeded: hostile.Seeded
    seed_s: float
    planned: int
    src_folders: int
    dst_folders: int
    first: object  # JobReport
    first_s: float
    verdict: hostile.Verdict
    again: object
    again_s: float
    fresh: object
    fresh_s: float
    after: hostile.Verdict
    source_unchanged: bool
    detail: Breakdown
    src_sep: str
    dst_sep: str
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- versions


def dovecot_version() -> str:
    try:
        return subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError as exc:
        return f"unknown ({exc})"


def cyrus_version(server: CyrusServer | None) -> str:
    parts = []
    changelog = cyrus_mod.CYRUS_ROOT / "usr/share/doc/cyrus-imapd/changelog.Debian.gz"
    with contextlib.suppress(OSError), gzip.open(changelog, "rt") as f:
        m = re.match(r"cyrus-imapd \(([^)]+)\)", f.readline())
        if m:
            parts.append(f"Debian package cyrus-imapd {m.group(1)}")
    if server is not None:
        m = re.search(rb"Cyrus IMAP (\S+)", cyrus_mod._banner(server.port))
        if m:
            parts.append(f"banner `Cyrus IMAP {m.group(1).decode()}`")
    return "; ".join(parts) or "unknown"


# --------------------------------------------------------------------------- one direction


def _delete_journal(journal_dir: Path) -> list[str]:
    gone = []
    for p in sorted(journal_dir.glob("journal.sqlite*")):  # the database, any -wal/-shm, its .locks
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        gone.append(p.name)
    return gone


def _rerun_copies(report) -> list[str]:
    return [f"{f.source!r} -> {f.target!r}: copied {f.copied}, restored {f.restored}"
            for f in report.folders if f.copied or f.restored]


def _kind(it: hostile.Item) -> str:
    if it.name.startswith("corpus "):
        return "real (corpus)"
    if it.name.startswith("filler "):
        return "filler"
    return re.sub(r" (\d|[AB])$", "", it.name)  # "twin 1"/"twin 2" -> "twin"


@dataclass
class Breakdown:
    """Which kinds of message ended in which class, replaying ``hostile.judge``'s matching."""

    kinds: dict[str, Counter] = field(default_factory=lambda: {
        "flags_differ": Counter(), "stored_differently": Counter(), "failed": Counter(), "lost": Counter()})
    # (missing on the target, extra on the target), or ("INTERNALDATE", source's, target's)
    flag_diffs: Counter = field(default_factory=Counter)


def breakdown(seeded: hostile.Seeded, src: dict, dst: dict, report) -> Breakdown:
    from migrate.dedupe.keys import key_of_raw

    by_bytes: dict[bytes, str] = {}
    by_key: dict[str, str] = {}
    for items in seeded.folders.values():
        for it in items:
            by_bytes.setdefault(it.msg, _kind(it))
            by_key.setdefault(key_of_raw(it.msg), _kind(it))

    def kind(body: bytes) -> str:
        return by_bytes.get(body) or by_key.get(key_of_raw(body)) or "other"

    b = Breakdown()
    for f in report.folders:
        rows = src.get(f.source, [])
        target = dst.get(f.target, []) if f.target is not None else []
        exact = Counter((r.body, r.flags, r.date) for r in target)
        same_bytes = Counter(r.body for r in target)
        flags_of: dict[bytes, list[tuple[str, ...]]] = {}
        for r in target:
            flags_of.setdefault(r.body, []).append(r.flags)
        keys = Counter(key_of_raw(r.body) for r in target)
        rest = []
        for r in rows:
            if exact[(r.body, r.flags, r.date)] > 0:
                exact[(r.body, r.flags, r.date)] -= 1
                same_bytes[r.body] -= 1
                keys[key_of_raw(r.body)] -= 1
            else:
                rest.append(r)
        fails = f.failed
        for r in rest:
            k = key_of_raw(r.body)
            if same_bytes[r.body] > 0:
                same_bytes[r.body] -= 1
                keys[k] -= 1
                b.kinds["flags_differ"][kind(r.body)] += 1
                theirs = flags_of[r.body]
                other = next((fl for fl in theirs if fl != r.flags), theirs[0])
                if other != r.flags:
                    diff = (tuple(sorted(set(r.flags) - set(other))), tuple(sorted(set(other) - set(r.flags))))
                else:  # same flags: the INTERNALDATE differs
                    dates = [x.date for x in target if x.body == r.body]
                    diff = ("INTERNALDATE", _iso(r.date), _iso(dates[0])[:10] if dates else "?")
                b.flag_diffs[diff] += 1
            elif keys[k] > 0:
                keys[k] -= 1
                b.kinds["stored_differently"][kind(r.body)] += 1
            elif fails > 0:
                fails -= 1
                b.kinds["failed"][kind(r.body)] += 1
            else:
                b.kinds["lost"][kind(r.body)] += 1
    return b


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _naive(name: str, src_sep: str, dst_sep: str) -> str:
    return name if name == "INBOX" else name.replace(src_sep, dst_sep)


def run_direction(name: str, src_srv, dst_srv, src_label: str, dst_label: str, plan, connections: int,
                  log) -> Result:
    tag = re.sub(r"[^a-z0-9]", "", name.split("->")[0])[:10]
    src = User(src_srv, f"xs{tag}src", PASSWORD)
    dst = User(dst_srv, f"xs{tag}dst", PASSWORD)
    src_srv.add_user(src.name, src.password)
    dst_srv.add_user(dst.name, dst.password)

    t = time.monotonic()
    seeded = hostile.seed(src, plan)
    seed_s = time.monotonic() - t
    with src.client() as c:
        src_sep = hostile.layout(c)[1]
    with dst.client() as c:
        dst_sep = hostile.layout(c)[1]
    log(f"  seeded {seeded.messages} messages into {len(seeded.folders)} folders in {seed_s:.1f} s "
        f"(refused: {len(seeded.refused)} messages, {len(seeded.refused_folders)} folders)")
    t = time.monotonic()
    before = hostile.account(src)
    log(f"  read the source back in {time.monotonic() - t:.1f} s")

    journal_dir = Path(tempfile.mkdtemp(prefix="mm-xs-journal-"))
    try:
        t = time.monotonic()
        first = import_job(src, dst, journal_dir, connections=connections)
        first_s = time.monotonic() - t
        log(f"  import: {first.status}, copied {first.totals.copied}, failed {first.totals.failed} "
            f"in {first_s:.1f} s")
        t = time.monotonic()
        dst_account = hostile.account(dst)
        verdict = hostile.judge(before, dst_account, first)
        detail = breakdown(seeded, before, dst_account, first)
        log(f"  read back and judged in {time.monotonic() - t:.1f} s: exact {verdict.exact}, "
            f"flags differ {verdict.flags_differ}, stored differently {verdict.stored_differently}, "
            f"failed {verdict.failed}, lost {verdict.lost}")

        t = time.monotonic()
        again = import_job(src, dst, journal_dir, connections=connections)
        again_s = time.monotonic() - t
        log(f"  re-run: copied {again.totals.copied}, restored {again.totals.restored} in {again_s:.1f} s")

        _delete_journal(journal_dir)
        t = time.monotonic()
        fresh = import_job(src, dst, journal_dir, connections=connections)
        fresh_s = time.monotonic() - t
        log(f"  re-run without journal: copied {fresh.totals.copied}, restored {fresh.totals.restored} "
            f"in {fresh_s:.1f} s")
        dst_after = hostile.account(dst)
        after = hostile.judge(before, dst_after, fresh)
        source_unchanged = hostile.account(src) == before
    finally:
        shutil.rmtree(journal_dir, ignore_errors=True)

    planned = sum(len(v) for v in plan.values())
    res = Result(name, src_label, dst_label, seeded, seed_s, planned, len(before), len(dst_after), first,
                 first_s, verdict, again, again_s, fresh, fresh_s, after, source_unchanged, detail,
                 src_sep, dst_sep)
    p = res.problems
    if verdict.lost:
        p.append(f"first import: {verdict.lost} source messages lost silently, e.g. "
                 + "; ".join(verdict.lost_examples))
    if after.lost:
        p.append(f"after the re-run without journal: {after.lost} lost silently, e.g. "
                 + "; ".join(after.lost_examples))
    if verdict.source != seeded.messages:
        p.append(f"the judge saw {verdict.source} source messages in the report's folders, "
                 f"{seeded.messages} were seeded")
    if again.totals.copied or again.totals.restored:
        p.append("re-run with the journal copied: " + "; ".join(_rerun_copies(again)))
    if fresh.totals.copied or fresh.totals.restored:
        p.append("re-run with the journal deleted copied: " + "; ".join(_rerun_copies(fresh)))
    if after.exact != verdict.exact:
        p.append(f"exact copies changed across the re-runs: {verdict.exact} -> {after.exact}")
    if not source_unchanged:
        p.append("the source account changed during the runs")
    if first.status not in ("ok", "partial"):
        p.append(f"first import status {first.status}: {first.error}")
    return res


# --------------------------------------------------------------------------- Markdown


def _md(text: object) -> str:
    """A table cell: no pipes or newlines, control characters visible."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    return re.sub(r"[\x00-\x1f]", lambda m: f"\\x{ord(m.group()):02x}", s)


def _code(text: object) -> str:
    s = _md(text)
    return f"`` {s} ``" if "`" in s else f"`{s}`"


def _reasons(counter: Counter) -> str:
    return "; ".join(f"{n} × {_code(r)}" for r, n in counter.most_common()) or "–"


def _kinds(counter: Counter) -> str:
    return "; ".join(f"{n} × {_md(k)}" for k, n in sorted(counter.items(), key=lambda x: (-x[1], x[0]))) or "–"


def _flag_diffs(counter: Counter) -> str:
    if not counter:
        return "no flag differences"
    out = []
    for diff, n in counter.most_common():
        if diff[0] == "INTERNALDATE":
            out.append(f"{n} × same flags, other INTERNALDATE ({diff[1]} on the source, {diff[2]} on the target)")
            continue
        missing, extra = diff
        what = []
        if missing:
            what.append("missing on the target " + " ".join(missing))
        if extra:
            what.append("added " + " ".join(extra))
        out.append(f"{n} × {', '.join(what)}")
    return "; ".join(out)


def table(r: Result) -> list[str]:
    v, first, again, fresh = r.verdict, r.first, r.again, r.fresh
    s = r.seeded
    mapped = [f for f in first.folders if f.target is not None]
    not_created = [f for f in first.folders if f.target is None]
    refused_msgs = Counter(_reason_text(a) for _f, _i, a in s.refused)
    in_folders = r.planned - s.messages - len(s.refused)
    src_refused = (f"{len(s.refused)} messages refused ({_reasons(refused_msgs)}); {in_folders} messages "
                   f"planned for {len(s.refused_folders)} folders it refused to create ("
                   + ("; ".join(f"{_code(n)}: {_code(_reason_text(a))}" for n, a in s.refused_folders.items())
                      or "–") + ")")
    mb = sum(len(it.msg) for items in s.folders.values() for it in items) / 1e6
    check = v.exact + v.flags_differ + v.stored_differently + v.failed + v.lost
    rows = [
        ("source messages", v.source,
         f"seeded {s.messages} ({mb:.1f} MB) in {r.seed_s:.0f} s; the report read "
         f"{first.totals.source_messages}; exact + flags + stored differently + failed + lost = {check}"),
        ("refused by the source when seeding", r.planned - s.messages,
         f"of {r.planned} planned; never existed on the source, not counted above: {src_refused}"),
        ("copied exactly", v.exact, "bytes, flags and INTERNALDATE as on the source"),
        ("copied with different flags (or INTERNALDATE)", v.flags_differ,
         f"same bytes; report: {first.totals.dropped_keywords} keywords dropped; "
         f"{_flag_diffs(r.detail.flag_diffs)}; by kind [{_kinds(r.detail.kinds['flags_differ'])}]"),
        ("stored differently by the target", v.stored_differently,
         f"measured by reading back (same dedupe key, other bytes); the report's "
         f"`totals.stored_differently` (by size): {first.totals.stored_differently}; "
         f"by kind [{_kinds(r.detail.kinds['stored_differently'])}]"),
        ("failed", v.failed, f"report: {first.totals.failed}; reasons: {_reasons(v.reasons)}; "
         f"by kind [{_kinds(r.detail.kinds['failed'])}]"),
        ("**lost silently** (must be 0)", v.lost,
         ("; ".join(_md(x) for x in v.lost_examples) + f"; by kind [{_kinds(r.detail.kinds['lost'])}]")
         if v.lost else "–"),
        ("copies on a re-run (must be 0)", again.totals.copied,
         f"restored {again.totals.restored}; failed again {again.totals.failed}; status {again.status}; "
         f"{r.again_s:.1f} s"),
        ("copies on a re-run, journal deleted (must be 0)", fresh.totals.copied,
         f"restored {fresh.totals.restored}; skipped as duplicates {fresh.totals.skipped_duplicates}; "
         f"failed again {fresh.totals.failed}; status {fresh.status}; {r.fresh_s:.1f} s; afterwards "
         f"exact {r.after.exact}, lost {r.after.lost}"),
        ("wall time of the first import", f"{r.first_s:.1f} s",
         f"{first.totals.copied} copied, {first.totals.bytes / 1e6:.1f} MB, status {first.status}, "
         f"exit code {first.exit_code}"),
        ("folders: source / target", f"{r.src_folders} / {r.dst_folders}",
         f"selectable folders read back; {len(mapped)} mapped, {len(first.renamed_folders)} renamed "
         f"(`report.renamed_folders`), {len(not_created)} not created"
         + (": " + "; ".join(f"{_code(f.source)} ({_md(f.note or '')})" for f in not_created)
            if not_created else "")),
        ("source unchanged by the runs", "yes" if r.source_unchanged else "**NO**", ""),
    ]
    out = [f"### {r.src_label} → {r.dst_label}", "", "| | count | detail |", "| --- | ---: | --- |"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out.append("")
    if first.renamed_folders:
        out += ["Renamed folders (source → target, reason):", "", "| source | wanted | target | reason |",
                "| --- | --- | --- | --- |"]
        for x in first.renamed_folders:
            out.append(f"| {_code(x.get('source', ''))} | {_code(x.get('wanted', ''))} | "
                       f"{_code(x.get('target', ''))} | {_md(x.get('reason', ''))} |")
        out.append("")
    listed = {x.get("source") for x in first.renamed_folders}
    quiet = [f for f in mapped if f.source not in listed and f.target != _naive(f.source, r.src_sep, r.dst_sep)]
    if quiet:
        out += [f"Other folders under another name than the source's with `{r.src_sep}` → `{r.dst_sep}` "
                "(not in `report.renamed_folders`):", "", "| source | target |", "| --- | --- |"]
        out += [f"| {_code(f.source)} | {_code(f.target)} |" for f in quiet]
        out.append("")
    if r.problems:
        out += ["**Problems:**", ""] + [f"- {_md(p)}" for p in r.problems] + [""]
    return out


def _reason_text(answer: str) -> str:
    return answer.split(": ", 1)[-1][:100] if answer.startswith(("NO", "BAD")) else answer[:100]


def header(args, plan, results: list[Result], versions: dict[str, str], total_s: float) -> list[str]:
    items = [it for v in plan.values() for it in v]
    kinds = Counter("corpus" if it.name.startswith("corpus ") else "filler" if it.name.startswith("filler ")
                    else "edge case" for it in items)
    mb = sum(len(it.msg) for it in items) / 1e6
    edge_kinds = list(dict.fromkeys(_kind(it) for it in hostile.edge_cases(0)))
    edge_sets = round(kinds["edge case"] / max(1, len(hostile.edge_cases(0))))
    used = sum(1 for v in plan.values() if v)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Cross-server exactness: Dovecot ⇄ Cyrus IMAP", "",
        f"Generated by `benchmarks/cross_server.py --messages {args.messages}` on {now}; "
        f"whole run {total_s:.0f} s (servers, seeding, imports, reading back).", "",
        f"**Mailbox** (`tests/support/hostile.py`, `mailbox({args.messages}, seed={args.seed})`): "
        f"{len(items)} messages, {mb:.1f} MB: {kinds['corpus']} real messages from `shared/corpus/real`, "
        f"{kinds['edge case']} generated edge cases ({edge_sets} sets of: {', '.join(edge_kinds)}), "
        f"{kinds['filler']} filler messages; {len(plan)} folders with awkward names "
        f"(quotes, `\\`, `%`, `*`, `~`, `&`, emoji, CJK, RTL, TAB, a 185-character name, case twins, "
        f"8 levels deep), {used} of them holding messages.", "",
        f"**Servers**: Dovecot {versions['dovecot']}; Cyrus IMAP: {versions['cyrus']}. Private instances "
        f"on 127.0.0.1 (harnesses `tests/dovecot/harness.py`, `tests/servers/cyrus.py`), plain IMAP, "
        f"fresh users. Copies by mailmigrate in-process (`import_job`, {args.connections} connections).", "",
        "Per direction: seed the source (what it refuses never exists there), import, read both "
        "accounts back and judge every source message (`hostile.judge`), re-run with the same journal, "
        "delete the journal and re-run, judge again.", "",
        "| direction | source | exact | flags differ | stored differently | failed | lost | re-run copies "
        "| no-journal copies | first import |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        v = r.verdict
        lines.append(f"| {r.src_label} → {r.dst_label} | {v.source} | {v.exact} | {v.flags_differ} | "
                     f"{v.stored_differently} | {v.failed} | {v.lost} | {r.again.totals.copied} | "
                     f"{r.fresh.totals.copied} | {r.first_s:.1f} s |")
    lines.append("")
    return lines


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=3000, help="size of the hostile mailbox (default 3000)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "cross_server.md")
    ap.add_argument("--directions", default="dovecot-slash->cyrus-dot,cyrus-dot->dovecot-slash,"
                    "dovecot-dot->cyrus-slash,cyrus-slash->dovecot-dot",
                    help="comma-separated, any of: " + ", ".join(DIRECTIONS) + " (default: all four)")
    ap.add_argument("--connections", type=int, default=4, help="mailmigrate connections per side (default 4)")
    ap.add_argument("--seed", type=int, default=11, help="mailbox RNG seed (default 11)")
    ap.add_argument("--no-write", action="store_true", help="print the report only")
    args = ap.parse_args(argv)

    names = [d.strip() for d in args.directions.split(",") if d.strip()]
    unknown = [d for d in names if d not in DIRECTIONS]
    if unknown:
        ap.error(f"unknown direction(s) {unknown}; known: {list(DIRECTIONS)}")
    for why in (dovecot_available(), cyrus_available()):
        if why:
            print(f"cross_server: {why}", file=sys.stderr)
            return 2

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.monotonic()
    plan = hostile.mailbox(args.messages, seed=args.seed)
    servers: dict[tuple[str, str], object] = {}
    results: list[Result] = []
    try:
        def server(kind):
            if kind not in servers:
                servers[kind] = MAKES[kind[0]](kind[1]).start()
            return servers[kind]

        for name in names:
            (sk, dk) = DIRECTIONS[name]
            src_label, dst_label = f"{sk[0].capitalize()} ({sk[1]})", f"{dk[0].capitalize()} ({dk[1]})"
            log(f"{src_label} -> {dst_label}")
            results.append(run_direction(name, server(sk), server(dk), src_label, dst_label, plan,
                                         args.connections, log))
        any_cyrus = next((s for k, s in servers.items() if k[0] == "cyrus"), None)
        versions = {"dovecot": dovecot_version(), "cyrus": cyrus_version(any_cyrus)}
    finally:
        for srv in servers.values():
            with contextlib.suppress(Exception):
                srv.close()

    total_s = time.monotonic() - started
    lines = header(args, plan, results, versions, total_s)
    for r in results:
        lines += table(r)
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        log(f"written to {args.out} ({total_s:.0f} s)")
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
