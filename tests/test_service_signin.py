"""Sign-in with Google/Microsoft in ``mailmigrate serve`` (migrate/service/signin.py, oauth_web.py),
against real servers: the service on uvicorn, the OAuth authorization and token endpoints of the
local HTTPS fake (tests/support/oauth_server.py: it checks the PKCE verifier), Dovecot's "oauth"
flavor as the source (it accepts the access tokens the fake issues), a real Dovecot target and
the real SMTP server receiving the sign-in link mail.

One-off: a signed-in person signs in with Google or Microsoft and imports from that account.
Batch: a Gmail row without password waits, its owner gets a link by mail, signs in, the row
runs; the link is single-use, expires, refuses another account. No refresh token, code,
verifier or link token in the service's database files, logs or answers."""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets
import sqlite3
import ssl
import threading
import time
import uuid
from contextlib import contextmanager

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from migrate.service import ServiceConfig, create_app  # noqa: E402
from migrate.service.oauth_web import s256  # noqa: E402
from migrate.service.signin import _HideSecretsInAccessLog, _local_path  # noqa: E402
from tests.support.mailbox import msg, snapshot  # noqa: E402
from tests.support.oauth_server import FakeOAuth  # noqa: E402
from tests.support.smtp import SmtpServer, free_port  # noqa: E402

ADMIN = "operator-token-" + uuid.uuid4().hex
GOOGLE_SECRET = "gweb-secret-" + uuid.uuid4().hex
FOLDERS = ("INBOX", "Work")
FINAL = ("done", "partial", "failed", "cancelled")
IMAP_SCOPE = {"google": "https://mail.google.com/", "microsoft": "https://outlook.office.com/IMAP.AccessAsUser.All"}
PROVIDER = {"google": "gmail", "microsoft": "outlook"}


# --- pure logic --------------------------------------------------------------------------------


def test_s256_is_rfc7636_appendix_b():
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_next_is_a_local_path_only():
    assert _local_path("/imports?x=1") == "/imports?x=1"
    for bad in (None, "", "https://evil.example/", "//evil.example/x", "/\\evil.example", "imports", "/a b"):
        assert _local_path(bad) == "/", bad


def test_access_log_hides_link_tokens_codes_and_states():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", "/oauth/callback?state=S3cr3tState&code=C0de&lang=de",
                                "1.1", 303), None)
    _HideSecretsInAccessLog().filter(record)
    line = record.getMessage()
    assert "S3cr3tState" not in line and "C0de" not in line and "lang=de" in line
    record.args = ("127.0.0.1:1", "GET", "/signin/L1nkT0ken", "1.1", 200)
    _HideSecretsInAccessLog().filter(record)
    assert "L1nkT0ken" not in record.getMessage() and "/signin/" in record.getMessage()


def test_operator_configuration_errors(tmp_path, monkeypatch):
    from migrate.errors import UsageError

    monkeypatch.delenv("MAILMIGRATE_GOOGLE_CLIENT_SECRET", raising=False)
    monkeypatch.delenv("MAILMIGRATE_MS_CLIENT_ID", raising=False)
    with pytest.raises(UsageError, match="--public-url 'mail.example.com' is not an http"):
        ServiceConfig(target_host="127.0.0.1", home=tmp_path, public_url="mail.example.com")
    with pytest.raises(UsageError, match="--signin-link-days 0 is out of range"):
        ServiceConfig(target_host="127.0.0.1", home=tmp_path, signin_link_days=0)
    with pytest.raises(UsageError, match="no Google OAuth client secret configured"):
        create_app(ServiceConfig(target_host="127.0.0.1", home=tmp_path, google_client_id="cid"))
    svc = create_app(ServiceConfig(target_host="127.0.0.1", home=tmp_path, microsoft_client_id="ms-cid",
                                   public_url="https://import.example.com/")).state.service
    assert svc.oauth_enabled("microsoft") and not svc.oauth_enabled("google")
    assert svc.cfg.public_url == "https://import.example.com"
    assert svc.signin.clients["microsoft"].auth_url == ("https://login.microsoftonline.com/common/oauth2/v2.0/"
                                                        "authorize")


