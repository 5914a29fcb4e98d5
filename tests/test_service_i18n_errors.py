"""The problems of an uploaded batch CSV and of the one-off form, in the page's language.

Against real Dovecot (the service's mail system and the sign-in): a bad CSV uploaded on the
German, French and Italian batch page lists every problem translated, on its line, with no English
text left; the API answers the same file with the same English messages as before; the form's
refusals (its own checks and the service's) come back translated while the API keeps its English.
Plus the text tables (pure logic): every problem code has a text in every language with the same
placeholders, and every problem the reader reports carries a code whose text is its message."""

from __future__ import annotations

import html
import re
import string
import uuid

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("jinja2")

from starlette.testclient import TestClient  # noqa: E402

from migrate import providers  # noqa: E402
from migrate.csvbatch import reader  # noqa: E402
from migrate.csvbatch.reader import COLUMNS, CsvInvalid, FixedTarget, read_batch, read_batch_text  # noqa: E402
from migrate.service import batches, i18n  # noqa: E402
from migrate.service.i18n import LANGS, Translator  # noqa: E402
from tests.test_service_api import login, make_app, source_of, user  # noqa: E402
from tests.test_service_batches import csv_text, post_csv, row_of  # noqa: E402
from tests.test_service_pages import sign_in, source_fields  # noqa: E402

ENGLISH_PROBLEMS = {**reader.PROBLEMS, **batches.PROBLEMS}
# Words of the English templates that no translation keeps: one left on a page is an untranslated text.
ENGLISH_WORDS = ("is not an email address", "unknown provider", "not a host name", "is not a port",
                 "security mode", "empty password", "duplicate row", "same mailbox", "not one of your mailboxes",
                 "every import here", "separate addresses", "does not accept passwords", "needs a host",
                 "cannot detect provider", "fields, expected", "uploaded file", "the login here", "more than",
                 "missing columns", "unknown columns", "appear twice", "the file is empty", "no accounts",
                 "private network", "does not offer", "leave it empty", "empty required field")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# --------------------------------------------------------------------------- the texts (no server)


def test_every_problem_code_has_a_text_in_every_language_with_the_same_placeholders():
    assert set(i18n.problem_codes()) == set(ENGLISH_PROBLEMS)
    assert set(reader.PROBLEMS).isdisjoint(batches.PROBLEMS)
    for code, english in ENGLISH_PROBLEMS.items():
        texts = [i18n.problem_template(code, lang) for lang in LANGS]
        assert all(t and t.strip() for t in texts), code
        for lang, text in zip(LANGS, texts, strict=True):
            assert placeholders(text) == placeholders(english), (code, lang)
        if code not in i18n.PAGE_WORDED:  # the page says what the reader and the API say
            assert texts[0] == english, code
        assert len(set(texts)) == 4, f"{code}: a language repeats another's text"


def test_every_problem_the_reader_reports_has_a_code_whose_text_is_its_message(tmp_path, monkeypatch):
    monkeypatch.delenv("MM_NOT_SET", raising=False)
    (tmp_path / "empty.txt").write_text("\n")
    bad_row = {"source_email": "a@example.test", "source_password": "", "source_provider": "imap",
               "source_host": "", "source_port": "x", "source_security": "tls9",
               "target_email": "b@example.test", "target_password": "env:MM_NOT_SET", "target_provider": "imap",
               "target_host": "bad host!", "source_oauth_token": "plain", "target_ca_file": str(tmp_path)}
    texts = [csv_text(bad_row, extra_columns=("source_oauth_token", "target_ca_file")),
             csv_text({"source_email": "a@example.test", "source_password": f"file:{tmp_path / 'empty.txt'}",
                       "source_provider": "outlook", "target_email": "x@gmail.com", "target_password": "",
                       "notify": "a@x.test,b@x.test"}),
             "", "foo,bar\n", "source_emial,notify\n", ",".join(COLUMNS) + "\n", ",".join(COLUMNS) + ",notify\n",
             ",".join(COLUMNS) + "\n1,2\n"]
    seen = set()
    for text in texts:
        path = tmp_path / "batch.csv"
        path.write_text(text)
        with pytest.raises(CsvInvalid) as caught:
            read_batch(path)
        for p in caught.value.problems:
            assert p.code in reader.PROBLEMS, p
            assert reader.PROBLEMS[p.code].format(**p.params) == p.message, p
            seen.add(p.code)
    # the command line's own wording is unchanged
    assert {"env_unset", "file_empty", "token_not_ref", "ca_directory", "not_security", "not_port",
            "needs_host", "missing_columns", "unknown_columns", "empty_file", "too_few_fields",
            "not_address_commas", "no_rows", "duplicate_columns", "missing_header",
            "no_passwords_signin", "google_app_password"} <= seen, seen
    # an uploaded file: the target checks of the service come as coded problems, in their row
    fixed = FixedTarget("imap", "mail.example.test", 993, "ssl",
                        check=lambda email, pw: [batches._problem(0, "target_email", "not_your_mailbox",
                                                                  email=email)])
    with pytest.raises(CsvInvalid) as caught:
        read_batch_text(csv_text({"source_email": "a@example.test", "source_password": "pw",
                                  "source_provider": "imap", "source_host": "imap.example.test",
                                  "target_email": "b@example.test"}), untrusted=True, fixed_target=fixed)
    [p] = caught.value.problems
    assert (p.line, p.column, p.code, p.params) == (2, "target_email", "not_your_mailbox", {"email": "b@example.test"})


