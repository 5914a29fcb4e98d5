"""Hardening of ``mailmigrate serve`` against real Dovecot: a running import's per-folder source
counts are true for every folder (held mid-copy by a proxy); source servers on internal networks
are refused (API, page, batch line, a name resolving there, and again by the worker right before
it connects, to the checked address with the server's name kept for TLS); batch rows that would
wait for a sign-in the service does not offer are refused; unknown URLs get a translated page
(JSON under /api/); every answer carries the security headers. Plus the address rules (pure logic)."""

from __future__ import annotations

import ipaddress
import time
import uuid

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from migrate.accounts import ImapAccount, Secret  # noqa: E402
from migrate.errors import ConnectFailed, TlsFailed  # noqa: E402
from migrate.imap.wire import drop, open_client  # noqa: E402
from migrate.service.network import PrivateSourceServer, SourceNetworks, is_internal, parse_networks  # noqa: E402
from tests.support.proxy import FaultProxy  # noqa: E402
from tests.test_service_api import ADMIN, login, make_app, seed, source_of, user, wait_for  # noqa: E402
from tests.test_service_batches import csv_text, post_csv, row_of  # noqa: E402
from tests.test_service_pages import hidden, sign_in, source_fields  # noqa: E402

PRIVATE = "is on a private network: the service does not connect there"
OP = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(path))
    for name in ("MAILMIGRATE_SECRET_KEY", "MAILMIGRATE_GOOGLE_CLIENT_ID", "MAILMIGRATE_GOOGLE_CLIENT_SECRET",
                 "MAILMIGRATE_MS_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def srv(dovecot):
    return dovecot("slash")


def strict_app(home, srv, **kw):
    """The service as it starts by default: no internal network allowed for sources."""
    return make_app(home, srv, allow_source_networks=(), **kw)


# --------------------------------------------------------------------------- 1. live per-folder counts


@pytest.mark.dovecot
def test_running_import_counts_every_folder_it_has_scanned(home, srv, new_user):
    """Held at its first APPEND (the target behind a proxy), one connection: INBOX is being
    copied and Archive waits its turn, yet both folders' source counts are already the real ones
    and add up to the progress's total."""
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0, per_folder=(("INBOX", 6), ("Archive", 4)))
    with FaultProxy("127.0.0.1", srv.port) as proxy, \
            TestClient(make_app(home, srv, target_port=proxy.port, connections=1)) as c:
        csrf = login(c, alice)
        proxy.hold_when(b"APPEND", "upstream")
        job = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                     headers={"X-CSRF-Token": csrf}).json()
        try:
            held = held_view(c, job["id"], proxy)  # INBOX's APPEND is held: Archive cannot start
            counts = {f["source"]: f["source_messages"] for f in held["folders"]}
            copied = {f["source"]: f["copied"] for f in held["folders"]}
        finally:
            proxy.release()
        done = wait_for(c, job["id"])
    assert counts == {**dict.fromkeys(counts, 0), "INBOX": 6, "Archive": 4}, held["folders"]  # the rest: empty
    assert copied["Archive"] == 0  # Archive was not copied yet: its count came from the scan
    assert held["totals"]["source_messages"] == held["progress"]["messages_total"] == 10
    assert done["state"] == "done" and done["totals"]["source_messages"] == 10 and done["totals"]["copied"] == 10


