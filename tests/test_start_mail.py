"""The start mail of a long job (issue 15): "your import has started: about 4 h: ...".

Against a real SMTP server (tests/support/smtp.py) and real Dovecot: a job whose fit check says a
daily budget makes it long mails its recipients once as it starts, in the job's language, and
never again when it goes on the next day (the journal records it); the confirmation mail still
comes once, at the very end; a short job sends none; the threshold can be raised; the service's
jobs do the same through the service's SMTP server. The budgets' clock is moved by the test."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from migrate.api import ImportRequest, run_import
from migrate.csvbatch import read_batch, run_batch
from migrate.engine import budget as budget_module
from migrate.engine.budget import OVERRIDE_ENV, run_with_waits
from migrate.engine.eta import Window
from migrate.errors import UsageError
from migrate.journal import Journal
from migrate.notify.options import NotifyOptions
from migrate.notify.start import (
    AFTER_ENV,
    Estimate,
    compose_start_mail,
    duration_text,
    from_fit,
    from_progress,
    is_long,
    threshold_s,
)
from migrate.report import FitReport
from tests.support.mailbox import msg, side, snapshot
from tests.support.smtp import SmtpServer
from tests.test_batch import csv_row, write_csv

BODY = "x" * 2900


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def wait_until(self, moment: datetime) -> None:
        self.now = max(self.now, moment + timedelta(seconds=1))


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(datetime(2024, 5, 1, 20, 0, tzinfo=UTC))
    monkeypatch.setattr(budget_module, "utc_now", c)
    return c


def seed(user, n: int = 8) -> list[bytes]:
    stored = []
    with user.client() as c:
        for i in range(n):
            body = msg(i, body=BODY)
            c.append("INBOX", body)
            stored.append(body)
    return stored


def four_a_day(monkeypatch, stored: list[bytes]) -> None:
    per_day = 4 * max(len(b) for b in stored) + 300
    monkeypatch.setenv(OVERRIDE_ENV, f"imap:download_mb_per_day={per_day / 1e6}")


def request(src, dst, tmp_path, smtp: SmtpServer, lang: str = "en") -> ImportRequest:
    notify = NotifyOptions(lang=lang, extra=["boss@example.test"], smtp_host="127.0.0.1", smtp_port=smtp.port,
                           smtp_security="none", sender="imports@example.test")
    return ImportRequest(source=side("source", src), target=side("target", dst), journal=tmp_path / "j.sqlite",
                         progress=False, retry_base=0.05, notify=notify)


def start_mails(smtp: SmtpServer) -> list:
    return [m for m in smtp.mails if m.message["X-Mailmigrate-Mail"] == "start"]


def start_rows(journal_path) -> list:
    j = Journal(journal_path)
    try:
        return [r for r in j.notifications(None, include_sent=True) if r.kind == "start"]
    finally:
        j.close()


# --- pure logic ------------------------------------------------------------------------------------


def test_threshold_default_override_and_bad_value():
    assert threshold_s({}) == 3600.0
    assert threshold_s({AFTER_ENV: "0"}) == 0.0 and threshold_s({AFTER_ENV: " 90 "}) == 90.0
    with pytest.raises(UsageError) as bad:
        threshold_s({AFTER_ENV: "soon"})
    assert bad.value.message == f"{AFTER_ENV} must be a number of seconds (0 or more), not 'soon'"


def test_estimates_from_the_fit_check_and_the_first_progress():
    fit = FitReport(outcome="fits", text="fits", to_copy_bytes=6_000)
    window = Window(left_now=2_000, per_day=2_000, reset_in_s=3 * 3600, says="Gmail allows 2.0 KB a day")
    est = from_fit(fit, [window])
    assert est is not None and est.seconds == 3 * 3600 + 86_400  # today's 2 KB, tomorrow's, the rest the day after
    assert est.text == "about 1 day 3 h: Gmail allows 2.0 KB a day; 6.0 KB to go" and is_long(est, 3600)
    assert from_fit(fit, []) is None  # no budget: the fit check cannot tell
    assert from_fit(fit, [Window(left_now=10_000, per_day=10_000, reset_in_s=60, says="x")]) is None
    assert from_progress({"eta_s": None}) is None
    assert from_progress({"eta_s": 7200, "eta_text": None}) == Estimate(7200.0, "about 2 h")
    assert not is_long(Estimate(600.0, "about 10 min"), 3600) and not is_long(None, 0)


@pytest.mark.parametrize(("lang", "subject", "words"), [
    ("en", "Your mailbox import has started: about 2 days", "It will take about 2 days."),
    ("de", "Ihr Postfach-Import hat begonnen: etwa 2 Tage", "Er dauert etwa 2 Tage."),
    ("fr", "Votre importation de boîte aux lettres a commencé : environ 2 jours", "Elle prendra environ 2 jours."),
    ("it", "L'importazione della casella di posta è iniziata: circa 2 giorni", "Durerà circa 2 giorni."),
])
def test_start_mail_in_each_language_reaches_a_real_smtp_server(lang, subject, words):
    from migrate.notify.send import SmtpSettings, send_mail

    est = Estimate(2 * 86_400, "about 2 days: Gmail allows 2.5 GB a day; 6.1 GB to go")
    mail = compose_start_mail(job_id="j1", source="old@example.test", target="new@example.test", estimate=est,
                              lang=lang, sender="imports@example.test", recipients=["new@example.test"])
    with SmtpServer() as smtp:
        send_mail(mail, SmtpSettings(host="127.0.0.1", port=smtp.port, security="none"))
        (got,) = smtp.mails
    assert got.rcpts == ["new@example.test"] and got.message["Subject"] == subject
    body = got.message.get_body(("plain",)).get_content()
    assert words in body and est.text in body and "old@example.test" in body
    assert got.message["Content-Language"] == lang
    assert duration_text(1800, lang) != duration_text(5 * 3600, lang)


# --- real jobs -------------------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_a_budget_long_job_mails_once_as_it_starts(dovecot, new_user, tmp_path, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    stored = seed(src)
    four_a_day(monkeypatch, stored)
    with SmtpServer() as smtp:
        req = request(src, dst, tmp_path, smtp, lang="de")
        runs = []

        def one_run():
            report = run_import(req)
            runs.append((report.status, len(start_mails(smtp)), len(smtp.mails)))
            return report

        report = run_with_waits(one_run, wait_until=clock.wait_until)
        assert report.status == "ok", report.error
        # first run: the start mail only (a waiting job is not done); the next day: the confirmation
        assert runs == [("waiting", 1, 1), ("ok", 1, 2)]
        (start,) = start_mails(smtp)
        assert start.message["Subject"] == "Ihr Postfach-Import hat begonnen: etwa 4 Std."
        assert set(start.rcpts) == {f"{src.name}@example.test", f"{dst.name}@example.test", "boss@example.test"}
        body = start.message.get_body(("plain",)).get_content()
        assert "Er dauert etwa 4 Std." in body and "Generic IMAP server allows " in body and " to go" in body
        assert len(start_rows(tmp_path / "j.sqlite")) == 1  # recorded: a later run never sends another

        clock.now += timedelta(days=1)
        seed_more = msg(99, body=BODY)
        with src.client() as c:
            c.append("INBOX", seed_more)
        run_import(req)  # a third run: still the one start mail
        assert len(start_mails(smtp)) == 1
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


@pytest.mark.dovecot
def test_a_short_job_or_a_raised_threshold_sends_no_start_mail(dovecot, new_user, tmp_path, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    stored = seed(src)
    with SmtpServer() as smtp:
        report = run_import(request(src, dst, tmp_path, smtp))  # no budget: done in a moment
        assert report.status == "ok" and len(smtp.mails) == 1 and start_mails(smtp) == []
        assert start_rows(tmp_path / "j.sqlite") == []

        other = new_user(srv)
        four_a_day(monkeypatch, stored)
        monkeypatch.setenv(AFTER_ENV, str(5 * 3600))  # the budget makes it about 4 h: not long enough
        report = run_import(request(src, other, tmp_path / "x", smtp))
        assert report.status == "waiting" and start_mails(smtp) == []


@pytest.mark.dovecot
def test_a_long_batch_row_mails_once_as_it_starts(dovecot, new_user, tmp_path, monkeypatch, clock):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    stored = seed(src)
    four_a_day(monkeypatch, stored)
    rows = read_batch(write_csv(tmp_path / "batch.csv", [csv_row(src, dst)]))
    with SmtpServer() as smtp:
        notify = NotifyOptions(lang="it", smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                               sender="imports@example.test")
        report = run_batch(rows, parallel=1, journal_dir=tmp_path / "journals", retry_base=0.05, notify=notify,
                           wait_until=clock.wait_until)
        assert report.status == "ok", [(r.line, r.status, r.error) for r in report.rows]
        (start,) = start_mails(smtp)  # one, although the row ran on two days
        assert start.message["Subject"].startswith("L'importazione della casella di posta è iniziata")
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


@pytest.mark.dovecot
def test_the_service_sends_the_start_mail_once_and_the_confirmation_at_the_end(
        dovecot, new_user, tmp_path, monkeypatch, clock):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from migrate.service import ServiceConfig, create_app

    monkeypatch.setenv("MAILMIGRATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MAILMIGRATE_SECRET_KEY", raising=False)
    srv = dovecot("slash")
    src = new_user(srv)
    dst = new_user(srv, name=f"d{uuid.uuid4().hex[:8]}@example.test")
    stored = seed(src)
    four_a_day(monkeypatch, stored)
    admin = uuid.uuid4().hex
    bearer = {"Authorization": f"Bearer {admin}"}
    with SmtpServer() as smtp:
        app = create_app(ServiceConfig(target_host="127.0.0.1", target_port=srv.port, target_security="none",
                                       home=tmp_path / "home", jobs=1, admin_token=admin, retry_base=0.05,
                                       smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                                       mail_from="imports@example.test", allow_source_networks=("127.0.0.0/8",)))
        with TestClient(app) as c:
            r = c.post("/api/imports", headers=bearer, json={
                "source": {"email": f"{src.name}@example.test", "username": src.name, "password": src.password,
                           "provider": "imap", "host": "127.0.0.1", "port": srv.port, "security": "none"},
                "target": {"email": dst.name, "password": dst.password}, "lang": "fr"})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]

            def state() -> str:
                return c.get(f"/api/imports/{job_id}", headers=bearer).json()["state"]

            deadline = time.monotonic() + 90
            while state() not in ("waiting", "done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert state() == "waiting"
            (start,) = start_mails(smtp)
            assert len(smtp.mails) == 1  # no confirmation mail while it waits
            assert start.message["Subject"].startswith("Votre importation de boîte aux lettres a commencé")
            assert src.password not in start.data.decode() and dst.password not in start.data.decode()

            clock.now += timedelta(days=1)
            app.state.service.runner.wake()
            deadline = time.monotonic() + 90
            while state() not in ("done", "partial", "failed", "cancelled"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            view = c.get(f"/api/imports/{job_id}", headers=bearer).json()
            assert view["state"] == "done" and view["notification"].startswith("confirmation mail: sent to ")
            assert len(start_mails(smtp)) == 1 and len(smtp.mails) == 2
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
