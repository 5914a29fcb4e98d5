"""Self-contained real Dovecot instances for integration tests.

Each DovecotServer owns a folder under /tmp (config, base_dir, state_dir, mail, log), listens only
on 127.0.0.1 with ports picked at start, and runs the master in the foreground (`dovecot -F`) so we
own its pid and never leave a daemon holding our stdout. Many instances can run side by side.
See /work/shared/notes/dovecot-testing.md for the background facts.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import http.server
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
MAIL_USER = "vmail"
FLAVORS = ("slash", "dot", "inbox", "nospecial", "gmail", "quota", "oauth")

# Keyword that marks the 2nd..nth physical copy of a message filed under several Gmail labels, so
# the virtual All Mail/Starred/Important folders list the message once (Dovecot has no shared
# message store across folders). Visible in FETCH FLAGS of those copies: tests must tolerate it.
GMAIL_DUP_KEYWORD = "$MMLabelCopy"
# Gmail special folders: visible virtual name -> hidden real folder that stores the messages.
GMAIL_BACKED = {
    "[Gmail]/Sent Mail": (".gm/Sent Mail", "\\Sent"),
    "[Gmail]/Drafts": (".gm/Drafts", "\\Drafts"),
    "[Gmail]/Spam": (".gm/Spam", "\\Junk"),
    "[Gmail]/Trash": (".gm/Trash", "\\Trash"),
}
GMAIL_ARCHIVE = ".gm/Archive"  # messages with no label but All Mail

_SPECIAL = {
    "slash": {
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    },
    "dot": {
        "Sent Items": "\\Sent",
        "Drafts": "\\Drafts",
        "Deleted Items": "\\Trash",
        "Junk E-mail": "\\Junk",
        "Archive": "\\Archive",
    },
    "inbox": {
        "INBOX.Sent": "\\Sent",
        "INBOX.Drafts": "\\Drafts",
        "INBOX.Trash": "\\Trash",
        "INBOX.Junk": "\\Junk",
    },
    "nospecial": {"Gesendet": None, "Entwürfe": None, "Papierkorb": None, "Spam": None},
}


class DovecotError(RuntimeError):
    pass


# --------------------------------------------------------------------------- process-wide setup

_lock = threading.Lock()
_certs: dict[str, str] | None = None
_live: set[DovecotServer] = set()


def available() -> str | None:
    """None if real-server tests can run here, else the reason they can't."""
    if not os.path.exists(DOVECOT):
        return f"{DOVECOT} not installed (apt-get install dovecot-core dovecot-imapd)"
    if os.geteuid() != 0:
        return "Dovecot test instances must be started as root (they drop privileges per service)"
    if not shutil.which("openssl"):
        return "openssl CLI missing"
    return None


def _ensure_mail_user() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(MAIL_USER)
    except KeyError:
        # Racing xdist workers may both try: tolerate "already exists".
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", MAIL_USER],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, pw.pw_gid


def _mkdtemp(prefix: str) -> Path:
    # Dovecot's unprivileged processes (dovecot, dovenull, vmail) must traverse the path, so no
    # pytest tmp dirs (0700) and no /root. MM_DOVECOT_TMP must be world-traversable too.
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("MM_DOVECOT_TMP", "/tmp")))
    d.chmod(0o755)
    return d