# --- real servers ----------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(path))
    monkeypatch.delenv("MAILMIGRATE_SECRET_KEY", raising=False)
    for name in ("MAILMIGRATE_GOOGLE_CLIENT_ID", "MAILMIGRATE_GOOGLE_CLIENT_SECRET", "MAILMIGRATE_MS_CLIENT_ID",
                 "MAILMIGRATE_GOOGLE_AUTH_URI", "MAILMIGRATE_GOOGLE_TOKEN_URI", "MAILMIGRATE_MS_AUTHORITY"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def osrv(dovecot):
    return dovecot("oauth")


@pytest.fixture
def tsrv(dovecot):
    return dovecot("slash")


@pytest.fixture
def fake(osrv, monkeypatch):
    """The Google/Microsoft endpoints; the oauth Dovecot accepts the access tokens they issue."""
    with FakeOAuth(on_access_token=lambda token, user: osrv.oauth_tokens.__setitem__(token, user)) as o:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", o.ca_file)  # the service's token requests trust the fake
        yield o


@pytest.fixture
def smtp():
    with SmtpServer() as s:
        yield s


class Served:
    """The service on uvicorn at 127.0.0.1 (its real HTTP stack: redirects come back to it)."""

    def __init__(self, base: str, app, ca_file: str) -> None:
        self.base, self.app = base, app
        self.ctx = ssl.create_default_context(cafile=ca_file)  # for the fake's HTTPS hops
        self.answers: list[str] = []  # every page and answer seen, for the secret scan

    @property
    def svc(self):
        return self.app.state.service

    def client(self, **kw) -> httpx.Client:
        hooks = {"response": [lambda r: r.read() and self.answers.append(r.text)]}
        return httpx.Client(base_url=self.base, verify=self.ctx, event_hooks=hooks, timeout=30, **kw)


@contextmanager
def served(home, tsrv, fake, smtp, **kw):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    kw.setdefault("allow_source_networks", ("127.0.0.0/8",))  # the test sources are local
    cfg = ServiceConfig(target_host="127.0.0.1", target_port=tsrv.port, target_security="none", home=home,
                        jobs=kw.pop("jobs", 2), admin_token=ADMIN, retry_base=0.05, imap_timeout=20.0,
                        smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                        mail_from="imports@example.test", public_url=base,
                        google_client_id="gweb-cid-1", google_client_secret=GOOGLE_SECRET,
                        google_auth_url=fake.google_auth_uri, google_token_url=fake.google_token_uri,
                        microsoft_client_id="ms-web-cid-1", microsoft_authority=fake.ms_authority, **kw)
    app = create_app(cfg)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="info",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(base, app, fake.ca_file)
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()


def email_user(new_user, srv, tag: str):
    return new_user(srv, name=f"{tag}{uuid.uuid4().hex[:10]}@example.test")


def seed(u) -> None:
    for i in range(4):
        u.save("INBOX", msg(i), flags=["\\Seen"] if i % 2 else [])
    u.save("Work", msg(500, subject="work"), flags=["\\Flagged"])


def login(c: httpx.Client, u) -> str:
    r = c.post("/api/login", json={"email": u.name, "password": u.password})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def wait_for(c: httpx.Client, job_id: str, states=FINAL, *, deadline_s: float = 90.0) -> dict:
    op = {"Authorization": f"Bearer {ADMIN}"}
    deadline = time.monotonic() + deadline_s
    while True:
        body = c.get(f"/api/imports/{job_id}", headers=op).json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, f"import {job_id} still {body['state']} after {deadline_s}s"
        time.sleep(0.05)


def source_of(u, srv, kind: str) -> dict:
    return {"email": u.name, "oauth": kind, "provider": PROVIDER[kind], "host": "127.0.0.1", "port": srv.port,
            "security": "none"}


def assert_same(src, dst) -> None:
    for folder in FOLDERS:
        assert snapshot(dst, folder) == snapshot(src, folder), folder


def assert_no_secret(home, fake, caplog, s: Served, *extra: str) -> None:
    found = [*fake.refresh_tokens, *fake.issued, *fake.codes_issued, *fake.verifiers_received, GOOGLE_SECRET,
             *extra]
    assert fake.refresh_tokens and fake.codes_issued and fake.verifiers_received  # the scan has something to find
    files = list(home.glob("service.sqlite*"))
    assert files
    blobs = {f.name: f.read_bytes().decode("latin-1") for f in files}
    # The service's logs (uvicorn's access log included); httpx and mail.log are the test's browser
    # and SMTP server.
    blobs["logs"] = "\n".join(caplog.handler.format(r) for r in caplog.records
                              if not r.name.startswith(("httpx", "mail.log")))
    blobs["answers"] = "\n".join(s.answers)
    for where, blob in blobs.items():
        for value in found:
            assert value not in blob, f"a secret in {where}"


def link_of(smtp, address: str) -> tuple[str, object]:
    mails = [m for m in smtp.mails if address in m.rcpts]
    assert len(mails) == 1, [m.rcpts for m in smtp.mails]
    message = mails[0].message
    body = message.get_body(("plain",)).get_content()
    (url,) = re.findall(r"https?://\S+/signin/\S+", body)
    return url, message


def signin_links(home) -> list[dict]:
    with sqlite3.connect(home / "service.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM signin_links")]


