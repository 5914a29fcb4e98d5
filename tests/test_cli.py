"""The real command line (a subprocess) against real Dovecot: exit codes, one-line errors with a
hint, no traceback, and the password never in any output, the journal or the JSON report.

Exit codes (public): 0 done; 1 some messages failed; 2 usage/input; 3 auth; 4 connection/TLS.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.mailbox import ROOT, cli, msg

pytestmark = pytest.mark.dovecot

SECRET = "S3cret-Pass-XYZ"  # every test user's password; grepped for in everything we produce
WRONG = SECRET + "-wrong"  # still contains SECRET, so a leak of the wrong one is caught too
ENV = {"MM_CLI_PW": SECRET, "MM_CLI_WRONG": WRONG, "MAILMIGRATE_DEBUG": ""}


# --------------------------------------------------------------------------- helpers


def side(role: str, user, *, password: str = "env:MM_CLI_PW", security: str = "none",
         port: int | None = None) -> list[str]:
    srv = user.server
    return [f"--{role}-email", f"{user.name}@example.test", f"--{role}-username", user.name,
            f"--{role}-password", password, f"--{role}-host", "127.0.0.1",
            f"--{role}-port", str(port or srv.port), f"--{role}-security", security,
            f"--{role}-provider", "imap"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return cli(*args, env={**ENV, **(env or {})}, timeout=60)


def output(r: subprocess.CompletedProcess) -> str:
    return r.stdout + r.stderr


def assert_clean(r: subprocess.CompletedProcess) -> str:
    text = output(r)
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    assert SECRET not in text, "password leaked into the output"
    return text


def assert_error(r: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit ``code``; exactly one ``error:`` line, carrying a hint and every needle; no traceback/secret."""
    text = assert_clean(r)
    assert r.returncode == code, f"exit {r.returncode} != {code}:\n{text}"
    lines = [ln for ln in text.splitlines() if ln.lstrip().lower().startswith("error:")]
    assert len(lines) == 1, f"want exactly one error line:\n{text}"
    line = lines[0]
    assert "hint:" in line, f"error line without a hint: {line}"
    for n in needles:
        assert n.lower() in line.lower(), f"{n!r} not in {line!r}"
    return line


