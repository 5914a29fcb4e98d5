"""``mailmigrate serve`` survives ``kill -9``: the real command runs as a separate process against
real Dovecot; three imports are frozen mid-copy (tests/support/proxy.py holds their traffic at a
known message), the process is killed with SIGKILL and started again on the same home, and the
three finish by themselves: every target equals its source message by message (bytes, flags,
INTERNALDATE, folder), the totals add up, the secrets are gone from the database. Also: a
running import cancelled through the API stops within seconds and its view matches the target.

"Copied something" before the kill is read on the target itself, and the API's live totals of the
two imports frozen on their source must say the same.

Both ways of configuring the service are run: everything from the environment
(MAILMIGRATE_HOME, MAILMIGRATE_ADMIN_TOKEN, MAILMIGRATE_SECRET_KEY), and nothing (state under
XDG_STATE_HOME, a generated key file that must survive the restart, people signed in instead of
an operator token)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
Fernet = pytest.importorskip("cryptography.fernet").Fernet

from tests.support.mailbox import ROOT, count, snapshot  # noqa: E402
from tests.support.proxy import FaultProxy  # noqa: E402

FINAL = ("done", "partial", "failed", "cancelled")
# Per source: folder -> messages. INBOX spans two APPEND batches of the engine (100 messages a
# batch), so a hold inside its second batch leaves the first one copied and the rest not.
LAYOUT = (("INBOX", 160), ("Archive", 100), ("Work/Reports", 60))
HOLD_AT = ("INBOX", 130)  # the message whose body text carries the hold marker
FLAG_SETS = ((), ("\\Seen",), ("\\Seen", "\\Answered"), ("\\Flagged",), ("\\Seen", "$Forwarded"),
             ("\\Seen", "\\Flagged", "$label1"), ("\\Draft",))


# --------------------------------------------------------------------------- mailboxes


def message(tag: str, folder: str, i: int, marker: str = "") -> bytes:
    """Mixed sizes (0.3-40 KB; every 25th a 120 KB base64 part); ``marker`` in the body text only,
    so it crosses the wire in a body FETCH (or an APPEND), never in the header scan."""
    head = (f"Message-ID: <{tag}.{folder.replace('/', '.')}.{i}@example.test>\r\n"
            f"From: Sender {i % 7} <s{i % 7}@example.test>\r\nTo: {tag}@example.test\r\n"
            f"Date: Tue, 2 Mar 2021 10:{i % 60:02d}:00 +0100\r\nSubject: {folder} #{i}\r\n")
    text = f"{marker}\r\n" if marker else ""
    text += "".join(f"line {k} of message {i} in {folder}\r\n" for k in range((i * 37) % 1000 + 8))
    if i % 25 == 0:
        blob = os.urandom(90_000).hex()
        att = "\r\n".join(blob[k:k + 76] for k in range(0, len(blob), 76))
        head += 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n'
        text = (f"--b1\r\nContent-Type: text/plain\r\n\r\n{text}--b1\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Transfer-Encoding: base64\r\n\r\n{att}\r\n--b1--\r\n")
    return (head + "\r\n" + text).encode()


def internaldate(i: int) -> datetime:
    return datetime(2014 + i % 10, 1 + i % 12, 1 + i % 28, i % 24, (i * 7) % 60, i % 60,
                    tzinfo=timezone(timedelta(hours=i % 5 - 2)))


def seed(u, tag: str, layout=LAYOUT, hold_at=HOLD_AT) -> str:
    """Fill ``u``'s mailbox; returns the marker carried by message ``hold_at``."""
    marker = f"hold-here-{uuid.uuid4().hex}"
    with u.client() as c:
        for folder, n in layout:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            msgs = [{"msg": message(tag, folder, i, marker if (folder, i) == hold_at else ""),
                     "flags": FLAG_SETS[i % len(FLAG_SETS)], "date": internaldate(i)} for i in range(n)]
            for k in range(0, n, 50):  # MULTIAPPEND: seeding in seconds, not minutes
                c.multiappend(folder, msgs[k:k + 50])
    return marker


def folders_with_mail(u) -> dict[str, int]:
    with u.client() as c:
        names = [name for flags, _d, name in c.list_folders() if b"\\Noselect" not in flags]
        out = {}
        for name in names:
            n = c.select_folder(name, readonly=True)[b"EXISTS"]
            if n:
                out[name] = n
        return out


