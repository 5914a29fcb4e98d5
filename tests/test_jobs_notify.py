"""Confirmation mail after a real import, re-sending it, and jobs in the background."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.support.mailbox import append, cli, cli_args, count, msg, snapshot
from tests.support.proxy import FaultProxy
from tests.support.smtp import SmtpServer, free_port

pytestmark = pytest.mark.dovecot


def _smtp_args(port: int, *, user: str | None = None, pw_env: str | None = None) -> list[str]:
    args = ["--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--smtp-security", "none"]
    if user:
        args += ["--smtp-user", user, "--smtp-password", f"env:{pw_env}"]
    return args


def test_confirmation_mail_matches_report(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(4):
        append(src, "INBOX", msg(i))
    append(src, "Sent", msg(10))
    os.environ["MM_SMTP_PW"] = "smtp-Secret-77"
    with SmtpServer("relay", "smtp-Secret-77") as smtp:
        r = cli("import", *cli_args("source", src), *cli_args("target", dst), "--journal", str(tmp_path / "j.sqlite"),
                "--report", str(tmp_path / "r.json"), "-q", "--notify", "boss@example.test", "--lang", "de",
                *_smtp_args(smtp.port, user="relay", pw_env="MM_SMTP_PW"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "confirmation mail: sent" in r.stdout
        assert len(smtp.mails) == 1
        mail = smtp.mails[0]
    rep = json.loads((tmp_path / "r.json").read_text())
    expected = {f"{src.name}@example.test", f"{dst.name}@example.test", "boss@example.test"}
    assert set(mail.rcpts) == expected
    m = mail.message
    assert "Postfach" in str(m["Subject"])  # German
    text = m.get_body(("plain",)).get_content()
    assert str(rep["totals"]["copied"]) in text and rep["totals"]["copied"] == 5
    assert "smtp-Secret-77" not in mail.data.decode("utf-8", "replace")
    assert "smtp-Secret-77" not in (tmp_path / "r.json").read_text()


def test_smtp_down_keeps_migration_and_notify_sends_later(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    append(src, "INBOX", msg(1))
    port = free_port()  # nothing listens yet
    journal = tmp_path / "j.sqlite"
    r = cli("import", *cli_args("source", src), *cli_args("target", dst), "--journal", str(journal), "-q",
            *_smtp_args(port))
    assert r.returncode == 0, r.stdout + r.stderr  # the migration succeeded
    assert "NOT sent" in r.stdout
    assert count(dst, "INBOX") == 1
    # Auth refused: still not sent, still a successful migration.
    with SmtpServer("relay", "right", port=port) as smtp:
        os.environ["MM_WRONG_PW"] = "wrong"
        r2 = cli("notify", "--journal", str(journal), "--smtp-password", "env:MM_WRONG_PW")
        assert r2.returncode == 1 and "NOT sent" in r2.stdout
        assert smtp.mails == []
    with SmtpServer(port=port) as smtp:
        r3 = cli("notify", "--journal", str(journal))
        assert r3.returncode == 0, r3.stdout + r3.stderr
        assert len(smtp.mails) == 1
        assert f"{dst.name}@example.test" in smtp.mails[0].rcpts
        r4 = cli("notify", "--journal", str(journal))  # nothing left to send
        assert r4.returncode == 0 and "nothing to send" in r4.stdout
        assert len(smtp.mails) == 1


def test_partial_failure_says_so_in_subject(tmp_path, dovecot, new_user):
    from migrate.local.maildir import MaildirEndpoint
    from migrate.models import AppendItem
    src_dir = tmp_path / "src"
    ep = MaildirEndpoint(src_dir, create=True)
    ep.append("INBOX", [AppendItem(msg(1), (), None), AppendItem(b"", (), None)])  # empty: refused
    dst = new_user(dovecot("slash"))
    with SmtpServer() as smtp:
        r = cli("import", "--source-maildir", str(src_dir), "--source-email", "old@example.test",
                *cli_args("target", dst), "--journal", str(tmp_path / "j.sqlite"), "-q", *_smtp_args(smtp.port))
        assert r.returncode == 1, r.stdout + r.stderr
        subject = str(smtp.mails[0].message["Subject"])
    assert "1 failed" in subject


def test_detach_status_follow_and_second_start_refused(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    with src.client() as c:
        for i in range(150):
            c.append("INBOX", msg(i, extra=b"X-Pad: " + b"x" * 2000 + b"\r\n"))
    journal = tmp_path / "j.sqlite"
    # Slow the target down so the job is certainly still running when we look at it.
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        target = cli_args("target", dst)
        target[target.index("--target-port") + 1] = str(proxy.port)
        args = ["import", *cli_args("source", src), *target, "--journal", str(journal), "--no-notify",
                "--batch-size", "5", "--connections", "1"]
        proxy.hold_when(b"APPEND")  # the detached job waits at its first APPEND until we have looked
        r = cli(*args, "--detach")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "started job" in r.stdout and "log:" in r.stdout
        job_id = r.stdout.split("started job ", 1)[1].split()[0]
        from migrate.journal import JobGuard

        deadline = time.monotonic() + 30
        while not JobGuard.is_running(journal, job_id):
            assert time.monotonic() < deadline, "the detached job never took its lock"
            time.sleep(0.02)
        second = cli(*args)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "already running" in second.stderr
        proxy.release()
        st = cli("status", "--journal", str(journal))
        assert st.returncode == 0 and job_id in st.stdout
        follow = cli("status", job_id, "--journal", str(journal), "--follow", timeout=120)
        assert follow.returncode == 0, follow.stdout + follow.stderr
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    final = cli("status", "--journal", str(journal))
    assert "ok" in final.stdout


def test_smtp_xoauth2_with_the_targets_token():
    """A target signed in with OAuth (Gmail, Microsoft) sends its mail with XOAUTH2, no password."""
    import base64

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from migrate.accounts import Secret
    from migrate.notify import compose_job_mail
    from migrate.notify.send import SmtpSettings, send_mail
    from migrate.report import JobReport, utcnow

    seen: list[str] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
            seen.append("data")
            return "250 OK"

        async def auth_XOAUTH2(self, server, args):  # noqa: N802 - aiosmtpd: AUTH mechanism hook
            blob = base64.b64decode(args[1]).decode()
            ok = blob == "user=bob@example.test\x01auth=Bearer tok-123\x01\x01"
            seen.append("auth-ok" if ok else "auth-bad")
            return AuthResult(success=ok, handled=False, auth_data=blob if ok else None)

    port = free_port()
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port, auth_required=True, auth_require_tls=False)
    ctl.start()
    try:
        report = JobReport(job_id="j1", source="a", target="b", source_email="alice@example.test",
                           target_email="bob@example.test", started_at=utcnow())
        mail = compose_job_mail(report, sender="bob@example.test", recipients=["bob@example.test"])
        send_mail(mail, SmtpSettings("127.0.0.1", port, "none", username="bob@example.test",
                                     oauth_token=lambda: Secret("tok-123")))
    finally:
        ctl.stop()
    assert seen == ["auth-ok", "data"]
