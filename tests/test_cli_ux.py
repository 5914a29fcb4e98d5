"""The command line's manners, through the real program (a subprocess) and real Dovecot: bad input is
one line saying what is wrong and what to do, with the documented exit code (2 for usage errors),
no traceback and no secret; the help, version, completion and summary read well.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from migrate import __version__
from migrate.folders import plan_folders
from migrate.models import FolderInfo, Namespace
from tests.support.mailbox import ROOT, cli, msg
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

SECRET = "S3cret-Ux-Pass-42"
ENV = {"MM_UX_PW": SECRET, "MAILMIGRATE_DEBUG": ""}
COMMANDS = ("import", "batch", "status", "notify", "providers", "auth", "demo")


def side(role: str, user, *, password: str = "env:MM_UX_PW", port: int | None = None,
         security: str = "none") -> list[str]:
    return [f"--{role}-email", f"{user.name}@example.test", f"--{role}-username", user.name,
            f"--{role}-password", password, f"--{role}-host", "127.0.0.1",
            f"--{role}-port", str(port or user.server.port), f"--{role}-security", security,
            f"--{role}-provider", "imap"]


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return cli(*args, env={**ENV, **(env or {})}, timeout=timeout)


def clean(r: subprocess.CompletedProcess) -> str:
    text = r.stdout + r.stderr
    assert "Traceback" not in text and "internal error" not in text, text
    assert SECRET not in text, "password leaked into the output"
    return text


def error_line(r: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit ``code``; exactly one ``error:`` line with a hint and every needle."""
    text = clean(r)
    assert r.returncode == code, f"exit {r.returncode} != {code}:\n{text}"
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, f"want exactly one error line:\n{text}"
    assert "(hint: " in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def count(user, folder: str) -> int:
    with user.client() as c:
        return c.select_folder(folder, readonly=True)[b"EXISTS"] if c.folder_exists(folder) else 0


@pytest.fixture
def server(dovecot):
    return dovecot("slash")


@pytest.fixture
def pair(server, new_user):
    src, dst = new_user(server, password=SECRET), new_user(server, password=SECRET)
    src.save("INBOX", msg(1))
    src.save("Sent", msg(2))
    src.save("Archive/2023", msg(3))
    return src, dst


