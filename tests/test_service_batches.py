"""``POST /api/batches`` / ``GET /api/batches/{id}`` of ``mailmigrate serve`` against real
Dovecot: a person's batch runs every row into their mailboxes, an operator's with the targets'
passwords; every problem of a bad file is listed with its line and nothing starts; Google and
Microsoft rows without a password wait for a sign-in; batches are private; no password from the
CSV ends up in the database, the logs or an answer. Plus the batch state rules (pure logic)."""

from __future__ import annotations

import csv
import io
import json

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from migrate.csvbatch.reader import COLUMNS, CsvInvalid, FixedTarget, read_batch_text  # noqa: E402
from migrate.service.batches import batch_state  # noqa: E402
from tests.test_service_api import (  # noqa: E402
    ADMIN,
    assert_same,
    login,
    make_app,
    no_secret_anywhere,
    seed,
    user,
    wait_for,
)

OP = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(path))
    monkeypatch.delenv("MAILMIGRATE_SECRET_KEY", raising=False)
    return path


@pytest.fixture
def srv(dovecot):
    return dovecot("slash")


def csv_text(*rows: dict, extra_columns: tuple[str, ...] = ()) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=[*COLUMNS, *extra_columns], lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return out.getvalue()


def row_of(src, srv, target, **cells) -> dict:
    """A row from a test user on the plain port into ``target`` (an address)."""
    return {"source_email": src.name, "source_password": src.password, "source_provider": "imap",
            "source_host": "127.0.0.1", "source_port": srv.port, "source_security": "none",
            "target_email": target, **cells}


def post_csv(c: TestClient, text: str | bytes, *, csrf: str | None = None, headers: dict | None = None,
             content_type: str = "text/csv; charset=utf-8"):
    h = {"Content-Type": content_type, **({"X-CSRF-Token": csrf} if csrf else {}), **(headers or {})}
    return c.post("/api/batches", content=text.encode() if isinstance(text, str) else text, headers=h)


@pytest.mark.dovecot
def test_a_persons_batch_runs_every_row_into_their_mailboxes(home, srv, new_user, caplog):
    caplog.set_level("DEBUG")
    one, two, alice, bob, carol = (user(new_user, srv, t) for t in ("s", "t", "a", "b", "c"))
    seed(one, 0)
    seed(two, 5000)
    answers: list[str] = []
    with TestClient(make_app(home, srv)) as c:
        csrf = login(c, alice)
        c.post("/api/mailboxes", json={"email": bob.name, "password": bob.password}, headers={"X-CSRF-Token": csrf})
        text = csv_text(row_of(one, srv, alice.name),
                        # the target columns may repeat the service's own mail system
                        row_of(two, srv, bob.name.upper(), target_provider="imap", target_host="127.0.0.1",
                               target_port=srv.port, target_security="none", notify="boss@example.test"))
        r = post_csv(c, text, csrf=csrf)
        answers.append(r.text)
        assert r.status_code == 202, r.text
        created = r.json()
        batch_id = created["id"]
        assert created["state"] in ("queued", "running")
        assert [v["batch_id"] for v in created["imports"]] == [batch_id, batch_id]
        assert [v["target"]["email"] for v in created["imports"]] == [alice.name, bob.name]
        for v in created["imports"]:
            assert wait_for(c, v["id"])["state"] == "done"
        batch = c.get(f"/api/batches/{batch_id}").json()
        answers.append(json.dumps(batch))
        assert batch["id"] == batch_id and batch["state"] == "done" and batch["created_at"]
        assert [(r["line"], r["import_id"], r["state"]) for r in batch["rows"]] == \
            [(2, created["imports"][0]["id"], "done"), (3, created["imports"][1]["id"], "done")]
        assert [r["source"]["email"] for r in batch["rows"]] == [one.name, two.name]
        assert [r["totals"]["copied"] for r in batch["rows"]] == [7, 7]
        assert batch["totals"]["copied"] == 14 and batch["totals"]["failed"] == 0
        assert batch["totals"]["bytes"] == sum(r["totals"]["bytes"] for r in batch["rows"]) > 0
        assert_same(one, alice)
        assert_same(two, bob)
        # bob signed in himself sees the import into his mailbox, not alice's batch; carol neither
        b, k = TestClient(c.app, client=("10.0.0.2", 1)), TestClient(c.app, client=("10.0.0.3", 1))
        login(b, bob)
        assert b.get(f"/api/imports/{created['imports'][1]['id']}").status_code == 200
        assert b.get(f"/api/batches/{batch_id}").status_code == 404
        login(k, carol)
        assert k.get(f"/api/batches/{batch_id}").status_code == 404
        for v in created["imports"]:
            assert k.get(f"/api/imports/{v['id']}").status_code == 404
            assert k.get(f"/api/imports/{v['id']}/events").status_code == 404
        assert c.get("/api/batches/nosuchbatch").status_code == 404
        # an operator sees every batch
        assert c.get(f"/api/batches/{batch_id}", headers=OP).json()["rows"] == batch["rows"]
    no_secret_anywhere(home, answers, caplog, one.password, two.password, alice.password, bob.password)


