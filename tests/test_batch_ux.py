"""`mailmigrate batch` and the confirmation mail, as a user meets them: CSV columns by name, TLS
and SMTP options on `batch`, correcting a mail with `notify`, `--notify-when`, a full target, and
mails in the user's language. Real Dovecot servers and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import csv
import json
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from migrate.csvbatch import COLUMNS, CsvInvalid, read_batch
from migrate.notify import compose_job_mail
from migrate.notify.i18n import LANGS, STRINGS
from migrate.report import ErrorInfo, Failure, FolderReport, JobReport
from tests.support.mailbox import append, cli, cli_args, count, msg, snapshot
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


# --- helpers ------------------------------------------------------------------------------


def secret_ref(value: str) -> str:
    name = f"MMUX_{uuid.uuid4().hex[:10].upper()}"
    os.environ[name] = value
    return f"env:{name}"


def cells(src, dst, **over: str) -> dict[str, str]:
    """A generic-IMAP row for two harness users (plain port, no TLS); ``over`` replaces cells."""
    row = {c: "" for c in COLUMNS}
    for role, user in (("source", src), ("target", dst)):
        row.update({f"{role}_email": f"{user.name}@example.test", f"{role}_password": secret_ref(user.password),
                    f"{role}_provider": "imap", f"{role}_host": "127.0.0.1", f"{role}_port": str(user.server.port),
                    f"{role}_security": "none", f"{role}_username": user.name})
    row.update(over)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or list(COLUMNS)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(c, "") for c in header])
    path.chmod(0o600)
    return path


def seed(user, n: int, base: int, folder: str = "INBOX", pad: int = 0) -> None:
    with user.client() as c:
        if not c.folder_exists(folder):
            c.create_folder(folder)
        for i in range(n):
            extra = f"X-Pad: {'x' * pad}\r\n".encode() if pad else b""
            c.append(folder, msg(base + i, extra=extra), msg_time=datetime(2020, 1, 1 + i % 28, tzinfo=UTC))


def smtp_args(smtp: SmtpServer, *, user: str | None = None, password: str | None = None) -> list[str]:
    args = ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port), "--smtp-security", "none"]
    if user:
        args += ["--smtp-user", user, "--smtp-password", secret_ref(password or "")]
    return args


class RelaySmtp(SmtpServer):
    """``SmtpServer`` that answers a refused login at once (``handled=False``: aiosmtpd sends the
    535 itself; tests/support/smtp.py's authenticator leaves the client waiting for its timeout)."""

    def __init__(self, user: str, password: str) -> None:
        super().__init__(user, password)

        def auth(server, session, envelope, mechanism, auth_data):  # aiosmtpd API
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                user.encode(), password.encode())
            return AuthResult(success=ok, handled=False)

        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, authenticator=auth,
                                     auth_required=True, auth_require_tls=False)


def text_of(mail) -> str:
    return mail.message.get_body(("plain",)).get_content()


# --- CSV columns by name --------------------------------------------------------------------


def _unit_row(**over: str) -> dict[str, str]:
    row = {c: "" for c in COLUMNS}
    row.update(source_email="a@example.net", source_password="pw-a", source_provider="imap",
               source_host="imap.example.net", target_email="a@example.com", target_password="pw-b",
               target_provider="imap", target_host="mail.example.com", target_port="10993")
    row.update(over)
    return row


def _problems(path: Path) -> list[str]:
    with pytest.raises(CsvInvalid) as info:
        read_batch(path)
    return info.value.lines()


def test_csv_columns_are_matched_by_name(tmp_path: Path) -> None:
    rows = [_unit_row(), _unit_row(source_email="b@example.net", notify="x@example.org")]
    canonical = read_batch(write_csv(tmp_path / "a.csv", rows))
    shuffled = list(reversed(COLUMNS))
    assert read_batch(write_csv(tmp_path / "b.csv", rows, shuffled)) == canonical
    assert canonical[0].target.port == 10993 and canonical[1].notify == ("x@example.org",)

    # an unknown column (a typo) is an error with its line number, not a silently dropped value
    lines = _problems(write_csv(tmp_path / "c.csv", rows, [*shuffled, "sorce_username"]))
    assert len(lines) == 1 and lines[0].startswith("line 1: unknown columns: sorce_username"), lines
    # required columns missing: every one of them listed
    header = [c for c in COLUMNS if c not in ("target_email", "source_password")]
    lines = _problems(write_csv(tmp_path / "d.csv", rows, header))
    assert lines[0].startswith("line 1: missing columns: source_password, target_email"), lines

    # optional CA columns: a file that is not there is a problem of that cell
    ca = tmp_path / "nope.pem"
    lines = _problems(write_csv(tmp_path / "e.csv", [_unit_row(target_ca_file=str(ca))],
                                [*COLUMNS, "target_ca_file"]))
    assert lines == [f"line 2, target_ca_file: file {ca} does not exist"]