@pytest.fixture
def offline():
    """Accounts on a closed port: a check that must come before connecting would otherwise end in exit 4."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = SimpleNamespace(port=port, ssl_port=port)
    return SimpleNamespace(name="nobody", server=srv), SimpleNamespace(name="nobody2", server=srv)


@pytest.fixture
def home(tmp_path):
    """A private MAILMIGRATE_HOME (no stored sign-ins, no keyring)."""
    return {"MAILMIGRATE_HOME": str(tmp_path / "home"), "MAILMIGRATE_KEYRING": "0"}


# --------------------------------------------------------------------------- validation (exit 2)


@pytest.mark.parametrize(("args", "needle"), [
    (["--retries", "-1"], "--retries -1"),
    (["--retries", "101"], "--retries 101"),
    (["--timeout", "0"], "--timeout 0"),
    (["--timeout", "-5"], "--timeout -5"),
    (["--timeout", "nan"], "--timeout nan"),
])
def test_retries_and_timeout_out_of_range(offline, args, needle):
    src, dst = offline
    line = error_line(run("import", *side("source", src), *side("target", dst), *args), 2, needle)
    assert "out of range" in line


def test_same_imap_account_refused(offline):
    src, _ = offline
    error_line(run("import", *side("source", src), *side("target", src)), 2, "same account", "nobody")


def test_same_maildir_or_target_inside_source_refused(tmp_path):
    box = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    base = ["import", "--source-maildir", str(box), "--journal", str(tmp_path / "j.sqlite")]
    error_line(run(*base, "--target-maildir", str(box)), 2, "same folder")
    error_line(run(*base, "--target-maildir", f"{tmp_path}/./Maildir/"), 2, "same folder")  # spelled otherwise
    error_line(run(*base, "--target-maildir", str(box / ".Backup")), 2, "inside the source")
    assert not (box / ".Backup").exists() and not (tmp_path / "j.sqlite").exists()


@pytest.mark.parametrize("dry", [False, True])
def test_include_or_map_folder_matching_nothing(pair, tmp_path, dry):
    src, dst = pair
    extra = ["--dry-run"] if dry else []
    common = [*side("source", src), *side("target", dst), "--journal", str(tmp_path / "j.sqlite"), "-q",
              "--no-notify", *extra]
    line = error_line(run("import", *common, "--include", "Sentt"), 2, "--include 'Sentt'", "no source folder")
    assert all(name in line for name in ("INBOX", "Sent", "Archive/2023")), line  # what the source has
    line = error_line(run("import", *common, "--map-folder", "NoSuch=Foo"), 2, "--map-folder 'NoSuch=Foo'")
    assert "INBOX" in line and "Sent" in line
    assert count(dst, "Sent") == 0 and count(dst, "Foo") == 0 and count(dst, "INBOX") == 0
    # patterns that do match (a role, the '/' form, a wildcard) still work
    r = run("import", *common, "--include", "\\Sent", "--include", "Arch*", "--map-folder", "Archive/2023=Old")
    assert r.returncode == 0, clean(r)


def test_check_patterns_unit():
    from migrate.folders import check_patterns

    ns = Namespace(prefix="INBOX.", delimiter=".")
    listing = [FolderInfo(name=n, delimiter=".", flags=frozenset(), special_use=u)
               for n, u in (("INBOX", None), ("INBOX.Sent", "\\Sent"), ("INBOX.Work", None))]
    tns = Namespace(prefix="", delimiter="/")

    def plan(**kw):
        return check_patterns(plan_folders(ns, listing, tns, [], **kw))

    plan(include=["Work", "INBOX.Work", "\\Sent", "*"], map_folder={"Work": "W", "INBOX.Sent": "S"})
    with pytest.raises(Exception, match=r"--include 'Wrk' matches no source folder") as info:
        plan(include=["Work", "Wrk"])
    assert "INBOX, INBOX.Sent, INBOX.Work" in (info.value.hint or "")
    with pytest.raises(Exception, match=r"--include '\\Trash' and --map-folder 'Nope=X' match"):
        plan(include=["\\Trash"], map_folder={"Nope": "X"})


# --------------------------------------------------------------------------- passwords


def test_literal_password_warns_once_and_never_shows_it(offline):
    src, dst = offline
    args = side("source", src, password=SECRET)
    r = run("import", *args, *side("target", dst))
    clean(r)
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    assert "--source-password" in warnings[0] and "env:NAME" in warnings[0] and "file:PATH" in warnings[0]
    assert "asked" in warnings[0]  # the prompt is the third way
    r = run("import", *side("source", src), *side("target", dst))  # env: reference: nothing to say
    assert "warning:" not in r.stderr, r.stderr


def test_outlook_points_to_mailmigrate_auth(tmp_path, home):
    common = ["import", "--source-email", "bob@outlook.com", "--target-maildir", str(tmp_path / "out"), "--dry-run"]
    line = error_line(run(*common, env=home), 2, "mailmigrate auth outlook --email bob@outlook.com")
    assert "pass --source-password" not in line
    line = error_line(run(*common, "--source-password", "env:MM_UX_PW", env=home), 2,
                      "accepts no password", "mailmigrate auth outlook --email bob@outlook.com")
    # Gmail takes an app password or a sign-in: both are offered
    line = error_line(run("import", "--source-email", "al@gmail.com", "--target-maildir", str(tmp_path / "o"),
                          "--dry-run", env=home), 2, "--source-password env:NAME", "mailmigrate auth gmail")


def on_terminal(argv: list[str], answer: bytes, env: dict) -> tuple[int, str]:
    """Run argv on a pseudo-terminal; type ``answer`` at the password prompt."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, {**os.environ, **ENV, **env, "COLUMNS": "120"})
    seen, sent, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
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


def test_detach_asks_for_the_password_first(pair, tmp_path):
    src, dst = pair
    args = side("source", src)
    i = args.index("--source-password")
    del args[i:i + 2]
    journal, report = tmp_path / "state" / "j.sqlite", tmp_path / "r.json"
    argv = [sys.executable, str(ROOT / "cli.py"), "import", *args, *side("target", dst), "--journal", str(journal),
            "--report", str(report), "--no-notify", "--detach"]
    code, text = on_terminal(argv, SECRET.encode() + b"\n", {})
    assert code == 0, text
    assert "started job" in text and SECRET not in text, text
    deadline = time.monotonic() + 90
    while not report.exists():
        assert time.monotonic() < deadline, "the detached job never finished"
        time.sleep(0.1)
    data = json.loads(report.read_text())
    assert data["status"] == "ok" and data["totals"]["copied"] == 3, data
    assert count(dst, "INBOX") == 1
    assert "MAILMIGRATE_DETACHED" not in data["rerun_command"] and SECRET not in data["rerun_command"]
    assert "--source-password" not in data["rerun_command"]  # re-running asks again
    for p in tmp_path.rglob("*"):
        assert not p.is_file() or SECRET.encode() not in p.read_bytes(), f"password in {p}"


