"""The web pages of ``mailmigrate serve`` (migrate/service/web.py) over HTTP, against real Dovecot:
every page in English, German, French and Italian (from Accept-Language and from the switch), the
one-off form starting an import that runs to the end (and "Import again" copying only new mail),
form errors that keep what was typed but never a password, CSRF refusals, hostile folder names and
subjects shown as text, other people's imports answering 404, the sign-in page's answers, added
mailboxes, and the batch page (line errors, then a batch that runs)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("jinja2")

from starlette.testclient import TestClient  # noqa: E402

from migrate import providers  # noqa: E402
from migrate.service import ServiceConfig, create_app  # noqa: E402
from migrate.service.i18n import LANGS, Translator, accepted, choose, hint_presets, text_keys  # noqa: E402
from tests.support.mailbox import msg, snapshot  # noqa: E402
from tests.support.proxy import FaultProxy  # noqa: E402

FINAL = ("done", "partial", "failed", "cancelled")
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_TEXT = "&lt;img src=x onerror=alert(1)&gt;"
BATCH_HEADER = ("source_email,source_password,source_provider,source_host,source_port,source_security,"
                "source_username,target_email,target_password,target_provider,target_host,target_port,"
                "target_security,target_username,notify")  # templates/batch.csv's columns


# --------------------------------------------------------------------------- helpers (test_browser uses them too)


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


def make_app(home, srv, *, jobs: int = 2, target_port: int | None = None, **kw):
    kw.setdefault("allow_source_networks", ("127.0.0.0/8",))  # the test sources are local
    return create_app(ServiceConfig(target_host="127.0.0.1", target_port=target_port or srv.port,
                                    target_security="none", home=home, jobs=jobs, retry_base=0.05,
                                    imap_timeout=20.0, **kw))


def user(new_user, srv, tag: str = "u"):
    return new_user(srv, name=f"{tag}{uuid.uuid4().hex[:10]}@example.test")


def seed(u, base: int, per_folder=(("INBOX", 4), ("Archive", 3))) -> None:
    with u.client() as c:
        for j, (folder, n) in enumerate(per_folder):
            if not c.folder_exists(folder):
                c.create_folder(folder)
            for i in range(n):
                c.append(folder, msg(base + 100 * j + i), flags=[b"\\Seen"] if i % 2 else [],
                         msg_time=datetime(2021, 1 + i % 12, 5, tzinfo=UTC))


def source_fields(u, srv, prefix: str = "source_") -> dict[str, str]:
    """The one-off form's fields for a source on the test server (advanced settings filled in)."""
    return {f"{prefix}email": u.name, f"{prefix}password": u.password, f"{prefix}provider": "imap",
            f"{prefix}host": "127.0.0.1", f"{prefix}port": str(srv.port), f"{prefix}security": "none"}


def hidden(html: str, name: str = "csrf_token") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name}"
    return found.group(1)


