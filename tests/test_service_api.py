"""``mailmigrate serve``'s HTTP API (migrate/service) against real Dovecot: sign-in (ok, wrong
password, rate limit), CSRF, imports run to completion and compared message by message, two
sources into one target at once, privacy between people, cancel, the operator's bearer token,
no password in the service's database, and jobs that survive a restart of the service."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

import migrate.service.runner as runner_mod  # noqa: E402
from migrate.errors import MigrateError  # noqa: E402
from migrate.service import ServiceConfig, create_app  # noqa: E402
from migrate.service.app import Caller  # noqa: E402
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
    kw.setdefault("target_port", srv.port)
    kw.setdefault("allow_source_networks", ("127.0.0.0/8",))  # the test sources are local
    return create_app(ServiceConfig(target_host="127.0.0.1", target_security="none",
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


# --------------------------------------------------------------------------- a person's mailboxes

def no_secret_anywhere(home, texts, caplog, *secrets_: str) -> None:
    """No password in the service's database files, in any answer body, in any log record."""
    secret_free(home, *secrets_)
    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for pw in secrets_:
        assert pw not in logs, "a password in the logs"
        for t in texts:
            assert pw not in t, "a password in an answer"


@pytest.mark.dovecot
def test_a_person_adds_mailboxes_and_imports_into_each(home, srv, new_user, caplog):
    caplog.set_level("DEBUG")
    src, alice, bob, carol = (user(new_user, srv, t) for t in ("s", "a", "b", "c"))
    seed(src, 0)
    answers: list[str] = []
    op = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(make_app(home, srv)) as c:
        assert c.get("/api/me").status_code == 401
        csrf = login(c, alice)
        me = c.get("/api/me").json()
        assert me == {"email": alice.name, "mailboxes": [alice.name], "csrf_token": csrf}
        add = {"email": bob.name, "password": bob.password}
        assert c.post("/api/mailboxes", json=add).status_code == 403  # no CSRF token
        r = c.post("/api/mailboxes", json={"email": bob.name, "password": "wrong"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 401 and r.json() == {"error": "wrong address or password"}
        r = c.post("/api/mailboxes", json={"email": bob.name}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422 and r.json()["error"] == "give email and password"
        r = c.post("/api/mailboxes", json=add, headers={"X-CSRF-Token": csrf})
        answers.append(r.text)
        assert r.status_code == 200 and r.json()["mailboxes"] == [alice.name, bob.name]
        assert c.get("/api/me").json()["mailboxes"] == [alice.name, bob.name]
        # the service as the pages call it
        svc = c.app.state.service
        session = svc.db.session(c.cookies["mm_session"])
        assert svc.mailboxes(Caller(email=alice.name, session=session)) == [alice.name, bob.name]
        # an import into the added mailbox: its password comes from the session
        r = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": bob.name.upper()}},
                   headers={"X-CSRF-Token": csrf})
        answers.append(r.text)
        assert r.status_code == 202, r.text
        done = wait_for(c, r.json()["id"])
        answers.append(json.dumps(done))
        assert done["state"] == "done" and done["target"]["email"] == bob.name and done["totals"]["copied"] == 7
        assert_same(src, bob)
        # not a mailbox of alice's session
        r = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": carol.name}},
                   headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403 and "POST /api/mailboxes" in r.json()["error"]
        # bob (signed in himself) sees it; carol does not (other clients of the same, started app)
        b, k = TestClient(c.app, client=("10.0.0.2", 5000)), TestClient(c.app, client=("10.0.0.3", 5000))
        login(b, bob)
        assert b.get(f"/api/imports/{done['id']}").status_code == 200
        login(k, carol)
        assert k.get(f"/api/imports/{done['id']}").status_code == 404
        assert k.get(f"/api/imports/{done['id']}/events").status_code == 404
        assert k.get("/api/imports").json() == {"imports": []}
        assert k.get("/api/imports/nosuchimport/events").status_code == 404
        assert TestClient(c.app).get(f"/api/imports/{done['id']}/events").status_code == 401  # not signed in
        # an operator has no mailboxes to add
        assert c.get("/api/me", headers=op).json() == {"operator": True}
        assert c.post("/api/mailboxes", json=add, headers=op).status_code == 403
        # adding is rate-limited like signing in (per address: 5 a minute)
        tries = [c.post("/api/mailboxes", json={"email": carol.name, "password": "wrong"},
                        headers={"X-CSRF-Token": csrf}).status_code for _ in range(6)]
        assert tries[:2] == [401, 401] and tries[-1] == 429, tries
        # a new session starts with its own address only
        c.post("/api/logout", headers={"X-CSRF-Token": csrf})
        c2 = TestClient(c.app, client=("10.0.0.7", 5000))
        login(c2, alice)
        assert c2.get("/api/me").json()["mailboxes"] == [alice.name]
        assert c2.get(f"/api/imports/{done['id']}").status_code == 404
    no_secret_anywhere(home, answers, caplog, src.password, alice.password, bob.password)


# --------------------------------------------------------------------------- progress, failures, SSE

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.mark.dovecot
def test_view_has_progress_failures_and_hostile_names_unchanged(home, srv, new_user, caplog):
    """A real failure: the target (a real Dovecot behind a fault proxy) refuses the one message
    of the folder named like an HTML injection, whose subject is one too."""
    from tests.support.imap_proxy import ImapAnswerProxy

    caplog.set_level("DEBUG")
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    with src.client() as c:
        c.create_folder(HOSTILE)
        c.append(HOSTILE, msg(900, subject=HOSTILE))
    with ImapAnswerProxy("127.0.0.1", srv.port).start() as proxy:
        proxy.answer(rb'^APPEND "<img', every=True, reply=b"NO [LIMIT] refused: " + HOSTILE.encode())
        with TestClient(make_app(home, srv, target_port=proxy.port)) as c:
            csrf = login(c, alice)
            r = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                       headers={"X-CSRF-Token": csrf})
            assert r.status_code == 202, r.text
            queued = r.json()
            assert queued["batch_id"] is None and queued["failures"] == []
            assert queued["progress"]["phase"] in ("queued", "planning", "scanning", "copying")
            end = wait_for(c, queued["id"])
            raw = c.get(f"/api/imports/{queued['id']}").text
        assert proxy.fired
    assert end["state"] == "partial", end
    assert end["totals"]["copied"] == 7 and end["totals"]["failed"] == 1
    (failure,) = end["failures"]
    assert failure["folder"] == HOSTILE and failure["subject"] == HOSTILE and failure["uid"] == 1
    assert HOSTILE in failure["reason"]
    assert "failures_truncated" not in end
    assert HOSTILE in {f["source"] for f in end["folders"]}
    # JSON text, unchanged: no HTML escaping in the API (the pages escape)
    assert json.dumps(HOSTILE)[1:-1] in raw
    p = end["progress"]
    assert p["phase"] == "finished" and p["current_folder"] is None and p["eta_s"] is None
    assert p["messages_done"] == p["messages_total"] == 8
    assert p["bytes_total"] is not None and 0 < p["bytes_done"] <= p["bytes_total"]
    assert p["percent"] == 100.0
    no_secret_anywhere(home, [raw], caplog, src.password, alice.password)


@pytest.mark.dovecot
def test_finished_import_progress_is_complete(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    with TestClient(make_app(home, srv)) as c:
        csrf = login(c, alice)
        job = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                     headers={"X-CSRF-Token": csrf}).json()
        done = wait_for(c, job["id"])
    assert done["state"] == "done"
    assert done["progress"] == {"phase": "finished", "messages_done": 7, "messages_total": 7,
                                "bytes_done": done["totals"]["bytes"], "bytes_total": done["totals"]["bytes"],
                                "percent": 100.0, "eta_s": None, "eta_text": None, "current_folder": None}
    assert done["failures"] == [] and done["batch_id"] is None


def start_uvicorn(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


def read_events(response, *, first_only: bool = False, on_event=None) -> list[tuple[str, dict | None]]:
    """(event name, data) of each SSE event ("comment" for a comment line) until the stream ends
    (``first_only``: after the first event); ``on_event(name, data)`` is called as each arrives."""
    events: list[tuple[str, dict | None]] = []
    name, data = None, []
    for line in response.iter_lines():
        if line.startswith(":"):
            events.append(("comment", None))
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and name is not None:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
            if on_event is not None:
                on_event(*events[-1])
            if first_only:
                break
    return events


@pytest.mark.dovecot
def test_events_stream_a_queued_job_until_it_ends(home, srv, new_user, monkeypatch):
    """Real uvicorn, one worker: each import is held inside its copy until the test has seen it
    there; the second waits its turn. The second's stream starts while it is queued and ends with
    its final view; the first's stream shows the copy under way and stops being served when its
    client goes away."""
    import httpx

    one, two, alice = user(new_user, srv, "s"), user(new_user, srv, "t"), user(new_user, srv, "a")
    seed(one, 0)
    seed(two, 5000, per_folder=(("INBOX", 30), ("Archive", 20)))
    held, release = [threading.Event(), threading.Event()], [threading.Event(), threading.Event()]
    started: list[int] = []
    real = runner_mod.start_import

    def held_start(req, **kw):
        n = len(started)
        started.append(n)

        def on_event(event):
            if type(event).__name__ == "Progress" and event.copied and not held[n].is_set():
                held[n].set()
                release[n].wait(30)
        return real(req, on_event=on_event, **kw)

    monkeypatch.setattr(runner_mod, "start_import", held_start)
    app = make_app(home, srv, jobs=1, connections=1)  # one folder at a time: held after INBOX's batch
    server, thread, port = start_uvicorn(app)
    svc = app.state.service
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as h:
            csrf = h.post("/api/login", json={"email": alice.name, "password": alice.password}).json()["csrf_token"]
            first = h.post("/api/imports", json={"source": source_of(one, srv), "target": {"email": alice.name}},
                           headers={"X-CSRF-Token": csrf}).json()
            assert held[0].wait(30)
            second = h.post("/api/imports", json={"source": source_of(two, srv), "target": {"email": alice.name}},
                            headers={"X-CSRF-Token": csrf}).json()
            assert second["state"] == "queued"
            # the held job, mid-copy: its stream says so; then its client goes away
            with h.stream("GET", f"/api/imports/{first['id']}/events") as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                seen = read_events(r, first_only=True)
            assert seen[0][0] == "progress" and seen[0][1]["state"] == "running"
            assert seen[0][1]["progress"]["phase"] in ("scanning", "copying")
            deadline = time.monotonic() + 10
            while svc.open_streams:
                assert time.monotonic() < deadline, "the stream of a client that left is still served"
                time.sleep(0.05)
            # the queued one: streamed from queued to its end

            def go_on(_name, data):
                if data and data["state"] == "queued":
                    release[0].set()  # the first job ends, the second starts
                if data and data["state"] == "running" and (data["progress"]["percent"] or 0) > 0:
                    release[1].set()  # seen mid-copy (where it is held)

            with h.stream("GET", f"/api/imports/{second['id']}/events") as r:
                events = read_events(r, on_event=go_on)
            final = h.get(f"/api/imports/{second['id']}").json()
    finally:
        for e in release:
            e.set()
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive() and svc.open_streams == 0
    names = [n for n, _ in events if n != "comment"]
    assert names[0] == "progress" and names[-1] == "end" and names.count("end") == 1
    assert events[0][1]["state"] == "queued" and events[0][1]["progress"]["phase"] == "queued"
    assert "running" in [d["state"] for n, d in events if n == "progress"]
    percents = [d["progress"]["percent"] for n, d in events if d and d["progress"]["percent"] is not None]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any(0 < p < 100 for p in percents), percents  # seen mid-copy (INBOX done, Archive not)
    last = events[-1][1]
    assert last["state"] == "done" and last["totals"]["copied"] == 50 and last["totals"]["failed"] == 0
    assert last == final
    assert snapshot(alice, "INBOX") == snapshot(one, "INBOX") + snapshot(two, "INBOX")


# --------------------------------------------------------------------------- the service's mails

@pytest.mark.dovecot
def test_confirmation_mail_through_the_services_smtp_server(home, srv, new_user, caplog, monkeypatch):
    from tests.support.smtp import SmtpServer, free_port

    caplog.set_level("DEBUG")
    smtp_pw = "smtp-" + uuid.uuid4().hex
    monkeypatch.setenv("MM_SERVICE_SMTP_PW", smtp_pw)
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    answers = []
    with SmtpServer("relay", smtp_pw) as smtp:
        app = make_app(home, srv, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                       smtp_user="relay", smtp_password="env:MM_SERVICE_SMTP_PW", mail_from="imports@example.test")
        assert smtp_pw not in repr(app.state.service.cfg)
        with TestClient(app) as c:
            csrf = login(c, alice)
            r = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name},
                                             "notify": ["boss@example.test"], "lang": "de"},
                       headers={"X-CSRF-Token": csrf})
            done = wait_for(c, r.json()["id"])
            answers += [r.text, json.dumps(done), c.get("/api/imports").text, c.get("/healthz").text]
            assert done["state"] == "done" and done["notification"].startswith("confirmation mail: sent to ")
            assert len(smtp.mails) == 1
            mail = smtp.mails[0]
            assert set(mail.rcpts) == {src.name, alice.name, "boss@example.test"}
            assert mail.sender == "imports@example.test"
            assert "Postfach" in str(mail.message["Subject"])
            text = mail.message.get_body(("plain",)).get_content()
            assert re.search(r"^Gesamt +7 +0 +0\r?$", text, re.M), text  # the totals row: copied 7
            assert re.search(r"^Archive +3 +0 +0\r?$", text, re.M), text
            # the service's own mails (sign-in links) go the same way
            app.state.service.send_mail("bob@example.test", "Your sign-in link", "Open https://example.test/x")
            assert len(smtp.mails) == 2
            assert smtp.mails[1].rcpts == ["bob@example.test"]
            assert smtp.mails[1].message["Subject"] == "Your sign-in link"
            assert "Open https://example.test/x" in smtp.mails[1].message.get_body(("plain",)).get_content()
        for m in smtp.mails:
            assert smtp_pw not in m.data.decode("utf-8", "replace")
    # the SMTP server down (a literal password in the settings): the import is done, the view says
    # why the mail was not sent, and the password shows nowhere
    literal = "literal-" + uuid.uuid4().hex
    src = user(new_user, srv, "s")  # a first import again: it mails
    seed(src, 0)
    app = make_app(home, srv, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none",
                   smtp_user="relay", smtp_password=literal)
    assert literal not in repr(app.state.service.cfg)
    with TestClient(app) as c:
        csrf = login(c, alice)
        r = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                   headers={"X-CSRF-Token": csrf})
        done = wait_for(c, r.json()["id"])
        answers.append(json.dumps(done))
        assert done["state"] == "done" and "NOT sent (cannot connect" in done["notification"], done
        with pytest.raises(MigrateError) as failed:
            app.state.service.send_mail("bob@example.test", "x", "y")
        assert "connection refused" in str(failed.value)
        answers.append(str(failed.value))
    no_secret_anywhere(home, answers, caplog, smtp_pw, literal, src.password, alice.password)