def session_certs() -> dict[str, str]:
    """Self-signed CA + server cert for 127.0.0.1/localhost, made once per process with openssl."""
    global _certs
    with _lock:
        if _certs is None:
            d = _mkdtemp("mm-dovecot-ca-")
            ca_key, ca_crt = d / "ca.key", d / "ca.pem"
            key, csr, crt = d / "server.key", d / "server.csr", d / "server.pem"
            ext = d / "server.ext"
            ext.write_text(
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n"
            )
            ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            _run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    *ec,
                    "-keyout",
                    ca_key,
                    "-out",
                    ca_crt,
                    "-days",
                    "30",
                    "-subj",
                    "/CN=mailmigrate test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-addext",
                    "subjectKeyIdentifier=hash",
                ]
            )
            _run(["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"])
            _run(
                [
                    "openssl",
                    "x509",
                    "-req",
                    "-in",
                    csr,
                    "-CA",
                    ca_crt,
                    "-CAkey",
                    ca_key,
                    "-CAcreateserial",
                    "-days",
                    "30",
                    "-extfile",
                    ext,
                    "-out",
                    crt,
                ]
            )
            for p in d.iterdir():
                p.chmod(0o644)
            _certs = {"dir": str(d), "ca": str(ca_crt), "cert": str(crt), "key": str(key)}
            atexit.register(shutil.rmtree, d, True)
        return _certs


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, capture_output=True, **kw)
    if r.returncode != 0:
        raise DovecotError(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
    return r


def _free_ports(n: int) -> list[int]:
    # Bind all at once so the n ports differ; a later collision with another worker is handled by
    # retrying start() with fresh ports.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@atexit.register
def _stop_leftovers() -> None:
    for srv in list(_live):
        with contextlib.suppress(Exception):
            srv.stop(graceful=False)


# --------------------------------------------------------------------------- oauth introspection


class _IntrospectionHandler(http.server.BaseHTTPRequestHandler):
    tokens: dict[str, str]  # set on the per-server subclass

    def _answer(self, token: str | None) -> None:
        user = self.tokens.get(token) if token else None
        body = json.dumps({"active": True, "username": user} if user else {"active": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server API
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        self._answer((form.get("token") or [None])[0] or self._bearer())

    def do_GET(self):  # noqa: N802
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        self._answer((q.get("token") or q.get("access_token") or [None])[0] or self._bearer())

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def log_message(self, *args):  # keep tokens out of test output
        pass


class _Introspection:
    def __init__(self, tokens: dict[str, str]):
        handler = type("Handler", (_IntrospectionHandler,), {"tokens": tokens})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"oauth-introspect-{self.port}",
            daemon=True,
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# --------------------------------------------------------------------------- the server


class DovecotServer:
    """One running Dovecot instance. See module docstring and tests/test_harness.py for usage."""

    host = "127.0.0.1"

    def __init__(
        self,
        flavor: str = "slash",
        *,
        starttls: bool = True,
        quota_kb: int = 5120,
        name: str | None = None,
        extra_config: str = "",
    ):
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; one of {FLAVORS}")
        self.flavor = flavor
        self.starttls = starttls
        self.quota_kb = quota_kb
        self.extra_config = extra_config  # appended verbatim to dovecot.conf (tests of odd setups)
        self.separator = "." if flavor in ("dot", "inbox") else "/"
        self.prefix = "INBOX." if flavor == "inbox" else ""
        self.instance_name = name or f"mm-{flavor}-{uuid.uuid4().hex[:8]}"
        self.port: int | None = None
        self.ssl_port: int | None = None
        self.oauth_tokens: dict[str, str] = {}  # token -> username, read live by the endpoint
        self.root: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._introspection: _Introspection | None = None
        self._users: dict[str, tuple[str, int | None]] = {}
        self.ca_file = session_certs()["ca"]

    # ---- paths
    @property
    def conf_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def passwd_dir(self) -> Path:
        # One passwd-file per user: Dovecot re-checks a passwd-file at most once per second, so a
        # shared file would miss users added right after a lookup; a new file is read at once.
        return self.root / "passwd.d"

    def home(self, user: str) -> Path:
        return self.root / "home" / user

    # ---- lifecycle
    def start(self) -> DovecotServer:
        if self._proc is not None:
            return self
        if self.root is None:
            self._prepare()
        for attempt in range(4):
            if self.port is None or (attempt and not self._fixed_ports):
                ports = _free_ports(2)
                self.port, self.ssl_port = ports[0], (ports[1] if self.starttls else None)
            elif attempt:
                time.sleep(0.2)  # restart on fixed ports: give the old listeners a moment
            self._write_config()
            if self._launch():
                _live.add(self)
                return self
        raise DovecotError(f"dovecot {self.instance_name} did not start; log tail:\n{self.log_tail()}")

    def stop(self, *, graceful: bool = True) -> None:
        """graceful: SIGTERM to the master, which tells its children and exits (~1.1 s: it polls
        them once a second). Otherwise SIGKILL the whole process group at once, like a crash
        (data the server acknowledged is kept; Dovecot repairs its indexes on the next start)."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            if graceful:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    graceful = False
            if not graceful:
                # start_new_session=True made the master a group leader: its pid is the group id.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        deadline = time.monotonic() + 5
        ports = [p for p in (self.port, self.ssl_port) if p]
        while any(_port_open(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.02)

    def kill(self) -> None:
        """Crash-stop at once (see stop)."""
        self.stop(graceful=False)

    def restart(self, *, graceful: bool = True) -> DovecotServer:
        """Stop and start again with the same data, users and ports."""
        self.stop(graceful=graceful)
        self._fixed_ports = True
        try:
            return self.start()
        finally:
            self._fixed_ports = False

    def close(self) -> None:
        """Stop and delete all data (set MM_KEEP_DOVECOT=1 to keep the folder for debugging)."""
        self.stop(graceful=bool(os.environ.get("MM_KEEP_DOVECOT")))
        if self._introspection:
            self._introspection.close()
            self._introspection = None
        if self.root and not os.environ.get("MM_KEEP_DOVECOT"):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    _fixed_ports = False

    def _prepare(self) -> None:
        self.uid, self.gid = _ensure_mail_user()
        self.root = _mkdtemp(f"mm-dovecot-{self.flavor}-")
        for sub in ("run", "state"):
            (self.root / sub).mkdir(mode=0o755)
        home = self.root / "home"
        home.mkdir(mode=0o755)
        os.chown(home, self.uid, self.gid)
        self.passwd_dir.mkdir(mode=0o755)
        if self.flavor == "oauth":
            self._introspection = _Introspection(self.oauth_tokens)

    def _startups(self) -> int:
        try:
            return self.log_path.read_bytes().count(b" starting up for ")
        except FileNotFoundError:
            return 0

    def _launch(self) -> bool:
        # The master logs "starting up" only after binding its listeners; an open port alone could
        # belong to another worker's instance that grabbed the same free port.
        before = self._startups()
        with open(self.root / "master.out", "ab") as log:
            # -F: stay in the foreground so Popen owns the master. Output to a file: a daemon
            # keeping a captured pipe open hangs the caller.
            self._proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ports = [p for p in (self.port, self.ssl_port) if p]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:  # e.g. port taken by another worker
                self._proc = None
                return False
            if self._startups() > before and all(_port_open(p) for p in ports):
                return True
            time.sleep(0.01)
        self._proc.kill()
        self._proc.wait()
        self._proc = None
        return False

    def log_tail(self, n: int = 30) -> str:
        out = []
        for p in (self.root / "master.out", self.log_path):
            if p.exists():
                out += p.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(out)

    # ---- config
    def _write_config(self) -> None:
        r = self.root
        certs = session_certs()
        f = self.flavor
        plugins = []
        if f == "gmail":
            plugins.append("virtual")
        if f == "quota":
            plugins.append("quota")
        lines = [
            f"instance_name = {self.instance_name}",
            f"base_dir = {r}/run",
            f"state_dir = {r}/state",
            f"log_path = {self.log_path}",
            "protocols = imap",
            "listen = 127.0.0.1",
            "shutdown_clients = yes",
            # No 2 s..15 s growing delay after failed logins (with the anvil-auth-penalty listener
            # below). 2.3.19 still answers a failure on its 0.5 s flush timer: ~0.5 s per bad login.
            "auth_failure_delay = 0",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login" + (" xoauth2 oauthbearer" if f == "oauth" else ""),
            f"mail_uid = {self.uid}",
            f"mail_gid = {self.gid}",
            f"first_valid_uid = {self.uid}",
            f"last_valid_uid = {self.uid}",
            f"first_valid_gid = {self.gid}",
            f"last_valid_gid = {self.gid}",
            "mail_fsync = never",
            # Big literals (30+ MB APPEND) and many parallel test connections.
            "imap_max_line_length = 64M",
            "mail_max_userip_connections = 200",
            "default_vsz_limit = 1G",
            f"mail_plugins = $mail_plugins {' '.join(plugins)}".rstrip(),
        ]
        if self.starttls:
            lines += ["ssl = yes", f"ssl_cert = <{certs['cert']}", f"ssl_key = <{certs['key']}"]
        else:
            lines += ["ssl = no"]
        listeners = [f"  inet_listener imap {{\n    address = 127.0.0.1\n    port = {self.port}\n  }}"]
        if self.ssl_port:
            listeners.append(
                f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.ssl_port}\n"
                "    ssl = yes\n  }"
            )
        lines += [
            "service imap-login {",
            *listeners,
            "}",
            # mode 0 disables the anvil auth penalty socket -> no growing login delays.
            "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}",
            "service stats {\n  unix_listener stats-writer {\n    mode = 0666\n  }\n}",
        ]
        pw = f"scheme=PLAIN username_format=%u {self.passwd_dir}/%u"
        if f == "oauth":
            oauth_conf = r / "oauth2.conf"
            oauth_conf.write_text(
                f"introspection_url = http://127.0.0.1:{self._introspection.port}/introspect\n"
                "introspection_mode = post\n"
                "force_introspection = yes\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            lines += [
                f"passdb {{\n  driver = passwd-file\n  mechanisms = plain login\n  args = {pw}\n}}",
                f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {oauth_conf}\n}}",
            ]
        else:
            lines += [f"passdb {{\n  driver = passwd-file\n  args = {pw}\n}}"]

        lines += [f"userdb {{\n  driver = passwd-file\n  args = username_format=%u {self.passwd_dir}/%u\n}}"]
        lines += self._namespaces()
        if f == "quota":
            lines += [
                "protocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}",
                "plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n"
                f"  quota_rule = *:storage={self.quota_kb}K\n  quota_grace = 0\n}}",
            ]
        self.conf_path.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")

    def _namespaces(self) -> list[str]:
        f = self.flavor
        if f == "gmail":
            specials = "".join(
                f'  mailbox "{vis.split("/", 1)[1]}" {{\n    special_use = {use}\n  }}\n'
                for vis, (_, use) in GMAIL_BACKED.items()
            )
            specials += (
                '  mailbox "All Mail" {\n    special_use = \\All\n  }\n'
                '  mailbox "Starred" {\n    special_use = \\Flagged\n  }\n'
                '  mailbox "Important" {\n    special_use = \\Important\n  }\n'
            )
            return [
                # Visible labels (INBOX + user labels) are real folders; CREATE works as on Gmail.
                "namespace inbox {\n  separator = /\n  prefix =\n  inbox = yes\n"
                "  location = maildir:~/Maildir:LAYOUT=fs\n}",
                # Real storage of the [Gmail]/ special folders, never listed.
                "namespace gmreal {\n  separator = /\n  prefix = .gm/\n  hidden = yes\n  list = no\n"
                "  subscriptions = no\n  location = maildir:~/gm:LAYOUT=fs\n}",
                # [Gmail]/ is a virtual namespace; its prefix lists as \Noselect [Gmail].
                "namespace gmail {\n  separator = /\n  prefix = [Gmail]/\n  list = yes\n  subscriptions = no\n"
                f"  location = virtual:~/virtual:LAYOUT=fs\n{specials}}}",
            ]
        if f == "dot":
            loc, sep, prefix = "maildir:~/Maildir", ".", ""
        elif f == "inbox":
            loc, sep, prefix = "maildir:~/Maildir", ".", "INBOX."
        else:
            loc, sep, prefix = "maildir:~/Maildir:LAYOUT=fs", "/", ""
        boxes = []
        for name, use in _SPECIAL.get(
            "nospecial" if f == "nospecial" else "slash" if f in ("slash", "quota", "oauth") else f
        ).items():
            body = "    auto = subscribe\n" + (f"    special_use = {use}\n" if use else "")
            # mailbox {} names are relative to the namespace prefix.
            boxes.append(f'  mailbox "{name.removeprefix(prefix)}" {{\n{body}  }}\n')
        return [
            f"namespace inbox {{\n  separator = {sep}\n  prefix = {prefix}\n  inbox = yes\n"
            f"  location = {loc}\n{''.join(boxes)}}}"
        ]

    # ---- users
    def add_user(self, user: str, password: str, *, quota_kb: int | None = None, verify: bool = True) -> None:
        """Add (or replace) a user; `quota_kb` overrides the quota flavor's limit for this user."""
        if not re.fullmatch(r"[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]*", user):
            raise ValueError(f"unusable user name {user!r}")  # it becomes a file and folder name
        home = self.home(user)
        home.mkdir(exist_ok=True)
        os.chown(home, self.uid, self.gid)
        if self.flavor == "gmail":
            self._gmail_skeleton(home)
        # {PLAIN.b64}: any password bytes (':' too) survive the passwd-file format.
        line = (
            f"{user}:{{PLAIN.b64}}{base64.b64encode(password.encode()).decode()}:{self.uid}:{self.gid}::"
            f"{home}::" + (f"userdb_quota_rule=*:storage={quota_kb}K" if quota_kb is not None else "") + "\n"
        )
        path = self.passwd_dir / user
        replacing = path.exists()
        tmp = path.with_name(f".{user}.tmp")
        tmp.write_text(line)
        tmp.chmod(0o644)
        os.replace(tmp, path)
        self._users[user] = (password, quota_kb)
        if replacing and self.running:
            time.sleep(1.1)  # see passwd_dir: a changed file is noticed only in the next second
        if verify and self.running:
            self.doveadm("user", user)  # fails if Dovecot did not pick the new file up

    def _gmail_skeleton(self, home: Path) -> None:
        def mkdir(p: Path) -> None:
            p.mkdir(parents=True, exist_ok=True)
            for q in [p, *p.parents]:
                if q == home.parent:
                    break
                os.chown(q, self.uid, self.gid)

        for real in [r for r, _ in GMAIL_BACKED.values()] + [GMAIL_ARCHIVE]:
            for sub in ("cur", "new", "tmp"):
                mkdir(home / "gm" / real.split("/", 1)[1] / sub)
        for sub in ("cur", "new", "tmp"):
            mkdir(home / "Maildir" / sub)  # INBOX
        not_dup = f"not keyword {GMAIL_DUP_KEYWORD}"
        every = "*\n.gm/*\n-.gm/Trash\n-.gm/Spam\n"
        virtual = {
            "All Mail": f"{every}!{GMAIL_ARCHIVE}\n  {not_dup}\n",
            "Starred": f"{every}  flagged {not_dup}\n",
            "Important": f"{every}  keyword $Important {not_dup}\n",
        }
        for vis, (real, _) in GMAIL_BACKED.items():
            virtual[vis.split("/", 1)[1]] = f"!{real}\n  all\n"
        for name, spec in virtual.items():
            d = home / "virtual" / name
            mkdir(d)
            (d / "dovecot-virtual").write_text(spec)
            os.chown(d / "dovecot-virtual", self.uid, self.gid)

    # ---- admin helpers (doveadm, always against this instance's config)
    def doveadm(
        self, *args: str, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [DOVEADM, "-c", str(self.conf_path), *map(str, args)],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
        )
        if check and r.returncode != 0:
            raise DovecotError(
                f"doveadm {args[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}"
            )
        return r

    def real_folder(self, folder: str) -> str:
        """Folder that physically stores messages filed under `folder` (differs only for gmail)."""
        if self.flavor != "gmail":
            return folder
        if folder in GMAIL_BACKED:
            return GMAIL_BACKED[folder][0]
        if folder in ("[Gmail]/All Mail", ""):
            return GMAIL_ARCHIVE
        if folder.startswith("[Gmail]/"):
            raise ValueError(f"{folder} is a search folder; save into a label and set flags instead")
        return folder

    def create_folder(self, user: str, folder: str) -> None:
        r = self.doveadm("mailbox", "create", "-u", user, self.real_folder(folder), check=False)
        if r.returncode != 0 and b"already exists" not in r.stderr.lower():
            raise DovecotError(f"mailbox create {folder}: {r.stderr.decode(errors='replace').strip()}")

    def save(self, user: str, folder: str, data: bytes, flags: Iterable[str] = ()) -> int:
        """Store one message with `doveadm save` (fast seeding); creates the folder when missing.
        Returns the UID in the (real) folder. Seeding is assumed to be the only writer."""
        real = self.real_folder(folder)
        r = self.doveadm("save", "-u", user, "-m", real, input=data, check=False)
        if r.returncode != 0:
            if b"exist" not in r.stderr.lower():
                raise DovecotError(f"doveadm save {folder}: {r.stderr.decode(errors='replace').strip()}")
            self.create_folder(user, folder)
            self.doveadm("save", "-u", user, "-m", real, input=data)
        # doveadm save prints no UID and doveadm's search has no "uid *": the new one is UIDNEXT-1.
        uid = int(self.doveadm("mailbox", "status", "-u", user, "uidnext", real).stdout.split(b"=")[-1]) - 1
        flags = list(flags)
        if flags:
            self.set_flags(user, folder, flags, uids=str(uid))
        return uid

    def save_labels(
        self, user: str, labels: Iterable[str], data: bytes, flags: Iterable[str] = ()
    ) -> dict[str, int]:
        """Gmail flavor: file the SAME message under several labels (one physical copy per label;
        all but the first carry GMAIL_DUP_KEYWORD so [Gmail]/All Mail shows it once)."""
        if self.flavor != "gmail":
            raise DovecotError("save_labels needs the gmail flavor")
        labels = list(labels) or ["[Gmail]/All Mail"]
        flags = list(flags)
        return {
            label: self.save(user, label, data, flags=flags + ([GMAIL_DUP_KEYWORD] if i else []))
            for i, label in enumerate(labels)
        }

    def set_flags(
        self, user: str, folder: str, flags: Iterable[str], *, uids: str = "1:*", mode: str = "add"
    ) -> None:
        """mode: add | remove | replace. uids: a UID set like "3" or "1:5" (doveadm has no "*")."""
        if mode not in ("add", "remove", "replace"):
            raise ValueError(mode)
        self.doveadm(
            "flags", mode, "-u", user, " ".join(flags), "mailbox", self.real_folder(folder), "uid", uids
        )

    def list_folders(self, user: str) -> list[str]:
        out = self.doveadm("mailbox", "list", "-u", user).stdout.decode()
        return [line for line in out.splitlines() if line]

    def quota_get(self, user: str) -> dict[str, dict[str, int | None]]:
        """{'STORAGE': {'value': KiB, 'limit': KiB or None}, 'MESSAGE': {...}}"""
        out = self.doveadm("-f", "tab", "quota", "get", "-u", user).stdout.decode().splitlines()
        head = out[0].split("\t")
        res: dict[str, dict[str, int | None]] = {}
        for line in out[1:]:
            row = dict(zip(head, line.split("\t"), strict=False))
            lim = row.get("Limit", "-")
            res[row["Type"]] = {"value": int(row["Value"]), "limit": None if lim in ("-", "") else int(lim)}
        return res

    def message_count(self, user: str, folder: str) -> int:
        out = self.doveadm("mailbox", "status", "-u", user, "messages", folder).stdout.decode()
        return int(out.strip().split("=")[-1])

    # ---- IMAP client for assertions
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def client(self, user: str, password: str | None = None, *, tls: bool = False, timeout: float = 30):
        """imapclient.IMAPClient logged in as `user` (plain port, or implicit TLS with tls=True)."""
        import imapclient

        if password is None:
            password = self._users[user][0]
        if tls:
            c = imapclient.IMAPClient(
                self.host, port=self.ssl_port, ssl=True, ssl_context=self.ssl_context(), timeout=timeout
            )
        else:
            c = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            c.login(user, password)
        except BaseException:
            c.shutdown()  # don't leave the login process waiting for us
            raise
        return c

    def __repr__(self) -> str:
        return f"<DovecotServer {self.instance_name} flavor={self.flavor} port={self.port} ssl_port={self.ssl_port}>"