def assert_no_secret_in_files(folder: Path) -> None:
    """Journal, its WAL/SHM side files, locks and reports: not one byte of the password."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), f"password in {p}"


def private(p: Path) -> bool:
    return p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(dovecot):
    return dovecot("slash")


@pytest.fixture
def pair(server, new_user):
    """(source, target) users with the distinctive password; the source has two messages."""
    src, dst = new_user(server, password=SECRET), new_user(server, password=SECRET)
    src.save("INBOX", msg(1))
    src.save("Sent", msg(2))
    return src, dst


@pytest.fixture
def offline():
    """Stand-in (source, target) accounts on a closed port, for errors that must come before connecting
    (a check that failed to fire would show up as exit 4 instead of 2)."""
    port = free_port()
    srv = SimpleNamespace(port=port, ssl_port=port)
    return SimpleNamespace(name="nobody", server=srv), SimpleNamespace(name="nobody2", server=srv)


# --------------------------------------------------------------------------- a good import


def test_import_report_journal_status(pair, tmp_path):
    src, dst = pair
    state = tmp_path / "state"
    journal, report = state / "j.sqlite", tmp_path / "r.json"
    r = run("import", *side("source", src), *side("target", dst), "--journal", str(journal),
            "--report", str(report), "-q")
    text = assert_clean(r)
    assert r.returncode == 0, text
    assert "error:" not in text.lower()
    assert "INBOX" in r.stdout and "total" in r.stdout and "status: done (exit 0)" in r.stdout

    data = json.loads(report.read_text())
    assert data["totals"]["copied"] == 2 and data["totals"]["failed"] == 0
    by_name = {f["source"]: f for f in data["folders"]}
    for f in data["folders"]:
        assert {"copied", "skipped_duplicates", "failed", "bytes"} <= f.keys()
    assert by_name["INBOX"]["copied"] == 1 and by_name["Sent"]["copied"] == 1
    assert by_name["INBOX"]["bytes"] > 0
    assert SECRET not in report.read_text()

    # the journal (and its WAL side files) never hold the password, and are private
    assert_no_secret_in_files(state)
    assert private(state), oct(state.stat().st_mode)
    for p in state.rglob("*"):
        assert p.is_dir() or private(p), f"{p} is {oct(p.stat().st_mode)}"

    # a second run copies nothing new and still exits 0
    r = run("import", *side("source", src), *side("target", dst), "--journal", str(journal), "-q")
    assert_clean(r)
    assert r.returncode == 0, output(r)

    r = run("status", "--journal", str(journal))
    text = assert_clean(r)
    assert r.returncode == 0, text
    job_id = json.loads(report.read_text())["job_id"]
    assert job_id in r.stdout
    row = next(ln for ln in r.stdout.splitlines() if job_id in ln)
    cells = row.split()  # piped: plain text, one line per job
    assert cells[0] == job_id and "ok" in cells and "2" in cells, row  # id, state, copied count
    r = run("status", job_id, "--journal", str(journal))  # one job: its folders
    assert re.search(r"^INBOX\s+INBOX\s+1\s+0\s+0\s+complete", r.stdout, re.M), r.stdout


def test_status_bad_journal(tmp_path):
    assert_error(run("status", "--journal", str(tmp_path / "nonexistent.sqlite")), 2, "does not exist")
    assert_error(run("status", "--journal", str(tmp_path)), 2, "is a directory")
    (tmp_path / "notes.txt").write_text("hello\n")
    assert_error(run("status", "--journal", str(tmp_path / "notes.txt")), 2, "not a mailmigrate journal")


def test_journal_leaves_existing_folder_alone(pair, tmp_path):
    src, dst = pair
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    r = run("import", *side("source", src), *side("target", dst), "--journal", str(shared / "j.sqlite"), "-q")
    assert r.returncode == 0, output(r)
    assert private(shared / "j.sqlite")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


@pytest.mark.parametrize(("args", "needle"), [
    (["--journal", "/proc/no-such/j.sqlite"], "cannot create"),
    (["--report", "/proc/no-such/r.json"], "cannot create"),
    (["--report", "/tmp"], "is a directory"),
])
def test_unwritable_outputs_fail_before_copying(pair, tmp_path, args, needle):
    src, dst = pair
    extra = [] if args[0] == "--journal" else ["--journal", str(tmp_path / "j.sqlite")]
    assert_error(run("import", *side("source", src), *side("target", dst), *extra, *args, "-q"), 2, needle)
    with dst.client() as c:
        assert c.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0


def test_journal_not_a_journal(pair, tmp_path):
    src, dst = pair
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert_error(run("import", *side("source", src), *side("target", dst), "--journal", str(notes)),
                 2, "not a mailmigrate journal")
    assert notes.read_text() == "my notes\n"


def test_dry_run_prints_mapping_and_writes_nothing(pair, tmp_path):
    src, dst = pair
    journal, report = tmp_path / "state" / "j.sqlite", tmp_path / "r.json"
    r = run("import", *side("source", src), *side("target", dst), "--map-folder", "Sent=Old Sent",
            "--journal", str(journal), "--report", str(report), "--dry-run", "-q")
    text = assert_clean(r)
    assert r.returncode == 0, text
    words = " ".join(r.stdout.split())
    assert "nothing written" in words and "status: dry run (exit 0)" in words
    # Not a terminal: the summary is plain text, one line a folder, columns two spaces apart.
    assert re.search(r"^Sent {2,}Old Sent {2,}1 ", r.stdout, re.M), r.stdout
    assert not journal.exists() and not report.exists()
    assert not journal.parent.exists() or not any(journal.parent.iterdir())
    with dst.client() as c:
        assert not c.folder_exists("Old Sent")
        assert c.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0


# --------------------------------------------------------------------------- TLS


def test_bad_certificate_then_private_ca(pair, server, tmp_path):
    src, dst = pair
    tls = side("source", src, security="ssl", port=server.ssl_port)
    common = [*side("target", dst), "--journal", str(tmp_path / "j.sqlite"), "-q"]
    line = assert_error(run("import", *tls, *common), 4, "certificate", "--source-ca-file")
    assert "127.0.0.1" in line

    r = run("import", *tls, "--source-ca-file", server.ca_file, *common)
    assert_clean(r)
    assert r.returncode == 0, output(r)


@pytest.mark.parametrize(("ca", "needle"), [("nope.pem", "does not exist"), ("junk.pem", "not a usable CA"),
                                          (".", "is a directory")])
def test_unusable_ca_file(offline, tmp_path, ca, needle):
    src, dst = offline
    (tmp_path / "junk.pem").write_text("this is not a certificate\n")
    assert_error(run("import", *side("source", src, security="ssl", port=src.server.ssl_port),
                     "--source-ca-file", str(tmp_path / ca), *side("target", dst)),
                 2, "--source-ca-file", needle)


def test_insecure_works_and_warns(pair, server, tmp_path):
    src, dst = pair
    r = run("import", *side("source", src, security="ssl", port=server.ssl_port), *side("target", dst),
            "--insecure", "--journal", str(tmp_path / "j.sqlite"), "-q")
    assert_clean(r)
    assert r.returncode == 0, output(r)
    assert "WARNING" in r.stderr and "--insecure" in r.stderr


def test_starttls_without_server_support_fails(dovecot, new_user, tmp_path):
    """No silent downgrade to plain text when STARTTLS was asked for."""
    plain = dovecot("slash", starttls=False)
    src, dst = new_user(plain, password=SECRET), new_user(plain, password=SECRET)
    src.save("INBOX", msg(1))
    r = run("import", *side("source", src, security="starttls"), "--source-ca-file", plain.ca_file,
            *side("target", dst), "--journal", str(tmp_path / "j.sqlite"), "-q")
    assert_error(r, 4, "STARTTLS")
    with dst.client() as c:
        assert c.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0


# --------------------------------------------------------------------------- auth / connection


@pytest.mark.parametrize("role", ["source", "target"])
def test_wrong_password(pair, tmp_path, role):
    src, dst = pair
    bad = {"password": "env:MM_CLI_WRONG"}
    journal, report = tmp_path / "j.sqlite", tmp_path / "r.json"
    r = run("import", *side("source", src, **(bad if role == "source" else {})),
            *side("target", dst, **(bad if role == "target" else {})),
            "--journal", str(journal), "--report", str(report), "-q")
    user = src if role == "source" else dst
    assert_error(r, 3, "login", user.name)
    assert_no_secret_in_files(tmp_path)


@pytest.mark.parametrize("form", ["separate", "equals"])
def test_literal_password_not_stored(pair, tmp_path, form):
    """A password typed on the command line still never reaches the journal or the report."""
    src, dst = pair
    pw = ["--source-password", SECRET] if form == "separate" else [f"--source-password={SECRET}"]
    args = side("source", src)
    i = args.index("--source-password")
    args[i:i + 2] = pw
    report = tmp_path / "r.json"
    r = run("import", *args, *side("target", dst), "--journal", str(tmp_path / "state" / "j.sqlite"),
            "--report", str(report), "-q")
    assert_clean(r)
    assert r.returncode == 0, output(r)
    assert_no_secret_in_files(tmp_path)
    rerun = json.loads(report.read_text())["rerun_command"]
    assert "--target-password env:MM_CLI_PW" in rerun and "********" in rerun


def test_wrong_password_from_file(pair, tmp_path):
    src, dst = pair
    pw = tmp_path / "pw.txt"
    pw.write_text(WRONG + "\n")
    r = run("import", *side("source", src, password=f"file:{pw}"), *side("target", dst),
            "--journal", str(tmp_path / "j.sqlite"), "-q")
    assert_error(r, 3, "login")


def test_unknown_host(pair, tmp_path):
    src, dst = pair
    r = run("import", *side("source", src), "--source-host", "no-such-host.invalid", *side("target", dst),
            "--journal", str(tmp_path / "j.sqlite"), "-q")
    assert_error(r, 4, "no-such-host.invalid")


def test_refused_port(pair, tmp_path):
    src, dst = pair
    port = free_port()
    r = run("import", *side("source", src, port=port), *side("target", dst),
            "--journal", str(tmp_path / "j.sqlite"), "-q")
    assert_error(r, 4, str(port))


# --------------------------------------------------------------------------- usage / input (exit 2)


def test_missing_target_email(offline):
    src, _ = offline
    assert_error(run("import", *side("source", src)), 2, "--target-email")


@pytest.mark.parametrize(("spec", "needle"), [
    ("file:/nonexistent/pw", "does not exist"),
    ("env:MM_CLI_UNSET_VAR", "MM_CLI_UNSET_VAR"),
    # We run as root, which reads a chmod 000 file anyway: a directory is the unreadable case here.
    ("file:/tmp", "cannot read"),
    ("file:/dev/null", "empty"),
    ("file:{tmp}/latin1.txt", "not UTF-8"),
])
def test_bad_password_spec(offline, tmp_path, spec, needle):
    src, dst = offline
    (tmp_path / "latin1.txt").write_bytes(b"S3cret-Pass-XYZ\xe9\n")
    spec = spec.format(tmp=tmp_path)
    line = assert_error(run("import", *side("source", src, password=spec), *side("target", dst)),
                        2, "--source-password", needle)
    assert SECRET not in line


@pytest.mark.parametrize(("args", "needle"), [
    (["--source-security", "foo"], "--source-security"),
    (["--source-port", "70000"], "--source-port"),
    (["--map-folder", "nonsense"], "--map-folder"),
    (["--source-provider", "nope"], "nope"),
    (["--connections", "0"], "--connections"),
    (["--batch-size", "0"], "--batch-size"),
    (["--source-maildir", "/tmp", "--source-mbox", "/tmp"], "--source-mbox"),
])
def test_bad_options(offline, args, needle):
    src, dst = offline
    # later options win, so the bad value overrides the good one side() gave
    assert_error(run("import", *side("source", src), *side("target", dst), *args), 2, needle)


@pytest.mark.parametrize(("args", "needle"), [
    (["--no-such-option"], "No such option"),
    (["--source-port"], "requires an argument"),
    (["--connections", "many"], "--connections"),
])
def test_parser_errors_are_one_line(offline, args, needle):
    """The parser's own errors (unknown option, missing or malformed value) look like ours."""
    src, dst = offline
    line = assert_error(run("import", *side("source", src), *side("target", dst), *args), 2, needle)
    assert "--help" in line


