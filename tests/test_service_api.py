"""``mailmigrate serve``'s HTTP API (migrate/service) against real Dovecot: sign-in (ok, wrong
password, rate limit), CSRF, imports run to completion and compared message by message, two
sources into one target at once, privacy between people, cancel, the operator's bearer token,
no password in the service's database, and jobs that survive a restart of the service."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

import migrate.service.runner as runner_mod  # noqa: E402
from migrate.service import ServiceConfig, create_app  # noqa: E402
from tests.support.mailbox import msg, snapshot  # noqa: E402

ADMIN = "operator-token-" + uuid.uuid4().hex
FOLDERS = ("INBOX", "Archive")
FINAL = ("done", "partial", "failed", "cancelled")


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(path))
    monkeypatch.delenv("MAILMIGRATE_SECRET_KEY", raising=False)
    return path


@pytest.fixture
def srv(dovecot):
    return dovecot("slash")


def make_app(home, srv, *, jobs: int = 2, **kw):
    return create_app(ServiceConfig(target_host="127.0.0.1", target_port=srv.port, target_security="none",
                                    home=home, jobs=jobs, admin_token=ADMIN, retry_base=0.05, imap_timeout=20.0,
                                    **kw))


def user(new_user, srv, tag: str = "u"):
    return new_user(srv, name=f"{tag}{uuid.uuid4().hex[:10]}@example.test")


def seed(u, base: int, per_folder=(("INBOX", 4), ("Archive", 3))) -> None:
    with u.client() as c:
        for j, (folder, n) in enumerate(per_folder):
            if not c.folder_exists(folder):
                c.create_folder(folder)
            for i in range(n):
                k = base + 100 * j + i
                c.append(folder, msg(k), flags=[b"\\Seen"] if i % 2 else [],
                         msg_time=datetime(2021, 1 + i % 12, 5, tzinfo=UTC))


def source_of(u, srv) -> dict:
    return {"email": u.name, "password": u.password, "provider": "imap", "host": "127.0.0.1",
            "port": srv.port, "security": "none"}


def login(c: TestClient, u) -> str:
    r = c.post("/api/login", json={"email": u.name, "password": u.password})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def wait_for(c: TestClient, job_id: str, states=FINAL, *, headers=None, deadline_s: float = 90.0) -> dict:
    deadline = time.monotonic() + deadline_s
    while True:
        r = c.get(f"/api/imports/{job_id}", headers=headers or {})
        assert r.status_code == 200, r.text
        body = r.json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, f"import {job_id} still {body['state']} after {deadline_s}s"
        time.sleep(0.05)


def assert_same(src, dst) -> None:
    for folder in FOLDERS:
        assert snapshot(dst, folder) == snapshot(src, folder), folder


def secret_free(home, *passwords: str) -> None:
    files = list(home.glob("service.sqlite*"))
    assert files
    for f in files:
        data = f.read_bytes()
        for pw in passwords:
            assert pw.encode() not in data, f"a password in clear in {f.name}"


@pytest.mark.dovecot
def test_login_ok_wrong_password_and_rate_limit(home, srv, new_user):
    alice, bob = user(new_user, srv, "a"), user(new_user, srv, "b")
    with TestClient(make_app(home, srv)) as c:
        r = c.post("/api/login", json={"email": alice.name, "password": alice.password})
        assert r.status_code == 200
        assert r.json()["csrf_token"] == c.cookies["mm_csrf"]
        cookie = r.headers["set-cookie"].lower()
        assert "mm_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert alice.password not in r.text
        assert c.get("/api/imports").status_code == 200
        r = c.post("/api/login", json={"email": bob.name, "password": "wrong-" + bob.password})
        assert r.status_code == 401
        for _ in range(3):  # this client's attempts: alice, bob, then 3 more
            assert c.post("/api/login", json={"email": alice.name, "password": alice.password}).status_code == 200
        # the client is limited (5 attempts a minute), whatever the address
        r = c.post("/api/login", json={"email": user(new_user, srv, "c").name, "password": "x"})
        assert r.status_code == 429 and "Retry-After" in r.headers
        # another client: alice's address has had 4 attempts, the 5th is allowed, the 6th not
        c2 = TestClient(c.app, client=("10.0.0.9", 5000))  # the same, started app
        assert c2.post("/api/login", json={"email": alice.name, "password": alice.password}).status_code == 200
        assert c2.post("/api/login", json={"email": alice.name, "password": alice.password}).status_code == 429
        assert c2.post("/api/login", json={"email": bob.name, "password": bob.password}).status_code == 200


@pytest.mark.dovecot
def test_csrf_and_sign_in_required(home, srv, new_user):
    alice, src = user(new_user, srv, "a"), user(new_user, srv, "s")
    with TestClient(make_app(home, srv, jobs=0)) as c:
        body = {"source": source_of(src, srv), "target": {"email": alice.name}}
        assert c.post("/api/imports", json=body).status_code == 401  # not signed in
        assert c.get("/api/imports").status_code == 401
        csrf = login(c, alice)
        r = c.post("/api/imports", json=body)
        assert r.status_code == 403 and "X-CSRF-Token" in r.json()["error"]
        assert c.post("/api/imports", json=body, headers={"X-CSRF-Token": "nope"}).status_code == 403
        assert c.post("/api/logout").status_code == 403
        r = c.post("/api/imports", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202
        # only into one's own mailbox
        other = {"source": source_of(src, srv), "target": {"email": "someone-else@example.test"}}
        assert c.post("/api/imports", json=other, headers={"X-CSRF-Token": csrf}).status_code == 403
        assert c.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert c.get("/api/imports").status_code == 401
        assert c.get("/healthz").json()["ok"] is True
        r = c.get("/batch.csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")


@pytest.mark.dovecot
def test_import_runs_to_completion_and_is_private(home, srv, new_user):
    src, alice, bob = user(new_user, srv, "s"), user(new_user, srv, "a"), user(new_user, srv, "b")
    seed(src, 0)
    app = make_app(home, srv)
    with TestClient(app) as c, TestClient(app) as other:
        csrf = login(c, alice)
        r = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name},
                                         "exclude": [], "lang": "de"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] in ("queued", "running") and src.password not in r.text
        done = wait_for(c, job["id"])
        assert done["state"] == "done", done
        assert done["totals"]["copied"] == 7 and done["totals"]["failed"] == 0
        assert done["totals"]["source_messages"] == 7 and done["totals"]["bytes"] > 0
        assert {f["source"] for f in done["folders"]} >= set(FOLDERS)
        assert done["finished_at"] and done["created_at"] and done["error"] is None
        assert_same(src, alice)
        listing = c.get("/api/imports").json()["imports"]
        assert [j["id"] for j in listing] == [job["id"]]
        # another person sees neither the import nor its id
        login(other, bob)
        assert other.get(f"/api/imports/{job['id']}").status_code == 404
        assert other.get("/api/imports").json()["imports"] == []
        csrf_b = other.cookies["mm_csrf"]
        assert other.post(f"/api/imports/{job['id']}/cancel", headers={"X-CSRF-Token": csrf_b}).status_code == 404
        assert src.password not in json.dumps(listing)
    secret_free(home, src.password, alice.password, bob.password)


@pytest.mark.dovecot
def test_two_sources_into_one_target_at_once(home, srv, new_user):
    one, two, alice = user(new_user, srv, "s"), user(new_user, srv, "t"), user(new_user, srv, "a")
    seed(one, 0)
    seed(two, 5000)
    with TestClient(make_app(home, srv)) as c:
        csrf = login(c, alice)
        r = c.post("/api/imports", json={"source": source_of(one, srv), "second_source": source_of(two, srv),
                                         "target": {"email": alice.name}}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202, r.text
        ids = r.json()["ids"]
        assert len(ids) == 2 and r.json()["second_id"] == ids[1]
        for job_id in ids:
            assert wait_for(c, job_id)["state"] == "done"
    for folder in FOLDERS:
        assert snapshot(alice, folder) == snapshot(one, folder) + snapshot(two, folder), folder


@pytest.mark.dovecot
def test_cancel_queued_and_running(home, srv, new_user, monkeypatch):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    # queued: cancelled at once, its secrets erased
    with TestClient(make_app(home, srv, jobs=0)) as c:
        csrf = login(c, alice)
        job = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                     headers={"X-CSRF-Token": csrf}).json()
        r = c.post(f"/api/imports/{job['id']}/cancel", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202 and r.json()["state"] == "cancelled"
    # running: the job is held inside its first event until the cancel has been asked for
    release, held = threading.Event(), threading.Event()
    real = runner_mod.start_import

    def held_start(req, **kw):
        def on_event(_event):
            held.set()
            release.wait(30)
        return real(req, on_event=on_event, **kw)

    monkeypatch.setattr(runner_mod, "start_import", held_start)
    with TestClient(make_app(home, srv)) as c:
        csrf = login(c, alice)
        job = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                     headers={"X-CSRF-Token": csrf}).json()
        assert held.wait(30)
        assert wait_for(c, job["id"], ("running",))["state"] == "running"
        r = c.post(f"/api/imports/{job['id']}/cancel", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202 and r.json()["cancel_requested"] is True
        release.set()
        end = wait_for(c, job["id"])
        assert end["state"] == "cancelled", end
        assert end["totals"]["copied"] < 7
    secret_free(home, src.password, alice.password)


@pytest.mark.dovecot
def test_operator_bearer(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    op = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(make_app(home, srv)) as c:
        body = {"source": source_of(src, srv), "target": {"email": alice.name}}
        assert c.post("/api/imports", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/api/imports", json=body, headers=op).status_code == 422  # no target password
        body["target"]["password"] = alice.password
        r = c.post("/api/imports", json=body, headers=op)  # no CSRF token needed
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert wait_for(c, job_id, headers=op)["state"] == "done"
        assert job_id in [j["id"] for j in c.get("/api/imports", headers=op).json()["imports"]]
        assert_same(src, alice)
        # the owner of the target mailbox sees it
        with TestClient(c.app) as person:
            login(person, alice)
            assert person.get(f"/api/imports/{job_id}").status_code == 200
    secret_free(home, src.password, alice.password)


@pytest.mark.dovecot
def test_queued_job_survives_a_restart(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    with TestClient(make_app(home, srv, jobs=0)) as c:  # no worker: the job stays queued
        csrf = login(c, alice)
        job = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                     headers={"X-CSRF-Token": csrf}).json()
        assert c.get(f"/api/imports/{job['id']}").json()["state"] == "queued"
        secret_free(home, src.password, alice.password)  # kept for the job, but sealed
    with TestClient(make_app(home, srv)) as c:  # a new instance on the same home
        c.post("/api/login", json={"email": alice.name, "password": alice.password})
        end = wait_for(c, job["id"])
        assert end["state"] == "done", end
    assert_same(src, alice)
    secret_free(home, src.password, alice.password)


@pytest.mark.dovecot
def test_real_uvicorn_server(home, srv, new_user):
    """The app served by uvicorn on 127.0.0.1 (as `mailmigrate serve` runs it), in a thread."""
    import httpx
    import uvicorn

    alice = user(new_user, srv, "a")
    server = uvicorn.Server(uvicorn.Config(make_app(home, srv, jobs=1), host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as h:
            assert h.get("/healthz").json()["ok"] is True
            r = h.post("/api/login", json={"email": alice.name, "password": alice.password})
            assert r.status_code == 200 and "mm_session" in h.cookies
            assert h.get("/api/imports").json() == {"imports": []}
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive()


@pytest.mark.dovecot
def test_running_job_resumes_after_a_restart(home, srv, new_user, monkeypatch):
    """Stopping the service cancels a running job cooperatively and keeps it queued (its secrets
    sealed); the next instance resumes it from the journal: the target ends exactly like the source."""
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    held, handles = threading.Event(), []
    real = runner_mod.start_import

    def held_start(req, **kw):
        if handles:  # the second instance runs unhindered
            return real(req, **kw)
        release = threading.Event()

        def on_event(_event):
            held.set()
            release.wait(30)

        handle = real(req, on_event=on_event, **kw)
        handles.append(handle)

        def release_when_stopping():  # hold the job until the service asks it to stop
            deadline = time.monotonic() + 30
            while handle.state not in ("stopping", "done") and time.monotonic() < deadline:
                time.sleep(0.01)
            release.set()

        threading.Thread(target=release_when_stopping, daemon=True).start()
        return handle

    monkeypatch.setattr(runner_mod, "start_import", held_start)
    with TestClient(make_app(home, srv, jobs=1)) as c:
        csrf = login(c, alice)
        job = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                     headers={"X-CSRF-Token": csrf}).json()
        assert held.wait(30)
        assert c.get(f"/api/imports/{job['id']}").json()["state"] == "running"
    with TestClient(make_app(home, srv, jobs=1)) as c:
        login(c, alice)
        assert c.get(f"/api/imports/{job['id']}").json()["state"] in ("queued", "running", "done")
        end = wait_for(c, job["id"])
        assert end["state"] == "done", end
    assert_same(src, alice)
    secret_free(home, src.password, alice.password)