def test_a_problem_without_a_known_code_is_shown_in_english():
    odd = reader.CsvProblem(4, "source_host", "something only English says", "no_such_code", {})
    assert Translator("de").problem(odd) == "source_host: something only English says"
    plain = reader.CsvProblem(4, None, "said in English")
    assert Translator("fr").problem(plain) == "said in English"
    coded = reader.CsvProblem.of(7, "source_port", "not_port", value="'0'")
    assert Translator("it").problem(coded) == "source_port: '0' non è una porta (1–65535)"


# --------------------------------------------------------------------------- the batch page (real Dovecot)


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


def bad_rows(src, srv, alice, stranger) -> tuple[str, list[tuple[int, str | None, str, dict]]]:
    """A CSV with one problem a row, and what each line must say: (line, column, code, params)."""
    good = row_of(src, srv, alice.name)
    rows = [
        ({**good, "source_email": "not-an-address"}, "source_email", "not_address", {"value": "'not-an-address'"}),
        ({**good, "source_provider": "nosuch"}, "source_provider", "unknown_provider",
         {"value": "'nosuch'"}),
        ({**good, "source_host": "bad host!"}, "source_host", "not_host", {"value": "'bad host!'"}),
        ({**good, "source_port": "99999999"}, "source_port", "not_port", {"value": "'99999999'"}),
        ({**good, "source_security": "tls9"}, "source_security", "not_security", {"value": "'tls9'"}),
        ({**good, "source_password": ""}, "source_password", "empty_password", {"provider": "imap"}),
        (good, None, None, None),                                                              # 8: fine
        (good, None, "duplicate_row", {"first": "8"}),
        (row_of(src, srv, stranger), "target_email", "not_your_mailbox", {"email": stranger}),
        ({**good, "target_port": "1"}, "target_port", "not_fixed_target",
         {"value": "'1'", "where": f"127.0.0.1:{srv.port} (none)", "field": "port"}),
        ({**good, "source_email": "n@example.test", "notify": "a@x.test,b@x.test"}, "notify", "not_address_commas", {"value": "'a@x.test,b@x.test'"}),
        ({**good, "source_email": alice.name}, None, "same_mailbox", {}),
        ({**good, "target_password": "pw"}, "target_password", "password_from_session", {}),
        ({**good, "source_password": "env:HOME"}, "source_password", "uploaded_password_ref", {}),
        ({**good, "source_email": "x@unknown-domain.test", "source_provider": "", "source_host": ""},
         "source_provider", "no_provider", {"domain": "unknown-domain.test", "side": "source"}),
        ({**good, "target_username": "someone-else"}, "target_username", "login_is_address",
         {"value": "'someone-else'"}),
        ({**good, "source_host": ""}, "source_host", "needs_host", {"provider": "imap", "side": "source"}),
        ({**good, "source_provider": "outlook", "source_host": ""}, "source_password", "no_passwords",
         {"provider": "outlook", "side": "source"}),
    ]
    text = csv_text(*(r for r, *_ in rows)) + "only,three,cells\r\n"
    expected = [(line, col, code, params) for line, (_r, col, code, params) in enumerate(rows, start=2) if code]
    expected.append((len(rows) + 2, None, "too_few_fields", {"fields": "3", "expected": str(len(COLUMNS))}))
    return text, expected


def shown(page: str) -> list[tuple[int, str, str]]:
    """The batch page's problems: (line, code, text)."""
    cells = re.findall(r'data-line="(\d+)">\d+</td><td data-code="(\w*)">(.*?)</td>', page, re.S)
    return [(int(line), code, html.unescape(text)) for line, code, text in cells]