@pytest.mark.dovecot
def test_every_problem_is_listed_with_its_line_and_nothing_starts(home, srv, new_user, tmp_path, monkeypatch):
    src, alice, carol = user(new_user, srv, "s"), user(new_user, srv, "a"), user(new_user, srv, "c")
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("server-side secret\n")
    monkeypatch.setenv("MM_SERVER_SECRET", "server-side secret")
    good = row_of(src, srv, alice.name)
    text = csv_text(
        {**good, "source_email": "not-an-address"},                                   # 2
        row_of(src, srv, carol.name),                                                  # 3 not alice's
        {**good, "target_password": alice.password},                                   # 4 from the session
        {**good, "source_password": "env:MM_SERVER_SECRET"},                           # 5 the server's env
        {**good, "source_password": f"file:{secret_file}"},                           # 6 the server's files
        {**good, "source_password": f"file:{tmp_path / 'missing.txt'}"},               # 7 (same answer)
        {**good, "target_host": "other.example.com"},                                  # 8 another system
        {**good, "source_provider": "nosuch"},                                         # 9
        {**good, "source_password": ""},                                               # 10 no password
        {**good, "source_ca_file": str(secret_file)},                                  # 11 a server path
        {**good, "source_oauth_token": "env:MM_SERVER_SECRET"},                        # 12
        {**good, "source_email": alice.name, "source_port": srv.port},                 # 13 same mailbox
        good,                                                                          # 14 fine
        extra_columns=("source_ca_file", "source_oauth_token"))
    with TestClient(make_app(home, srv)) as c:
        assert post_csv(c, text).status_code == 401  # not signed in
        csrf = login(c, alice)
        assert post_csv(c, text).status_code == 403  # no CSRF token
        r = post_csv(c, text, csrf=csrf)
        assert r.status_code == 422, r.text
        errors = r.json()["errors"]
        by_line: dict[int, list[str]] = {}
        for e in errors:
            by_line.setdefault(e["line"], []).append(e["message"])
        assert sorted(by_line) == list(range(2, 14)), errors
        assert "source_email" in by_line[2][0] and "not an email address" in by_line[2][0]
        assert by_line[3] == [f"target_email: {carol.name} is not one of your mailboxes: add it to your sign-in "
                              "first (POST /api/mailboxes), or leave this row out"]
        assert by_line[4] == ["target_password: leave it empty: the service uses the password you signed in with"]
        refused = ("source_password: env:/file: references are not accepted in an uploaded file: put the "
                   "password itself in the cell")
        assert by_line[5] == by_line[6] == by_line[7] == [refused]  # nothing read, no existence told
        assert "target_host" in by_line[8][0] and f"127.0.0.1:{srv.port}" in by_line[8][0]
        assert "unknown provider" in by_line[9][0]
        assert "source_password: empty password" in by_line[10][0]
        assert by_line[11][0].startswith("source_ca_file: not accepted in an uploaded file")
        assert by_line[12][0].startswith("source_oauth_token: not accepted in an uploaded file")
        assert by_line[13] == ["source and target are the same mailbox"]
        assert "server-side secret" not in r.text and alice.password not in r.text
        assert c.get("/api/imports").json() == {"imports": []}  # nothing queued
        # more than 25 rows: said so
        many = csv_text(*({**good, "source_email": f"s{i}@example.test"} for i in range(26)))
        r = post_csv(c, many, csrf=csrf)
        assert r.status_code == 422
        assert [e for e in r.json()["errors"] if "more than 25 rows" in e["message"]][0]["line"] == 27
        # not CSV, empty, not UTF-8, bad language
        r = c.post("/api/batches", json={"rows": []}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 415 and "text/csv" in r.json()["error"]
        assert post_csv(c, text, csrf=csrf, content_type="text/plain").status_code == 415
        r = post_csv(c, "", csrf=csrf)
        assert r.status_code == 422 and r.json()["errors"][0]["line"] == 1
        assert "empty" in r.json()["errors"][0]["message"]
        r = post_csv(c, csv_text(good).encode() + b"\xff\xfe,\r\n", csrf=csrf)
        assert r.status_code == 422 and r.json()["errors"] == [{"line": 3, "message": "not UTF-8: save the file "
                                                                                     "as UTF-8 CSV"}]
        r = c.post("/api/batches?lang=xx", content=csv_text(good), headers={"Content-Type": "text/csv",
                                                                            "X-CSRF-Token": csrf})
        assert r.status_code == 422 and "lang" in r.json()["error"]
        r = post_csv(c, b"x" * 1_000_001, csrf=csrf)
        assert r.status_code == 413
        assert c.get("/api/imports").json() == {"imports": []}
        # the same file, fixed: everything starts
        r = post_csv(c, csv_text(good), csrf=csrf)
        assert r.status_code == 202 and len(r.json()["imports"]) == 1


@pytest.mark.dovecot
def test_an_operators_batch_gives_the_target_passwords(home, srv, new_user, caplog):
    caplog.set_level("DEBUG")
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    with TestClient(make_app(home, srv)) as c:
        r = post_csv(c, csv_text(row_of(src, srv, alice.name)), headers=OP)
        assert r.status_code == 422
        assert r.json()["errors"] == [{"line": 2, "message": "target_password: required: give the password of each "
                                                             "target mailbox"}]
        r = post_csv(c, csv_text(row_of(src, srv, alice.name, target_password=alice.password)), headers=OP)
        assert r.status_code == 202, r.text
        (job,) = r.json()["imports"]
        assert wait_for(c, job["id"], headers=OP)["state"] == "done"
        batch = c.get(f"/api/batches/{r.json()['id']}", headers=OP).json()
        assert batch["state"] == "done" and batch["totals"]["copied"] == 7
        # alice sees the import into her mailbox, not the operator's batch
        person = TestClient(c.app, client=("10.0.0.4", 1))
        login(person, alice)
        assert person.get(f"/api/imports/{job['id']}").json()["batch_id"] == r.json()["id"]
        assert person.get(f"/api/batches/{r.json()['id']}").status_code == 404
        answers = [r.text, json.dumps(batch)]
    assert_same(src, alice)
    no_secret_anywhere(home, answers, caplog, src.password, alice.password)


class SignInRecorder:
    """Stands in for the sign-in links object (``Service.signin``): records whom to invite."""

    def __init__(self) -> None:
        self.invited: list[str] = []

    def invite(self, job_id: str) -> None:
        self.invited.append(job_id)

    def enabled(self, kind: str) -> bool:  # both sign-ins set up: rows without password may wait
        return kind in ("google", "microsoft")


@pytest.mark.dovecot
def test_google_and_microsoft_rows_without_password_wait_for_a_sign_in(home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    blank = {"source_password": "", "source_provider": "", "source_host": "", "source_port": "",
             "source_security": ""}
    text = csv_text({**row_of(src, srv, alice.name), **blank, "source_email": "someone@gmail.com"},
                    row_of(src, srv, alice.name),
                    {**row_of(src, srv, alice.name), **blank, "source_email": "someone@outlook.com"})
    app = make_app(home, srv)
    with TestClient(app) as c:
        signin = app.state.service.signin = SignInRecorder()
        csrf = login(c, alice)
        r = post_csv(c, text, csrf=csrf)
        assert r.status_code == 202, r.text
        gmail, plain, outlook = r.json()["imports"]
        assert (gmail["state"], outlook["state"]) == ("waiting_signin", "waiting_signin")
        assert gmail["progress"]["phase"] == "queued" and gmail["source"]["provider"] == "gmail"
        assert outlook["source"]["provider"] == "outlook"
        assert signin.invited == [gmail["id"], outlook["id"]]
        assert wait_for(c, plain["id"])["state"] == "done"
        assert c.get(f"/api/imports/{gmail['id']}").json()["state"] == "waiting_signin"
        batch = c.get(f"/api/batches/{r.json()['id']}").json()
        assert batch["state"] == "waiting_signin"
        assert [row["state"] for row in batch["rows"]] == ["waiting_signin", "done", "waiting_signin"]
        # no source secret is kept for them, and a waiting import can be cancelled
        row = app.state.service.db.job(gmail["id"])
        assert row["source_secret"] is None and row["target_secret"] is not None
        r = c.post(f"/api/imports/{gmail['id']}/cancel", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202 and r.json()["state"] == "cancelled"
        assert app.state.service.db.job(gmail["id"])["target_secret"] is None
        assert c.get(f"/api/batches/{batch['id']}").json()["state"] == "waiting_signin"


# --------------------------------------------------------------------------- pure logic

@pytest.mark.parametrize(("states", "want"), [
    (["queued", "queued"], "queued"),
    (["running", "queued"], "running"),
    (["done", "queued"], "running"),
    (["queued", "waiting_signin"], "queued"),
    (["done", "waiting_signin"], "waiting_signin"),
    (["done", "done"], "done"),
    (["failed", "failed"], "failed"),
    (["cancelled"], "cancelled"),
    (["done", "failed"], "partial"),
    (["done", "partial"], "partial"),
    (["done", "cancelled"], "partial"),
])
def test_batch_state_from_its_rows(states, want):
    assert batch_state(states) == want


def test_uploaded_text_never_reads_the_servers_files_or_environment(tmp_path, monkeypatch):
    """The same file read as the operator's (``read_batch``'s rules: references resolve) and as an
    upload (refused, whatever the reference names)."""
    (tmp_path / "pw").write_text("pw\n")
    monkeypatch.setenv("MM_SOME_PW", "pw")
    row = {"source_email": "a@example.net", "source_provider": "imap", "source_host": "imap.example.net",
           "target_email": "a@example.com", "target_password": "x", "target_host": "mail.example.com"}
    for ref in (f"file:{tmp_path / 'pw'}", "env:MM_SOME_PW"):
        text = csv_text({**row, "source_password": ref})
        (ok,) = read_batch_text(text)
        assert ok.source.password_ref == ref
        with pytest.raises(CsvInvalid) as e:
            read_batch_text(text, untrusted=True)
        assert [p.column for p in e.value.problems] == ["source_password"]
    fixed = FixedTarget(provider="imap", host="mail.example.com", port=993, security="ssl",
                        check=lambda email, pw: [] if pw else [("password", "needed")])
    (r,) = read_batch_text(csv_text({**row, "source_password": "p", "target_host": ""}), untrusted=True,
                           fixed_target=fixed)
    assert (r.target.host, r.target.port, r.target.security, r.target.password_ref) == \
        ("mail.example.com", 993, "ssl", "x")
    with pytest.raises(CsvInvalid) as e:
        read_batch_text(csv_text({**row, "source_password": "p", "target_password": "", "target_port": "143",
                                  "target_username": "other"}), untrusted=True, fixed_target=fixed)
    assert sorted(p.column for p in e.value.problems) == ["target_password", "target_port", "target_username"]


def test_read_batch_still_reads_a_file(tmp_path):
    from migrate.csvbatch import read_batch

    path = tmp_path / "b.csv"
    path.write_text(csv_text({"source_email": "a@example.net", "source_password": "p", "source_provider": "imap",
                              "source_host": "imap.example.net", "target_email": "a@example.com",
                              "target_password": "x", "target_host": "mail.example.com"}))
    (row,) = read_batch(path)
    assert (row.line, row.source.host, row.target.host) == (2, "imap.example.net", "mail.example.com")