# --------------------------------------------------------------------------- help, version, completion


def test_version_and_short_help():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mailmigrate {__version__}", clean(r)
    for args in ([], *([c] for c in COMMANDS)):
        short, long = run(*args, "-h"), run(*args, "--help")
        assert short.returncode == 0, clean(short)
        assert short.stdout == long.stdout and "Usage: mailmigrate" in short.stdout


def test_shell_completion():
    r = run("--show-completion", "bash")
    assert r.returncode == 0 and "_MAILMIGRATE_COMPLETE" in r.stdout, clean(r)
    assert "--install-completion" in run("--help").stdout
    r = run(env={"_MAILMIGRATE_COMPLETE": "complete_bash", "COMP_WORDS": "mailmigrate imp", "COMP_CWORD": "1"})
    assert "import" in r.stdout, r.stdout + r.stderr
    r = run(env={"_MAILMIGRATE_COMPLETE": "complete_bash", "COMP_WORDS": "mailmigrate import --source-security ",
                 "COMP_CWORD": "3"})
    assert {"ssl", "starttls", "none"} <= set(r.stdout.split()), r.stdout + r.stderr


def test_help_metavars_choices_examples_and_flags():
    for command in COMMANDS:
        text = run(command, "--help").stdout
        assert not re.search(r"<(str|int|float|path)>", text), f"{command}: {text}"
        assert not re.search(r"--no-(insecure|dry-run|detach|gmail-one-copy|again)\b", text), f"{command}: {text}"
        if command in ("import", "batch", "status", "auth", "providers"):
            assert "Examples:" in text, f"{command} has no examples"
    text = run("import", "--help").stdout
    for option in ("--source-host HOST", "--target-port PORT", "--source-security {ssl,starttls,none}",
                   "--lang {en,de,fr,it}", "--include PATTERN", "--map-folder SRC=DST", "--retries N",
                   "--timeout SECONDS", "--source-password env:NAME|file:PATH"):
        assert option in text, f"{option!r} not in the help"
    error_line(run("import", "--no-dry-run"), 2, "No such option")
    error_line(run("import", "--no-insecure"), 2, "No such option")
    error_line(run("import", "--lang", "xx"), 2, "'xx' is not one of", "'en'")
    error_line(run("import", "--target-security", "tls"), 2, "--target-security", "'starttls'")


def test_providers_shows_one_preset():
    r = run("providers", "gmail")
    assert r.returncode == 0, clean(r)
    assert r.stdout.startswith("gmail: Gmail")
    assert "imap.gmail.com:993" in r.stdout and "mailmigrate auth gmail --email ADDRESS" in r.stdout
    assert "size_limit: 34 MiB" in r.stdout
    assert run("providers", "GMX").returncode == 0
    error_line(run("providers", "gmial"), 2, "unknown provider 'gmial'", "gmail")


# --------------------------------------------------------------------------- summary and messages


def test_summary_header_names_address_and_server(pair, tmp_path):
    src, dst = pair
    r = run("import", *side("source", src), *side("target", dst), "--journal", str(tmp_path / "j.sqlite"), "-q",
            "--no-notify")
    assert r.returncode == 0, clean(r)
    port = src.server.port
    assert r.stdout.splitlines()[0] == (f"{src.name}@example.test (127.0.0.1:{port}) → "
                                        f"{dst.name}@example.test (127.0.0.1:{port})"), r.stdout
    out = tmp_path / "copy"
    r = run("import", "--source-maildir", str(ROOT / "samples" / "demo"), "--target-maildir", str(out),
            "--journal", str(tmp_path / "j2.sqlite"), "-q", "--dry-run")
    assert r.returncode == 0, clean(r)
    assert r.stdout.splitlines()[0].startswith(f"{ROOT / 'samples' / 'demo'} → {out}"), r.stdout


def test_no_empty_table_before_an_early_error(pair, tmp_path):
    src, dst = pair
    r = run("import", *side("source", src, password="env:MM_UX_WRONG"), *side("target", dst),
            "--journal", str(tmp_path / "j.sqlite"), "-q", "--no-notify", env={"MM_UX_WRONG": "wrong-password"})
    error_line(r, 3, "login")
    assert "source folder" not in r.stdout and "total" not in r.stdout, r.stdout
    assert "status: failed (exit 3)" in r.stdout