@pytest.mark.dovecot
def test_send_mail_without_smtp_server_says_what_to_do(home, srv):
    from migrate.errors import UsageError

    with TestClient(make_app(home, srv)) as c, pytest.raises(UsageError) as e:
        c.app.state.service.send_mail("bob@example.test", "x", "y")
    assert "--smtp-host" in e.value.one_line()


# --------------------------------------------------------------------------- serve's options

def test_service_config_target_provider_or_host():
    from migrate.errors import UsageError

    cfg = ServiceConfig(target_provider="GMX", home=Path("/nonexistent"))
    assert cfg.target_provider == "gmx"
    assert cfg.target_connection() == ("gmx", "imap.gmx.net", 993, "ssl")
    opts = cfg.target_options("bob@gmx.de")
    assert (opts.provider, opts.host, opts.username) == ("gmx", None, "bob@gmx.de")
    assert ServiceConfig(target_host="mail.example.com", home=Path("/x")).target_connection() == \
        ("imap", "mail.example.com", 993, "ssl")
    for kw in ({}, {"target_host": "a.example", "target_provider": "gmx"}, {"target_provider": "nope"},
               {"target_provider": "outlook"}, {"target_host": "a.example", "smtp_password": "env:MM_UNSET_X_1"}):
        with pytest.raises(UsageError):
            ServiceConfig(home=Path("/x"), **kw)


