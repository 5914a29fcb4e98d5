"""OAuth2 against real servers: XOAUTH2/OAUTHBEARER imports on Dovecot's oauth2 passdb, a token
that expires mid-import, and `mailmigrate auth` + refresh through the real google-auth and msal
code paths pointed at a local HTTPS token endpoint (tests/support/oauth_server.py). Tokens never
show up in output, journal or report, and the stored sign-in is readable only by the user."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import imapclient
import pytest

from migrate import oauth
from migrate.accounts import ImapAccount
from migrate.api import ImportRequest, run_import
from migrate.errors import AuthFailed
from migrate.imap import connect
from migrate.sides import SideOptions
from tests.support.imap_proxy import ImapAnswerProxy
from tests.support.mailbox import ROOT, cli, cli_args, msg, snapshot
from tests.support.oauth_server import FakeOAuth
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

FOLDERS = ("INBOX", "Work")


@pytest.fixture
def fake(dovecot):
    """Local HTTPS token endpoint whose access tokens the oauth Dovecot accepts."""
    srv = dovecot("oauth")
    with FakeOAuth(on_access_token=lambda token, user: srv.oauth_tokens.__setitem__(token, user)) as o:
        yield o


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(h))
    monkeypatch.setenv("MAILMIGRATE_KEYRING", "0")
    return h


def _seed(user, n: int = 4) -> None:
    for i in range(n):
        user.save("INBOX", msg(i), flags=["\\Seen"] if i % 2 else [])
    user.save("Work", msg(500, subject="work"), flags=["\\Flagged", "$Label1"])


def _assert_copied(src, dst, folders=FOLDERS) -> None:
    for f in folders:
        assert snapshot(dst, f) == snapshot(src, f), f


def _email_user(new_user, srv, prefix: str):
    """A Dovecot user whose login is an address (what Gmail/Outlook presets log in with)."""
    return new_user(srv, name=f"{prefix}{secrets.token_hex(4)}@example.test")


def _no_secret_anywhere(secrets_: list[str], *texts: str, files: tuple[Path, ...] = ()) -> None:
    blobs = list(texts) + [p.read_bytes().decode("latin-1") for p in files if p.exists()]
    for s in secrets_:
        for blob in blobs:
            assert s not in blob, "a token leaked"


def _oauth_src_args(user, token_spec: str, port: int | None = None) -> list[str]:
    return ["--source-email", f"{user.name}@example.test", "--source-username", user.name,
            "--source-oauth-token", token_spec, "--source-host", "127.0.0.1",
            "--source-port", str(port or user.server.port), "--source-security", "none",
            "--source-provider", "imap"]


# --- access tokens handed in directly -----------------------------------------------------------


def test_xoauth2_import_with_token_files_via_cli(dovecot, new_user, tmp_path):
    srv = dovecot("oauth")
    src, dst = new_user(srv), new_user(srv)
    _seed(src)
    tokens = {}
    for role, user in (("source", src), ("target", dst)):
        tokens[role] = f"tok-{role}-{secrets.token_hex(8)}"
        srv.oauth_tokens[tokens[role]] = user.name
        (tmp_path / role).write_text(tokens[role] + "\n")
    args = ["import", *_oauth_src_args(src, f"file:{tmp_path / 'source'}"),
            "--target-email", f"{dst.name}@example.test", "--target-username", dst.name,
            "--target-oauth-token", f"file:{tmp_path / 'target'}", "--target-host", "127.0.0.1",
            "--target-port", str(srv.port), "--target-security", "none", "--target-provider", "imap",
            "--journal", str(tmp_path / "j.sqlite"), "--report", str(tmp_path / "r.json"), "-q", "--no-notify"]
    r = cli(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    _assert_copied(src, dst)
    again = cli(*args)
    assert again.returncode == 0 and "copied" in again.stdout
    _no_secret_anywhere(list(tokens.values()), r.stdout, r.stderr, again.stdout, again.stderr,
                        files=(tmp_path / "j.sqlite", tmp_path / "r.json"))


def test_oauthbearer_import(dovecot, new_user, tmp_path):
    # In-process: the CLI has no option to choose OAUTHBEARER (SideOptions.oauth_mechanism).
    srv = dovecot("oauth")
    src, dst = new_user(srv), new_user(srv)
    _seed(src)
    sides = []
    for role, user in (("source", src), ("target", dst)):
        token = f"bearer-{role}-{secrets.token_hex(8)}"
        srv.oauth_tokens[token] = user.name
        os.environ[f"MMTEST_BEARER_{role.upper()}"] = token
        sides.append(SideOptions(role, email=f"{user.name}@example.test", username=user.name, host="127.0.0.1",
                                 port=srv.port, security="none", provider="imap", interactive=False,
                                 oauth_token=f"env:MMTEST_BEARER_{role.upper()}", oauth_mechanism="OAUTHBEARER"))
    report = run_import(ImportRequest(source=sides[0], target=sides[1], journal=tmp_path / "j.sqlite",
                                      progress=False))
    assert report.exit_code == 0, report.error
    _assert_copied(src, dst)
    assert "method=OAUTHBEARER" in srv.log_path.read_text(errors="replace")


def test_token_expiring_mid_import_is_reread_and_nothing_lost(dovecot, new_user, tmp_path):
    osrv, tsrv = dovecot("oauth"), dovecot("slash")
    src, dst = new_user(osrv), new_user(tsrv)
    for i in range(24):
        src.save("INBOX", msg(i, extra=b"X-Pad: " + b"x" * (i * 101) + b"\r\n"), flags=["\\Seen"] if i % 3 else [])
    old, new = f"old-{secrets.token_hex(8)}", f"new-{secrets.token_hex(8)}"
    osrv.oauth_tokens[old] = src.name
    token_file = tmp_path / "token"
    token_file.write_text(old)
    with FaultProxy("127.0.0.1", osrv.port) as proxy:
        # After 10 messages: the body fetch of the 11th never reaches the server.
        proxy.cut_when(b"UID FETCH 11 (UID FLAGS INTERNALDATE BODY.PEEK[])", "upstream")
        rotated = threading.Event()

        def rotate() -> None:  # the token expires: revoked server-side, a new one in the file
            deadline = time.monotonic() + 60
            while proxy.cuts == 0 and time.monotonic() < deadline:
                time.sleep(0.002)
            osrv.oauth_tokens.pop(old, None)
            osrv.oauth_tokens[new] = src.name
            token_file.write_text(new + "\n")
            rotated.set()

        t = threading.Thread(target=rotate, daemon=True)
        t.start()
        args = ["import", *_oauth_src_args(src, f"file:{token_file}", port=proxy.port),
                *cli_args("target", dst), "--journal", str(tmp_path / "j.sqlite"), "--batch-size", "1",
                "--connections", "1", "-q", "--no-notify", "--report", str(tmp_path / "r.json")]
        r = cli(*args)
        t.join(5)
        assert rotated.is_set() and proxy.cuts == 1
        assert proxy.connections >= 3  # planning, the copying worker, and its reconnect
    assert r.returncode == 0, r.stdout + r.stderr
    _assert_copied(src, dst, ("INBOX",))
    c = imapclient.IMAPClient("127.0.0.1", port=osrv.port, ssl=False, timeout=10)
    try:
        with pytest.raises(imapclient.exceptions.LoginError):  # the old token really is dead
            c.oauth2_login(src.name, old)
    finally:
        c.shutdown()
    _no_secret_anywhere([old, new], r.stdout, r.stderr, files=(tmp_path / "j.sqlite", tmp_path / "r.json"))


# --- stored sign-in: Google ------------------------------------------------------------------


def _google_signin(fake: FakeOAuth, email: str, user: str, env: dict[str, str], *, deny: bool = False,
                   umask: int | None = None) -> subprocess.CompletedProcess:
    """Run `mailmigrate auth gmail` and play the browser: open the printed address, answer the
    loopback redirect with a code (or with error=access_denied)."""
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "auth", "gmail", "--email", email, "--no-browser",
                          "--client-id", "cid-123.apps.googleusercontent.com", "--client-secret", "env:MMTEST_GSECRET"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                         env={**full_env, "MMTEST_GSECRET": "gsecret-xyz"},
                         preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    seen = []
    url = None
    deadline = time.monotonic() + 30
    assert p.stdout is not None
    while url is None and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        seen.append(line)
        if fake.google_auth_uri in line:
            url = line.strip()
    assert url, "".join(seen) + (p.stderr.read() if p.stderr else "")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["login_hint"] == email and q["access_type"] == "offline" and q["scope"] == "https://mail.google.com/"
    assert q["redirect_uri"].startswith("http://127.0.0.1:")
    code = "code-" + secrets.token_hex(6)
    fake.codes[code] = user
    answer = {"error": "access_denied"} if deny else {"code": code, "scope": q["scope"]}
    with urllib.request.urlopen(q["redirect_uri"] + "?" + urllib.parse.urlencode({**answer, "state": q["state"]}),
                                timeout=10) as resp:
        resp.read()
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, "".join(seen) + out, err)


def _stored_import_args(user, provider: str, dst, tmp_path: Path, port: int | None = None) -> list[str]:
    return ["import", "--source-email", user.name, "--source-provider", provider, "--source-host", "127.0.0.1",
            "--source-port", str(port or user.server.port), "--source-security", "none",
            *cli_args("target", dst), "--journal", str(tmp_path / "j.sqlite"),
            "--report", str(tmp_path / "r.json"), "-q", "--no-notify"]


def _assert_private(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, oct(path.parent.stat().st_mode)


def test_auth_gmail_then_import_refreshes_through_google_auth(dovecot, new_user, fake, tmp_path):
    osrv, tsrv = dovecot("oauth"), dovecot("slash")
    src, dst = _email_user(new_user, osrv, "g"), new_user(tsrv)
    _seed(src)
    env = {**fake.env(), "MAILMIGRATE_HOME": str(tmp_path / "home")}
    signin = _google_signin(fake, src.name, src.name, env, umask=0)  # umask 0: still 0600/0700
    assert signin.returncode == 0, signin.stdout + signin.stderr
    path = tmp_path / "home" / "tokens" / f"google-{src.name}.json"
    assert f"refresh token stored in {path}" in signin.stdout
    _assert_private(path)
    record = json.loads(path.read_text())
    assert record["refresh_token"] in fake.refresh_tokens and record["client_id"].startswith("cid-123")
    assert not any(tok in path.read_text() for tok in fake.issued)  # never an access token
    assert fake.grants("authorization_code") == 1

    r = cli(*_stored_import_args(src, "gmail", dst, tmp_path), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    _assert_copied(src, dst)
    # One refresh through google.oauth2.credentials for all connections (cached access token).
    assert fake.grants("refresh_token") == 1
    _assert_private(path)
    _no_secret_anywhere([record["refresh_token"], "gsecret-xyz", *fake.issued], signin.stdout, signin.stderr,
                        r.stdout, r.stderr, files=(tmp_path / "j.sqlite", tmp_path / "r.json"))


def test_google_access_denied_during_sign_in(fake, tmp_path):
    env = {**fake.env(), "MAILMIGRATE_HOME": str(tmp_path / "home")}
    r = _google_signin(fake, "someone@gmail.com", "nobody", env, deny=True)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "access_denied" in r.stderr and "test user" in r.stderr
    assert "mailmigrate auth gmail --email someone@gmail.com" in r.stderr
    assert not (tmp_path / "home" / "tokens" / "google-someone@gmail.com.json").exists()


def test_rejected_access_token_forces_one_refresh(dovecot, new_user, fake, home):
    osrv = dovecot("oauth")
    user = _email_user(new_user, osrv, "r")
    rt = fake.new_refresh_token(user.name)
    oauth.save_signin("google", user.name, {"client_id": "cid", "client_secret": "cs", "refresh_token": rt,
                                            "token_uri": fake.google_token_uri})
    os.environ["REQUESTS_CA_BUNDLE"] = fake.ca_file
    try:
        from migrate import providers
        provider = oauth.stored_token_provider(providers.get("gmail"), user.name)
        assert provider is not None
        account = ImapAccount(email=user.name, host="127.0.0.1", port=osrv.port, security="none",
                              oauth_token=provider, provider="gmail")
        with connect(account):
            pass
        with connect(account):  # cached: no second refresh
            pass
        assert fake.grants("refresh_token") == 1
        first = fake.issued[-1]
        del osrv.oauth_tokens[first]  # revoked early, still "valid" by its expiry
        time.sleep(0.01)
        with connect(account) as ep:  # rejected once -> asked again -> refreshed
            assert ep.status("INBOX").exists == 0
        assert fake.grants("refresh_token") == 2
    finally:
        del os.environ["REQUESTS_CA_BUNDLE"]


@pytest.mark.parametrize(("kind", "error", "needle"), [
    ("google", ("invalid_grant", "Token has been expired or revoked.", []),
     "run `mailmigrate auth gmail --email {email}` again"),
    ("microsoft", ("invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired "
                   "due to inactivity.", [70008]), "run `mailmigrate auth outlook --email {email}` again"),
    ("microsoft", ("invalid_grant", "AADSTS65001: The user or administrator has not consented to use the "
                   "application.", [65001]), "Grant admin consent"),
    ("microsoft", ("invalid_client", "AADSTS7000218: The request body must contain the following parameter: "
                   "'client_assertion' or 'client_secret'.", [7000218]), "Allow public client flows"),
])
def test_refresh_errors_exit_3_with_next_step(dovecot, new_user, fake, tmp_path, kind, error, needle):
    osrv, tsrv = dovecot("oauth"), dovecot("slash")
    src, dst = _email_user(new_user, osrv, "e"), new_user(tsrv)
    env = {**fake.env(), "MAILMIGRATE_HOME": str(tmp_path / "home")}
    rt = fake.new_refresh_token(src.name)
    record = {"client_id": "cid", "refresh_token": rt}
    record.update({"client_secret": "cs", "token_uri": fake.google_token_uri} if kind == "google"
                  else {"authority": fake.ms_authority})
    os.environ["MAILMIGRATE_HOME"] = env["MAILMIGRATE_HOME"]
    try:
        oauth.save_signin(kind, src.name, record, prefer="file")
    finally:
        del os.environ["MAILMIGRATE_HOME"]
    fake.fail_refresh = error
    r = cli(*_stored_import_args(src, "gmail" if kind == "google" else "outlook", dst, tmp_path), env=env)
    assert r.returncode == 3, r.stdout + r.stderr
    (line,) = [x for x in (r.stdout + r.stderr).splitlines() if x.startswith("error: ")]  # one line
    assert needle.format(email=src.name) in line, line
    assert rt not in r.stdout + r.stderr


# --- stored sign-in: Microsoft ---------------------------------------------------------------


def test_auth_outlook_device_flow_then_import_refreshes_through_msal(dovecot, new_user, fake, tmp_path):
    osrv, tsrv = dovecot("oauth"), dovecot("slash")
    src, dst = _email_user(new_user, osrv, "m"), new_user(tsrv)
    _seed(src)
    env = {**fake.env(), "MAILMIGRATE_HOME": str(tmp_path / "home"), "MAILMIGRATE_MS_CLIENT_ID": "ms-cid-1"}
    fake.device_user = src.name
    fake.rotate = True  # Microsoft hands out a new refresh token with every refresh
    r = cli("auth", "outlook", "--email", src.name, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "https://microsoft.com/devicelogin" in r.stdout and "ABCD-EFGH" in r.stdout
    path = tmp_path / "home" / "tokens" / f"microsoft-{src.name}.json"
    _assert_private(path)
    first_rt = json.loads(path.read_text())["refresh_token"]
    assert fake.grants("urn:ietf:params:oauth:grant-type:device_code") == 2  # pending once, then signed in

    imp = cli(*_stored_import_args(src, "outlook", dst, tmp_path), env=env)
    assert imp.returncode == 0, imp.stdout + imp.stderr
    _assert_copied(src, dst)
    assert fake.grants("refresh_token") == 1
    scopes = [form.get("scope", "") for p, form in fake.requests if form.get("grant_type") == "refresh_token"]
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in scopes[0] and "offline_access" in scopes[0]
    record = json.loads(path.read_text())
    assert record["refresh_token"] != first_rt  # the rotated refresh token was kept
    _assert_private(path)
    _no_secret_anywhere([first_rt, record["refresh_token"], *fake.issued], r.stdout, r.stderr, imp.stdout,
                        imp.stderr, files=(tmp_path / "j.sqlite", tmp_path / "r.json"))

    # microsoft365 uses the same sign-in (one Microsoft flow); --forget removes it.
    forget = cli("auth", "microsoft365", "--email", src.name, "--forget", env=env)
    assert forget.returncode == 0 and str(path) in forget.stdout and not path.exists()


def test_microsoft_imap_disabled_for_tenant(dovecot, new_user, tmp_path):
    """Exchange Online accepts the token, then refuses IMAP: one line naming the admin setting."""
    osrv, tsrv = dovecot("oauth"), dovecot("slash")
    src, dst = _email_user(new_user, osrv, "d"), new_user(tsrv)
    token = f"tok-{secrets.token_hex(8)}"
    osrv.oauth_tokens[token] = src.name
    (tmp_path / "t").write_text(token)
    with ImapAnswerProxy("127.0.0.1", osrv.port, watch=rb"^(LIST|SELECT|EXAMINE|ENABLE|NAMESPACE)") as proxy:
        proxy.answer(rb"^(LIST|SELECT|EXAMINE|ENABLE|NAMESPACE)", reply=b"NO User is authenticated but not connected.")
        args = ["import", "--source-email", src.name, "--source-provider", "outlook", "--source-oauth-token",
                f"file:{tmp_path / 't'}", "--source-host", "127.0.0.1", "--source-port", str(proxy.port),
                "--source-security", "none", *cli_args("target", dst), "--journal", str(tmp_path / "j.sqlite"),
                "-q", "--no-notify"]
        r = cli(*args)
    assert r.returncode == 3, r.stdout + r.stderr
    (line,) = [x for x in (r.stdout + r.stderr).splitlines() if x.startswith("error: ")]
    assert "authenticated but not connected" in line and "IMAP may be disabled for this mailbox or the tenant" in line
    assert token not in r.stdout + r.stderr


def test_outlook_with_a_password_says_oauth_only(dovecot, new_user):
    srv = dovecot("slash")
    user = new_user(srv)
    from migrate.accounts import Secret
    account = ImapAccount(email=f"{user.name}@outlook.com", username=user.name, host="127.0.0.1", port=srv.port,
                          security="none", password=Secret("wrong-password"), provider="outlook")
    with pytest.raises(AuthFailed) as info:
        connect(account)
    assert "accepts only OAuth sign-in" in (info.value.hint or "")
    assert f"mailmigrate auth outlook --email {user.name}@outlook.com" in (info.value.hint or "")


# --- the token store ---------------------------------------------------------------------------


def test_token_file_is_private_whatever_the_umask(home):
    old = os.umask(0o277)  # would make a file unwritable and a folder unusable
    try:
        where = oauth.save_signin("google", "A.User@Example.test",
                                  {"client_id": "c", "client_secret": "s", "refresh_token": "rt-secret-1"})
    finally:
        os.umask(old)
    path = Path(where)
    assert path == home / "tokens" / "google-a.user@example.test.json"
    _assert_private(path)
    os.chmod(path, 0o644)  # someone loosened it: reading tightens it again
    found = oauth.load_signin("google", "a.user@example.test")
    assert found and found[0]["refresh_token"] == "rt-secret-1" and found[1] == "file"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    from migrate.errors import redact
    assert "rt-secret-1" not in redact("refresh rt-secret-1")


def test_no_stored_signin_and_non_oauth_presets(home):
    from migrate import providers
    assert oauth.stored_token_provider(providers.get("gmail"), "nobody@gmail.com") is None
    assert oauth.stored_token_provider(providers.get("yahoo"), "x@yahoo.com") is None
    assert oauth.stored_token_provider(None, "x@yahoo.com") is None
    (home / "tokens").mkdir(parents=True)
    (home / "tokens" / "google-bad@gmail.com.json").write_text("{not json")
    with pytest.raises(Exception, match="damaged"):
        oauth.stored_token_provider(providers.get("gmail"), "bad@gmail.com")


def test_auth_refuses_providers_without_oauth_and_missing_client(tmp_path):
    env = {"MAILMIGRATE_HOME": str(tmp_path), "MAILMIGRATE_GOOGLE_CLIENT_ID": "", "MAILMIGRATE_MS_CLIENT_ID": ""}
    r = cli("auth", "yahoo", "--email", "x@yahoo.com", env=env)
    assert r.returncode == 2 and "app password" in r.stderr
    r = cli("auth", "gmail", "--email", "x@gmail.com", env=env)
    assert r.returncode == 2 and "Desktop app" in r.stderr and "MAILMIGRATE_GOOGLE_CLIENT_ID" in r.stderr
    r = cli("auth", "outlook", "--email", "x@outlook.com", env=env)
    assert r.returncode == 2 and "Allow public client flows" in r.stderr
    assert re.fullmatch(r"error: .*\n", r.stderr)  # one line


def test_keyring_is_used_when_it_has_a_usable_backend(home, monkeypatch):
    """The optional ``keyring`` module (not a dependency): a stand-in with a usable backend."""
    import types

    class Backend:
        priority = 5

        def __init__(self) -> None:
            self.items: dict[tuple[str, str], str] = {}

        def set_password(self, service, user, value):
            self.items[(service, user)] = value

        def get_password(self, service, user):
            return self.items.get((service, user))

        def delete_password(self, service, user):
            del self.items[(service, user)]

    backend = Backend()
    monkeypatch.setitem(sys.modules, "keyring", types.SimpleNamespace(get_keyring=lambda: backend))
    monkeypatch.delenv("MAILMIGRATE_KEYRING")
    record = {"client_id": "c", "authority": "https://login.microsoftonline.com/common", "refresh_token": "rt-kr-1"}
    assert oauth.save_signin("microsoft", "K@Example.test", record) == "keyring"
    assert not (home / "tokens").exists() or not any((home / "tokens").iterdir())
    assert ("mailmigrate", "microsoft:k@example.test") in backend.items
    found = oauth.load_signin("microsoft", "k@example.test")
    assert found and found[0]["refresh_token"] == "rt-kr-1" and found[1] == "keyring"
    assert oauth.forget_signin("microsoft", "k@example.test") == ["keyring"] and not backend.items

    Backend.priority = 0  # keyring's fail/null backends: files instead
    where = oauth.save_signin("microsoft", "k@example.test", record)
    assert where.endswith("microsoft-k@example.test.json")
    monkeypatch.setenv("MAILMIGRATE_KEYRING", "0")
    Backend.priority = 5
    assert oauth.save_signin("google", "k@example.test", {**record, "client_secret": "s"}).endswith(".json")
