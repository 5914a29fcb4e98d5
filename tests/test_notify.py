"""Confirmation mails end to end: compose, send to a real aiosmtpd server, parse the received bytes."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from migrate.accounts import Secret
from migrate.errors import UsageError
from migrate.notify import (
    NotifyFailed,
    SmtpSettings,
    compose_batch_mail,
    compose_job_mail,
    recipients_for,
    send_mail,
)
from migrate.notify.i18n import LANGS, STRINGS
from migrate.report import ErrorInfo, Failure, FolderReport, JobReport

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

PASSWORD = "Tr0ub4dor&3-smtp"
SENDER = "mailmigrate <noreply@example.org>"

# --- sample reports ----------------------------------------------------------------------


def partial_report(folder_name: str = "INBOX") -> JobReport:
    r = JobReport(
        job_id="job-42", source="alice@imap.example.com:993", target="bob@mail.example.net:993",
        source_email="alice@example.com", target_email="bob@example.net",
        started_at=datetime(2024, 5, 3, 14, 2, 11, tzinfo=UTC), finished_at=datetime(2024, 5, 3, 15, 4, 0, tzinfo=UTC),
        duration_s=3709.0, status="partial", exit_code=1,
        folders=[
            FolderReport(source=folder_name, target=folder_name, copied=12345, skipped_duplicates=210, failed=2,
                         failures=[Failure(folder=folder_name, uid=4711, subject="Quartalszahlen Q1", size=52_400_000,
                                           reason="NO [LIMIT] Message too large"),
                                   Failure(folder=folder_name, uid=4790, reason="BAD <b>broken</b> header")]),
            FolderReport(source="INBOX.Gesendete Objekte", target="Sent", copied=1987, failed=1,
                         failures=[Failure(folder="INBOX.Gesendete Objekte", uid=88, reason="NO rejected")]),
            FolderReport(source="Archiv/2023", target="Archiv/2023", copied=4021, skipped_duplicates=3),
        ],
        rerun_command="mailmigrate import --job job-42 --resume",
    )
    r.compute_totals()
    return r


def ok_report(src: str = "carol@example.com", dst: str = "dave@example.net", copied: int = 10) -> JobReport:
    r = JobReport(job_id=f"job-{src}", source=f"{src}@imap", target=f"{dst}@imap", source_email=src,
                  target_email=dst, started_at=datetime(2024, 5, 3, 9, 0, tzinfo=UTC),
                  finished_at=datetime(2024, 5, 3, 9, 1, tzinfo=UTC), duration_s=60.0,
                  folders=[FolderReport(source="INBOX", target="INBOX", copied=copied, skipped_duplicates=1)])
    r.compute_totals()
    return r


# --- a real SMTP server ------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


class Auth:
    def __call__(self, server: object, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: object) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer"
              and auth_data.password == PASSWORD.encode())
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(**kwargs: object) -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)  # type: ignore[arg-type]
    ctl.start()
    try:
        yield sink, port
    finally:
        ctl.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    yield from _serve()


@pytest.fixture
def smtp_auth() -> Iterator[tuple[Sink, int]]:
    yield from _serve(authenticator=Auth(), auth_require_tls=False, auth_required=True)


def received(sink: Sink, i: int = -1) -> EmailMessage:
    msg = message_from_bytes(sink.envelopes[i].content, policy=default)  # type: ignore[arg-type]
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> tuple[str, str]:
    assert msg.get_content_type() == "multipart/alternative"
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


class Cells(HTMLParser):
    """Rows of table cells (text only) from the HTML part."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).split("\n")[0].strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_rows(html: str) -> dict[str, list[str]]:
    p = Cells()
    p.feed(html)
    return {r[0]: r[1:] for r in p.rows if r}


def text_row(text: str, first: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith(first + "  "))
    return re.split(r" {2,}", line[len(first):].strip())


# --- the job mail ------------------------------------------------------------------------