def test_unknown_command_and_bare_call():
    assert_error(run("nope"), 2, "No such command", "mailmigrate --help")
    r = run()  # no arguments: the help, exit 2 as click does
    assert r.returncode == 2 and "Commands" in output(r) and "Traceback" not in output(r), output(r)


def test_no_password_without_terminal(offline):
    src, dst = offline
    args = side("source", src)
    i = args.index("--source-password")
    del args[i:i + 2]
    line = assert_error(run("import", *args, *side("target", dst)), 2, "password")
    assert "env:" in line and "file:" in line


def on_terminal(argv: list[str], answer: bytes) -> tuple[int, str]:
    """Run argv with a pseudo-terminal as its controlling terminal; type ``answer`` at the password prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execve(argv[0], argv, {**os.environ, **ENV, "COLUMNS": "120"})
    seen, sent, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not sent and b"Password for source" in seen:
                os.write(fd, answer)
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = seen.decode(errors="replace")
    assert sent, f"no password prompt:\n{text}"
    return os.waitstatus_to_exitcode(status), text


def prompt_argv(src, dst, tmp_path: Path) -> list[str]:
    args = side("source", src)
    i = args.index("--source-password")
    del args[i:i + 2]
    return [sys.executable, str(ROOT / "cli.py"), "import", *args, *side("target", dst),
            "--journal", str(tmp_path / "state" / "j.sqlite"), "--report", str(tmp_path / "r.json"), "-q"]


def test_password_prompt_on_a_terminal(pair, tmp_path):
    """No --source-password on an interactive terminal: asked for, not echoed, not stored."""
    src, dst = pair
    code, text = on_terminal(prompt_argv(src, dst, tmp_path), SECRET.encode() + b"\n")
    assert code == 0, text
    assert SECRET not in text and "Traceback" not in text, "password echoed or crash"
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["copied"] == 2
    assert_no_secret_in_files(tmp_path)


def test_ctrl_c_at_the_prompt(pair, tmp_path):
    src, dst = pair
    code, text = on_terminal(prompt_argv(src, dst, tmp_path), b"\x03")  # the terminal turns ^C into SIGINT
    assert code == 4, text
    assert "interrupted" in text and "Traceback" not in text, text


# --------------------------------------------------------------------------- other commands


def test_help_and_providers():
    for args in (["--help"], ["import", "--help"], ["status", "--help"]):
        r = run(*args)
        assert r.returncode == 0 and "Traceback" not in output(r), output(r)
        assert args[0] != "import" or "--source-ca-file" in r.stdout
    r = run("providers")
    assert r.returncode == 0, output(r)
    names = {m.group(1) for m in re.finditer(r"^([a-z0-9-]+): ", r.stdout, re.M)}  # piped: one block each
    assert {"gmail", "gmx", "bluewin"} <= names, r.stdout


def test_demo(tmp_path):
    if not (ROOT / "samples" / "demo").is_dir():
        pytest.skip("bundled sample samples/demo is missing")
    out = tmp_path / "out" / "Maildir"
    r = run("demo", "--target-maildir", str(out))
    text = assert_clean(r)
    assert r.returncode == 0, text
    assert (out / "cur").is_dir() and any((out / "cur").iterdir())
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["totals"]["copied"] > 0 and data["totals"]["failed"] == 0
    assert "status: done" in r.stdout


def test_demo_unwritable_target():
    assert_error(run("demo", "--target-maildir", "/proc/no-such/Maildir"), 2, "cannot create")