def test_ctrl_c_says_which_folders_never_started(server, new_user, tmp_path):
    src, dst = new_user(server, password=SECRET), new_user(server, password=SECRET)
    pad = b"X-Pad: " + b"x" * 4000 + b"\r\n"
    with src.client() as c:
        for f in range(6):
            folder = f"F{f}"
            c.create_folder(folder)
            for i in range(40):
                c.append(folder, msg(f * 100 + i, extra=pad))
    with FaultProxy("127.0.0.1", server.port) as proxy:
        args = [sys.executable, str(ROOT / "cli.py"), "import", *side("source", src, port=proxy.port),
                *side("target", dst), "--journal", str(tmp_path / "j.sqlite"), "--report", str(tmp_path / "r.json"),
                "-q", "--no-notify", "--connections", "1", "--batch-size", "2"]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **ENV}, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not any(count(dst, f"F{f}") for f in range(6)):  # copying has begun
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.05)
        proxy.hold()  # the job cannot get further while we press Ctrl-C
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proxy.release()
        out, err = p.communicate(timeout=120)
    assert p.returncode == 4, out + err
    assert "Traceback" not in out + err
    data = json.loads((tmp_path / "r.json").read_text())
    empty = [f for f in data["folders"] if f["copied"] == 0 and f["skipped_duplicates"] == 0]
    # none looks finished: never begun, or (the one in hand at Ctrl-C) stopped
    assert all((f["note"] or "").startswith(("not started", "stopped")) for f in empty), empty
    never = [f for f in empty if f["note"].startswith("not started")]
    assert len(never) >= 3, data["folders"]  # six folders, one connection: most never began
    for f in never:
        row = next(ln for ln in out.splitlines() if ln.startswith(f["source"] + " "))
        assert "not started" in row, row
    done = [f for f in data["folders"] if f["copied"]]
    assert done and all(not (f["note"] or "").startswith("not started") for f in done)


def test_too_big_message_in_human_units(server, new_user, tmp_path):
    """The Gmail preset's size limit (34 MiB) on a target: the reason reads in MiB, not bytes."""
    src, dst = new_user(server, password=SECRET), new_user(server, password=SECRET)
    src.save("INBOX", msg(1))
    size = int(37.7 * 1024 * 1024)
    head = msg(2, subject="big")
    src.save("INBOX", head + b"y" * (size - len(head) - 2) + b"\r\n")
    target = side("target", dst)
    target[target.index("--target-provider") + 1] = "gmail"
    r = run("import", *side("source", src), *target, "--journal", str(tmp_path / "j.sqlite"), "-q",
            "--no-notify", timeout=300)
    assert r.returncode == 1, clean(r)
    assert "too big: 37.7 MiB, the target accepts at most 34 MiB" in r.stdout, r.stdout
    assert str(size) not in r.stdout


def test_notices_are_one_line_when_piped(offline):
    src, dst = offline
    r = run("import", *side("source", src), *side("target", dst), "--insecure")
    warning = next(ln for ln in r.stderr.splitlines() if "WARNING" in ln)
    assert len(warning) > 80 and warning.endswith("can read your mail and passwords."), r.stderr


# --------------------------------------------------------------------------- CA files and TLS


def test_missing_ca_file_names_the_option_and_the_file(tmp_path, offline):
    nowhere = tmp_path / "x" / "y.pem"
    src, dst = offline
    error_line(run("import", *side("source", src), *side("target", dst, security="ssl"),
                   "--target-ca-file", str(nowhere)), 2, f"--target-ca-file {nowhere}", "does not exist")
    error_line(run("import", *side("source", src), *side("target", dst), "--smtp-ca-file", str(nowhere)),
               2, f"--smtp-ca-file {nowhere}")


def test_untrusted_certificate_names_the_side_and_the_ca_file(pair, server, tmp_path):
    src, dst = pair
    other_ca = "/etc/ssl/certs/ca-certificates.crt"  # a real CA bundle that never signed the test server
    if not Path(other_ca).is_file():
        pytest.skip("no system CA bundle")
    r = run("import", *side("source", src), *side("target", dst, security="ssl", port=server.ssl_port),
            "--target-ca-file", other_ca, "--journal", str(tmp_path / "j.sqlite"), "-q", "--no-notify")
    line = error_line(r, 4, f"target: TLS certificate of 127.0.0.1:{server.ssl_port} not trusted by {other_ca}",
                      "--target-ca-file")
    assert "--source-ca-file" not in line
    r = run("import", *side("source", src, security="ssl", port=server.ssl_port), *side("target", dst),
            "--journal", str(tmp_path / "j.sqlite"), "-q", "--no-notify")
    error_line(r, 4, "source: TLS certificate of 127.0.0.1", "--source-ca-file")