def test_job_mail_reaches_every_recipient_with_matching_counts(smtp_auth: tuple[Sink, int]) -> None:
    sink, port = smtp_auth
    report = partial_report()
    rcpts = recipients_for(report, ["Admin@Example.org", "alice@EXAMPLE.com", "", "not an address"])
    assert rcpts == ["alice@example.com", "bob@example.net", "Admin@Example.org"]
    msg = compose_job_mail(report, sender=SENDER, recipients=rcpts)
    send_mail(msg, SmtpSettings("127.0.0.1", port, "none", "mailer", Secret(PASSWORD)))

    env = sink.envelopes[0]
    assert env.rcpt_tos == rcpts
    assert env.mail_from == "noreply@example.org"
    got = received(sink)
    assert got["Subject"] == "Mailbox import finished with 3 failed messages: alice@example.com → bob@example.net"
    assert got["Auto-Submitted"] == "auto-generated"
    assert got["Message-ID"].endswith("@example.org>") and got["Date"]
    text, html = parts(got)
    rows = html_rows(html)
    expected = {f.source if f.target == f.source else f"{f.source} → {f.target}":
                [f"{f.copied:,}", f"{f.skipped_duplicates:,}", f"{f.failed:,}"] for f in report.folders}
    t = report.totals
    expected["Total"] = [f"{t.copied:,}", f"{t.skipped_duplicates:,}", f"{t.failed:,}"]
    for name, numbers in expected.items():
        assert text_row(text, name) == numbers, name
        assert rows[name] == numbers, name
    assert t.copied == 18353 and "18,353" in text  # sanity: thousands separator in use
    for x in report.failures():
        assert x.reason.replace("<", "&lt;").replace(">", "&gt;") in html and x.reason in text
    assert "mailmigrate import --job job-42 --resume" in text and "mailmigrate import --job job-42 --resume" in html
    assert "<script" not in html and "http" not in html.replace("https://", "")  # no remote content


@pytest.mark.parametrize("lang", LANGS)
def test_every_language_renders_in_that_language(smtp: tuple[Sink, int], lang: str) -> None:
    sink, port = smtp
    msg = compose_job_mail(partial_report(), lang=lang, sender=SENDER, recipients=["bob@example.net"])
    send_mail(msg, SmtpSettings("127.0.0.1", port, "none"))
    got = received(sink)
    text, html = parts(got)
    subject = got["Subject"]
    expected = {
        "en": ("Mailbox import finished with 3 failed messages", "18,353", "Already present"),
        "de": ("Postfach-Import abgeschlossen, 3 Nachrichten fehlgeschlagen", "18.353", "Bereits vorhanden"),
        "fr": ("Importation de la boîte aux lettres terminée avec 3 messages en échec", "18\u00a0353",
               "Déjà présents"),
        "it": ("Importazione della casella di posta terminata con 3 messaggi non riusciti", "18.353", "Già presenti"),
    }[lang]
    assert subject.startswith(expected[0]) and subject.endswith("alice@example.com → bob@example.net")
    assert expected[1] in text and expected[1] in html
    assert expected[2] in text and expected[2] in html
    assert got["Content-Language"] == lang
    if lang != "en":
        for english in ("Mailbox import", "Copied", "Already present", "Duration", "Folder", "Started",
                        "Finished", "Running the import", "Please do not reply", "could not be copied"):
            assert english not in text and english not in html and english not in subject, english
    for key in STRINGS["en"]:  # no raw keys or unfilled placeholders
        assert key not in text
    assert not re.search(r"\{[a-z_]+\}", text + html)
    accents = {"de": "werden übersprungen", "fr": "L’importation de votre boîte aux lettres",
               "it": "L’importazione della casella di posta è terminata", "en": "Your mailbox import"}[lang]
    assert accents in text and accents in html


def test_languages_have_the_same_keys_and_are_translated() -> None:
    same_ok = {"failure_uid", "total"}  # "UID {uid}" everywhere; "Total" is also French
    for lang in LANGS:
        assert STRINGS[lang].keys() == STRINGS["en"].keys(), lang
        if lang != "en":
            same = {k for k, v in STRINGS[lang].items() if v == STRINGS["en"][k]} - same_ok
            assert not same, (lang, same)


def test_unknown_language_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as exc:
        compose_job_mail(partial_report(), lang="es", sender=SENDER, recipients=["bob@example.net"])
    assert exc.value.hint and "en, de, fr, it" in exc.value.hint


def test_subjects_say_what_happened() -> None:
    ok = ok_report()
    assert compose_job_mail(ok, sender=SENDER, recipients=["x@example.com"])["Subject"] == \
        "Mailbox import complete: carol@example.com → dave@example.net"
    ok.status, ok.error = "interrupted", ErrorInfo(reference="connection-lost", message="server went away")
    m = compose_job_mail(ok, sender=SENDER, recipients=["x@example.com"])
    assert m["Subject"].startswith("Mailbox import interrupted:")
    assert "server went away" in parts(m)[0]
    one = partial_report()
    one.folders = one.folders[1:]
    one.compute_totals()
    assert "with 1 failed message:" in compose_job_mail(one, sender=SENDER, recipients=["x@example.com"])["Subject"]
    de = compose_job_mail(ok_report(), lang="de", sender=SENDER, recipients=["x@example.com"])
    assert "Ihr Postfach-Import ist abgeschlossen." in parts(de)[0]


