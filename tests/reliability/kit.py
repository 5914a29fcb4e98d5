"""Shared tools of the reliability suite: seeding, exact comparison with counts, a digest of the
source account, a tapping proxy (kill / inject / rewrite when a pattern passes), CLI runs.

Every comparison records what it checked in a ``Tally`` (see conftest.py) before asserting, so
the session summary shows losses and duplicates even when a test fails.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from migrate.api import ImportRequest, run_import
from migrate.engine.progress import Progress
from migrate.report import JobReport
from tests.support.mailbox import ROOT, msg, side, snapshot
from tests.support.proxy import FaultProxy, _Rule

# Set by conftest.py (--long / MM_LONG=1) before the test modules are imported.
LONG = os.environ.get("MM_LONG") == "1"

# --------------------------------------------------------------------------- the tally


@dataclass
class Tally:
    """What one test tried; the `tally` fixture (conftest.py) hands it to summary.py."""

    kills: int = 0  # SIGKILLs the import survived (it resumed and finished exactly)
    cuts: int = 0  # connections dropped (random offsets, pattern cuts, injected BYE)
    faults: Counter = field(default_factory=Counter)  # server faults injected, by kind
    hostile: int = 0  # hostile messages compared exactly
    secrets: int = 0  # (secret form x place) searches
    digests: int = 0  # source account digests compared before/after a run
    fuzz: int = 0  # fuzz inputs tried
    runs: int = 0  # import runs (CLI or in-process)
    verified: int = 0  # messages compared exactly (bytes, flags, INTERNALDATE)
    losses: int = 0  # source messages missing on the target
    duplicates: int = 0  # extra copies on the target
    altered: int = 0  # present, but flags or INTERNALDATE differ

    def fault(self, kind: str, n: int = 1) -> None:
        self.faults[kind] += n

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "faults"}
        d["faults"] = dict(self.faults)
        return d


# --------------------------------------------------------------------------- seeding

FOLDERS = ("INBOX", "Sent", "Projects", "Projects/Alpha", "Projects/Alpha/Deep", "Lists/python",
           "Entwürfe 2024", "Q&A")
FLAG_CHOICES = ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "$Forwarded", "Custom_Kw")


def seed(user, n: int, *, folders: Iterable[str] = FOLDERS, rnd: int = 0, pad: int = 3000) -> dict[str, int]:
    """n varied messages (sizes, flags incl. \\Deleted, dates 1995-2023 in many zones, some without
    Message-ID, two that share one) spread over ``folders``, plus byte-identical twins in INBOX.
    Returns messages per folder."""
    folders = tuple(folders)
    rng = random.Random(rnd)
    counts: Counter = Counter()
    plan: dict[str, list[dict]] = {}
    for i in range(n):
        f = folders[i % len(folders)]
        flags = [fl for fl in FLAG_CHOICES if rng.random() < 0.25]
        zone = timezone(timedelta(minutes=rng.randrange(-12 * 60, 13 * 60, 15)))
        date = datetime(1995, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 29 * 365 * 86400))
        mid = None if i % 11 == 0 else ("<shared@rel.test>" if i % 37 == 5 else f"<r{rnd}.{i}@rel.test>")
        extra = b"X-Pad: " + b"p" * rng.randrange(0, pad) + b"\r\n"
        body = msg(i, mid=mid, extra=extra, body=f"body {i} " + "x" * rng.randrange(0, 200))
        plan.setdefault(f, []).append({"msg": body, "flags": flags, "date": date.astimezone(zone)})
    twin = msg(10_000 + rnd, subject="twin")
    plan.setdefault("INBOX", []).extend(
        {"msg": twin, "flags": ["\\Seen"], "date": datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)} for _ in range(2))
    with user.client() as c:
        for f in folders:
            if f.upper() != "INBOX" and not c.folder_exists(f):
                c.create_folder(f)
        for f, items in plan.items():
            for i in range(0, len(items), 100):  # MULTIAPPEND: one round trip per 100 messages
                c.multiappend(f, items[i:i + 100])
            counts[f] += len(items)
    return dict(counts)


# --------------------------------------------------------------------------- exact comparison


def _size(c: Counter) -> int:
    return sum(c.values())


def compare(tally: Tally, src, dst, pairs: Iterable[tuple[str, str]], *, hostile: bool = False,
            expected_missing: Counter | None = None) -> None:
    """Target folder == source folder for every (source, target) pair, as multisets of (bytes,
    flags, INTERNALDATE). Counts losses / duplicates / altered in ``tally`` first, then asserts.
    ``expected_missing``: messages (snapshot entries) that legitimately did not arrive."""
    problems = []
    pairs = list(pairs)
    for sf, tf in pairs:
        want = snapshot(src, sf)
        if expected_missing:
            want = want - expected_missing
        got = snapshot(dst, tf)
        want_b = Counter(m[0] for m in want.elements())
        got_b = Counter(m[0] for m in got.elements())
        lost, extra = _size(want_b - got_b), _size(got_b - want_b)
        altered = max(_size(want - got) - lost, 0)
        tally.verified += _size(want)
        if hostile:
            tally.hostile += _size(want)
        tally.losses += lost
        tally.duplicates += extra
        tally.altered += altered
        if lost or extra or altered:
            problems.append((sf, tf, {"lost": lost, "extra": extra, "altered": altered,
                                      "missing": [(m[0][:60], m[1], m[2]) for m in (want - got)][:5],
                                      "unexpected": [(m[0][:60], m[1], m[2]) for m in (got - want)][:5]}))
    # No copy anywhere else on the target (a second folder, a renamed duplicate...).
    targets = {tf for _, tf in pairs}
    with dst.client() as c:
        for flags, _d, name in c.list_folders():
            if name in targets or any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
                continue
            n = c.folder_status(name, [b"MESSAGES"])[b"MESSAGES"]
            if n:
                tally.duplicates += n
                problems.append((None, name, {"extra": n, "why": "unexpected target folder holds mail"}))
    assert not problems, problems


def identity(folders: Iterable[str]) -> list[tuple[str, str]]:
    return [(f, f) for f in folders]


# --------------------------------------------------------------------------- source digest


def digest(user) -> dict:
    """Everything about an account a migration must not change: folders, subscriptions, and per
    folder UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and every message's UID, flags (\\Recent aside),
    INTERNALDATE and a hash of its bytes. Read with EXAMINE and BODY.PEEK only."""
    out: dict = {}
    with user.client() as c:
        c.normalise_times = False
        listed = c.list_folders()
        out["subscribed"] = sorted(name for _f, _d, name in c.list_sub_folders())
        for flags, _d, name in sorted(listed, key=lambda r: r[2]):
            if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
                out[name] = "noselect"
                continue
            st = c.folder_status(name, [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES", b"HIGHESTMODSEQ"])
            c.select_folder(name, readonly=True)
            rows = []
            uids = c.search("ALL")
            for i in range(0, len(uids), 200):
                for uid, v in c.fetch(uids[i:i + 200], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]).items():
                    fl = tuple(sorted(f.decode() for f in v[b"FLAGS"] if f != b"\\Recent"))
                    rows.append((uid, fl, str(v[b"INTERNALDATE"]), hashlib.sha256(v[b"BODY[]"]).hexdigest()[:16]))
            c.close_folder()
            out[name] = ({k.decode(): v for k, v in st.items()}, sorted(rows))
    return out


def assert_untouched(tally: Tally, user, before: dict) -> None:
    after = digest(user)
    tally.digests += 1
    if after != before:
        diff = {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
        short = {k: (str(a)[:300], str(b)[:300]) for k, (a, b) in diff.items()}
        raise AssertionError(f"the SOURCE account changed: {short}")


# --------------------------------------------------------------------------- in-process runs


class WatchedProgress(Progress):
    """Progress that sets an Event once the engine has copied (and committed) n messages."""

    def __init__(self) -> None:
        super().__init__()
        self._watch: list[tuple[int, threading.Event]] = []

    def when_copied(self, n: int) -> threading.Event:
        ev = threading.Event()
        self._watch.append((n, ev))
        return ev

    def count(self, source: str, **kw) -> None:
        super().count(source, **kw)
        for n, ev in self._watch:
            if self.copied >= n:
                ev.set()


def run_job(src, dst, tmp_path: Path, *, src_port: int | None = None, dst_port: int | None = None,
            timeout: float = 20.0, tally: Tally | None = None, progress: Progress | None = None,
            **kw) -> tuple[JobReport, Progress]:
    """An in-process import (like tests.support.mailbox.import_job) returning the Progress too
    (``progress.retries`` proves that a fault was met and survived)."""
    req = ImportRequest(source=side("source", src, port=src_port, timeout=timeout),
                        target=side("target", dst, port=dst_port, timeout=timeout),
                        journal=kw.pop("journal", tmp_path / "journal.sqlite"), progress=False,
                        retry_base=kw.pop("retry_base", 0.05), **kw)
    progress = progress or Progress()
    report = run_import(req, progress)
    if tally is not None:
        tally.runs += 1
    return report, progress


# --------------------------------------------------------------------------- the CLI

PY = sys.executable
CLI = str(ROOT / "cli.py")


def pw_env(role: str, user) -> str:
    name = re.sub(r"[^A-Z0-9_]", "_", f"MMREL_PW_{role}_{user.name}".upper())
    os.environ[name] = user.password
    return f"env:{name}"


def side_args(role: str, user, *, port: int | None = None, password: str | None = None,
              security: str = "none") -> list[str]:
    return [f"--{role}-email", f"{user.name}@example.test", f"--{role}-username", user.name,
            f"--{role}-password", password or pw_env(role, user), f"--{role}-host", "127.0.0.1",
            f"--{role}-port", str(port or user.server.port), f"--{role}-security", security,
            f"--{role}-provider", "imap"]


def popen_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([PY, CLI, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, CLI, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def kill(p: subprocess.Popen) -> None:
    """SIGKILL if still running (Popen.send_signal checks, so a reaped pid is never signalled)."""
    p.send_signal(signal.SIGKILL)


# --------------------------------------------------------------------------- a tapping proxy


@dataclass
class _Tap:
    pattern: bytes
    direction: str
    action: Callable[[object, str, bytes], object]
    nth: int = 1
    seen: int = 0


class TapProxy(FaultProxy):
    """FaultProxy that also runs an action when a byte pattern passes (before those bytes are
    forwarded), rewrites bytes, and can record the whole traffic.

    An action gets (conn, direction, data) and returns None (forward normally), or the string
    "drop" (forward nothing, keep the connection), or "cut" (forward nothing, close it).
    Taps fire once, on the nth occurrence counted over all connections.
    """

    def __init__(self, *a, record: bool = False, spare_login: bool = False, **kw):
        super().__init__(*a, **kw)
        # spare_login: cut rules wait until a connection is logged in (see test_rel_network.py)
        self.spare_login = spare_login
        self._logged_in: set[int] = set()
        self._taps: list[_Tap] = []
        self._rewrites: list[tuple[str, bytes, bytes]] = []
        self.record = record
        self.traffic = {"upstream": bytearray(), "downstream": bytearray()}
        self.fired: list[str] = []

    def on(self, pattern: bytes, direction: str, action, *, nth: int = 1) -> None:
        with self._lock:
            self._taps.append(_Tap(pattern, direction, action, nth))

    def rewrite(self, direction: str, old: bytes, new: bytes) -> None:
        with self._lock:
            self._rewrites.append((direction, old, new))

    def clear_taps(self) -> None:
        with self._lock:
            self._taps.clear()

    @property
    def pending_taps(self) -> int:
        with self._lock:
            return len(self._taps)

    def _apply_rules(self, conn, d, data):
        for direction, old, new in self._rewrites:
            if direction == d:
                data = data.replace(old, new)
        fire = []
        with self._lock:
            for tap in list(self._taps):
                if tap.direction == d and tap.pattern in data:
                    tap.seen += data.count(tap.pattern)
                    if tap.seen >= tap.nth:
                        self._taps.remove(tap)
                        fire.append(tap)
        for tap in fire:
            self.fired.append(tap.pattern.decode(errors="replace"))
            verdict = tap.action(conn, d, data)
            if verdict == "drop":
                return b"", None
            if verdict == "cut":
                return b"", _Rule(d)
        if self.spare_login and conn.id not in self._logged_in:
            if d == "downstream" and b"Logged in" in data:
                self._logged_in.add(conn.id)
            if self.record:
                self.traffic[d] += data
            return data, None
        send, rule = super()._apply_rules(conn, d, data)
        if self.record and send:
            self.traffic[d] += send
        return send, rule


class CutSequence:
    """Arm ``cut_after`` rules on a proxy one after the other, the next one as soon as the previous
    one fired, so the cuts spread over the run instead of all landing on its first connections.
    ``start`` can be a TapProxy action (e.g. at the first APPEND)."""

    def __init__(self, proxy: FaultProxy, plan: list[tuple[str, int]]):
        self.proxy, self.plan, self.armed = proxy, list(plan), 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, *_args) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.proxy.armed == 0:
                if self.armed == len(self.plan):
                    return
                d, n = self.plan[self.armed]
                self.proxy.cut_after(n, d)
                self.armed += 1
            time.sleep(0.002)

    def stop(self) -> int:
        """Stop arming; returns how many of the planned cuts fired."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return self.armed - self.proxy.armed


def answer_client(conn, data: bytes) -> None:
    """Send bytes to the client side of a proxied connection (from its pump thread)."""
    conn.socks["upstream"].sendall(data)


def later(delay: float, fn: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