def wanted(lang: str, column: str | None, code: str, params: dict) -> str:
    template = i18n.problem_template(code, lang)
    assert template is not None
    if code == "unknown_provider":  # the list of known providers is the reader's
        params = {**params, "known": ", ".join(providers.names())}
    text = template.format(**params)
    return f"{column}: {text}" if column else text


def assert_translated(page: str, lang: str, expected: list[tuple[int, str | None, str, dict]]) -> None:
    got = shown(page)
    assert [(line, code) for line, code, _ in got] == [(line, code) for line, _, code, _ in expected], got
    for (line, text_code, text), (_, column, code, params) in zip(got, expected, strict=True):
        assert text == wanted(lang, column, code, params), (lang, line, text_code)
        assert text != wanted("en", column, code, params), (lang, line)
    section = page[page.index('id="batch-errors"'):page.index("</section>", page.index('id="batch-errors"'))]
    left = [w for w in ENGLISH_WORDS if w in html.unescape(section)]
    assert not left, (lang, left)


def upload(c: TestClient, csrf: str, text: str, lang: str):
    return c.post(f"/batch?lang={lang}", data={"csrf_token": csrf},
                  files={"csv": ("batch.csv", text.encode(), "text/csv")}, follow_redirects=False)


@pytest.mark.dovecot
def test_batch_page_shows_every_problem_in_its_language_and_the_api_in_english(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    stranger = f"x{uuid.uuid4().hex[:8]}@example.test"
    text, expected = bad_rows(src, srv, alice, stranger)
    good = row_of(src, srv, alice.name)
    # reader-clean rows the service refuses: a source on a private network, sign-ins it does not offer
    blank = {"source_password": "", "source_provider": "", "source_host": "", "source_port": "",
             "source_security": ""}
    service_text = csv_text(good, {**good, **blank, "source_email": "someone@gmail.com"},
                            {**good, **blank, "source_email": "someone@outlook.com"})
    service_expected = [(2, "source_host", "private_source", {"host": "127.0.0.1"}),
                        (3, None, "signin_not_offered", {"provider": "Gmail", "signin": "Google"}),
                        (4, None, "signin_not_offered_no_password", {"provider": "Outlook.com",
                                                                     "signin": "Microsoft"})]
    header_text = ",".join(c for c in COLUMNS if c != "source_email") + ",source_emial,notify\r\n"
    header_expected = [(1, None, "missing_columns", {"missing": "source_email", "required": ",".join(COLUMNS)}),
                       (1, None, "unknown_columns", {"unknown": "source_emial",
                                                     "known": ",".join(COLUMNS + reader.OPTIONAL_COLUMNS)}),
                       (1, None, "duplicate_columns", {"columns": "notify"})]
    many = csv_text(*({**good, "source_email": f"s{i}@example.test"} for i in range(26)))
    with TestClient(make_app(home, srv, jobs=0, allow_source_networks=())) as c:
        csrf = sign_in(c, alice)
        for lang in ("de", "fr", "it"):
            r = upload(c, csrf, text, lang)
            assert r.status_code == 422, r.text
            assert f'<html lang="{lang}">' in r.text
            assert_translated(r.text, lang, expected)
            r = upload(c, csrf, service_text, lang)
            assert r.status_code == 422, r.text
            assert_translated(r.text, lang, service_expected)
            r = upload(c, csrf, header_text, lang)
            assert r.status_code == 422, r.text
            assert_translated(r.text, lang, header_expected)
            for file_text, code, line, params in (("", "empty_file", 1, {"columns": ",".join(COLUMNS)}),
                                                  (",".join(COLUMNS) + "\r\n", "no_rows", 1, {})):
                r = upload(c, csrf, file_text, lang)
                assert r.status_code == 422, r.text
                assert_translated(r.text, lang, [(line, None, code, params)])
            r = upload(c, csrf, many, lang)
            assert r.status_code == 422, r.text
            assert (27, "too_many_rows", wanted(lang, None, "too_many_rows", {"max_rows": 25, "rows": 26})) \
                in shown(r.text)
        # a few translations as a person reads them
        r = upload(c, csrf, text, "de")
        assert "source_email: 'not-an-address' ist keine E-Mail-Adresse" in html.unescape(r.text)
        assert "doppelte Zeile: gleiche Quelle und gleiches Ziel wie Zeile 8" in html.unescape(r.text)
        r = upload(c, csrf, text, "fr")
        assert "source_port: '99999999' n'est pas un port (1 à 65535)" in html.unescape(r.text)
        r = upload(c, csrf, text, "it")
        assert "source_provider: gestore sconosciuto 'nosuch'" in html.unescape(r.text)
        assert c.get("/api/imports").json()["imports"] == []  # nothing started

        # the API: the same files answer the English messages, as before (no code in them)
        csrf_api = login(c, alice)
        for file_text, want in ((text, expected), (service_text, service_expected),
                                (header_text, header_expected)):
            r = post_csv(c, file_text, csrf=csrf_api)
            assert r.status_code == 422, r.text
            errors = r.json()["errors"]
            assert all(set(e) == {"line", "message"} for e in errors), errors
            api_english = [wanted("en", col, code, params) for _, col, code, params in want]
            for e, (line, col, code, params), page_english in zip(errors, want, api_english, strict=True):
                assert e["line"] == line
                if code not in i18n.PAGE_WORDED:
                    assert e["message"] == page_english, e
                else:  # the API's own wording
                    english = ENGLISH_PROBLEMS[code].format(**params)
                    assert e["message"] == (f"{col}: {english}" if col else english), e
        errors = post_csv(c, text, csrf=csrf_api).json()["errors"]
        assert errors[0] == {"line": 2, "message": "source_email: 'not-an-address' is not an email address"}
        assert {"line": 10, "message": f"target_email: {stranger} is not one of your mailboxes: add it to your "
                                       "sign-in first (POST /api/mailboxes), or leave this row out"} in errors
        assert {"line": 9, "message": "duplicate row: same source and target as line 8"} in errors


# --------------------------------------------------------------------------- the one-off form (real Dovecot)


@pytest.mark.dovecot
def test_form_refusals_are_shown_in_the_page_language_and_the_api_keeps_english(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    secret = "pw-" + uuid.uuid4().hex
    with TestClient(make_app(home, srv, jobs=0)) as c:
        csrf = sign_in(c, alice)
        # what the service judges: an unknown provider, a domain without known server, a password
        # where the provider only takes its sign-in
        cases = [
            ({**source_fields(src, srv), "source_provider": "nosuch", "source_password": secret},
             ("err_provider_unknown", {"provider": "nosuch"}), "unknown provider 'nosuch'"),
            ({"source_email": "old@unknown-domain.test", "source_password": secret},
             ("err_no_host", {"domain": "unknown-domain.test"}), "no IMAP server known for 'unknown-domain.test'"),
            ({"source_email": "old@outlook.com", "source_password": secret},
             ("err_password_not_accepted", {"provider": "Outlook.com / Hotmail / Live / MSN"}),
             "accepts no password over IMAP"),
        ]
        # what the form checks itself
        own = [({"source_email": "", "source_password": secret}, ("err_old_email", {})),
               ({"source_email": "not-an-address", "source_password": secret},
                ("err_not_email", {"value": "not-an-address"})),
               ({**source_fields(src, srv), "source_port": "70000"}, ("err_port", {})),
               ({"source_email": src.name}, ("err_old_password", {"email": src.name})),
               ({**source_fields(src, srv), "notify": "nope"}, ("err_notify", {"value": "nope"}))]
        for lang in ("de", "fr", "it"):
            t, en = Translator(lang), Translator("en")
            for fields, (key, values), _api in cases + [(f, k, None) for f, k in own]:
                r = c.post(f"/imports?lang={lang}", data={"csrf_token": csrf, "target": alice.name, **fields},
                           follow_redirects=False)
                assert r.status_code == 422, (lang, key, r.text)
                page = html.unescape(r.text)
                assert t(key, **values) in page, (lang, key)
                assert en(key, **values) not in page, (lang, key)
                assert secret not in r.text
        # the API answers the same sources in English, as before
        api_csrf = login(c, alice)
        for fields, _text, api_message in cases:
            body = {"source": {"email": fields["source_email"], "password": secret,
                               **{k: fields[f"source_{k}"] for k in ("provider", "host", "security")
                                  if fields.get(f"source_{k}")}},
                    "target": {"email": alice.name}}
            if fields.get("source_port"):
                body["source"]["port"] = int(fields["source_port"])
            r = c.post("/api/imports", json=body, headers={"X-CSRF-Token": api_csrf})
            assert r.status_code == 422, r.text
            assert api_message in r.json()["error"] and secret not in r.text
        r = c.post("/api/imports", json={"source": {**source_of(src, srv), "port": 70000},
                                         "target": {"email": alice.name}}, headers={"X-CSRF-Token": api_csrf})
        assert r.json()["error"] == "source.port must be a port number (1-65535)"
        assert c.get("/api/imports").json()["imports"] == []