def test_html_escapes_untrusted_folder_names() -> None:
    evil = 'Evil<script>alert("x")</script>'
    msg = compose_job_mail(partial_report(evil), sender=SENDER, recipients=["bob@example.net"])
    text, html = parts(message_from_bytes(msg.as_bytes(), policy=default))  # type: ignore[arg-type]
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert evil in text  # the plain part shows it as it is


# --- sending failures --------------------------------------------------------------------


def test_refused_login_raises_notify_failed_without_password(smtp_auth: tuple[Sink, int]) -> None:
    sink, port = smtp_auth
    wrong = Secret("wrong-" + PASSWORD)
    msg = compose_job_mail(ok_report(), sender=SENDER, recipients=["bob@example.net"])
    with pytest.raises(NotifyFailed) as exc:
        send_mail(msg, SmtpSettings("127.0.0.1", port, "none", "mailer", wrong))
    err = exc.value
    assert err.reference == "notify-failed" and err.hint
    for shown in (str(err), repr(err), err.one_line()):
        assert PASSWORD not in shown and "wrong-" not in shown
        assert "\n" not in shown
    assert "refused the login for mailer" in str(err)
    assert err.__cause__ is None and err.__suppress_context__
    assert not sink.envelopes


def test_server_down_raises_notify_failed() -> None:
    msg = compose_job_mail(ok_report(), sender=SENDER, recipients=["bob@example.net"])
    with pytest.raises(NotifyFailed) as exc:
        send_mail(msg, SmtpSettings("127.0.0.1", free_port(), "starttls", timeout=5))
    assert "connection refused" in str(exc.value) and exc.value.hint


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make a test certificate")
def test_starttls_verifies_the_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    for sink, port in _serve(tls_context=ctx, require_starttls=True):
        msg = compose_job_mail(ok_report(), sender=SENDER, recipients=["bob@example.net"])
        with pytest.raises(NotifyFailed) as exc:  # self-signed and not given: refused
            send_mail(msg, SmtpSettings("127.0.0.1", port, "starttls", timeout=5))
        assert "certificate" in str(exc.value)
        send_mail(msg, SmtpSettings("127.0.0.1", port, "starttls", ca_file=str(cert), timeout=5))
        assert [e.rcpt_tos for e in sink.envelopes] == [["bob@example.net"]]


# --- batch -------------------------------------------------------------------------------


def test_batch_mail_lists_every_row(smtp: tuple[Sink, int]) -> None:
    sink, port = smtp
    reports = [ok_report("a@example.com", "a@example.net", 1500), partial_report(),
               ok_report("c@example.com", "c@example.net", 7)]
    reports[2].status = "interrupted"
    reports[2].error = ErrorInfo(reference="login-failed", message="login refused for c@example.com",
                                 hint="check the password")
    send_mail(compose_batch_mail(reports, lang="en", sender=SENDER, recipients=["ops@example.org"]),
              SmtpSettings("127.0.0.1", port, "none"))
    got = received(sink)
    assert sink.envelopes[0].rcpt_tos == ["ops@example.org"]
    assert got["Subject"] == "Batch mailbox import finished: 3 mailboxes, 1 with failed messages, 1 interrupted"
    text, html = parts(got)
    rows = html_rows(html)
    for r, status in zip(reports, ["complete", "finished with errors", "interrupted"], strict=True):
        route = f"{r.source_email} → {r.target_email}"
        numbers = [f"{r.totals.copied:,}", f"{r.totals.skipped_duplicates:,}", f"{r.totals.failed:,}"]
        assert text_row(text, route) == [status, *numbers]
        assert rows[route] == [status, *numbers]
    assert text_row(text, "Total") == ["19,860", "215", "3"]
    assert "login refused for c@example.com" in text and "check the password" in html
    de = compose_batch_mail(reports[:1], lang="de", sender=SENDER, recipients=["ops@example.org"])
    assert de["Subject"] == "Sammel-Import der Postfächer abgeschlossen: 1 Postfach"