def test_serve_cli_options_and_errors(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {"PATH": "/usr/bin:/bin", "MAILMIGRATE_HOME": str(tmp_path)}

    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(root / "cli.py"), "serve", *args], capture_output=True,
                              text=True, env=env, timeout=60)

    out = serve("--help").stdout
    for option in ("--host", "--port", "--jobs", "--target-provider", "--target-host", "--target-port",
                   "--target-security", "--target-ca-file", "--smtp-host", "--smtp-port", "--smtp-security",
                   "--smtp-user", "--smtp-password", "--smtp-ca-file", "--mail-from", "--allow-source-network",
                   "--cookie-secure"):
        assert option in out, option
    cases = [((), "exactly one"),
             (("--target-host", "a.example", "--target-provider", "gmx"), "exactly one"),
             (("--target-provider", "nosuch"), "unknown provider"),
             (("--target-provider", "outlook"), "does not accept passwords"),
             (("--target-host", "a.example", "--smtp-password", "env:MM_UNSET_X_2"), "MM_UNSET_X_2 is not set"),
             (("--target-host", "a.example", "--mail-from", "nobody"), "--mail-from"),
             (("--target-host", "a.example", "--smtp-port", "0"), "a port must be 1-65535"),
             (("--target-host", "a.example", "--allow-source-network", "10.0.0.0/33"),
              "--allow-source-network 10.0.0.0/33 is not a network")]
    for args, needle in cases:
        r = serve(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- pure logic: progress, SSE

def test_progress_of_each_phase():
    from migrate.service.progress import progress_of

    queued = progress_of("queued", None)
    assert queued == {"phase": "queued", "messages_done": 0, "messages_total": None, "bytes_done": 0,
                      "bytes_total": None, "percent": None, "eta_s": None, "eta_text": None,
                      "current_folder": None}
    assert progress_of("waiting_signin", None)["phase"] == "queued"
    assert progress_of("running", None)["phase"] == "planning"
    snap = {"phase": "scanning", "done_messages": 0, "total_messages": 40, "bytes_done": 0, "total_bytes": 900,
            "percent": 0, "eta_s": None, "current": ["INBOX"]}
    scanning = progress_of("running", snap)
    # the totals still grow while folders are read: no percentage, no byte total yet
    assert (scanning["phase"], scanning["messages_total"], scanning["bytes_total"], scanning["percent"]) == \
        ("scanning", 40, None, None)
    assert scanning["current_folder"] == "INBOX"
    copying = progress_of("running", {**snap, "phase": "copying", "done_messages": 10, "bytes_done": 300,
                                      "total_bytes": 1000, "percent": 30, "eta_s": 12,
                                      "eta_text": "about 2 days: Gmail allows 2.5 GB a day; 6.1 GB to go"})
    assert copying == {"phase": "copying", "messages_done": 10, "messages_total": 40, "bytes_done": 300,
                       "bytes_total": 1000, "percent": 30.0, "eta_s": 12,
                       "eta_text": "about 2 days: Gmail allows 2.5 GB a day; 6.1 GB to go", "current_folder": "INBOX"}
    waiting = progress_of("waiting", {**snap, "phase": "copying", "done_messages": 10})
    assert (waiting["phase"], waiting["messages_done"], waiting["messages_total"], waiting["eta_text"]) == \
        ("waiting", 10, 40, None)  # stopped at a daily budget: its counts stay shown
    stopped = progress_of("cancelled", {**snap, "phase": "copying", "percent": 30, "total_bytes": 1000})
    assert (stopped["phase"], stopped["percent"], stopped["eta_s"], stopped["current_folder"]) == \
        ("finished", 30.0, None, None)
    # a finished job from before snapshots were stored: its totals
    old = progress_of("done", None, {"copied": 5, "skipped_duplicates": 1, "failed": 0, "bytes": 50,
                                     "source_messages": 6})
    assert (old["messages_done"], old["messages_total"], old["bytes_done"], old["percent"]) == (6, 6, 50, 100.0)


def test_failures_are_listed_up_to_500():
    from migrate.service.progress import failures_of

    report = {"folders": [{"failures": [{"folder": "A", "uid": i, "subject": f"s{i}", "reason": "NO",
                                         "message_id": "<x>", "size": 3} for i in range(300)]},
                          {"failures": []},
                          {"failures": [{"folder": "B", "uid": i, "subject": None, "reason": "NO"}
                                        for i in range(201)]}]}
    listed, more = failures_of(report)
    assert len(listed) == 500 and more == 1
    assert listed[0] == {"folder": "A", "uid": 0, "subject": "s0", "reason": "NO"}
    assert listed[-1]["folder"] == "B" and listed[-1]["uid"] == 199
    assert failures_of(None) == ([], 0)


def test_view_events_changes_keep_alive_and_end():
    import asyncio

    from migrate.service.progress import view_events

    now = [0.0]
    views = iter([{"state": "queued", "n": 1}, {"state": "queued", "n": 1}, {"state": "queued", "n": 1},
                  {"state": "running", "n": 2}, {"state": "done", "n": 3}])

    def view_of():
        now[0] += 10  # every look at the import is 10 s after the last
        return next(views)

    async def collect():
        return [chunk async for chunk in view_events(view_of, interval_s=0, clock=lambda: now[0])]

    chunks = asyncio.run(collect())
    assert chunks == ['event: progress\ndata: {"state":"queued","n":1}\n\n',
                      ": keep-alive\n\n",  # 20 s without a change
                      'event: progress\ndata: {"state":"running","n":2}\n\n',
                      'event: end\ndata: {"state":"done","n":3}\n\n']
    gone = iter([{"state": "queued"}, None])  # the import vanished: the stream just ends

    async def until_gone():
        return [c async for c in view_events(lambda: next(gone), interval_s=0)]

    assert asyncio.run(until_gone()) == ['event: progress\ndata: {"state":"queued"}\n\n']


@pytest.mark.dovecot
@pytest.mark.cyrus
def test_a_cyrus_source_through_the_service(home, srv, new_user, cyrus):
    """A second server make: the source is Cyrus (its login is not the address: the API's
    ``username``), the folder separator differs ("." there, "/" here), and a second import
    copies nothing again (the target is read, not the journal's word taken)."""
    src_srv = cyrus("dot")
    src = new_user(src_srv)
    alice = user(new_user, srv, "a")
    seed(src, 0, per_folder=(("INBOX", 4), ("Archive", 3), ("Projects 2024", 2)))
    app = make_app(home, srv)
    with TestClient(app) as c:
        csrf = login(c, alice)
        source = {**source_of(src, src_srv), "email": f"{src.name}@cyrus.example.test", "username": src.name}
        body = {"source": source, "target": {"email": alice.name}}
        first = wait_for(c, c.post("/api/imports", json=body, headers={"X-CSRF-Token": csrf}).json()["id"])
        assert first["state"] == "done", first
        assert first["totals"]["copied"] == 9 and first["totals"]["source_messages"] == 9
        for folder in (*FOLDERS, "Projects 2024"):
            assert snapshot(alice, folder) == snapshot(src, folder), folder
        with alice.client() as ac:  # the target lost one message behind our back: it comes back
            ac.select_folder("Archive")
            ac.delete_messages(ac.search()[:1])
            ac.expunge()
        again = wait_for(c, c.post("/api/imports", json=body, headers={"X-CSRF-Token": csrf}).json()["id"])
        assert again["state"] == "done", again
        totals = again["totals"]  # every source message accounted for: the lost one is "restored"
        assert (totals["copied"], totals["restored"], totals["skipped_duplicates"]) == (0, 1, 8), totals
        assert snapshot(alice, "Archive") == snapshot(src, "Archive")
        page = c.get(f"/imports/{again['id']}").text
        assert "Copied again (gone from the new mailbox)" in page
    secret_free(home, src.password, alice.password)
