"""`mailmigrate batch`: many mailboxes from a CSV file, against real Dovecot servers.

Covers the promises of the batch (issue 5): a 25-row batch with several source servers and
layouts, two rows sharing one target, a wrong password and an unreachable host completes the good
rows exactly and reports the bad ones; resume after kill -9; two `mailmigrate import` commands
side by side into one target; invalid files are refused with every line number and nothing
imported.
"""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrate.csvbatch import COLUMNS, ConnectionBudget, plan_connections, template_text
from tests.support.mailbox import ROOT, cli, cli_args, count, folders, msg, snapshot

pytestmark = pytest.mark.dovecot

PARTS = (("INBOX",), ("Projects",), ("Projects", "Alpha"))
FLAGS = [(), (b"\\Seen",), (b"\\Seen", b"\\Flagged", b"$Label1"), (b"\\Answered",)]
LITERAL_PW_MARK = "Lit3ral-Secret-"


# --- helpers ------------------------------------------------------------------------------


def name_on(server, parts: tuple[str, ...]) -> str:
    return "INBOX" if parts == ("INBOX",) else server.prefix + server.separator.join(parts)


def pw_ref(user, role: str, *, password: str | None = None) -> str:
    env = re.sub(r"[^A-Z0-9_]", "_", f"MMB_{role}_{user.name}".upper())
    os.environ[env] = password if password is not None else user.password
    return f"env:{env}"


def side_cells(role: str, user, *, password: str | None = None, port: int | None = None,
               email: str | None = None, literal: bool = False) -> dict[str, str]:
    pw = (password or user.password) if literal else pw_ref(user, role, password=password)
    return {f"{role}_email": email or f"{user.name}@example.test", f"{role}_password": pw,
            f"{role}_provider": "imap", f"{role}_host": "127.0.0.1",
            f"{role}_port": str(port or user.server.port), f"{role}_security": "none",
            f"{role}_username": user.name}


def csv_row(source_user, target_user, *, src: dict | None = None, dst: dict | None = None,
            **cells: str) -> dict[str, str]:
    """A CSV row for two harness users; ``src``/``dst`` tweak a side, ``cells`` override cells."""
    row = {c: "" for c in COLUMNS}
    row.update(side_cells("source", source_user, **(src or {})))
    row.update(side_cells("target", target_user, **(dst or {})))
    row.update(cells)
    return row


def write_csv(path: Path, rows: list[dict[str, str] | list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r[c] for c in COLUMNS] if isinstance(r, dict) else r)
    return path


def seed(user, base: int, n: int, shared: list[tuple[tuple[str, ...], bytes, tuple, datetime]] = ()) -> int:
    """n own messages over three folders (one nested), plus ``shared`` ones (identical bytes,
    flags and date in every source that gets them). Returns how many messages were stored."""
    srv = user.server
    with user.client() as c:
        for parts in PARTS[1:]:
            c.create_folder(name_on(srv, parts))
        for i in range(n):
            k = base + i
            c.append(name_on(srv, PARTS[i % 3]), msg(k, extra=f"X-Row: {base}\r\n".encode()),
                     flags=FLAGS[k % 4], msg_time=datetime(2010 + k % 10, 1 + k % 12, 3, 4, 5, 6, tzinfo=UTC))
        for parts, body, flags, date in shared:
            c.append(name_on(srv, parts), body, flags=flags, msg_time=date)
    return n + len(shared)


def shared_messages(n: int) -> list[tuple[tuple[str, ...], bytes, tuple, datetime]]:
    return [(PARTS[i % 3], msg(90_000 + i, subject=f"shared {i}"), FLAGS[i % 4],
             datetime(2020, 1 + i % 12, 1 + i % 28, 8, 0, 0, tzinfo=UTC)) for i in range(n)]


def assert_exact(src, dst) -> None:
    for parts in PARTS:
        assert snapshot(dst, name_on(dst.server, parts)) == snapshot(src, name_on(src.server, parts)), parts