def sign_in(c: TestClient, u) -> str:
    """Sign in through the sign-in page; the session's CSRF token (from the next page's forms)."""
    page = c.get("/")
    r = c.post("/", data={"email": u.name, "password": u.password, "csrf_token": hidden(page.text)},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    form = c.get("/")
    assert 'id="import-form"' in form.text
    return hidden(form.text)


def state_of(html: str) -> str:
    found = re.search(r'data-field="state" data-state="(\w+)"', html)
    assert found, "no state on the page"
    return found.group(1)


def wait_page(c: TestClient, job_id: str, states=FINAL, deadline_s: float = 90.0) -> str:
    """Poll the import's page (a deadline, no fixed sleep) until its state is one of ``states``."""
    deadline = time.monotonic() + deadline_s
    while True:
        r = c.get(f"/imports/{job_id}")
        assert r.status_code == 200, r.text
        if state_of(r.text) in states:
            return r.text
        assert time.monotonic() < deadline, f"import {job_id} still {state_of(r.text)} after {deadline_s}s"
        time.sleep(0.05)


def start_by_form(c: TestClient, csrf: str, fields: dict[str, str]) -> str:
    r = c.post("/imports", data={"csrf_token": csrf, **fields}, follow_redirects=False)
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/imports/")
    return location.rsplit("/", 1)[1]


# --------------------------------------------------------------------------- texts (no server)


# Where German, French or Italian really use the English word (anything else left in English
# would be a text nobody translated).
SAME_AS_ENGLISH = {("field_password", "it"), ("field_port", "de"), ("field_port", "fr"), ("options", "fr"),
                   ("col_date", "fr"), ("details", "de"), ("col_problem", "de"), ("progress_messages_open", "fr"),
                   ("duration_min", "fr"), ("duration_min", "it"), ("duration_h_min", "fr"),
                   ("duration_h_min", "it")} | {(f"unit_{u}", lang) for u in ("b", "kb", "mb", "gb")
                                                for lang in ("de", "it")}


def test_every_text_exists_in_every_language_with_the_same_placeholders():
    english = Translator("en")
    untranslated = set()
    for key in text_keys():
        fields = set(re.findall(r"\{(\w+)\}", english(key)))
        for lang in LANGS:
            text = Translator(lang)(key)
            assert text.strip(), (lang, key)
            assert set(re.findall(r"\{(\w+)\}", text)) == fields, (lang, key)
            if lang != "en" and text == english(key):
                untranslated.add((key, lang))
    assert untranslated == SAME_AS_ENGLISH
    # Every provider the form can name has its hint in every language.
    assert set(hint_presets()) == set(providers.names())
    for name in hint_presets():
        assert len({Translator(lang).hint(name) for lang in LANGS}) == 4, name


def test_language_choice():
    assert accepted("fr-CH, fr;q=0.9, en;q=0.8") == "fr"
    assert accepted("es, it;q=0.4, de;q=0.6") == "de"
    assert accepted("de;q=0, it") == "it"
    assert accepted("es, pt") is None and accepted(None) is None
    assert choose(query="it", cookie="de", accept_language="fr") == "it"  # the switch wins
    assert choose(query="xx", cookie="de", accept_language="fr") == "de"  # then its cookie
    assert choose(query=None, cookie=None, accept_language="fr-FR") == "fr"
    assert choose(query=None, cookie=None, accept_language="ja") == "en"


def test_numbers_sizes_and_times_follow_the_language():
    en, de, fr = Translator("en"), Translator("de"), Translator("fr")
    assert (en.number(1234567), de.number(1234567), fr.number(1234567)) == ("1,234,567", "1.234.567",
                                                                            "1\u202f234\u202f567")
    assert (en.size(1536), de.size(5 * 1024**2 + 1024**2 // 2), fr.size(3 * 1024**3)) == ("1.5 KB", "5,5 MB",
                                                                                            "3,0 Go")
    assert (en.percent(42.4), de.percent(99.6)) == ("42%", "100 %")
    assert en.eta(30) == "Less than a minute left" and de.eta(125) == "Noch etwa 3 Min."
    assert fr.eta(3 * 3600 + 5 * 60) == "Encore environ 3 h 5 min"


# --------------------------------------------------------------------------- pages against Dovecot


# A text of each page, in each language (the catalog's, and the page must not show English instead).
PAGE_TEXTS = {"/": ("import_title", "old_email", "advanced", "add_mailbox_title", "import_button"),
              "/batch": ("batch_title", "batch_download", "batch_submit"),
              "/imports": ("imports_title", "col_state", "new_import"),
              "/imports/{id}": ("summary", "t_copied", "folders", "state_queued", "cancel_button")}
SIGNIN_TEXTS = ("signin_title", "signin_intro", "field_email", "signin_button")


def assert_in_language(html: str, lang: str, keys) -> None:
    assert f'<html lang="{lang}">' in html
    t, en = Translator(lang), Translator("en")
    for key in keys:
        assert t(key).replace("'", "&#39;") in html, (lang, key)
        if lang != "en" and en(key) != t(key):
            assert f">{en(key)}<" not in html, (lang, key)


@pytest.mark.dovecot
def test_every_page_in_every_language(home, srv, new_user):
    alice, src = user(new_user, srv, "a"), user(new_user, srv, "s")
    with TestClient(make_app(home, srv, jobs=0)) as c:  # no worker: the import stays queued
        for lang in LANGS:
            page = c.get("/", headers={"Accept-Language": f"{lang}-CH,{lang};q=0.9,en;q=0.5"})
            assert_in_language(page.text, lang, SIGNIN_TEXTS)
        csrf = sign_in(c, alice)
        job_id = start_by_form(c, csrf, {**source_fields(src, srv), "target": alice.name})
        for lang in LANGS:
            for path, keys in PAGE_TEXTS.items():
                r = c.get(path.format(id=job_id), headers={"Accept-Language": lang})
                assert r.status_code == 200, (path, r.text)
                assert_in_language(r.text, lang, keys)
        # the switch: ?lang= wins over the browser and is remembered in a cookie
        r = c.get("/imports?lang=it", headers={"Accept-Language": "de"})
        assert_in_language(r.text, "it", PAGE_TEXTS["/imports"])
        assert "mm_lang=it" in r.headers["set-cookie"] and "httponly" in r.headers["set-cookie"].lower()
        assert_in_language(c.get("/batch", headers={"Accept-Language": "de"}).text, "it", PAGE_TEXTS["/batch"])
        r = c.get("/?lang=fr")
        assert_in_language(r.text, "fr", PAGE_TEXTS["/"])
        for code, name in (("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("it", "Italiano")):
            assert f'href="?lang={code}" hreflang="{code}" lang="{code}"' in r.text and name in r.text


@pytest.mark.dovecot
def test_pages_send_strict_security_headers_and_no_inline_script(home, srv, new_user):
    alice = user(new_user, srv, "a")
    with TestClient(make_app(home, srv, jobs=0)) as c:
        pages = [c.get("/")]
        sign_in(c, alice)
        pages += [c.get(p) for p in ("/", "/batch", "/imports", "/imports/nope")]
        for r in pages:
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp and "default-src 'none'" in csp
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["content-type"].startswith("text/html")
            # scripts only from /static (no inline script, no handler attributes, nothing from elsewhere)
            assert re.findall(r"<script\b[^>]*>", r.text) == ['<script src="/static/app.js" defer>']
            assert not re.search(r"\son[a-z]+=", r.text) and "http://" not in r.text and "https://" not in r.text
        for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
            got = c.get(asset)
            assert got.status_code == 200 and kind in got.headers["content-type"]


@pytest.mark.dovecot
def test_form_starts_an_import_that_runs_to_done_and_again_copies_only_new_mail(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    with TestClient(make_app(home, srv)) as c:
        csrf = sign_in(c, alice)
        job_id = start_by_form(c, csrf, {**source_fields(src, srv), "target": alice.name,
                                         "exclude": "", "notify": ""})
        page = wait_page(c, job_id)
        assert state_of(page) == "done", page
        for folder in ("INBOX", "Archive"):
            assert snapshot(alice, folder) == snapshot(src, folder), folder
        api = c.get(f"/api/imports/{job_id}").json()
        assert api["totals"]["copied"] == 7 and api["source"]["email"] == src.name
        assert re.search(r'data-total="copied">7<', page) and re.search(r'data-total="source_messages">7<', page)
        assert "<td>Archive</td>" in page and "<td>INBOX</td>" in page
        assert src.password not in page
        listing = c.get("/imports").text
        assert f'href="/imports/{job_id}"' in listing and src.name in listing
        # "Import again": the same settings come back as hidden fields, the password does not
        assert 'id="import-again"' in page and 'id="cancel-import"' not in page
        again = {name: hidden(page, name) for name in ("source_email", "source_host", "source_port",
                                                       "source_security", "source_provider", "target")}
        assert again == {"source_email": src.name, "source_host": "127.0.0.1", "source_port": str(srv.port),
                         "source_security": "none", "source_provider": "imap", "target": alice.name}
        seed(src, 900, per_folder=(("INBOX", 1),))  # one new message since
        second = start_by_form(c, hidden(page), {**again, "source_password": src.password})
        assert second != job_id
        page = wait_page(c, second)
        assert state_of(page) == "done", page
        totals = c.get(f"/api/imports/{second}").json()["totals"]
        assert (totals["copied"], totals["skipped_duplicates"]) == (1, 7), totals
        assert snapshot(alice, "INBOX") == snapshot(src, "INBOX")


@pytest.mark.dovecot
def test_form_imports_a_second_old_address_into_the_same_mailbox(home, srv, new_user):
    one, two, alice = user(new_user, srv, "s"), user(new_user, srv, "t"), user(new_user, srv, "a")
    seed(one, 0)
    seed(two, 5000)
    with TestClient(make_app(home, srv)) as c:
        csrf = sign_in(c, alice)
        first = start_by_form(c, csrf, {**source_fields(one, srv), **source_fields(two, srv, "second_"),
                                        "target": alice.name})
        ids = [j["id"] for j in c.get("/api/imports").json()["imports"]]
        assert first in ids and len(ids) == 2
        for job_id in ids:
            assert state_of(wait_page(c, job_id)) == "done"
        assert {j["source"]["email"] for j in c.get("/api/imports").json()["imports"]} == {one.name, two.name}
    for folder in ("INBOX", "Archive"):
        assert snapshot(alice, folder) == snapshot(one, folder) + snapshot(two, folder), folder


@pytest.mark.dovecot
def test_form_offers_the_sign_in_of_a_provider_only_where_it_is_set_up(home, srv, new_user):
    alice = user(new_user, srv, "a")
    gmail = {"source_email": "someone@gmail.com", "target": alice.name}
    with TestClient(make_app(home, srv, jobs=0)) as c:  # nothing set up: no button at all
        r = c.post("/imports", data={"csrf_token": sign_in(c, alice), **gmail})
        assert r.status_code == 422 and "/oauth/" not in r.text
    with TestClient(make_app(home, srv, jobs=0, google_client_id="test-client",
                             google_client_secret="test-secret")) as c:
        csrf = sign_in(c, alice)
        assert 'data-oauth-block hidden' in c.get("/").text  # until an address needs it (the script shows it)
        r = c.post("/imports", data={"csrf_token": csrf, **gmail})
        link = re.search(r'<a class="button oauth-google"[^>]*>', r.text).group(0)
        assert 'href="/oauth/google/start?next=/&amp;email=someone%40gmail.com"' in link and "hidden" not in link
        assert "Gmail" in r.text and Translator("en").hint("gmail") in r.text
        assert "oauth-microsoft" not in r.text  # Microsoft is not set up here


@pytest.mark.dovecot
def test_form_errors_keep_the_values_and_never_echo_a_password(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    secret = "pw-" + uuid.uuid4().hex
    with TestClient(make_app(home, srv, jobs=0)) as c:
        csrf = sign_in(c, alice)
        bad = {"csrf_token": csrf, "source_email": src.name, "source_password": secret, "source_port": "99999",
               "source_host": "imap.old.example", "exclude": "Spam\nPapierkorb", "notify": "boss@example.test, nope",
               "second_email": "not-an-address", "second_password": secret, "target": alice.name}
        r = c.post("/imports", data=bad, headers={"Accept-Language": "de"})
        assert r.status_code == 422
        assert secret not in r.text
        de = Translator("de")
        for message in (de("err_port"), de("err_notify", value="nope"),
                        de("err_second", message=de("err_not_email", value="not-an-address"))):
            assert message.replace("„", "&#34;").replace("“", "&#34;") in r.text or message in r.text, message
        for kept in (f'value="{src.name}"', 'value="99999"', 'value="imap.old.example"', "Spam\nPapierkorb",
                     'value="boss@example.test, nope"', 'value="not-an-address"'):
            assert kept in r.text, kept
        assert 'aria-invalid="true"' in r.text
        # a missing password is asked for by name; nothing was queued
        r = c.post("/imports", data={"csrf_token": csrf, "source_email": src.name, "target": alice.name})
        assert r.status_code == 422 and Translator("en")("err_old_password", email=src.name) in r.text
        # what only the service can judge (an unknown provider) comes back on the form, too
        r = c.post("/imports", data={**source_fields(src, srv), "source_provider": "nosuchprovider",
                                     "source_password": secret, "csrf_token": csrf, "target": alice.name})
        assert r.status_code == 422 and "nosuchprovider" in r.text and secret not in r.text
        # another person's mailbox is not a target
        r = c.post("/imports", data={**source_fields(src, srv), "csrf_token": csrf, "target": src.name})
        assert r.status_code == 422 and Translator("en")("err_target") in r.text
        assert c.get("/api/imports").json()["imports"] == []


@pytest.mark.dovecot
def test_sign_in_page_answers_sign_out_and_another_mailbox(home, srv, new_user):
    alice, bob = user(new_user, srv, "a"), user(new_user, srv, "b")
    with TestClient(make_app(home, srv, jobs=0, login_limit=4)) as c:
        page = c.get("/", headers={"Accept-Language": "fr"})
        assert "httponly" in page.headers["set-cookie"].lower() and "samesite=strict" in page.headers["set-cookie"].lower()
        wrong = "wrong-" + uuid.uuid4().hex
        r = c.post("/", data={"email": alice.name, "password": wrong, "csrf_token": hidden(page.text)},
                   headers={"Accept-Language": "fr"})
        assert r.status_code == 401 and Translator("fr")("err_signin_wrong").replace("'", "&#39;") in r.text
        assert f'value="{alice.name}"' in r.text and wrong not in r.text and "mm_session" not in c.cookies
        r = c.post("/", data={"email": alice.name, "password": "", "csrf_token": hidden(page.text)})
        assert r.status_code == 422 and Translator("en")("err_give_email_password") in r.text
        csrf = sign_in(c, alice)
        cookie = c.cookies["mm_session"]
        # another of my mailboxes: a wrong password is said so, the right one adds it to the list
        r = c.post("/mailboxes", data={"csrf_token": csrf, "email": bob.name, "password": wrong})
        assert r.status_code == 401 and Translator("en")("err_signin_wrong") in r.text and wrong not in r.text
        r = c.post("/mailboxes", data={"csrf_token": csrf, "email": bob.name, "password": bob.password},
                   follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/?notice=mailbox_added"
        form = c.get(r.headers["location"]).text
        assert Translator("en")("notice_mailbox_added") in form and f'<option value="{bob.name}"' in form
        # the rate limit (4 a minute for this client here) is the API's, with its own message
        r = c.post("/", data={"email": alice.name, "password": wrong, "csrf_token": hidden(page.text)})
        assert r.status_code == 429 and Translator("en")("err_rate_limited") in r.text
        # sign out: the session is gone on the server, not only in this browser
        r = c.post("/signout", data={"csrf_token": csrf}, follow_redirects=False)
        assert r.status_code == 303
        assert 'id="import-form"' not in c.get("/").text
        assert c.get("/imports", follow_redirects=False).headers["location"] == "/"
        assert c.get("/api/imports", cookies={"mm_session": cookie}).status_code == 401


@pytest.mark.dovecot
def test_a_post_without_the_csrf_token_is_a_403_page(home, srv, new_user):
    alice, src = user(new_user, srv, "a"), user(new_user, srv, "s")
    with TestClient(make_app(home, srv, jobs=0)) as c:
        page = c.get("/")
        r = c.post("/", data={"email": alice.name, "password": alice.password})  # the sign-in form's own token
        assert r.status_code == 403 and "mm_session" not in c.cookies
        assert r.headers["content-type"].startswith("text/html") and Translator("en")("error_csrf") in r.text
        r = c.post("/", data={"email": alice.name, "password": alice.password, "csrf_token": "forged"})
        assert r.status_code == 403
        csrf = sign_in(c, alice)
        assert hidden(page.text) != csrf  # the session's token is not the sign-in form's
        job_id = start_by_form(c, csrf, {**source_fields(src, srv), "target": alice.name})
        fields = {**source_fields(src, srv), "target": alice.name}
        for path, data in (("/imports", fields), ("/imports", {**fields, "csrf_token": "forged"}),
                           (f"/imports/{job_id}/cancel", {}), ("/mailboxes", {"email": src.name, "password": "x"}),
                           ("/signout", {}), ("/batch", {})):
            r = c.post(path, data=data, headers={"Accept-Language": "it"})
            assert r.status_code == 403, (path, r.status_code)
            assert Translator("it")("error_csrf") in r.text and "Traceback" not in r.text
        assert [j["id"] for j in c.get("/api/imports").json()["imports"]] == [job_id]  # nothing else happened
        assert c.get(f"/api/imports/{job_id}").json()["state"] == "queued"
        assert 'id="import-form"' in c.get("/").text  # still signed in
        # the API takes the same token as X-CSRF-Token
        r = c.post(f"/api/imports/{job_id}/cancel", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202 and r.json()["state"] == "cancelled"


@pytest.mark.dovecot
def test_another_persons_import_page_is_404(home, srv, new_user):
    src, alice, bob = user(new_user, srv, "s"), user(new_user, srv, "a"), user(new_user, srv, "b")
    app = make_app(home, srv, jobs=0)
    with TestClient(app) as c, TestClient(app) as other:
        job_id = start_by_form(c, sign_in(c, alice), {**source_fields(src, srv), "target": alice.name})
        assert c.get(f"/imports/{job_id}").status_code == 200
        csrf_b = sign_in(other, bob)
        r = other.get(f"/imports/{job_id}", headers={"Accept-Language": "de"})
        assert r.status_code == 404 and Translator("de")("error_404") in r.text and src.name not in r.text
        assert other.post(f"/imports/{job_id}/cancel", data={"csrf_token": csrf_b}).status_code == 404
        assert job_id not in other.get("/imports").text
        assert c.get(f"/api/imports/{job_id}").json()["state"] == "queued"  # bob's cancel did nothing
        with TestClient(app) as nobody:  # not signed in: to the sign-in page, nothing shown
            r = nobody.get(f"/imports/{job_id}", follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/"


def seed_hostile(src) -> None:
    """A folder named like markup, and a message whose subject is markup (it will fail)."""
    with src.client() as c:
        c.create_folder(HOSTILE)
        c.append(HOSTILE, msg(1, subject="fine"))
        c.append("INBOX", msg(2, subject=HOSTILE))
        c.append("INBOX", msg(3, subject="also fine"))


def refusing_target(srv) -> FaultProxy:
    """The new mailbox's server behind a proxy that drops every connection sending the hostile
    message, so that message fails by itself (with its subject) and the rest is copied. Started
    by ``with``."""
    proxy = FaultProxy("127.0.0.1", srv.port)
    proxy.cut_when(f"Subject: {HOSTILE}".encode(), "upstream", every=True)
    return proxy


@pytest.mark.dovecot
def test_hostile_folder_names_and_subjects_are_shown_as_text(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed_hostile(src)
    with refusing_target(srv) as proxy, TestClient(make_app(home, srv, target_port=proxy.port)) as c:
        csrf = sign_in(c, alice)
        job_id = start_by_form(c, csrf, {**source_fields(src, srv), "target": alice.name})
        page = wait_page(c, job_id)
        view = c.get(f"/api/imports/{job_id}").json()
        assert view["state"] == "partial" and view["totals"]["copied"] == 2, view
        assert HOSTILE in [f["source"] for f in view["folders"]], view["folders"]
        assert [f["subject"] for f in view["failures"]] == [HOSTILE], view["failures"]
        assert HOSTILE not in page  # never markup
        assert f"<td>{HOSTILE_TEXT}</td>" in page  # the folder (twice: its name on both sides)...
        assert page.count(f"<td>{HOSTILE_TEXT}</td>") == 3  # ... and the failed message's subject
        assert HOSTILE not in c.get("/imports").text


@pytest.mark.dovecot
def test_batch_page_lists_every_problem_then_runs_a_good_batch(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    header = BATCH_HEADER
    # Google sign-in offered: a Gmail row without a password may wait for it
    with TestClient(make_app(home, srv, google_client_id="cid", google_client_secret="gsecret")) as c:
        csrf = sign_in(c, alice)
        page = c.get("/batch", headers={"Accept-Language": "de"})
        assert 'href="/batch.csv"' in page.text and 'type="file"' in page.text
        assert c.get("/batch.csv").headers["content-type"].startswith("text/csv")
        bad = "\n".join([header,
                         f"{src.name},{src.password},imap,127.0.0.1,{srv.port},none,,{alice.name},,,,,,,",
                         f"not-an-address,pw,imap,127.0.0.1,{srv.port},none,,{alice.name},,,,,,,",
                         f"{src.name},{src.password},imap,127.0.0.1,99999999,none,,someone@else.test,,,,,,,"])
        r = c.post("/batch", data={"csrf_token": csrf}, files={"csv": ("mine.csv", bad.encode(), "text/csv")},
                   headers={"Accept-Language": "de"})
        assert r.status_code == 422, r.text
        assert Translator("de")("batch_errors") in r.text
        lines = re.findall(r'data-line="(\d+)"', r.text)
        assert "3" in lines and "4" in lines and "2" not in lines, lines
        assert src.password not in r.text
        assert c.get("/api/imports").json()["imports"] == []  # nothing started
        r = c.post("/batch", data={"csrf_token": csrf}, files={"csv": ("mine.csv", b"\xff\xfe\x00bad", "text/csv")})
        assert r.status_code == 422 and Translator("en")("err_batch_encoding") in r.text
        good = "\n".join([header, f"{src.name},{src.password},imap,127.0.0.1,{srv.port},none,,{alice.name},,,,,,,"])
        r = c.post("/batch", data={"csrf_token": csrf}, files={"csv": ("mine.csv", good.encode(), "text/csv")},
                   follow_redirects=False)
        assert r.status_code == 303, r.text
        batch_page = c.get(r.headers["location"]).text
        job_id = re.search(r'data-import-id="([0-9a-f]+)"', batch_page).group(1)
        assert state_of(wait_page(c, job_id)) == "done"
        batch_page = c.get(r.headers["location"]).text
        assert state_of(batch_page) == "done" and src.name in batch_page
        # a Gmail row without a password waits for its owner's sign-in, and says so
        waiting = "\n".join([header, f"someone@gmail.com,,gmail,,,,,{alice.name},,,,,,,"])
        r = c.post("/batch", data={"csrf_token": csrf}, files={"csv": ("g.csv", waiting.encode(), "text/csv")},
                   headers={"Accept-Language": "fr"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        batch_page = c.get(r.headers["location"], headers={"Accept-Language": "fr"}).text
        assert state_of(batch_page) == "waiting_signin"
        assert Translator("fr")("state_waiting_signin") in batch_page
    for folder in ("INBOX", "Archive"):
        assert snapshot(alice, folder) == snapshot(src, folder)