# --- batch: TLS options -----------------------------------------------------------------------


@pytest.mark.dovecot
def test_batch_takes_ca_files_and_insecure(dovecot, new_user, tmp_path: Path) -> None:
    srv = dovecot("slash")
    pairs = [(new_user(srv), new_user(srv)) for _ in range(3)]
    for i, (src, _) in enumerate(pairs):
        seed(src, 3 + i, 1000 * (i + 1))

    def tls_row(src, dst, **over: str) -> dict[str, str]:  # the target over implicit TLS (port 993 style)
        return cells(src, dst, target_port=str(srv.ssl_port), target_security="ssl", **over)

    header = [*reversed(COLUMNS), "target_ca_file"]  # any order, and the optional CA column
    rows = [tls_row(*pairs[0]), tls_row(*pairs[1], target_ca_file=srv.ca_file), tls_row(*pairs[2])]
    path = write_csv(tmp_path / "batch.csv", rows, header)
    env = {"MAILMIGRATE_HOME": str(tmp_path / "home")}

    # Without a CA the rows that have none fail on the certificate; the hint names the option.
    r = cli("batch", str(path), "-q", "--no-notify", "--report", str(tmp_path / "r0.json"), env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    rep = json.loads((tmp_path / "r0.json").read_text())
    assert [row["status"] for row in rep["rows"]] == ["failed", "ok", "failed"]
    assert "--target-ca-file" in rep["rows"][0]["error"]["hint"]

    # --target-ca-file for every row (the row with its own column keeps it): all copied.
    r = cli("batch", str(path), "-q", "--no-notify", "--target-ca-file", srv.ca_file,
            "--report", str(tmp_path / "r1.json"), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((tmp_path / "r1.json").read_text())
    assert [row["status"] for row in rep["rows"]] == ["ok", "ok", "ok"]
    for src, dst in pairs:
        assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")

    # --insecure: no verification, and a loud warning.
    more = new_user(srv)
    seed(pairs[0][0], 1, 9000)
    r = cli("batch", str(write_csv(tmp_path / "b2.csv", [tls_row(pairs[0][0], more)])), "-q", "--no-notify",
            "--insecure", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING: --insecure" in r.stderr
    assert count(more, "INBOX") == 4

    # A CA option that is not a file is a usage error before anything connects.
    r = cli("batch", str(path), "-q", "--source-ca-file", str(tmp_path / "missing.pem"), env=env)
    assert r.returncode == 2 and "--source-ca-file" in r.stderr, r.stderr


# --- batch: SMTP options, the mail column, and notify correcting a send ----------------------------


@pytest.mark.dovecot
def test_batch_sends_mail_through_smtp_options_and_says_so_per_row(dovecot, new_user, tmp_path: Path) -> None:
    srv = dovecot("slash")
    pairs = [(new_user(srv), new_user(srv)) for _ in range(2)]
    for i, (src, _) in enumerate(pairs):
        seed(src, 2, 100 * (i + 1))
    path = write_csv(tmp_path / "batch.csv", [cells(*p) for p in pairs])
    jdir = tmp_path / "journals"
    env = {"MAILMIGRATE_HOME": str(tmp_path / "home")}
    with RelaySmtp("relay", "relay-pw") as smtp:
        # No SMTP option: generic IMAP rows have no SMTP server. Every row says its mail did not go.
        r = cli("batch", str(path), "-q", "--journal-dir", str(jdir), "--report", str(tmp_path / "r0.json"), env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        rep = json.loads((tmp_path / "r0.json").read_text())
        assert [row["mail"] for row in rep["rows"]] == ["no-smtp", "no-smtp"]
        for row in rep["rows"]:
            assert f"line {row['line']}: confirmation mail: not sent (no SMTP server known" in r.stdout
        assert "confirmation mails: 2 not sent (no SMTP server known for the target: give --smtp-host)" in r.stdout
        assert smtp.mails == []

        # `notify` with SMTP options sends what had no server (one mail per row).
        journals = sorted({row["journal"] for row in rep["rows"]})
        for journal in journals:
            n = cli("notify", "--journal", journal, *smtp_args(smtp, user="relay", password="relay-pw"))
            assert n.returncode == 0, n.stdout + n.stderr
            assert "confirmation mail: sent to" in n.stdout
        assert sorted(m.rcpts[-1] for m in smtp.mails) == sorted(f"{d.name}@example.test" for _, d in pairs)

        # With the options on `batch`: each row's mail goes out and the table says so.
        for i, (src, _) in enumerate(pairs):
            seed(src, 1, 500 + 10 * i)
        before = len(smtp.mails)
        r = cli("batch", str(path), "--journal-dir", str(jdir), "--report", str(tmp_path / "r1.json"),
                *smtp_args(smtp, user="relay", password="relay-pw"), "--lang", "de", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        rep = json.loads((tmp_path / "r1.json").read_text())
        assert [row["mail"] for row in rep["rows"]] == ["sent", "sent"]
        assert "confirmation mails: 2 sent" in r.stdout
        table = r.stdout.splitlines()
        assert re.search(r"\W mail +\W$", table[2]), r.stdout  # a "mail" column, one cell per row
        for i, row in enumerate(rep["rows"]):
            assert re.search(rf"^\W +{row['line']} \W.*\W sent +\W$", table[4 + i]), r.stdout
        assert len(smtp.mails) == before + 2
        assert all("Postfach" in str(m.message["Subject"]) for m in smtp.mails[before:])

        # A wrong SMTP password: NOT sent, said per row; `notify --smtp-password` corrects it.
        for i, (src, _) in enumerate(pairs):
            seed(src, 1, 700 + 10 * i)
        r = cli("batch", str(path), "-q", "--journal-dir", str(jdir), "--report", str(tmp_path / "r2.json"),
                *smtp_args(smtp, user="relay", password="wrong"), env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        rep = json.loads((tmp_path / "r2.json").read_text())
        assert [row["mail"] for row in rep["rows"]] == ["failed", "failed"]
        assert "confirmation mails: 2 NOT sent (SMTP error)" in r.stdout
        assert len(smtp.mails) == before + 2
        for journal in journals:
            n = cli("notify", "--journal", journal, "--smtp-password", secret_ref("relay-pw"))
            assert n.returncode == 0, n.stdout + n.stderr
        assert len(smtp.mails) == before + 4


# --- --notify-when ------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_reruns_mail_only_when_something_changed(dovecot, new_user, tmp_path: Path) -> None:
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 3, 10)
    seed(src, 1, 20, folder="Projects")
    journal = tmp_path / "j.sqlite"
    with SmtpServer() as smtp:
        def run(*extra: str) -> str:
            r = cli("import", *cli_args("source", src), *cli_args("target", dst), "--journal", str(journal), "-q",
                    *smtp_args(smtp), *extra)
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout

        assert "confirmation mail: sent" in run()  # the first run always mails
        assert len(smtp.mails) == 1
        out = run()  # cron: nothing new
        assert "confirmation mail: not needed" in out and len(smtp.mails) == 1
        append(src, "INBOX", msg(99))
        assert "confirmation mail: sent" in run()  # something was copied
        assert len(smtp.mails) == 2
        assert "confirmation mail: sent" in run("--notify-when", "always", "--lang", "de")
        assert len(smtp.mails) == 3
        text = text_of(smtp.mails[-1])
        assert "(unverändert)" in text and "(unchanged)" not in text  # the folder notes are German too
        append(src, "INBOX", msg(100))
        assert "confirmation mail: off (--notify-when never)" in run("--notify-when", "never")
        assert len(smtp.mails) == 3
    r = cli("import", *cli_args("source", src), *cli_args("target", dst), "--journal", str(journal), "-q",
            "--notify-when", "sometimes")
    assert r.returncode == 2 and "--notify-when" in r.stderr, r.stderr

    # A first run that copies nothing (an empty source) still says what happened.
    empty, dst2 = new_user(srv), new_user(srv)
    with SmtpServer() as smtp:
        r = cli("import", *cli_args("source", empty), *cli_args("target", dst2), "--journal",
                str(tmp_path / "j2.sqlite"), "-q", *smtp_args(smtp))
        assert r.returncode == 0 and "confirmation mail: sent" in r.stdout, r.stdout + r.stderr
        assert len(smtp.mails) == 1


# --- a full target -----------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_full_target_counts_what_was_not_copied_and_says_so(dovecot, new_user, tmp_path: Path) -> None:
    src = new_user(dovecot("slash"))
    full = dovecot("quota", quota_kb=48)  # room for about 20 of these messages
    dst = new_user(full)
    seed(src, 30, 3000, pad=1800)
    seed(src, 13, 4000, folder="Archive", pad=1800)
    with src.client() as c:  # ten of them are on the target already
        c.select_folder("INBOX", readonly=True)
        uids = c.search("ALL")[:10]
        bodies = [v[b"BODY[]"] for v in c.fetch(uids, ["BODY.PEEK[]"]).values()]
    with dst.client() as c:
        for b in bodies:
            c.append("INBOX", b)
    with SmtpServer() as smtp:
        # --force: the fit check would stop the job before it starts; this is about a target that fills up.
        r = cli("import", *cli_args("source", src), *cli_args("target", dst), "--journal", str(tmp_path / "j.sqlite"),
                "--report", str(tmp_path / "r.json"), "-q", "--connections", "1", "--batch-size", "4", "--force",
                *smtp_args(smtp))
        assert r.returncode == 4, r.stdout + r.stderr
        assert len(smtp.mails) == 1
        mail = smtp.mails[0]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["error"]["reference"] == "target-over-quota"
    inbox = next(f for f in rep["folders"] if f["source"] == "INBOX")
    archive = next(f for f in rep["folders"] if f["source"] == "Archive")
    # every message of the started folder is accounted for: copied, already there, or not copied
    assert inbox["source_messages"] == 30 and inbox["skipped_duplicates"] >= 10
    assert inbox["copied"] + inbox["skipped_duplicates"] + inbox["failed"] == 30, inbox
    assert inbox["failed"] > 0 and inbox["copied"] > 0
    assert inbox["note"] == "the new mailbox is full"
    assert {"folder": "INBOX", "reason": "the new mailbox is full"}.items() <= inbox["failures"][-1].items()
    # The other folder: reached before the job stopped (then counted the same way), or not (then said so).
    if archive["note"] == "not started: the new mailbox is full":
        assert archive["copied"] == archive["failed"] == 0
    else:
        assert archive["copied"] + archive["skipped_duplicates"] + archive["failed"] == 13, archive
        assert archive["note"] == "the new mailbox is full"
    empty = [f for f in rep["folders"] if f["source"] not in ("INBOX", "Archive")]
    assert empty and all(f["note"] == "not started: the new mailbox is full" for f in empty)
    assert rep["totals"]["failed"] == inbox["failed"] + archive["failed"]
    assert count(dst, "INBOX") == inbox["copied"] + 10

    # The end user reads plain words, not an IMAP command.
    subject, text = str(mail.message["Subject"]), text_of(mail)
    assert subject.startswith("Mailbox import stopped, the new mailbox is full:")
    failed = rep["totals"]["failed"]
    assert f"Your new mailbox is full, so the import stopped: {failed} messages could not be copied." in text
    assert "Make room in the new mailbox" in text and "the new mailbox is full" in text
    assert "MULTIAPPEND" not in mail.data.decode("utf-8", "replace") and "OVERQUOTA" not in text


# --- the mail's words in every language ----------------------------------------------------------------


def _full_report() -> JobReport:
    r = JobReport(job_id="job-1", source="alice@imap.example.com:993", target="bob@mail.example.net:993",
                  source_email="alice@example.com", target_email="bob@example.net",
                  started_at=datetime(2024, 5, 3, 14, 2, tzinfo=UTC), finished_at=datetime(2024, 5, 3, 14, 9, tzinfo=UTC),
                  status="interrupted", exit_code=4,
                  error=ErrorInfo(reference="target-over-quota",
                                  message="MULTIAPPEND to 'INBOX': the target is over quota: NO [OVERQUOTA] Quota "
                                          "exceeded (mailbox for user is full)",
                                  hint="free space on the target (or raise its quota), then re-run: the job resumes"),
                  folders=[FolderReport(source="INBOX", target="INBOX", skipped_duplicates=38, failed=5,
                                        source_messages=43, note="the new mailbox is full",
                                        failures=[Failure(folder="INBOX", reason="the new mailbox is full")]),
                           FolderReport(source="Archiv", target="Archiv", skipped_duplicates=7, source_messages=7,
                                        note="unchanged"),
                           FolderReport(source="Sent", target="Sent", note="not started: the new mailbox is full")])
    r.compute_totals()
    return r


@pytest.mark.parametrize("lang", LANGS)
def test_full_mailbox_and_folder_notes_in_every_language(lang: str) -> None:
    t = STRINGS[lang]
    mail = compose_job_mail(_full_report(), lang=lang, sender="noreply@example.org", recipients=["bob@example.net"])
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert mail["Subject"].replace("\xa0", " ").startswith(t["subject_full"].split("{")[0].replace("\xa0", " "))
    for part in (text, html):
        assert "MULTIAPPEND" not in part and "OVERQUOTA" not in part and "quota" not in part.lower()
        assert t["full_error"].replace("'", "&#x27;") in part or t["full_error"] in part
    assert t["headline_full_other"].format(n="5") in text
    assert f"({t['note_unchanged']})" in text
    assert f"({t['note_full_not_started']})" in text
    assert f"INBOX{':' if lang != 'fr' else chr(0xa0) + ':'} {t['reason_full']}" in text
    if lang != "en":
        for english in ("(unchanged)", "the new mailbox is full", "not started", "Make room"):
            assert english not in text and english not in html, english
