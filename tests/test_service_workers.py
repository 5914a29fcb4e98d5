"""Past one machine: ``mailmigrate serve --database`` queues, ``mailmigrate worker`` processes run.

Everything here is real and separate: a PostgreSQL cluster (tests/servers/postgres.py), Dovecot,
one ``serve`` process and several ``worker`` processes, each worker with a home folder of its own
(nothing shared on disk: as if on other hosts; only the database and MAILMIGRATE_SECRET_KEY are).

- 3 workers, 20 imports submitted through the API; the worker running a chosen import is killed
  with SIGKILL while that import is frozen in the middle of a copy: the others take its imports
  over after ``--stalled-after`` and every import ends ``done`` with its target equal to its source
  (bytes, flags, INTERNALDATE, folder: nothing lost, nothing doubled), its passwords erased.
- SIGTERM: the worker finishes the batch in flight, hands the import back and exits 0; another
  worker finishes it exactly.
- caps across workers, counted at the server side (one proxy per account in front of Dovecot,
  counting connections in use): ``--max-per-provider imap=2`` holds over two workers, and two
  imports from one account on two workers together stay within the preset's connections.
- two imports from two sources into one target, on two workers at once: the messages both
  sources have arrive once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
Fernet = pytest.importorskip("cryptography.fernet").Fernet
pytest.importorskip("procrastinate")

from tests.support.mailbox import ROOT, snapshot  # noqa: E402
from tests.support.proxy import FaultProxy, ProxyGroup  # noqa: E402
from tests.test_service_durable import (  # noqa: E402
    assert_same_mailbox,
    cleanup,  # noqa: F401 - a fixture
    folders_with_mail,
    free_port,
    poll,
    seed,
)

pytestmark = [pytest.mark.postgres, pytest.mark.dovecot, pytest.mark.slow]

FINAL = ("done", "partial", "failed", "cancelled")
SMALL = (("INBOX", 40), ("Archive", 20))  # per import: small, so 20 of them take seconds
HOLD_SMALL = ("INBOX", 30)


@dataclass
class Proc:
    """A ``mailmigrate`` command as its own process; its output kept in ``log``."""

    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *self.args], env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Cluster:
    """serve + workers on one database, a Dovecot target behind ``target_port``."""

    tmp: Path
    database: str
    target_port: int
    token: str = field(default_factory=lambda: "op-" + uuid.uuid4().hex)
    key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    port: int = field(default_factory=free_port)
    serve: Proc | None = None
    workers: list[Proc] = field(default_factory=list)

    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILMIGRATE_")}
        env.update(PYTHONUNBUFFERED="1", HOME=str(self.tmp / name / "home"), MAILMIGRATE_HOME=str(self.tmp / name),
                   MAILMIGRATE_ADMIN_TOKEN=self.token, MAILMIGRATE_SECRET_KEY=self.key)
        return env

    def target_args(self) -> list[str]:
        return ["--target-host", "127.0.0.1", "--target-port", str(self.target_port), "--target-security", "none",
                "--allow-source-network", "127.0.0.1/32", "--database", self.database]

    def upgrade(self) -> str:
        r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "db", "upgrade", "--database", self.database],
                           env=self.env("upgrade"), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def start_serve(self) -> Proc:
        self.serve = Proc(["serve", "--port", str(self.port), *self.target_args()], self.env("serve"),
                          self.tmp / "serve.log").start()
        poll("serve answers /healthz", self._healthy, 30.0, detail=lambda: self.serve.text()[-3000:])
        return self.serve

    def _healthy(self) -> bool:
        assert self.serve is not None and self.serve.alive(), self.serve.text()[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json()["ok"] is True
        except httpx.HTTPError:
            return False

    def start_worker(self, *extra: str, env: dict[str, str] | None = None) -> Proc:
        n = len(self.workers)
        w = Proc(["worker", *self.target_args(), "--stalled-after", "4", *extra], {**self.env(f"worker{n}"), **(env or {})},
                 self.tmp / f"worker{n}.log").start()
        poll(f"worker {n} waits for imports", lambda: "waiting for imports" in w.text() or not w.alive(), 30.0)
        assert w.alive(), w.text()
        self.workers.append(w)
        return w

    def stop(self) -> None:
        for p in [*self.workers, *([self.serve] if self.serve else [])]:
            p.stop()

    # --- the API, as the operator ---

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=20,
                            headers={"Authorization": f"Bearer {self.token}"})

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.text()[-2500:]}" for p in [self.serve, *self.workers] if p)


def submit(api: httpx.Client, source, source_port: int, target) -> str:
    body = {"source": {"email": source.name, "password": source.password, "provider": "imap",
                       "host": "127.0.0.1", "port": source_port, "security": "none"},
            "target": {"email": target.name, "password": target.password}}
    r = api.post("/api/imports", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def view(api: httpx.Client, job_id: str) -> dict:
    r = api.get(f"/api/imports/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_final(api: httpx.Client, ids: list[str], cluster: Cluster, deadline_s: float = 240.0) -> list[dict]:
    def all_final():
        views = [view(api, i) for i in ids]
        return views if all(v["state"] in FINAL for v in views) else None

    return poll("every import ended", all_final, deadline_s,
                detail=lambda: f"{[view(api, i)['state'] for i in ids]}\n{cluster.logs()}")


def worker_running(cluster: Cluster, job_id: str) -> Proc | None:
    for w in cluster.workers:
        if w.alive() and f"import {job_id}: running here" in w.text():
            return w
    return None


@dataclass
class Frozen:
    """One import from a fresh source into a fresh target, frozen on its source at ``hold_at``."""

    source: object
    target: object
    proxy: FaultProxy
    api: httpx.Client
    job_id: str


def frozen_import(c: Cluster, srv, new_user, cleanup, layout, hold_at) -> Frozen:  # noqa: ANN001, F811
    """serve and one worker (``--concurrency 1``) started; returns once the import is frozen."""
    tag = uuid.uuid4().hex[:8]
    source, target = new_user(srv, name=f"src-{tag}@example.test"), new_user(srv, name=f"dst-{tag}@example.test")
    marker = seed(source, tag, layout=layout, hold_at=hold_at)
    proxy = FaultProxy("127.0.0.1", srv.port).start()
    cleanup.append(proxy.stop)
    proxy.hold_when(marker.encode(), "downstream")
    c.start_serve()
    c.start_worker("--concurrency", "1")
    api = c.api()
    cleanup.append(api.close)
    job_id = submit(api, source, proxy.port, target)
    poll("the import frozen on its source", lambda: proxy.holding and worker_running(c, job_id), detail=c.logs)
    return Frozen(source, target, proxy, api, job_id)


@pytest.fixture
def cluster(postgres, dovecot, tmp_path, cleanup):  # noqa: F811 - cleanup is the fixture above
    srv = dovecot("slash")
    c = Cluster(tmp_path, postgres.create_database(), srv.port)
    assert "task queue (procrastinate)" in c.upgrade()
    cleanup.append(c.stop)
    return c, srv


def secrets_left(database: str) -> list:
    import psycopg

    with psycopg.connect(database) as conn:
        return conn.execute("SELECT id, state FROM service.jobs WHERE source_secret IS NOT NULL "
                            "OR target_secret IS NOT NULL").fetchall()


def test_twenty_imports_on_three_workers_one_killed_mid_copy(cluster, new_user, cleanup):  # noqa: F811
    c, srv = cluster
    tag = uuid.uuid4().hex[:8]
    sources = [new_user(srv, name=f"src{k}-{tag}@example.test") for k in range(20)]
    targets = [new_user(srv, name=f"dst{k}-{tag}@example.test") for k in range(20)]
    markers = [seed(s, f"{tag}-{k}", layout=SMALL, hold_at=HOLD_SMALL) for k, s in enumerate(sources)]
    # Import 0 freezes on its source in the middle of INBOX; the worker that runs it is killed.
    frozen = FaultProxy("127.0.0.1", srv.port).start()
    cleanup.append(frozen.stop)
    frozen.hold_when(markers[0].encode(), "downstream")
    c.start_serve()
    for _ in range(3):
        c.start_worker("--concurrency", "3")
    api = c.api()
    cleanup.append(api.close)
    ids = [submit(api, sources[0], frozen.port, targets[0])]
    ids += [submit(api, sources[k], srv.port, targets[k]) for k in range(1, 20)]

    poll("import 0 frozen on its source", lambda: frozen.holding and worker_running(c, ids[0]),
         detail=lambda: f"{view(api, ids[0])}\n{c.logs()}")
    victim = worker_running(c, ids[0])
    assert victim is not None and view(api, ids[0])["state"] == "running"
    os.kill(victim.proc.pid, signal.SIGKILL)
    assert victim.proc.wait(10) == -signal.SIGKILL
    frozen.release()

    views = wait_final(api, ids, c)
    assert [v["state"] for v in views] == ["done"] * 20, c.logs()
    total = sum(n for _f, n in SMALL)
    for k, v in enumerate(views):
        assert_same_mailbox(sources[k], targets[k], layout=SMALL)
        t = v["totals"]
        assert t["copied"] + t["skipped_duplicates"] == total, v
        assert t["failed"] == 0, v
    # Import 0 ran again on a worker that is still alive.
    survivors = [w for w in c.workers if w.alive()]
    assert any(f"import {ids[0]}: running here" in w.text() for w in survivors), c.logs()
    assert secrets_left(c.database) == []


def test_sigterm_finishes_the_batch_in_flight_and_hands_the_import_back(cluster, new_user, cleanup):  # noqa: F811
    c, srv = cluster
    layout = (("INBOX", 260), ("Archive", 40))  # three APPEND batches in INBOX: the hold is in the second
    f = frozen_import(c, srv, new_user, cleanup, layout, ("INBOX", 130))
    source, target, proxy, api, job_id = f.source, f.target, f.proxy, f.api, f.job_id
    first = c.workers[0]
    second = c.start_worker("--concurrency", "1")  # idle until the first hands the import back

    first.proc.send_signal(signal.SIGTERM)
    proxy.release()
    assert first.proc.wait(60) == 0, first.text()
    assert "handing the running imports back" in first.text()
    poll("the second worker took the import over", lambda: f"import {job_id}: running here" in second.text(),
         detail=c.logs)
    (v,) = wait_final(api, [job_id], c)
    assert v["state"] == "done", v
    assert_same_mailbox(source, target, layout=layout)
    assert v["totals"]["copied"] + v["totals"]["skipped_duplicates"] == 300, v


def test_caps_hold_across_workers_counted_at_the_server(cluster, new_user, cleanup):  # noqa: F811
    c, srv = cluster
    tag = uuid.uuid4().hex[:8]
    layout = (("INBOX", 60), ("Archive", 30))
    sources = [new_user(srv, name=f"src{k}-{tag}@example.test") for k in range(6)]
    targets = [new_user(srv, name=f"dst{k}-{tag}@example.test") for k in range(7)]
    for k, s in enumerate(sources):
        seed(s, f"{tag}-{k}", layout=layout)
    group = ProxyGroup()  # one proxy per source account: connections in use counted per account
    proxies = [FaultProxy("127.0.0.1", srv.port, group=group).start() for _ in sources]
    for p in proxies:
        cleanup.append(p.stop)
    c.start_serve()
    for _ in range(2):
        c.start_worker("--concurrency", "3", "--max-per-provider", "imap=2")
    api = c.api()
    cleanup.append(api.close)
    ids = [submit(api, sources[k], proxies[k].port, targets[k]) for k in range(6)]
    # The same source account once more, into another target: its connections are shared.
    ids.append(submit(api, sources[0], proxies[0].port, targets[6]))
    views = wait_final(api, ids, c)
    assert [v["state"] for v in views] == ["done"] * 7, c.logs()
    for k in range(6):
        assert_same_mailbox(sources[k], targets[k], layout=layout)
    assert_same_mailbox(sources[0], targets[6], layout=layout)
    # Six workers' slots, two allowed at once: the cap is what held them back, and it held.
    assert group.peak_busy == 2, group.peak_busy
    # The generic IMAP preset allows 4 connections per account, over both imports of source 0.
    assert max(p.peak_connections for p in proxies) <= 4, [p.peak_connections for p in proxies]
    assert "imports from imap run already" in "".join(w.text() for w in c.workers)


def test_two_sources_into_one_target_on_two_workers_arrive_once(cluster, new_user, cleanup):  # noqa: F811
    c, srv = cluster
    tag = uuid.uuid4().hex[:8]
    a, b = new_user(srv, name=f"a-{tag}@example.test"), new_user(srv, name=f"b-{tag}@example.test")
    target = new_user(srv, name=f"dst-{tag}@example.test")
    shared = (("INBOX", 80), ("Archive", 40))
    seed(a, f"{tag}-shared", layout=shared)  # the same messages (same bytes) in both sources
    seed(b, f"{tag}-shared", layout=shared)
    with b.client() as cl:  # and one message only b has
        cl.append("INBOX", b"Message-ID: <only-b-" + tag.encode() + b"@example.test>\r\nSubject: b\r\n\r\nb\r\n")
    # Both sources held at the door until each import runs on its own worker: then they copy at once.
    doors = [FaultProxy("127.0.0.1", srv.port).start() for _ in range(2)]
    for d in doors:
        cleanup.append(d.stop)
        d.hold()
    c.start_serve()
    w1, w2 = c.start_worker("--concurrency", "1"), c.start_worker("--concurrency", "1")
    api = c.api()
    cleanup.append(api.close)
    ids = [submit(api, a, doors[0].port, target), submit(api, b, doors[1].port, target)]
    poll("both imports run, one on each worker",
         lambda: all(worker_running(c, i) for i in ids)
         and {worker_running(c, i).log.name for i in ids} == {w1.log.name, w2.log.name},
         detail=c.logs)
    for d in doors:
        d.release()
    views = wait_final(api, ids, c)
    assert [v["state"] for v in views] == ["done", "done"], c.logs()
    assert folders_with_mail(target) == {"INBOX": 81, "Archive": 40}
    assert snapshot(target, "Archive") == snapshot(a, "Archive")
    copied = sum(v["totals"]["copied"] for v in views)
    dupes = sum(v["totals"]["skipped_duplicates"] for v in views)
    assert (copied, dupes) == (121, 120), views


def test_database_connections_dropped_mid_import_the_import_goes_on_exactly(cluster, new_user, cleanup):  # noqa: F811
    """Every session of the database is ended (as a PostgreSQL restart or fail-over does) while an
    import is in the middle of a copy: the worker stays up, the import stops with the classified
    error and is queued again, and it ends done and exact."""
    import psycopg

    c, srv = cluster
    layout = (("INBOX", 260), ("Archive", 40))
    f = frozen_import(c, srv, new_user, cleanup, layout, ("INBOX", 130))
    source, target, proxy, api, job_id, w = f.source, f.target, f.proxy, f.api, f.job_id, c.workers[0]
    with psycopg.connect(c.database, autocommit=True) as conn:
        ended = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert ended >= 3  # serve's, the worker's queue, its journal and lock connections
    proxy.release()
    (v,) = wait_final(api, [job_id], c, deadline_s=120)
    assert v["state"] == "done", f"{v}\n{c.logs()}"
    assert w.alive(), w.text()
    assert_same_mailbox(source, target, layout=layout)
    assert "lost the connection to PostgreSQL" in w.text()
    assert "Traceback" not in w.text().split("lost the connection to PostgreSQL", 1)[0][-2000:]


def test_the_same_import_submitted_twice_on_two_workers_copies_once(cluster, new_user, cleanup):  # noqa: F811
    """Two workers, the same source into the same target twice at once: the second waits (the
    account's connections are taken, and the job's lock) and then finds everything there."""
    c, srv = cluster
    tag = uuid.uuid4().hex[:8]
    source, target = new_user(srv, name=f"src-{tag}@example.test"), new_user(srv, name=f"dst-{tag}@example.test")
    layout = (("INBOX", 120), ("Archive", 40))
    marker = seed(source, tag, layout=layout, hold_at=("INBOX", 60))
    proxy = FaultProxy("127.0.0.1", srv.port).start()
    cleanup.append(proxy.stop)
    proxy.hold_when(marker.encode(), "downstream")
    c.start_serve()
    c.start_worker("--concurrency", "1")
    c.start_worker("--concurrency", "1")
    api = c.api()
    cleanup.append(api.close)
    first = submit(api, source, proxy.port, target)
    poll("the first import frozen on its source", lambda: proxy.holding and worker_running(c, first), detail=c.logs)
    second = submit(api, source, proxy.port, target)
    poll("the second import found it cannot run now",
         lambda: f"import {second}: running here" in "".join(w.text() for w in c.workers)
         and "back in the queue" in "".join(w.text() for w in c.workers), detail=c.logs)
    proxy.release()
    views = wait_final(api, [first, second], c, deadline_s=120)
    assert [v["state"] for v in views] == ["done", "done"], c.logs()
    assert_same_mailbox(source, target, layout=layout)  # nothing doubled
    assert views[1]["totals"]["copied"] == 0, views[1]


def test_an_import_at_its_daily_budget_waits_in_the_queue_and_goes_on_the_next_day(cluster, new_user,
                                                                                  cleanup):  # noqa: F811
    """With workers, a daily budget's wait is a queue entry scheduled at ``resume_at`` (nothing
    polls). The test plays "the next day" in the database: the budget's usage forgotten, the
    entry and ``resume_at`` made due; the worker picks the entry up and the import goes on, day
    after day, until it is done and exact."""
    import psycopg

    from migrate.engine.budget import OVERRIDE_ENV

    c, srv = cluster
    tag = uuid.uuid4().hex[:8]
    source, target = new_user(srv, name=f"src-{tag}@example.test"), new_user(srv, name=f"dst-{tag}@example.test")
    seed(source, tag, layout=SMALL)
    c.start_serve()
    c.start_worker("--concurrency", "1", env={OVERRIDE_ENV: "imap:download_mb_per_day=0.25"})
    api = c.api()
    cleanup.append(api.close)
    job_id = submit(api, source, srv.port, target)
    days = 0
    with psycopg.connect(c.database, autocommit=True) as db:
        while True:
            v = poll("the import waits for its budget or ends", lambda: (w := view(api, job_id))["state"] in
                     ("waiting", *FINAL) and w, 60.0, detail=c.logs)
            if v["state"] != "waiting":
                break
            days += 1
            assert days < 20, v
            resume_at = db.execute("SELECT resume_at FROM service.jobs WHERE id = %s", (job_id,)).fetchone()[0]
            entry = poll("its queue entry, scheduled at resume_at", lambda: db.execute(
                "SELECT extract(epoch FROM scheduled_at) FROM procrastinate_jobs WHERE lock = %s AND status = 'todo'",
                (job_id,)).fetchone(), 10.0)
            assert abs(float(entry[0]) - resume_at) < 1, (entry, resume_at)
            # The next day: the budget's usage forgotten, the wait over.
            started = db.execute("SELECT started_at FROM service.jobs WHERE id = %s", (job_id,)).fetchone()[0]
            db.execute("DELETE FROM budget_usage WHERE namespace = '_budgets'")
            db.execute("UPDATE service.jobs SET resume_at = extract(epoch FROM now()) - 1 WHERE id = %s", (job_id,))
            db.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE lock = %s AND status = 'todo'",
                       (job_id,))
            poll("the import goes on (claimed again)", lambda started=started: db.execute(
                "SELECT started_at > %s FROM service.jobs WHERE id = %s", (started, job_id)).fetchone()[0],
                30.0, detail=c.logs)
    assert v["state"] == "done", f"{v}\n{c.logs()}"
    assert days >= 2, days  # the budget really stopped it, more than once
    assert_same_mailbox(source, target, layout=SMALL)


@pytest.mark.cyrus
def test_a_cyrus_source_on_a_worker_and_the_target_read_not_the_journal(cluster, new_user, cyrus,
                                                                       cleanup):  # noqa: F811
    """A second server make through a worker: the source is Cyrus (its login is not the address,
    its separator is "."), the journal in PostgreSQL. A message deleted on the target behind our
    back comes back on the next import: the worker reads the target, not the journal's word."""
    c, srv = cluster
    src = new_user(cyrus("dot"))
    target = new_user(srv, name=f"dst-{uuid.uuid4().hex[:8]}@example.test")
    seed(src, uuid.uuid4().hex[:8], layout=SMALL)
    c.start_serve()
    c.start_worker("--concurrency", "1")
    api = c.api()
    cleanup.append(api.close)
    body = {"source": {"email": f"{src.name}@cyrus.example.test", "username": src.name, "password": src.password,
                       "provider": "imap", "host": "127.0.0.1", "port": src.server.port, "security": "none"},
            "target": {"email": target.name, "password": target.password}}

    def run() -> dict:
        r = api.post("/api/imports", json=body)
        assert r.status_code == 202, r.text
        (v,) = wait_final(api, [r.json()["id"]], c, deadline_s=120)
        assert v["state"] == "done", f"{v}\n{c.logs()}"
        return v["totals"]

    first = run()
    assert (first["copied"], first["source_messages"]) == (60, 60), first
    assert_same_mailbox(src, target, layout=SMALL)
    with target.client() as t:
        t.select_folder("Archive")
        t.delete_messages(t.search()[:1])
        t.expunge()
    again = run()
    assert (again["copied"], again["restored"], again["skipped_duplicates"]) == (0, 1, 59), again
    assert_same_mailbox(src, target, layout=SMALL)