def batch_csv(*rows: dict) -> str:
    out = io.StringIO()
    cols = ["source_email", "source_password", "source_provider", "source_host", "source_port", "source_security",
            "source_username", "target_email", "target_password", "target_provider", "target_host", "target_port",
            "target_security", "target_username", "notify"]
    w = csv.DictWriter(out, cols, restval="")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return out.getvalue()


def gmail_row(src, osrv, target) -> dict:
    return {"source_email": src.name, "source_password": "", "source_provider": "gmail",
            "source_host": "127.0.0.1", "source_port": osrv.port, "source_security": "none",
            "target_email": target.name, "target_password": ""}


def post_batch(c: httpx.Client, csrf: str, text: str, lang: str = "en") -> dict:
    r = c.post(f"/api/batches?lang={lang}", content=text.encode(),
               headers={"Content-Type": "text/csv", "X-CSRF-Token": csrf})
    assert r.status_code == 202, r.text
    return r.json()


@pytest.mark.dovecot
@pytest.mark.parametrize("kind", ["google", "microsoft"])
def test_one_off_import_signed_in_with_google_or_microsoft(home, osrv, tsrv, fake, smtp, new_user, caplog, kind):
    caplog.set_level(logging.INFO)
    src, alice = email_user(new_user, osrv, "g"), email_user(new_user, tsrv, "a")
    seed(src)
    fake.rotate = kind == "microsoft"  # Microsoft hands out a new refresh token with every refresh
    with served(home, tsrv, fake, smtp) as s, s.client() as c:
        csrf = login(c, alice)
        assert s.svc.oauth_enabled(kind)
        # Not signed in with the provider yet: the import says what to do.
        r = c.post("/api/imports", json={"source": source_of(src, osrv, kind), "target": {"email": alice.name}},
                   headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422 and f"as {src.name} first" in r.json()["error"]

        r = c.get(f"/oauth/{kind}/start", params={"next": "/imports", "email": src.name}, follow_redirects=True)
        assert [h.status_code for h in r.history] == [302, 302, 303]  # start -> consent -> callback -> next
        assert r.url.path == "/imports" and r.url.host == "127.0.0.1" and r.url.port == int(s.base.rsplit(":", 1)[1])
        asked = fake.authorizations[-1]
        assert asked["client_id"] == ("gweb-cid-1" if kind == "google" else "ms-web-cid-1")
        assert asked["redirect_uri"] == f"{s.base}/oauth/callback" and asked["login_hint"] == src.name
        assert asked["code_challenge_method"] == "S256" and IMAP_SCOPE[kind] in asked["scope"].split()
        if kind == "microsoft":
            assert "offline_access" in asked["scope"].split()
        assert fake.verifiers_received and s256(fake.verifiers_received[-1]) == asked["code_challenge"]

        r = c.post("/api/imports", json={"source": source_of(src, osrv, kind), "target": {"email": alice.name}},
                   headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202, r.text
        assert r.json()["source"]["oauth"] == kind
        done = wait_for(c, r.json()["id"])
        assert done["state"] == "done", (done["error"], done)
        assert done["totals"]["copied"] == 5
        assert_same(src, alice)
        # The job refreshed with the sealed refresh token (google-auth / msal), then erased it.
        assert fake.grants("refresh_token") >= 1
        assert s.svc.db.job(done["id"])["source_secret"] is None
        assert not (home / "tokens").exists()  # a rotated refresh token went into the job, not a token file
    assert_no_secret(home, fake, caplog, s)


@pytest.mark.dovecot
def test_batch_row_waits_for_its_owner_to_sign_in_by_mailed_link(home, osrv, tsrv, fake, smtp, new_user, caplog):
    caplog.set_level(logging.INFO)
    src, alice = email_user(new_user, osrv, "g"), email_user(new_user, tsrv, "a")
    stranger = email_user(new_user, osrv, "x")
    seed(src)
    with served(home, tsrv, fake, smtp) as s, s.client() as c, s.client() as owner:
        csrf = login(c, alice)
        batch = post_batch(c, csrf, batch_csv(gmail_row(src, osrv, alice)), lang="de")
        (row,) = batch["imports"]
        assert row["state"] == "waiting_signin" and row["error"] is None, row
        url, mail = link_of(smtp, src.name)
        assert url.startswith(f"{s.base}/signin/")
        assert mail["Subject"] == f"Anmelden, um Ihre E-Mails von {src.name} zu kopieren"  # the job's language
        assert alice.name in mail.get_body(("plain",)).get_content() and mail["To"] == src.name
        (stored,) = signin_links(home)
        assert round(stored["expires_at"] - stored["created_at"]) == 7 * 86400 and stored["used_at"] is None
        link_token = url.rsplit("/", 1)[1]
        assert link_token not in str(stored)  # only its hash is kept
        # An operator sees the waiting row.
        op = c.get(f"/api/imports/{row['id']}", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        assert op["state"] == "waiting_signin"

        page = owner.get(url)
        assert page.status_code == 200 and "Mit Google anmelden" in page.text and alice.name in page.text
        assert '<form method="post">' in page.text and not fake.authorizations  # opening it starts nothing

        # The owner picks another Google account: refused, the row still waits, the link still works.
        fake.authorize_as = stranger.name
        r = owner.post(url, follow_redirects=True)
        assert r.status_code == 403, r.text
        assert stranger.name in r.text and src.name in r.text and "Sie haben sich als" in r.text
        assert c.get(f"/api/imports/{row['id']}").json()["state"] == "waiting_signin"
        assert owner.get(url).status_code == 200

        fake.authorize_as = None  # the right account (the login_hint)
        r = owner.post(url, follow_redirects=True)
        assert [h.status_code for h in r.history] == [303, 302]  # the button -> consent -> callback
        assert r.status_code == 200 and f"Angemeldet als {src.name}" in r.text, r.text
        done = wait_for(c, row["id"])
        assert done["state"] == "done", (done["error"], done)
        assert done["source"]["oauth"] == "google"
        assert_same(src, alice)
        assert c.get(f"/api/batches/{batch['id']}").json()["state"] == "done"

        # Single use: the page and the start answer 410 now, and nothing new starts.
        again = owner.get(url)
        assert again.status_code == 410 and "bereits verwendet" in again.text
        assert owner.post(url).status_code == 410
        assert owner.get(f"{s.base}/signin/{secrets.token_urlsafe(32)}").status_code == 404
        assert signin_links(home)[0]["used_at"] is not None
    assert_no_secret(home, fake, caplog, s, link_token)
    assert any(r.name == "uvicorn.access" and "/signin/…" in r.getMessage() for r in caplog.records)


@pytest.mark.dovecot
def test_expired_link_and_cancelled_row(home, osrv, tsrv, fake, smtp, new_user):
    src1, src2 = email_user(new_user, osrv, "g"), email_user(new_user, osrv, "h")
    alice = email_user(new_user, tsrv, "a")
    with served(home, tsrv, fake, smtp, signin_link_days=2) as s, s.client() as c:
        csrf = login(c, alice)
        batch = post_batch(c, csrf, batch_csv(gmail_row(src1, osrv, alice), gmail_row(src2, osrv, alice)))
        first, second = batch["imports"]
        url1, url2 = link_of(smtp, src1.name)[0], link_of(smtp, src2.name)[0]
        links = {r["email"]: r for r in signin_links(home)}
        assert round(links[src1.name]["expires_at"] - links[src1.name]["created_at"]) == 2 * 86400

        # Two days later (the link's expiry moved into the past): 410, with the next step.
        with sqlite3.connect(home / "service.sqlite") as db:
            db.execute("UPDATE signin_links SET expires_at = ? WHERE email = ?", (time.time() - 1, src1.name))
        r = c.get(url1)
        assert r.status_code == 410 and "has expired" in r.text and "new one" in r.text
        assert c.post(url1).status_code == 410
        assert not fake.authorizations  # nothing went to Google
        assert c.get(f"/api/imports/{first['id']}").json()["state"] == "waiting_signin"

        # A waiting row can be cancelled; its link is dead then.
        r = c.post(f"/api/imports/{second['id']}/cancel", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202 and r.json()["state"] == "cancelled"
        r = c.get(url2)
        assert r.status_code == 410 and "cancelled" in r.text


@pytest.mark.dovecot
def test_pkce_verifier_is_checked(home, osrv, tsrv, fake, smtp, new_user, caplog):
    src, alice = email_user(new_user, osrv, "g"), email_user(new_user, tsrv, "a")
    with served(home, tsrv, fake, smtp, jobs=0) as s, s.client() as c:
        csrf = login(c, alice)

        def consent(start_response) -> httpx.URL:
            """Where the fake's consent screen sends the browser back to (not followed)."""
            assert start_response.status_code == 302
            back = c.get(start_response.headers["location"])
            assert back.status_code == 302
            return httpx.URL(back.headers["location"])

        # At the token endpoint: a code is exchanged only with its own verifier.
        back = consent(c.get("/oauth/google/start", params={"email": src.name}))
        code = back.params["code"]
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": "w" * 64,
                "redirect_uri": f"{s.base}/oauth/callback", "client_id": "gweb-cid-1"}
        r = httpx.post(fake.google_token_uri, data=form, verify=s.ctx)
        assert r.status_code == 400 and r.json() == {"error": "invalid_grant", "error_description": "Invalid code verifier."}
        assert fake.grants("authorization_code") == 1 and not fake.refresh_tokens

        # Through the service: flow A's code delivered with flow B's state -> B's verifier -> refused.
        back_a = consent(c.get("/oauth/google/start", params={"email": src.name}))
        back_b = consent(c.get("/oauth/google/start", params={"email": src.name}))
        r = c.get("/oauth/callback", params={"state": back_b.params["state"], "code": back_a.params["code"]})
        assert r.status_code == 400 and "invalid_grant" in r.text and "Traceback" not in r.text
        assert not fake.refresh_tokens  # no token was issued
        r = c.post("/api/imports", json={"source": source_of(src, osrv, "google"), "target": {"email": alice.name}},
                   headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422 and "first" in r.json()["error"]
        # The right pair still works (the state of B was used up: start again).
        back_c = consent(c.get("/oauth/google/start", params={"email": src.name, "next": "/x"}))
        r = c.get("/oauth/callback", params=dict(back_c.params))
        assert r.status_code == 303 and r.headers["location"] == "/x"
        r = c.post("/api/imports", json={"source": source_of(src, osrv, "google"), "target": {"email": alice.name}},
                   headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202, r.text  # the session holds the sign-in now (jobs=0: it stays queued)
        assert c.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    with sqlite3.connect(home / "service.sqlite") as db:  # the session's sign-ins went with it
        assert db.execute("SELECT count(*) FROM oauth_sources").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM oauth_states").fetchone() == (0,)


@pytest.mark.dovecot
def test_denied_replayed_foreign_and_misdirected_sign_ins(home, osrv, tsrv, fake, smtp, new_user):
    alice, bob = email_user(new_user, tsrv, "a"), email_user(new_user, tsrv, "b")
    with served(home, tsrv, fake, smtp) as s, s.client() as c, s.client() as other:
        r = c.get("/oauth/google/start")  # not signed in to the service
        assert r.status_code == 401 and "Sign in to this service first" in r.text
        assert c.get("/oauth/yahoo/start").status_code == 404
        login(c, alice)

        fake.deny = True
        r = c.get("/oauth/google/start", params={"email": "someone@gmail.test"}, follow_redirects=True)
        assert r.status_code == 400 and "did not allow the sign-in (access_denied)" in r.text
        fake.deny = False
        fake.authorize_as = "someone@gmail.test"  # no address asked for: any account will do

        # A callback is good once, and only in the session that started it.
        start = c.get("/oauth/google/start", params={"next": "//evil.example/x", "lang": "fr"})
        back = httpx.URL(c.get(start.headers["location"]).headers["location"])
        login(other, bob)
        r = other.get("/oauth/callback", params=dict(back.params))
        assert r.status_code == 400 and "un autre navigateur" in r.text  # the language the flow started in
        r = c.get("/oauth/callback", params=dict(back.params))
        assert r.status_code == 400 and "start it again" in r.text  # the state was used up by that attempt
        start = c.get("/oauth/google/start", params={"next": "//evil.example/x"})
        back = httpx.URL(c.get(start.headers["location"]).headers["location"])
        r = c.get("/oauth/callback", params=dict(back.params))
        assert r.status_code == 303 and r.headers["location"] == "/"  # never to another site
        assert c.get("/oauth/callback", params=dict(back.params)).status_code == 400  # replayed
        assert c.get("/oauth/callback", params={"state": "made-up", "code": "x"}).status_code == 400


@pytest.mark.dovecot
def test_link_mail_failure_is_shown_on_the_row(home, osrv, tsrv, fake, new_user):
    """No SMTP server listening: the row waits, and says why its owner got no link."""
    alice, src = email_user(new_user, tsrv, "a"), email_user(new_user, osrv, "g")

    class Nowhere:
        port = free_port()

    with served(home, tsrv, fake, Nowhere) as s, s.client() as c:
        csrf = login(c, alice)
        (row,) = post_batch(c, csrf, batch_csv(gmail_row(src, osrv, alice)))["imports"]
        assert row["state"] == "waiting_signin"
        assert row["error"].startswith("the sign-in link could not be mailed: ")
        assert "\n" not in row["error"]
