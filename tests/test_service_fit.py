"""Issue 15 in ``mailmigrate serve``, against real Dovecot servers: the fit check, provider daily
budgets (state ``waiting``, ``resume_at``, going on by itself, also across a restart, cancel) and
what the pages say about them (en and de).

The budgets' clock (``migrate.engine.budget.utc_now``) is moved by the test, and the service's
scheduler reads the same clock: "the next day" takes no time, and ``runner.wake()`` makes the
scheduler look at the moved clock at once (no sleep anywhere)."""

from __future__ import annotations

import secrets
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from migrate.engine import budget as budget_module  # noqa: E402
from migrate.engine.budget import OVERRIDE_ENV  # noqa: E402
from migrate.service import ServiceConfig, create_app  # noqa: E402
from tests.conftest import User  # noqa: E402
from tests.support.mailbox import count, folders, msg, snapshot  # noqa: E402

pytestmark = pytest.mark.dovecot

ADMIN = "operator-token-" + uuid.uuid4().hex
BEARER = {"Authorization": f"Bearer {ADMIN}"}
BODY = "x" * 2900  # messages of about 3 KB
LAYOUT = {"INBOX": 5, "Projects": 3}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(datetime(2024, 5, 1, 20, 0, tzinfo=UTC))
    monkeypatch.setattr(budget_module, "utc_now", c)
    return c


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(path))
    monkeypatch.delenv("MAILMIGRATE_SECRET_KEY", raising=False)
    return path


def make_app(home, server, *, jobs: int = 1):
    return create_app(ServiceConfig(target_host="127.0.0.1", target_port=server.port, target_security="none",
                                    home=home, jobs=jobs, admin_token=ADMIN, retry_base=0.05, imap_timeout=20.0,
                                    allow_source_networks=("127.0.0.0/8",)))


def seed(user: User) -> list[bytes]:
    stored = []
    with user.client() as c:
        for folder, n in LAYOUT.items():
            if folder != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            for _ in range(n):
                body = msg(len(stored), body=BODY)
                c.append(folder, body)
                stored.append(body)
    return stored


def source_of(u: User, server) -> dict:
    return {"email": u.name, "password": u.password, "provider": "imap", "host": "127.0.0.1",
            "port": server.port, "security": "none"}