def assert_union(sources, dst) -> None:
    """Each target folder holds every message of every source once (a message present in
    several sources, same bytes, once)."""
    for parts in PARTS:
        want: Counter = Counter()
        for s in sources:
            want |= snapshot(s, name_on(s.server, parts))
        got = snapshot(dst, name_on(dst.server, parts))
        assert got == want, (parts, len(got), len(want), [(k[0][:60], k[1:]) for k in (got - want)],
                             [(k[0][:60], k[1:]) for k in (want - got)])
        assert max(got.values(), default=1) == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_timed(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run the CLI; returns (result, wall seconds, peak RSS in MB of the CLI process)."""
    full_env = {**os.environ, **env}
    cmd = [sys.executable, str(ROOT / "cli.py"), *args]
    timed = os.path.exists("/usr/bin/time")
    if timed:
        cmd = ["/usr/bin/time", "-v", *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=280, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr) if timed else None
    # Without /usr/bin/time: ru_maxrss of children is the max over all of them so far.
    rss_kb = int(m.group(1)) if m else max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    return r, wall, rss_kb / 1024


def stored(user) -> int:
    """Messages in the user's three test folders (those that exist), with one login."""
    with user.client() as c:
        names = {name for _f, _d, name in c.list_folders()}
        return sum(c.folder_status(n, [b"MESSAGES"])[b"MESSAGES"]
                   for n in (name_on(user.server, p) for p in PARTS) if n in names)


def journal_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


# --- the 25-row batch ---------------------------------------------------------------------


def test_batch_of_25_rows(dovecot, new_user, tmp_path, capsys):
    servers = [dovecot("slash"), dovecot("dot"), dovecot("inbox")]
    home = tmp_path / "home"
    rows: list[dict[str, str]] = []
    good: list[tuple[int, object, object, int]] = []  # (csv line, src, dst, messages)

    def add(row: dict[str, str]) -> int:
        rows.append(row)
        return len(rows) + 1  # physical line (the header is line 1)

    # Two sources into one target ("second address into the same mailbox"), next to each other
    # so they run at the same time; same-bytes messages in both, and messages of their own.
    shared = shared_messages(6)
    sa, sb, st = new_user(servers[0]), new_user(servers[1]), new_user(servers[2])
    seed(sa, 1000, 8, shared)
    seed(sb, 2000, 7, shared)
    line_a = add(csv_row(sa, st))
    line_b = add(csv_row(sb, st, src={"email": f"second.{sb.name}@example.test"}))

    bad_pw_src, bad_pw_dst = new_user(servers[0]), new_user(servers[1])
    seed(bad_pw_src, 3000, 5)
    bad_pw_before = folders(bad_pw_dst)
    unreachable_dst = new_user(servers[2])
    unreachable_before = folders(unreachable_dst)
    literal_pw_line = None
    for i in range(21):
        if i == 3:
            line_bad_pw = add(csv_row(bad_pw_src, bad_pw_dst,
                                      src={"password": LITERAL_PW_MARK + "wrong", "literal": True}))
        if i == 11:
            fake = new_user(servers[0])
            line_unreach = add(csv_row(fake, unreachable_dst, src={"port": closed_port()}))
        src, dst = new_user(servers[i % 3]), new_user(servers[(i + i // 3) % 3])
        n = seed(src, 10_000 + 100 * i, 5 + i % 6)
        # One target password given literally in the CSV: it must be scrubbed everywhere.
        literal = i == 7
        line = add(csv_row(src, dst, dst={"literal": True} if literal else {}))
        if literal:
            literal_pw_line = line
            dst_literal_pw = dst.password
        good.append((line, src, dst, n))
    assert len(rows) == 25 and literal_pw_line is not None
    path = write_csv(tmp_path / "batch.csv", rows)
    path.chmod(0o644)  # readable by others and holds a literal password: warned about
    report_path = tmp_path / "report.json"

    r, wall, rss_mb = cli_timed("batch", str(path), "--parallel", "4", "--report", str(report_path), "-q",
                                env={"MAILMIGRATE_HOME": str(home)})
    with capsys.disabled():
        print(f"\n[25-row batch] wall {wall:.1f}s, peak RSS {rss_mb:.1f} MB, exit {r.returncode}")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "warning: batch.csv is readable by other users and holds plaintext passwords: chmod 600" in r.stderr

    rep = json.loads(report_path.read_text())
    by_line = {row["line"]: row for row in rep["rows"]}
    assert len(by_line) == 25 and rep["exit_code"] == 1 and rep["status"] == "partial"
    assert (by_line[line_bad_pw]["status"], by_line[line_bad_pw]["exit_code"]) == ("failed", 3)
    assert by_line[line_bad_pw]["error"]["reference"] == "login-failed"
    assert (by_line[line_unreach]["status"], by_line[line_unreach]["exit_code"]) == ("failed", 4)
    for line in (line_bad_pw, line_unreach):
        assert f"line {line}: " in r.stdout  # the error line of each failed row
    ok_lines = [ln for ln in by_line if ln not in (line_bad_pw, line_unreach)]
    for ln in ok_lines:
        assert (by_line[ln]["status"], by_line[ln]["exit_code"], by_line[ln]["error"]) == ("ok", 0, None), ln
    assert rep["totals"] == {**rep["totals"], "rows": 25, "ok": 23, "failed": 2, "partial": 0, "interrupted": 0}

    # The good rows are exact; the shared target holds each message once.
    for line, src, dst, n in good:
        assert by_line[line]["report"]["totals"]["copied"] == n, line
        assert_exact(src, dst)
    assert_union([sa, sb], st)
    assert count(st, "INBOX") + count(st, name_on(st.server, PARTS[1])) + \
        count(st, name_on(st.server, PARTS[2])) == 8 + 7 + 6
    copied_shared = by_line[line_a]["report"]["totals"]["copied"] + by_line[line_b]["report"]["totals"]["copied"]
    assert copied_shared == 8 + 7 + 6
    assert by_line[line_a]["journal"] == by_line[line_b]["journal"]  # one journal per target account

    # Bad rows touched nothing.
    assert folders(bad_pw_dst) == bad_pw_before and count(bad_pw_dst, "INBOX") == 0
    assert folders(unreachable_dst) == unreachable_before and count(unreachable_dst, "INBOX") == 0

    # Secrets from the CSV reach neither the output, nor the report, nor the journals.
    everything = (r.stdout + r.stderr + report_path.read_text()).encode() + journal_bytes(home)
    assert LITERAL_PW_MARK.encode() not in everything
    assert dst_literal_pw.encode() not in everything
    for _, src, dst, _ in good[:5]:
        assert src.password.encode() not in everything and dst.password.encode() not in everything


# --- resume after kill --------------------------------------------------------------------


def test_batch_resumes_after_kill(dovecot, new_user, tmp_path):
    servers = [dovecot("slash"), dovecot("dot"), dovecot("inbox")]
    shared = shared_messages(9)
    pairs = []
    total = 0
    for i in range(5):
        src, dst = new_user(servers[i % 3]), new_user(servers[(i + 1) % 3])
        total += seed(src, 20_000 + 1000 * i, 45)
        pairs.append((src, dst))
    # Two sources sharing a target, with same-bytes messages.
    sa, sb, st = new_user(servers[0]), new_user(servers[1]), new_user(servers[2])
    total += seed(sa, 30_000, 30, shared) + seed(sb, 31_000, 25, shared) - len(shared)
    rows = [csv_row(src, dst) for src, dst in pairs]
    rows[2:2] = [csv_row(sa, st), csv_row(sb, st, src={"email": f"second.{sb.name}@example.test"})]
    path = write_csv(tmp_path / "batch.csv", rows)
    path.chmod(0o600)
    jdir = tmp_path / "journals"
    args = ["batch", str(path), "--parallel", "3", "--journal-dir", str(jdir), "-q"]
    env = {"MAILMIGRATE_HOME": str(tmp_path / "home")}

    def in_targets() -> int:
        return sum(stored(d) for d in [*(d for _, d in pairs), st])

    # A deterministic crash: kill -9 right after the 40th APPEND of the process.
    r = cli(*args, env={**env, "MAILMIGRATE_FAULT": "after-append:40"})
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    first = in_targets()
    assert 0 < first < total
    # A timed crash: kill -9 as soon as the targets hold more than before.
    p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], env={**os.environ, **env},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while p.poll() is None and time.monotonic() < deadline and in_targets() <= first:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert any(jdir.glob("*.sqlite"))

    final = cli(*args, "--report", str(tmp_path / "r1.json"), env=env)
    assert final.returncode == 0, final.stdout + final.stderr
    for src, dst in pairs:
        assert_exact(src, dst)
    assert_union([sa, sb], st)
    assert in_targets() == total  # nothing doubled, nothing lost

    t0 = time.monotonic()
    again = cli(*args, "--report", str(tmp_path / "r2.json"), env=env)
    took = time.monotonic() - t0
    assert again.returncode == 0, again.stdout + again.stderr
    rep = json.loads((tmp_path / "r2.json").read_text())
    assert rep["totals"]["copied"] == 0
    assert rep["totals"]["skipped_duplicates"] == total + len(shared)  # shared ones: once per source
    assert all(row["status"] == "ok" for row in rep["rows"])
    assert in_targets() == total
    assert took < 30
    # The journals live in --journal-dir, one per target account.
    assert len(list(jdir.glob("*.sqlite"))) == len(pairs) + 1
    assert not (tmp_path / "home" / "journals").exists()


def test_batch_ctrl_c_then_resume(dovecot, new_user, tmp_path):
    servers = [dovecot("slash"), dovecot("dot")]
    pairs = []
    for i in range(6):
        src, dst = new_user(servers[i % 2]), new_user(servers[(i + 1) % 2])
        seed(src, 80_000 + 1000 * i, 60)
        pairs.append((src, dst))
    path = write_csv(tmp_path / "batch.csv", [csv_row(s, d) for s, d in pairs])
    env = {**os.environ, "MAILMIGRATE_HOME": str(tmp_path / "home")}
    args = [sys.executable, str(ROOT / "cli.py"), "batch", str(path), "--parallel", "2", "-q",
            "--report", str(tmp_path / "r.json")]
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while p.poll() is None and time.monotonic() < deadline and not sum(stored(d) for _, d in pairs):
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)  # Ctrl-C: running rows stop after their current folder
    out, err = p.communicate(timeout=120)
    assert p.returncode == 4, out + err
    assert "interrupted: run the same command again to resume" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert (rep["status"], rep["exit_code"]) == ("interrupted", 4)
    stopped = [r for r in rep["rows"] if r["status"] == "interrupted"]
    assert stopped and all(r["exit_code"] == 4 and r["error"]["hint"] for r in stopped)
    assert {r["status"] for r in rep["rows"]} <= {"ok", "interrupted"}

    again = cli(*args[2:], env={"MAILMIGRATE_HOME": str(tmp_path / "home")})
    assert again.returncode == 0, again.stdout + again.stderr
    for src, dst in pairs:
        assert_exact(src, dst)


# --- two imports side by side -------------------------------------------------------------


def test_two_imports_side_by_side_into_one_target(dovecot, new_user, tmp_path):
    s1, s2, d = dovecot("slash"), dovecot("dot"), dovecot("inbox")
    a, b, dst = new_user(s1), new_user(s2), new_user(d)
    shared = shared_messages(30)
    seed(a, 40_000, 40, shared)
    seed(b, 41_000, 35, shared)
    env = {"MAILMIGRATE_HOME": str(tmp_path / "home")}
    procs = [subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "import", *cli_args("source", u),
                               *cli_args("target", dst), "-q", "--connections", "2", "--batch-size", "5"],
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True)
             for u in (a, b)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
    assert_union([a, b], dst)
    assert sum(count(dst, name_on(d, p)) for p in PARTS) == 40 + 35 + 30
    # Both used the target's default journal: one file.
    assert len(list((tmp_path / "home" / "journals").glob("*.sqlite"))) == 1


# --- invalid files ------------------------------------------------------------------------


def _untouched(dst, before, home: Path) -> None:
    assert folders(dst) == before
    assert count(dst, "INBOX") == 0
    assert not (home / "journals").exists()


def test_26_rows_refused(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 50_000, 3)
    before = folders(dst)
    rows = [csv_row(src, dst, src={"email": f"alias{i}.{src.name}@example.test"}) for i in range(26)]
    path = write_csv(tmp_path / "batch.csv", rows)
    home = tmp_path / "home"
    r = cli("batch", str(path), "-q", env={"MAILMIGRATE_HOME": str(home)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "line 27: more than 25 rows" in r.stderr
    assert "nothing was imported" in r.stderr
    _untouched(dst, before, home)


def test_file_with_ten_mistakes_refused(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 60_000, 3)
    before = folders(dst)
    ok = csv_row(src, dst)
    mistakes = [
        csv_row(src, dst, source_email=""),                                   # empty required field
        csv_row(src, dst, target_email="not-an-address"),                     # bad address
        csv_row(src, dst, src={"email": "p@example.test"}, source_provider="nosuch"),  # unknown provider
        csv_row(src, dst, src={"email": "q@example.test"}, source_port="99999"),        # bad port
        csv_row(src, dst, src={"email": "r@example.test"}, target_security="tls13"),    # bad security
        csv_row(src, dst, src={"email": "s@example.test"}, source_password="env:MMB_SURELY_UNSET_VAR"),
        csv_row(src, dst, src={"email": "t@example.test"}, source_host=""),   # imap without a host
        csv_row(src, dst, src={"email": "u@example.test"}, notify="a@example.test, b@example.test"),
        dict(ok),                                                             # duplicate of line 2
        [*[ok[c] for c in COLUMNS], "extra"],                                 # one field too many
    ]
    path = write_csv(tmp_path / "batch.csv", [ok, *mistakes])
    home = tmp_path / "home"
    r = cli("batch", str(path), "--parallel", "4", env={"MAILMIGRATE_HOME": str(home)})
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("line ")]
    assert {int(re.match(r"line (\d+)", ln).group(1)) for ln in lines} == set(range(3, 13)), r.stderr
    for needle in ("empty required field", "is not an email address", "unknown provider", "is not a port",
                   "is not a security mode", "MMB_SURELY_UNSET_VAR is not set", "needs a host",
                   "separate addresses with ';'", "duplicate row: same source and target as line 2",
                   "16 fields, expected 15"):
        assert needle in r.stderr, needle
    assert "has 10 problems" in r.stderr
    _untouched(dst, before, home)


# --- smaller promises ---------------------------------------------------------------------


def test_dry_run_writes_nothing(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 70_000, 6)
    before = folders(dst)
    path = write_csv(tmp_path / "batch.csv", [csv_row(src, dst)])
    home = tmp_path / "home"
    r = cli("batch", str(path), "--dry-run", "--report", str(tmp_path / "r.json"), "-q",
            env={"MAILMIGRATE_HOME": str(home)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "would copy" in r.stdout and "dry run" in r.stdout
    _untouched(dst, before, home)
    assert not (tmp_path / "r.json").exists()


def test_template_and_usage():
    r = cli("batch", "--template")
    assert r.returncode == 0 and r.stdout == template_text()
    assert r.stdout.splitlines()[0] == ",".join(COLUMNS)
    r = cli("batch")
    assert r.returncode == 2 and "missing CSV file" in r.stderr
    r = cli("batch", "x.csv", "--parallel", "0")
    assert r.returncode == 2 and "--parallel 0" in r.stderr


def test_connection_plan_respects_caps():
    a, b, c = ("a", 993), ("b", 993), ("c", 143)
    caps = {a: 4, b: 10, c: 1}
    # 6 rows a->b, 1 row a->a (both sides on one server), 1 row c->b.
    needs = [{a: 1, b: 1}] * 6 + [{a: 2}, {c: 1, b: 1}]
    got = plan_connections(needs, caps, parallel=4, wanted=4)
    assert got == [1] * 6 + [1, 1]
    assert plan_connections([{b: 1}, {b: 1}], caps, parallel=4, wanted=4) == [4, 4]
    assert plan_connections([{b: 1}] * 3, caps, parallel=2, wanted=8) == [5, 5, 5]
    budget = ConnectionBudget(caps)
    taken = [budget.try_take({a: 1, b: 1}) for _ in range(6)]
    assert taken == [True] * 4 + [False] * 2  # a is full at 4
    assert budget.try_take({c: 1, b: 1})  # another server still runs
    assert not budget.try_take({c: 1})
    budget.give_back({a: 1, b: 1})
    assert budget.try_take({a: 1, b: 1})
    assert max(budget.peak.values()) <= 10 and budget.peak[a] == 4
    # A need larger than a cap is granted on an idle server only (never a deadlock).
    solo = ConnectionBudget({c: 1})
    assert solo.try_take({c: 2}) and not solo.try_take({c: 1})