def held_view(c: TestClient, job_id: str, proxy: FaultProxy, deadline_s: float = 60.0) -> dict:
    """The import's view once the proxy holds it (polled with a deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        view = c.get(f"/api/imports/{job_id}").json()
        if proxy.holding:
            view = c.get(f"/api/imports/{job_id}").json()
            assert view["state"] == "running" and view["progress"]["phase"] == "copying", view
            return view
        assert view["state"] in ("queued", "running"), view
        assert time.monotonic() < deadline, f"import {job_id} not held after {deadline_s}s: {view['progress']}"
        time.sleep(0.02)


# --------------------------------------------------------------------------- 2. internal source servers


@pytest.mark.dovecot
def test_internal_sources_refused_by_default_by_api_page_and_batch(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    with TestClient(strict_app(home, srv)) as c:
        csrf = login(c, alice)
        for host in ("127.0.0.1", "localhost"):
            body = {"source": {**source_of(src, srv), "host": host}, "target": {"email": alice.name}}
            r = c.post("/api/imports", json=body, headers={"X-CSRF-Token": csrf})
            assert r.status_code == 422, (host, r.text)
            assert r.json()["error"].startswith(f"the server {host} {PRIVATE}")
            assert src.password not in r.text
        # an operator is held to the same rule
        body = {"source": source_of(src, srv), "target": {"email": alice.name, "password": alice.password}}
        assert c.post("/api/imports", json=body, headers=OP).status_code == 422
        # a batch: the line says it, nothing starts
        r = post_csv(c, csv_text(row_of(src, srv, alice.name)), csrf=csrf)
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"line": 2, "message": f"source_host: the server 127.0.0.1 {PRIVATE}"}]
        assert c.get("/api/imports").json()["imports"] == []
    with TestClient(strict_app(home, srv)) as c:  # the page, in German
        csrf = sign_in(c, alice)
        r = c.post("/imports?lang=de", data={"csrf_token": csrf, **source_fields(src, srv), "target": alice.name},
                   follow_redirects=False)
        assert r.status_code == 422
        assert "Der Server 127.0.0.1 liegt in einem privaten Netz" in r.text
        assert src.password not in r.text
        assert c.get("/api/imports").json()["imports"] == []


@pytest.mark.dovecot
def test_allowed_network_imports_and_the_worker_checks_again(home, srv, new_user):
    """Allowed: the import runs. A job queued while allowed and started by a service that does
    not allow it any more fails in the worker, before any connection, with the reason."""
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    with TestClient(make_app(home, srv)) as c:  # --allow-source-network 127.0.0.0/8
        csrf = login(c, alice)
        r = c.post("/api/imports", json={"source": source_of(src, srv), "target": {"email": alice.name}},
                   headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202, r.text
        assert wait_for(c, r.json()["id"])["state"] == "done"
    with TestClient(make_app(home, srv, jobs=0, allow_source_networks=("127.0.0.0/8", "::1/128"))) as c:
        csrf = login(c, alice)
        body = {"source": {**source_of(src, srv), "host": "localhost"}, "target": {"email": alice.name}}
        queued = c.post("/api/imports", json=body, headers={"X-CSRF-Token": csrf}).json()
        assert queued["state"] == "queued"
    with TestClient(strict_app(home, srv)) as c:  # the same home, started without the allowance
        login(c, alice)
        end = wait_for(c, queued["id"])
    assert end["state"] == "failed"
    assert end["error"].startswith(f"the server localhost {PRIVATE}"), end["error"]
    assert end["totals"]["copied"] == 0


@pytest.mark.dovecot
def test_connecting_to_the_checked_address_keeps_the_server_name_for_tls(dovecot, new_user):
    """The worker connects to the address it checked; TLS (implicit and STARTTLS) still verifies
    the server's name: a name the certificate does not carry fails as a TLS error (so the
    connection did reach the checked address), the certificate's own name logs in."""
    tls = dovecot("slash", starttls=True)
    u = new_user(tls, name=f"t{uuid.uuid4().hex[:10]}@example.test")
    seen: list[tuple[str, int]] = []

    def to_loopback(host: str, port: int) -> str:
        seen.append((host, port))
        return "127.0.0.1"

    for port, security in ((tls.ssl_port, "ssl"), (tls.port, "starttls")):
        def account(host: str, port: int = port, security: str = security) -> ImapAccount:
            return ImapAccount(email=u.name, host=host, port=port, security=security, password=Secret(u.password),
                               ca_file=tls.ca_file, timeout=10, address_guard=to_loopback)

        drop(open_client(account("localhost")))
        with pytest.raises(TlsFailed):
            open_client(account("mail.invalid"))  # unresolvable: only the guard's address was used
    assert seen == [("localhost", tls.ssl_port), ("mail.invalid", tls.ssl_port),
                    ("localhost", tls.port), ("mail.invalid", tls.port)]


def test_address_rules():
    for text in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
                 "224.0.0.1", "240.0.0.1", "100.64.0.1", "::1", "fd00::1", "fe80::1", "::", "::ffff:127.0.0.1",
                 "ff02::1"):
        assert is_internal(ipaddress.ip_address(text)), text
    for text in ("93.184.216.34", "2a00:1450:4001:82a::200e", "8.8.8.8"):
        assert not is_internal(ipaddress.ip_address(text)), text
    strict, allowing = SourceNetworks(), SourceNetworks(parse_networks(["127.0.0.0/8", "fd00::/8"]))
    with pytest.raises(PrivateSourceServer) as e:
        strict.address_to_connect("localhost", 143)
    assert e.value.message == f"the server localhost {PRIVATE}"
    assert allowing.address_to_connect("127.0.0.1", 143) == "127.0.0.1"
    with pytest.raises(PrivateSourceServer):
        allowing.address_to_connect("10.0.0.1", 143)
    with pytest.raises(ConnectFailed, match="cannot be found"):
        strict.address_to_connect("nothing.invalid", 143)
    strict.check_submitted("gmail", "imap.gmail.com", 993)  # a preset's own server: not looked up
    strict.check_submitted("imap", "nothing.invalid", 993)  # unknown at submit: the worker says so
    with pytest.raises(ValueError, match="10.0.0.0/33"):
        parse_networks(["10.0.0.0/33"])