def start_import(c: TestClient, src: User, src_server, dst: User) -> str:
    r = c.post("/api/imports", headers=BEARER,
               json={"source": source_of(src, src_server), "target": {"email": dst.name, "password": dst.password}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_for(c: TestClient, job_id: str, states: tuple[str, ...], deadline_s: float = 90.0) -> dict:
    deadline = time.monotonic() + deadline_s
    while True:
        body = c.get(f"/api/imports/{job_id}", headers=BEARER).json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, f"import {job_id} still {body['state']} after {deadline_s}s"
        time.sleep(0.05)  # polling the condition, with a deadline


def secrets_of(home, job_id: str) -> tuple[object, object]:
    db = sqlite3.connect(home / "service.sqlite")
    try:
        return db.execute("SELECT source_secret, target_secret FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        db.close()


def same(src: User, dst: User) -> None:
    for folder in LAYOUT:
        assert snapshot(dst, folder) == snapshot(src, folder), folder  # exact: nothing missing or doubled


def page(c: TestClient, job_id: str, lang: str) -> str:
    r = c.get(f"/imports/{job_id}?lang={lang}")
    assert r.status_code == 200, r.text
    return r.text


def sign_in(c: TestClient, u: User) -> None:
    r = c.post("/api/login", json={"email": u.name, "password": u.password})
    assert r.status_code == 200, r.text


def four_a_day(monkeypatch, stored: list[bytes]) -> None:
    per_day = 4 * max(len(b) for b in stored) + 300  # four messages a day from the source account
    monkeypatch.setenv(OVERRIDE_ENV, f"imap:download_mb_per_day={per_day / 1e6}")


# --- the fit check -----------------------------------------------------------------------------------


def test_does_not_fit_fails_with_the_fit_text_and_leaves_the_target_untouched(dovecot, new_user, home):
    src_server, qsrv = dovecot("slash"), dovecot("quota")
    src = new_user(src_server)
    stored = seed(src)
    name, password = f"fit_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(12)
    qsrv.add_user(name, password, quota_kb=16)
    dst = User(qsrv, name, password)

    with TestClient(make_app(home, qsrv)) as c:
        job_id = start_import(c, src, src_server, dst)
        view = wait_for(c, job_id, ("done", "partial", "failed", "cancelled"))
        assert view["state"] == "failed", view
        fit = view["fit"]
        assert fit["outcome"] == "does_not_fit" and view["error"] == fit["text"]
        assert fit["text"].startswith("does not fit: ") and fit["text"].endswith(" to copy, 16.4 KB free")
        assert fit["to_copy_messages"] == len(stored) and fit["to_copy_bytes"] == sum(map(len, stored))
        assert fit["free_bytes"] == 16 * 1024 and view["totals"]["copied"] == 0
        assert secrets_of(home, job_id) == (None, None)  # ended: its passwords are erased

        sign_in(c, dst)  # the person sees the fit line on the page, in their language
        en, de = page(c, job_id, "en"), page(c, job_id, "de")
        assert "Fit check" in en and "It does not fit" in en and fit["text"] in en
        assert "Platzprüfung" in de and "Es passt nicht" in de and fit["text"] in de
    # nothing was written: no folder, no message, no byte of quota
    assert "Projects" not in folders(dst) and count(dst, "INBOX") == 0
    assert qsrv.quota_get(dst.name)["STORAGE"]["value"] == 0


def test_force_is_for_the_operator_only(dovecot, new_user, home):
    srv = dovecot("slash")
    src, alice = new_user(srv), new_user(srv, name=f"a{uuid.uuid4().hex[:8]}@example.test")
    with TestClient(make_app(home, srv, jobs=0)) as c:
        sign_in(c, alice)
        csrf = c.cookies["mm_csrf"]
        body = {"source": source_of(src, srv), "target": {"email": alice.name}, "force": True}
        r = c.post("/api/imports", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403 and "only an operator may force" in r.json()["error"]
        assert c.get("/api/imports").json()["imports"] == []  # nothing was queued
        r = c.post("/api/imports", json={**body, "force": "yes"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422 and r.json()["error"] == "force must be true or false"
        r = c.post("/api/imports", headers=BEARER,
                   json={**body, "target": {"email": alice.name, "password": alice.password}})
        assert r.status_code == 202, r.text  # the operator may


# --- daily budgets -------------------------------------------------------------------------------------


def test_budget_waits_then_goes_on_by_itself_and_ends_done(dovecot, new_user, home, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv, name=f"d{uuid.uuid4().hex[:8]}@example.test")
    stored = seed(src)
    four_a_day(monkeypatch, stored)
    app = make_app(home, srv)
    with TestClient(app) as c:
        job_id = start_import(c, src, srv, dst)
        view = wait_for(c, job_id, ("waiting", "done", "partial", "failed"))
        assert view["state"] == "waiting", view
        assert view["resume_at"] == "2024-05-02T00:00:00Z" and view["finished_at"] is None
        assert view["totals"]["copied"] == 4 and view["progress"]["phase"] == "waiting"
        assert "a day from one account; " in view["error"] and view["error"].endswith(
            "going on at 00:00 UTC (in 4 h)")
        assert view["fit"]["outcome"] == "fits" and view["fit"]["finish"].startswith("about ")
        assert all(secrets_of(home, job_id))  # kept, sealed, for the run that goes on
        assert count(dst, "INBOX") + count(dst, "Projects") == 4

        sign_in(c, dst)
        en, de = page(c, job_id, "en"), page(c, job_id, "de")
        assert "Waiting for a daily limit" in en and "Going on by itself at 00:00 UTC (in 4 h 0 min)." in en
        assert view["error"] in en and "id=\"cancel-import\"" in en
        assert "Wartet auf das Tageslimit" in de and "Geht von selbst weiter um 00:00 UTC (in 4 Std. 0 Min.)." in de
        assert "It fits" in en and "Es passt" in de

        app.state.service.runner.wake()  # not due yet: it stays waiting
        assert c.get(f"/api/imports/{job_id}", headers=BEARER).json()["state"] == "waiting"

        clock.now = datetime(2024, 5, 2, 0, 0, 1, tzinfo=UTC)  # the next day
        app.state.service.runner.wake()
        done = wait_for(c, job_id, ("done", "partial", "failed", "cancelled"))
        assert done["state"] == "done" and done["error"] is None and done["resume_at"] is None, done
        assert secrets_of(home, job_id) == (None, None)
    same(src, dst)


def test_waiting_survives_a_restart_and_goes_on_when_due(dovecot, new_user, home, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    stored = seed(src)
    four_a_day(monkeypatch, stored)
    with TestClient(make_app(home, srv)) as c:
        job_id = start_import(c, src, srv, dst)
        assert wait_for(c, job_id, ("waiting", "done", "failed"))["state"] == "waiting"

    with TestClient(make_app(home, srv)) as c:  # restarted before it is due: scheduled, still waiting
        view = c.get(f"/api/imports/{job_id}", headers=BEARER).json()
        assert view["state"] == "waiting" and view["resume_at"] == "2024-05-02T00:00:00Z"

    clock.now += timedelta(days=1)  # due while the service was down: the next start queues it
    with TestClient(make_app(home, srv)) as c:
        done = wait_for(c, job_id, ("done", "partial", "failed", "cancelled"))
        assert done["state"] == "done", done
    same(src, dst)


def test_a_waiting_job_can_be_cancelled(dovecot, new_user, home, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    stored = seed(src)
    four_a_day(monkeypatch, stored)
    app = make_app(home, srv)
    with TestClient(app) as c:
        job_id = start_import(c, src, srv, dst)
        assert wait_for(c, job_id, ("waiting", "done", "failed"))["state"] == "waiting"
        r = c.post(f"/api/imports/{job_id}/cancel", headers=BEARER)
        assert r.status_code == 202 and r.json()["state"] == "cancelled"
        assert secrets_of(home, job_id) == (None, None)

        clock.now += timedelta(days=1)
        app.state.service.runner.wake()  # its time comes: a cancelled job stays cancelled
        assert app.state.service.runner._due == {}
        assert c.get(f"/api/imports/{job_id}", headers=BEARER).json()["state"] == "cancelled"
    assert count(dst, "INBOX") + count(dst, "Projects") == 4


def test_batch_of_waiting_rows_is_waiting():
    from migrate.service.batches import batch_state

    assert batch_state(["waiting", "waiting"]) == "waiting"
    assert batch_state(["done", "waiting"]) == "waiting"
    assert batch_state(["waiting", "queued"]) == "queued"
    assert batch_state(["waiting", "waiting_signin"]) == "waiting"
