"""Secrets and transport security.

* After full runs with distinctive passwords (literal on the command line, from a file, in a CSV
  batch), an OAuth token from a file, a background (--detach) run, a run killed mid-copy and
  forced failures (wrong password, rejected token), no secret - raw or in the encodings IMAP
  authentication uses - appears in the journal databases (and their -wal/-shm files), the JSON
  reports, the logs under $MAILMIGRATE_HOME, stdout/stderr, or the text of the exceptions.
* What mailmigrate writes under $MAILMIGRATE_HOME is private (files 0600, folders 0700).
* STARTTLS asked but not offered (or stripped by a man in the middle) is refused before any login
  crosses the wire; an untrusted certificate is refused unless the user trusts its CA explicitly.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import os
import secrets
import signal
import stat
import time
import traceback
from pathlib import Path

import pytest

from migrate.errors import AuthFailed, MigrateError
from migrate.sides import build_side
from tests.reliability.kit import (
    FOLDERS,
    TapProxy,
    assert_untouched,
    compare,
    digest,
    identity,
    run_cli,
    seed,
    side_args,
)
from tests.support.mailbox import side

pytestmark = pytest.mark.dovecot


def _forms(secret: str, login: str) -> dict[str, bytes]:
    """The secret as bytes in every encoding it could leak in."""
    raw = secret.encode()
    return {
        "raw": raw,
        "base64": base64.b64encode(raw),
        "sasl-plain": base64.b64encode(b"\0" + login.encode() + b"\0" + raw),
        "xoauth2": base64.b64encode(f"user={login}\x01auth=Bearer {secret}\x01\x01".encode()),
    }


class Leaks:
    """Search every place for every form of every secret; count the searches."""

    def __init__(self, tally):
        self.tally = tally
        self.secrets: dict[str, tuple[str, str]] = {}  # name -> (value, login)
        self.found: list[tuple[str, str, str]] = []

    def add(self, name: str, value: str, login: str) -> str:
        self.secrets[name] = (value, login)
        return value

    def check(self, place: str, data: bytes | str, *, allow: tuple[str, ...] = ()) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        for name, (value, login) in self.secrets.items():
            if name in allow:
                continue
            for form, needle in _forms(value, login).items():
                self.tally.secrets += 1
                if needle in data:
                    self.found.append((name, form, place))

    def check_tree(self, root: Path, *, allow_under: dict[str, str] | None = None) -> int:
        n = 0
        for p in sorted(root.rglob("*")):
            if p.is_file():
                allow = tuple(name for name, sub in (allow_under or {}).items() if sub in p.parts)
                self.check(str(p.relative_to(root)), p.read_bytes(), allow=allow)
                n += 1
        return n

    def check_run(self, what: str, r) -> None:
        self.check(f"{what} stdout", r.stdout)
        self.check(f"{what} stderr", r.stderr)


def _exception_text(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), getattr(exc, "message", ""), getattr(exc, "hint", "") or "",
                      "".join(traceback.format_exception(exc))])


def _private(root: Path) -> list[str]:
    """What others could read: a file with any group/other permission, or a folder that others
    can enter without a closed (0700) folder above it below ``root`` ($MAILMIGRATE_HOME itself
    may be 0755 like ~/.local/state)."""
    bad = []

    def closed(p: Path) -> bool:
        return not stat.S_IMODE(p.stat().st_mode) & 0o077

    for p in root.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.is_file() and mode & 0o077:
            bad.append(f"{p.relative_to(root)} {oct(mode)}")
        elif p.is_dir() and mode & 0o077 and not any(
                closed(root / a) for a in p.relative_to(root).parents if a != Path(".")):
            bad.append(f"{p.relative_to(root)}/ {oct(mode)}")
    return bad


def _wait_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"background job {pid} still running after {timeout}s")
        stat_line = Path(f"/proc/{pid}/stat").read_text(errors="replace") if Path(f"/proc/{pid}/stat").exists() else ""
        if ") Z " in stat_line:  # a zombie waiting for its reaper: finished
            return
        time.sleep(0.1)


def test_no_secret_anywhere(dovecot, new_user, tmp_path, tally, home):
    slash, osrv = dovecot("slash"), dovecot("oauth")
    leaks = Leaks(tally)
    tag = secrets.token_hex(6)

    def user(name: str, server, password: str):
        u = new_user(server, password=password)
        leaks.add(name, password, u.name)
        return u

    src = user("src", slash, f"S3cret-src-{tag}-#&*")
    dst = user("dst", slash, f"S3cret-dst-{tag}-%+=")
    seed(src, 40, rnd=31)
    before = digest(src)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)

    def secret_file(name: str, value: str) -> str:
        p = private / name
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        return f"file:{p}"

    runs = []

    def cli(what: str, *args: str, env=None, expect: int | None = 0):
        r = run_cli(*args, env=env)
        runs.append((what, r))
        tally.runs += 1
        if expect is not None:
            assert r.returncode == expect, (what, r.returncode, r.stdout[-1500:], r.stderr[-1500:])
        return r

    # 1. Literal source password on the command line, target password from a 0600 file; killed
    #    right after an APPEND (the journal's -wal/-shm files are left behind), then finished.
    base = ["import", *side_args("source", src, password=src.password),
            *side_args("target", dst, password=secret_file("dst.pw", dst.password)), "--no-notify", "-q",
            "--batch-size", "4"]
    cli("killed import", *base, env={"MAILMIGRATE_FAULT": "after-append:6"}, expect=-signal.SIGKILL)
    wal = list(home.rglob("*-wal"))
    assert wal, sorted(p.name for p in home.rglob("*"))  # the crash left a WAL to search
    leaks.check_tree(home)
    cli("import", *base, "--report", str(tmp_path / "r1.json"))
    compare(tally, src, dst, identity(FOLDERS))

    # 2. OAuth: the source logs in with XOAUTH2, the access token comes from a 0600 file.
    osrc, odst = user("osrc-pw", osrv, f"S3cret-osrc-{tag}"), user("odst", slash, f"S3cret-odst-{tag}")
    token = leaks.add("oauth-token", f"ya29.Tok-{tag}-{secrets.token_urlsafe(24)}", osrc.name)
    osrv.oauth_tokens[token] = osrc.name
    seed(osrc, 10, folders=("INBOX",), rnd=32)
    oargs = ["import", "--source-email", f"{osrc.name}@example.test", "--source-username", osrc.name,
             "--source-oauth-token", secret_file("token", token), "--source-host", "127.0.0.1",
             "--source-port", str(osrv.port), "--source-security", "none", "--source-provider", "imap",
             *side_args("target", odst, password=odst.password), "--no-notify", "-q"]
    cli("oauth import", *oargs, "--report", str(tmp_path / "r2.json"))
    compare(tally, osrc, odst, [("INBOX", "INBOX")])

    # 3. A CSV batch with literal passwords in its cells.
    bsrc, bdst = user("bsrc", slash, f"S3cret-bsrc-{tag}"), user("bdst", slash, f"S3cret-bdst-{tag}")
    seed(bsrc, 12, folders=("INBOX", "Projects"), rnd=33)
    from migrate.csvbatch import COLUMNS
    row = {c: "" for c in COLUMNS}
    for role, u in (("source", bsrc), ("target", bdst)):
        row.update({f"{role}_email": f"{u.name}@example.test", f"{role}_password": u.password,
                    f"{role}_provider": "imap", f"{role}_host": "127.0.0.1", f"{role}_port": str(slash.port),
                    f"{role}_security": "none", f"{role}_username": u.name})
    csv_path = private / "batch.csv"
    with open(os.open(csv_path, os.O_WRONLY | os.O_CREAT, 0o600), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerow([row[c] for c in COLUMNS])
    cli("batch", "batch", str(csv_path), "-q", "--no-notify", "--report", str(tmp_path / "r3.json"))
    compare(tally, bsrc, bdst, identity(("INBOX", "Projects")))

    # 4. In the background (--detach): its log file lives under $MAILMIGRATE_HOME.
    dsrc, ddst = user("dsrc", slash, f"S3cret-dsrc-{tag}"), user("ddst", slash, f"S3cret-ddst-{tag}")
    seed(dsrc, 10, folders=("INBOX",), rnd=34)
    r = cli("detached import", "import", *side_args("source", dsrc, password=dsrc.password),
            *side_args("target", ddst, password=secret_file("ddst.pw", ddst.password)), "--no-notify", "--detach")
    pid = int(r.stdout.decode().split("(pid ", 1)[1].split(")", 1)[0])
    _wait_gone(pid)
    logs = list(home.rglob("*.log"))
    assert logs, sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    compare(tally, dsrc, ddst, [("INBOX", "INBOX")])

    # 5. Forced failures: a wrong literal password, a rejected token.
    wrong = leaks.add("wrong-pw", f"Wr0ng-pw-{tag}-!?", src.name)
    r = cli("wrong password", "import", *side_args("source", src, password=wrong), *side_args("target", dst),
            "--no-notify", "-q", expect=3)
    assert b"login" in r.stderr.lower()
    bad_token = leaks.add("bad-token", f"ya29.BAD-{tag}-{secrets.token_urlsafe(20)}", osrc.name)
    bad_args = [a if not a.startswith("file:") else secret_file("bad-token", bad_token) for a in oargs]
    r = cli("rejected token", *bad_args, expect=3)
    assert r.stderr.strip()
    # The same two failures in-process: the exception objects themselves (message, hint, repr,
    # formatted traceback with its chained causes).
    wrong_opts = dataclasses.replace(side("source", src), password=wrong)
    token_opts = dataclasses.replace(side("source", osrc), password=None,
                                     oauth_token=bad_args[bad_args.index("--source-oauth-token") + 1])
    excs = []
    for opts in (wrong_opts, token_opts):
        try:
            build_side(opts).factory().list_folders()
        except MigrateError as exc:
            excs.append(exc)
    assert len(excs) == 2 and all(isinstance(e, AuthFailed) for e in excs), excs
    for exc in excs:
        leaks.check(f"exception {type(exc).__name__}", _exception_text(exc))

    cli("status", "status")

    # Search everything.
    for what, r in runs:
        leaks.check_run(what, r)
    for rep in sorted(tmp_path.glob("r*.json")):
        leaks.check(rep.name, rep.read_bytes())
    files = leaks.check_tree(home)
    assert files >= 3  # journals, logs
    assert not leaks.found, leaks.found
    # The searches can find a leak: the password files we wrote do hold the passwords.
    probe = Leaks(tally)
    probe.secrets = dict(leaks.secrets)
    probe.check_tree(private)
    assert {n for n, _f, _p in probe.found} >= {"dst", "oauth-token", "bsrc", "bdst"}

    bad_modes = _private(home)
    assert not bad_modes, bad_modes
    assert_untouched(tally, src, before)


def test_stored_signin_file_is_private(tmp_path, tally, monkeypatch):
    """`mailmigrate auth` keeps a refresh token in $MAILMIGRATE_HOME/tokens (no keyring): 0600 in a
    0700 folder, whatever the umask; nothing else of it is written anywhere."""
    oauth = pytest.importorskip("migrate.oauth")
    if not hasattr(oauth, "save_signin"):
        pytest.skip("migrate.oauth.save_signin is not available")
    home = tmp_path / "mmhome"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(home))
    monkeypatch.setenv("MAILMIGRATE_KEYRING", "0")
    refresh = f"1//refresh-{secrets.token_urlsafe(24)}"
    old = os.umask(0o022)
    try:
        oauth.save_signin(oauth.GOOGLE, "alice@example.test", {"refresh_token": refresh, "client_id": "x"})
    finally:
        os.umask(old)
    files = [p for p in home.rglob("*") if p.is_file()]
    assert len(files) == 1, files
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    assert refresh.encode() in files[0].read_bytes()
    tally.secrets += 1


# --------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("how", ["not-offered", "stripped-by-mitm"])
def test_starttls_is_never_downgraded(dovecot, new_user, tmp_path, tally, home, how):
    srv = dovecot("slash", starttls=False) if how == "not-offered" else dovecot("slash")
    src, dst = new_user(srv), new_user(dovecot("slash"))
    seed(src, 5, folders=("INBOX",), rnd=35)
    with TapProxy("127.0.0.1", srv.port, record=True) as p:
        if how == "stripped-by-mitm":
            p.rewrite("downstream", b" STARTTLS", b"")  # from the greeting and from CAPABILITY
        r = run_cli("import", *side_args("source", src, port=p.port, security="starttls"),
                    "--source-ca-file", srv.ca_file, *side_args("target", dst), "--no-notify", "-q")
        tally.runs += 1
        up = bytes(p.traffic["upstream"])
    err = r.stderr.decode()
    assert r.returncode == 4, (r.returncode, err)
    assert "STARTTLS" in err, err
    assert src.password.encode() not in up and b"LOGIN" not in up.upper() and b"AUTHENTICATE" not in up.upper(), up
    with dst.client() as c:
        assert c.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0

    # Control: the same recorder does see a plain-text login (so the check above can fail).
    with TapProxy("127.0.0.1", srv.port, record=True) as p:
        r = run_cli("import", *side_args("source", src, port=p.port, security="none"), *side_args("target", dst),
                    "--no-notify", "-q")
        tally.runs += 1
        assert r.returncode == 0, r.stderr
        assert src.password.encode() in bytes(p.traffic["upstream"])
    tally.secrets += 1


def test_untrusted_certificate_refused_unless_trusted(dovecot, new_user, tmp_path, tally, home):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 12, folders=("INBOX", "Projects"), rnd=36)
    before = digest(src)

    def args(src_sec: str, dst_sec: str, *extra: str) -> list[str]:
        sp = srv.ssl_port if src_sec == "ssl" else srv.port
        dp = srv.ssl_port if dst_sec == "ssl" else srv.port
        return ["import", *side_args("source", src, port=sp, security=src_sec),
                *side_args("target", dst, port=dp, security=dst_sec), "--no-notify", "-q", *extra]

    for what, a, flag in (("source ssl", args("ssl", "none"), "--source-ca-file"),
                          ("target starttls", args("none", "starttls"), "--target-ca-file")):
        r = run_cli(*a)
        tally.runs += 1
        err = r.stderr.decode()
        assert r.returncode == 4, (what, r.returncode, err)
        assert "certificate" in err.lower() and flag in err, (what, err)
        with dst.client() as c:
            assert c.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0, what
    r = run_cli(*args("ssl", "starttls", "--source-ca-file", srv.ca_file, "--target-ca-file", srv.ca_file))
    tally.runs += 1
    assert r.returncode == 0, r.stderr
    compare(tally, src, dst, identity(("INBOX", "Projects")))
    assert_untouched(tally, src, before)