def assert_same_mailbox(src, dst, layout=LAYOUT) -> None:
    """Nothing lost, nothing doubled, nothing elsewhere: per folder the same multiset of
    (bytes, flags, INTERNALDATE)."""
    assert folders_with_mail(dst) == dict(layout)
    for folder, _n in layout:
        assert snapshot(dst, folder) == snapshot(src, folder), f"{dst.name}: {folder} differs from the source"


# --------------------------------------------------------------------------- the service process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what: str, check: Callable[[], Any], deadline_s: float = 60.0, *,
         detail: Callable[[], Any] | None = None) -> Any:
    """``check()``'s first truthy answer; fails with ``what`` (and ``detail()``) after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"after {deadline_s}s still not: {what}" + (f"\n{detail()}" if detail else ""))
        time.sleep(0.05)


def holding(proxy: FaultProxy) -> bool:
    """The proxy forwards nothing until release() (its hold_when fired, or hold() was called)."""
    return proxy.holding


@dataclass
class Serve:
    """``mailmigrate serve`` as its own process; stdout and stderr kept in ``log``."""

    target_port: int
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Serve:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "serve", "--target-host", "127.0.0.1",
             "--target-port", str(self.target_port), "--target-security", "none", "--port", str(self.port),
             "--jobs", "3", "--allow-source-network", "127.0.0.1/32"],  # the sources are local here
            env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        poll(f"serve answers /healthz (log: {self.tail()})", self._healthy, 30.0)
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}: {self.tail()}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).json()["ok"] is True
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class Mode:
    """How the service is configured, and how a client speaks to it."""

    name: str
    env: dict[str, str]
    home: Path  # where service.sqlite (and service.key, if generated) live
    admin_token: str | None
    secret_key: str | None


def make_mode(name: str, tmp_path: Path) -> Mode:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAILMIGRATE_HOME", "MAILMIGRATE_ADMIN_TOKEN", "MAILMIGRATE_SECRET_KEY")}
    env["PYTHONUNBUFFERED"] = "1"
    # Never the real ~ of whoever runs the tests, whatever the mode.
    env["HOME"] = str(tmp_path / "userhome")
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
    if name == "environment":
        token, key = "op-" + uuid.uuid4().hex, Fernet.generate_key().decode()
        env.update(MAILMIGRATE_HOME=str(tmp_path / "mmhome"), MAILMIGRATE_ADMIN_TOKEN=token,
                   MAILMIGRATE_SECRET_KEY=key)
        return Mode(name, env, tmp_path / "mmhome", token, key)
    return Mode(name, env, tmp_path / "xdg-state" / "mailmigrate", None, None)


class Api:
    """One caller of the API: the operator (bearer token) or a person signed in to ``target``."""

    def __init__(self, serve: Serve, mode: Mode, target) -> None:
        self.serve, self.mode, self.target = serve, mode, target
        self.http = httpx.Client(base_url=serve.url, timeout=20)
        self.headers: dict[str, str] = {}
        if mode.admin_token:
            self.headers["Authorization"] = f"Bearer {mode.admin_token}"
        else:
            r = self.http.post("/api/login", json={"email": target.name, "password": target.password})
            assert r.status_code == 200, r.text
            self.headers["X-CSRF-Token"] = r.json()["csrf_token"]

    def submit(self, source, source_port: int) -> dict:
        body = {"source": {"email": source.name, "password": source.password, "provider": "imap",
                           "host": "127.0.0.1", "port": source_port, "security": "none"},
                "target": {"email": self.target.name}}
        if self.mode.admin_token:
            body["target"]["password"] = self.target.password
        r = self.http.post("/api/imports", json=body, headers=self.headers)
        assert r.status_code == 202, r.text
        return r.json()

    def job(self, job_id: str) -> dict:
        r = self.http.get(f"/api/imports/{job_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    def cancel(self, job_id: str) -> dict:
        r = self.http.post(f"/api/imports/{job_id}/cancel", headers=self.headers)
        assert r.status_code == 202, r.text
        return r.json()

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], None]]]:
    """Things to undo whatever happens (servers stopped, proxies released), last first."""
    undo: list[Callable[[], None]] = []
    yield undo
    for fn in reversed(undo):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - the rest must still be cleaned up
            print(f"cleanup: {exc!r}")


def copied(job: dict) -> int:
    return int(job["totals"]["copied"])


def secrets_erased(home: Path, *secrets: str) -> None:
    db = sqlite3.connect(home / "service.sqlite")
    try:
        kept = db.execute("SELECT id, state FROM jobs WHERE source_secret IS NOT NULL "
                          "OR target_secret IS NOT NULL").fetchall()
    finally:
        db.close()
    assert kept == [], f"sealed passwords still stored for ended jobs: {kept}"
    for f in home.glob("service.sqlite*"):
        data = f.read_bytes()
        for s in secrets:
            assert s.encode() not in data, f"a password in clear in {f.name}"


# --------------------------------------------------------------------------- the tests


@pytest.mark.dovecot
@pytest.mark.slow
@pytest.mark.parametrize("mode_name", ["environment", "defaults"])
def test_kill9_in_the_middle_of_three_imports(mode_name, tmp_path, dovecot, new_user, cleanup):
    srv = dovecot("slash")
    tag = uuid.uuid4().hex[:8]
    sources = [new_user(srv, name=f"src{k}-{tag}@example.test") for k in range(3)]
    targets = [new_user(srv, name=f"dst{k}-{tag}@example.test") for k in range(3)]
    markers = [seed(s, f"{tag}-{k}") for k, s in enumerate(sources)]
    mode = make_mode(mode_name, tmp_path)

    # Every source, and the target, behind its own proxy: each can be frozen on its own.
    src_proxies = [FaultProxy("127.0.0.1", srv.port).start() for _ in sources]
    dst_proxy = FaultProxy("127.0.0.1", srv.port).start()
    proxies = (*src_proxies, dst_proxy)
    for p in proxies:
        cleanup.append(p.stop)
    # Imports 0 and 1 freeze on their source, in the middle of INBOX's second batch; import 2
    # waits at its source's door until then, and later freezes the target in the middle of the
    # APPEND of its marked message: the kill then hits an APPEND in flight (claimed in the
    # journal, never confirmed) as well as the two frozen reads.
    src_proxies[0].hold_when(markers[0].encode(), "downstream")
    src_proxies[1].hold_when(markers[1].encode(), "downstream")
    src_proxies[2].hold()

    serve = Serve(dst_proxy.port, mode.env, tmp_path / "serve.log").start()
    cleanup.append(serve.stop)
    cleanup.append(lambda: [p.release() for p in proxies])  # first: a held proxy would slow the stop
    apis = [Api(serve, mode, t) for t in targets]
    for a in apis:
        cleanup.append(a.close)
    ids = [apis[k].submit(sources[k], src_proxies[k].port)["id"] for k in range(3)]
    total = sum(n for _f, n in LAYOUT)

    # Read on the target straight from Dovecot, not through the proxy (see the module docstring).
    for k in (0, 1):
        poll(f"import {k} frozen on its source after INBOX's first batch",
             lambda k=k: holding(src_proxies[k]) and count(targets[k], "INBOX") >= 100,
             detail=lambda k=k: f"{apis[k].job(ids[k])}\nserve log: {serve.tail()}")
    dst_proxy.hold_when(markers[2].encode(), "upstream")
    src_proxies[2].release()
    poll("import 2 frozen in an APPEND after INBOX's first batch",
         lambda: holding(dst_proxy) and count(targets[2], "INBOX") >= 100,
         detail=lambda: f"{apis[2].job(ids[2])}\nserve log: {serve.tail()}")
    on_target = [sum(folders_with_mail(t).values()) for t in targets]
    for k in range(3):
        job = apis[k].job(ids[k])
        assert job["state"] == "running", job
        assert 100 <= on_target[k] < total and copied(job) < total, (on_target[k], job)
    for k in (0, 1):  # frozen on the source: every APPEND they sent is answered and counted
        assert copied(apis[k].job(ids[k])) == on_target[k], apis[k].job(ids[k])

    serve.kill9()
    # The dead process's connections go, and with them what the proxies still held of its
    # traffic: forwarded later, a stale APPEND would land while the new instance decides what to
    # copy, a race no client can win. What reached Dovecot before the hold is what the crash left.
    for p in proxies:
        p.cut_now()
    key_file = mode.home / "service.key"
    key = key_file.read_bytes() if mode.secret_key is None else None
    if key is not None:
        assert key_file.stat().st_mode & 0o777 == 0o600
    else:
        assert not key_file.exists()  # the key came from the environment

    serve.start()  # the same home and port; the same callers (a person's session survives too)
    if key is not None:
        assert key_file.read_bytes() == key, "the key file changed: the sealed passwords would be lost"
    for job_id, a in zip(ids, apis, strict=True):
        assert a.job(job_id)["state"] in ("queued", "running")
    for p in proxies:
        p.release()

    ends = [poll(f"import {k} ends", lambda k=k: (j := apis[k].job(ids[k]))["state"] in FINAL and j, 120.0)
            for k in range(3)]
    for k, end in enumerate(ends):
        assert end["state"] == "done", end
        t = end["totals"]
        assert t["failed"] == 0 and t["source_messages"] == total, end
        # This run's copies plus what it found there already (journal, or a crash-time APPEND)
        # is every source message, each once.
        assert t["copied"] + t["skipped_duplicates"] == total, end
        assert t["skipped_duplicates"] >= on_target[k], (on_target[k], end)
        assert end["error"] is None and end["finished_at"]
        assert sources[k].password not in json.dumps(end) and targets[k].password not in json.dumps(end)
        assert_same_mailbox(sources[k], targets[k])

    everyone = [u.password for u in (*sources, *targets)]
    secrets_erased(mode.home, *everyone)
    logged = serve.log.read_text(errors="replace")
    for pw in everyone + ([mode.admin_token] if mode.admin_token else []):
        assert pw not in logged, "a secret in the service's log"


@pytest.mark.dovecot
def test_cancel_while_running_stops_within_seconds(tmp_path, dovecot, new_user, cleanup):
    srv = dovecot("slash")
    tag = uuid.uuid4().hex[:8]
    layout = (("INBOX", 500), ("Archive", 40))  # INBOX: five batches; the hold is in the second
    src, dst = new_user(srv, name=f"csrc-{tag}@example.test"), new_user(srv, name=f"cdst-{tag}@example.test")
    marker = seed(src, tag, layout)
    mode = make_mode("environment", tmp_path)
    proxy = FaultProxy("127.0.0.1", srv.port).start()
    cleanup.append(proxy.stop)
    proxy.hold_when(marker.encode(), "downstream")
    serve = Serve(srv.port, mode.env, tmp_path / "serve.log").start()
    cleanup.append(serve.stop)
    cleanup.append(proxy.release)  # first: a held proxy would slow the stop
    api = Api(serve, mode, dst)
    cleanup.append(api.close)
    job_id = api.submit(src, proxy.port)["id"]
    poll("the import is frozen on its source after INBOX's first batch",
         lambda: holding(proxy) and count(dst, "INBOX") >= 100,
         detail=lambda: f"proxy holding={holding(proxy)} bytes={proxy.bytes}; {api.job(job_id)}; "
                        f"serve log: {serve.tail()}")

    asked = api.cancel(job_id)
    assert asked["state"] == "running" and asked["cancel_requested"] is True
    t0 = time.monotonic()
    # The source stays frozen: a read it never answers would end only with the IMAP timeout (30 s,
    # then as long for each LOGOUT); after a grace of 3 s the service cuts the job's connections.
    end = poll("the cancelled import ends", lambda: (j := api.job(job_id))["state"] in FINAL and j, 30.0)
    assert holding(proxy)  # it was the cut, not the source answering again
    took = time.monotonic() - t0
    assert end["state"] == "cancelled", end
    assert took < 10, f"the cancelled import took {took:.1f}s to stop"
    total = sum(n for _f, n in layout)
    assert 100 <= copied(end) < total, end
    # What the view says it copied is exactly what the target holds, folder by folder.
    on_target = {f: count(dst, f) for f, _n in layout if f in folders_with_mail(dst)}
    said = {f["source"]: f["copied"] for f in end["folders"] if f["copied"]}
    assert said == on_target, (said, on_target)
    assert end["finished_at"] and end["error"]
    secrets_erased(mode.home, src.password, dst.password)