# --------------------------------------------------------------------------- 3. batch rows waiting for nothing


@pytest.mark.dovecot
def test_batch_rows_needing_a_sign_in_the_service_does_not_offer(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    blank = {"source_password": "", "source_provider": "", "source_host": "", "source_port": "",
             "source_security": ""}
    text = csv_text(row_of(src, srv, alice.name),
                    {**row_of(src, srv, alice.name), **blank, "source_email": "someone@gmail.com"},
                    {**row_of(src, srv, alice.name), **blank, "source_email": "someone@outlook.com"})
    with TestClient(make_app(home, srv, jobs=0)) as c:
        csrf = login(c, alice)
        r = post_csv(c, text, csrf=csrf)
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [
            {"line": 3, "message": "Gmail rows without a password need Google sign-in, which this service does "
                                   "not offer: give an app password"},
            {"line": 4, "message": "Outlook.com rows without a password need Microsoft sign-in, which this "
                                   "service does not offer: this service cannot import from it"}]
        assert c.get("/api/imports").json()["imports"] == []
    with TestClient(make_app(home, srv, jobs=0, google_client_id="cid", google_client_secret="gsecret",
                             microsoft_client_id="ms-cid")) as c:  # offered: the rows wait for it
        csrf = login(c, alice)
        r = post_csv(c, text, csrf=csrf)
        assert r.status_code == 202, r.text
        assert [i["state"] for i in r.json()["imports"]] == ["queued", "waiting_signin", "waiting_signin"]


@pytest.mark.dovecot
def test_batch_page_says_how_to_add_a_mailbox_in_the_page_language(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    stranger = f"x{uuid.uuid4().hex[:8]}@example.test"
    with TestClient(make_app(home, srv, jobs=0)) as c:
        csrf = sign_in(c, alice)
        for lang, wanted in (("en", "Add another of your mailboxes"),
                             ("de", "Ein weiteres Ihrer Postfächer hinzufügen")):
            r = c.post(f"/batch?lang={lang}", data={"csrf_token": csrf},
                       files={"csv": ("batch.csv", csv_text(row_of(src, srv, stranger)).encode(), "text/csv")})
            assert r.status_code == 422, r.text
            assert wanted in r.text and stranger in r.text
            assert "POST /api/mailboxes" not in r.text
        # the API still names its own way
        r = post_csv(c, csv_text(row_of(src, srv, stranger)), csrf=csrf)
        assert "POST /api/mailboxes" in r.json()["errors"][0]["message"]


# --------------------------------------------------------------------------- 4. and 5. pages and headers


@pytest.mark.dovecot
def test_unknown_urls_and_methods_answer_in_kind(home, srv, new_user):
    with TestClient(make_app(home, srv, jobs=0)) as c:
        r = c.get("/no/such/page", headers={"Accept-Language": "fr"})
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        assert "Introuvable" in r.text and '<html lang="fr">' in r.text
        r = c.put("/imports", headers={"Accept-Language": "de"})
        assert r.status_code == 405 and "Hier nicht möglich" in r.text and r.headers["allow"]
        r = c.get("/no/such/page?lang=it")  # the switch: remembered
        assert r.status_code == 404 and "Non trovato" in r.text and c.cookies["mm_lang"] == "it"
        r = c.get("/api/no-such-thing")
        assert r.status_code == 404 and r.json() == {"error": "no such API endpoint"}
        r = c.delete("/api/imports")
        assert r.status_code == 405 and r.json()["error"].startswith("DELETE is not allowed here")


@pytest.mark.dovecot
def test_every_answer_carries_the_security_headers(home, srv, new_user):
    alice = user(new_user, srv, "a")
    for secure in (False, True):
        with TestClient(make_app(home, srv, jobs=0, cookie_secure=secure), base_url="https://testserver") as c:
            page = c.get("/")
            answers = [page, c.get("/healthz"), c.get("/batch.csv"), c.get("/static/style.css"),
                       c.get("/nothing-here"), c.get("/api/imports"), c.get("/signin/not-a-token"),
                       c.post("/api/login", json={"email": alice.name, "password": "wrong"}),
                       c.post("/", data={"email": alice.name, "password": alice.password,
                                         "csrf_token": hidden(page.text)}, follow_redirects=False)]
            for r in answers:
                where = f"{r.request.method} {r.request.url.path} ({r.status_code})"
                assert r.headers.get("x-content-type-options") == "nosniff", where
                assert r.headers.get("referrer-policy") == "no-referrer", where
                assert ("strict-transport-security" in r.headers) == secure, where
            assert answers[-1].status_code == 303
            (session_cookie,) = [h.lower() for h in answers[-1].headers.get_list("set-cookie")
                                 if h.startswith("mm_session=")]
            assert ("; secure" in session_cookie) == secure
