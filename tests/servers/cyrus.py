"""Self-contained real Cyrus IMAP 3.6 instances for integration tests.

Debian 12's cyrus-imapd conflicts with dovecot-imapd, so it is not installed: `scripts/setup.sh
--cyrus` unpacks it (and the libraries this machine lacks) into MM_CYRUS_ROOT, default
/opt/mailmigrate-cyrus/root, and we run the binaries from there with LD_LIBRARY_PATH set.

Each CyrusServer owns a folder under /tmp (imapd.conf, cyrus.conf, configdirectory, spool
partition, sasldb, sockets, logs), listens only on 127.0.0.1 on a port picked at start, and runs
`master` in the foreground (start_new_session, so we own its pid and process group). Cyrus logs
only to syslog: where the machine allows a private mount namespace (root), master runs in one
whose /dev/log is a socket read by a thread of ours into the instance's syslog.log, so log_tail()
shows Cyrus' own messages; elsewhere they are lost. Passwords are really checked (auxprop sasldb,
written with saslpasswd2). See tests/servers/README.md for what Cyrus refuses or alters.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

CYRUS_ROOT = Path(os.environ.get("MM_CYRUS_ROOT", "/opt/mailmigrate-cyrus/root"))
BIN = CYRUS_ROOT / "usr/lib/cyrus/bin"
MASTER = BIN / "master"
SASLPASSWD2 = CYRUS_ROOT / "usr/sbin/saslpasswd2"
CYRUS_USER = "cyrus"  # compiled into the Debian build: master drops privileges to it
ADMIN = "cyrusadmin"
FLAVORS = ("dot", "slash")


class CyrusError(RuntimeError):
    pass


# --------------------------------------------------------------------------- process-wide setup

_lock = threading.Lock()
_live: set[CyrusServer] = set()
_available: str | None | bool = False  # False: not checked yet
_namespace: bool | None = None


def _lib_dirs() -> list[str]:
    return sorted(
        d
        for pat in ("usr/lib/*-linux-gnu*", "lib/*-linux-gnu*")
        for d in glob.glob(str(CYRUS_ROOT / pat))
        if os.path.isdir(d)
    )


def _env() -> dict[str, str]:
    """Environment for the unpacked binaries: their libraries (and SASL plugins) first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CYRUS_", "SASL_"))}
    libs = _lib_dirs()
    env["LD_LIBRARY_PATH"] = ":".join(libs + [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p])
    plugins = [os.path.join(d, "sasl2") for d in libs if os.path.isdir(os.path.join(d, "sasl2"))]
    if plugins:  # libsasl2-modules(-db) were unpacked too: the system has none
        env["SASL_PATH"] = ":".join(plugins + glob.glob("/usr/lib/*-linux-gnu*/sasl2"))
    return env


def available() -> str | None:
    """None if Cyrus instances can run here, else the reason they can't (checked once)."""
    global _available
    with _lock:
        if _available is False:
            _available = _check()
        return _available


def _check() -> str | None:
    fix = "run `bash scripts/setup.sh --cyrus` as root"
    if not MASTER.exists() or not SASLPASSWD2.exists():
        return f"Cyrus IMAP not unpacked under {CYRUS_ROOT} ({fix})"
    if os.geteuid() != 0:
        return "Cyrus test instances must be started as root (master drops privileges to 'cyrus')"
    r = subprocess.run(
        [str(BIN / "cyr_buildinfo")], env=_env(), stdin=subprocess.DEVNULL, capture_output=True
    )
    if r.returncode != 0:
        return f"unpacked Cyrus binaries do not run ({fix}): {r.stderr.decode(errors='replace')[-500:]}"
    try:
        _ensure_cyrus_user()
    except (KeyError, OSError) as e:
        return f"no '{CYRUS_USER}' user and cannot create one: {e}"
    return None


def _ensure_cyrus_user() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(CYRUS_USER)
    except KeyError:
        # Racing xdist workers may both try: tolerate "already exists".
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                CYRUS_USER,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pw = pwd.getpwnam(CYRUS_USER)
    return pw.pw_uid, pw.pw_gid


def _namespace_works() -> bool:
    """Can we give master a private /dev (for its syslog)? MM_CYRUS_SYSLOG=0 turns it off."""
    global _namespace
    with _lock:
        if _namespace is None:
            _namespace = False
            if os.environ.get("MM_CYRUS_SYSLOG", "1") != "0" and shutil.which("unshare"):
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    r = subprocess.run(
                        [
                            "unshare",
                            "--mount",
                            "--propagation",
                            "private",
                            "sh",
                            "-c",
                            "mount --bind /dev/null /dev/null",
                        ],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=10,
                    )
                    _namespace = r.returncode == 0
        return _namespace


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _banner(port: int) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            data = b""
            while not data.endswith(b"\n") and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            with contextlib.suppress(OSError):
                s.sendall(b"z LOGOUT\r\n")
            return data
    except OSError:
        return b""


# Runs master as its child and reaps every process that master leaves behind: with master
# SIGKILLed its imapd children are re-parented, and where PID 1 never reaps (containers) each
# would stay a zombie. Exits when master and all orphans are gone, with master's status.
_REAPER = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
code = 1
while True:
    try:
        p, st = os.wait()
    except ChildProcessError:
        break
    if p == pid:
        code = os.waitstatus_to_exitcode(st)
sys.exit(code if code >= 0 else 128 - code)
"""


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != b"Z":
            out.append(int(d))
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL master and all its children but not the reaper (proc), which collects them and
    exits. Repeated until none is left: a dying child may make master fork a new one."""
    if proc.poll() is None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            members = [p for p in _group_members(proc.pid) if p != proc.pid]
            if not members:
                break
            for p in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.005)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    # The reaper is gone (or stuck): anything still in the group goes the hard way.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@atexit.register
def _stop_leftovers() -> None:
    for srv in list(_live):
        with contextlib.suppress(Exception):
            srv.stop(graceful=False)


class _Syslog:
    """A /dev/log stand-in: datagrams on a unix socket appended to a file, one line each."""

    def __init__(self, sock_path: Path, out_path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        os.chmod(sock_path, 0o666)  # the imapd processes run as cyrus
        self.sock.settimeout(0.2)
        self.out = open(out_path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"cyrus-syslog-{sock_path}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            # "<PRI>Mon DD HH:MM:SS ident[pid]: text" -> drop the priority
            self.out.write(re.sub(rb"^<\d+>", b"", data.rstrip(b"\0\n")) + b"\n")

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()
        self.out.close()


# --------------------------------------------------------------------------- the server


class CyrusServer:
    """One running Cyrus IMAP instance (plain IMAP on 127.0.0.1, no TLS).

    flavor "dot": `.` separator (unixhierarchysep: no); "slash": `/` (unixhierarchysep: yes).
    altnamespace=True (Cyrus 3 default): personal folders sit next to INBOX ("Work", prefix "");
    False (Cyrus 2 / Debian's shipped imapd.conf): they live under it ("INBOX.Work", prefix
    "INBOX." resp. "INBOX/"). Users are `user.NAME` / `user/NAME` to the admin `cyrusadmin`.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        flavor: str = "dot",
        *,
        altnamespace: bool = True,
        name: str | None = None,
        extra_config: str = "",
    ):
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; one of {FLAVORS}")
        self.flavor = flavor
        self.altnamespace = altnamespace
        self.extra_config = extra_config  # appended verbatim to imapd.conf
        self.separator = "." if flavor == "dot" else "/"
        self.prefix = "" if altnamespace else "INBOX" + self.separator
        self.instance_name = name or f"mm-cyrus-{flavor}-{uuid.uuid4().hex[:8]}"
        self.port: int | None = None
        self.root: Path | None = None
        self.admin_password = uuid.uuid4().hex
        self._proc: subprocess.Popen | None = None
        self._syslog: _Syslog | None = None
        self._users: dict[str, str] = {}
        self._inboxes: set[str] = set()
        self._sasl_lock = threading.Lock()
        self._fixed_port = False

    # ---- paths
    @property
    def conf_path(self) -> Path:
        return self.root / "imapd.conf"

    @property
    def cyrus_conf_path(self) -> Path:
        return self.root / "cyrus.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "syslog.log"

    @property
    def sasldb_path(self) -> Path:
        return self.root / "sasldb2"

    def mailbox(self, user: str) -> str:
        """Admin-side name of a user's INBOX: user.NAME or user/NAME."""
        return f"user{self.separator}{user}"

    # ---- lifecycle
    def start(self) -> CyrusServer:
        if self._proc is not None:
            return self
        if self.root is None:
            self._prepare()
        for attempt in range(4):
            if self.port is None or (attempt and not self._fixed_port):
                self.port = _free_port()
            elif attempt:
                time.sleep(0.2)
            self._write_config()
            if self._launch():
                _live.add(self)
                pending = [u for u in self._users if u not in self._inboxes]
                if pending:  # users added before the first start
                    self._create_inboxes(pending)
                return self
        raise CyrusError(f"cyrus {self.instance_name} did not start; log tail:\n{self.log_tail()}")

    def stop(self, *, graceful: bool = True) -> None:
        """graceful: SIGTERM to master, which ends its children. Otherwise SIGKILL master and
        every child at once, like a crash (`ctl_cyrusdb -r` recovers on the next start)."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is None:
            return
        if proc.poll() is None and graceful:
            proc.terminate()  # the reaper passes it on to master
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        _kill_group(proc)
        deadline = time.monotonic() + 5
        while self.port and _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def kill(self) -> None:
        """Crash-stop at once (see stop)."""
        self.stop(graceful=False)

    def restart(self, *, graceful: bool = True) -> CyrusServer:
        """Stop and start again with the same data, users and port."""
        self.stop(graceful=graceful)
        self._fixed_port = True
        try:
            return self.start()
        finally:
            self._fixed_port = False

    def close(self) -> None:
        """Stop and delete all data (set MM_KEEP_CYRUS=1 to keep the folder for debugging)."""
        keep = bool(os.environ.get("MM_KEEP_CYRUS"))
        self.stop(graceful=keep)
        if self._syslog:
            self._syslog.close()
            self._syslog = None
        if self.root and not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> CyrusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _prepare(self) -> None:
        reason = available()
        if reason:
            raise CyrusError(reason)
        self.uid, self.gid = _ensure_cyrus_user()
        # Not pytest's tmp dirs (0700): the cyrus user must traverse the path.
        tmp = os.environ.get("MM_CYRUS_TMP") or os.environ.get("MM_DOVECOT_TMP", "/tmp")
        self.root = Path(tempfile.mkdtemp(prefix=f"mm-cyrus-{self.flavor}-", dir=tmp))
        self.root.chmod(0o755)
        for sub in (
            "conf",
            "conf/db",
            "conf/socket",
            "conf/log",
            "conf/sieve",
            "conf/proc",
            "conf/lock",
            "spool",
        ):
            (self.root / sub).mkdir(mode=0o750)
            os.chown(self.root / sub, self.uid, self.gid)
        self._saslpasswd(ADMIN, self.admin_password)
        if _namespace_works():
            dev = self.root / "dev"
            dev.mkdir(mode=0o755)
            for node in ("null", "zero", "full", "random", "urandom"):
                (dev / node).touch()  # mount points for the real nodes
            for i, std in enumerate(("stdin", "stdout", "stderr")):
                (dev / std).symlink_to(f"/proc/self/fd/{i}")
            (dev / "fd").symlink_to("/proc/self/fd")
            self._syslog = _Syslog(dev / "log", self.log_path)

    def _launch(self) -> bool:
        argv = [
            str(MASTER),
            "-D",
            "-C",
            str(self.conf_path),
            "-M",
            str(self.cyrus_conf_path),
            "-p",
            str(self.root / "conf" / "master.pid"),
        ]
        if self._syslog:
            dev = self.root / "dev"
            binds = " && ".join(
                f"mount --bind /dev/{n} {dev}/{n}" for n in ("null", "zero", "full", "random", "urandom")
            )
            # If any mount fails master still runs, only without a log.
            script = f'{{ {binds} && mount --rbind {dev} /dev; }} 2>/dev/null || echo "no private /dev" >&2\nexec "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]
        with open(self.root / "master.out", "ab") as out:
            # -D: master keeps stderr (fatal start-up errors land in master.out); it stays in the
            # foreground anyway. Never a pipe of ours: children would hold it open. The reaper
            # (our Popen) is the session leader, master its child.
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _REAPER, *argv],
                env=_env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Ready = our port greets with our servername (an open port alone could be another
        # worker's instance that took the same free port).
        want = self.instance_name.encode()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            if _port_open(self.port) and want in _banner(self.port):
                return True
            time.sleep(0.01)
        proc, self._proc = self._proc, None
        _kill_group(proc)
        return False

    def log_tail(self, n: int = 30) -> str:
        out = []
        if self.root:
            for p in (self.root / "master.out", self.log_path):
                if p.exists():
                    out += p.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(out)

    # ---- config
    def _write_config(self) -> None:
        r = self.root
        conf = r / "conf"
        lines = [
            f"servername: {self.instance_name}",
            f"configdirectory: {conf}",
            "defaultpartition: default",
            f"partition-default: {r / 'spool'}",
            f"sievedir: {conf / 'sieve'}",
            f"idlesocket: {conf / 'socket' / 'idle'}",
            f"notifysocket: {conf / 'socket' / 'notify'}",
            f"lmtpsocket: {conf / 'socket' / 'lmtp'}",
            f"altnamespace: {'yes' if self.altnamespace else 'no'}",
            f"unixhierarchysep: {'yes' if self.flavor == 'slash' else 'no'}",
            "virtdomains: off",
            f"admins: {ADMIN}",
            "allowplaintext: yes",
            "failedloginpause: 0",  # default 3 s after each bad login
            "sasl_pwcheck_method: auxprop",
            "sasl_auxprop_plugin: sasldb",
            f"sasl_sasldb_path: {self.sasldb_path}",
            "sasl_mech_list: PLAIN LOGIN",
            "specialusealways: yes",
            "hashimapspool: no",
            "umask: 022",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")
        c = str(self.conf_path)
        self.cyrus_conf_path.write_text(
            "START {\n"
            f'  recover cmd="{BIN}/ctl_cyrusdb -C {c} -r"\n'
            "}\n"
            "SERVICES {\n"
            f'  imap cmd="{BIN}/imapd -C {c}" listen="127.0.0.1:{self.port}" prefork=1 maxchild=200\n'
            "}\n"
            "DAEMON {\n"
            f'  idled cmd="{BIN}/idled -C {c}"\n'
            "}\n"
            "EVENTS {\n"
            "}\n"
        )

    # ---- users
    def _saslpasswd(self, user: str, password: str) -> None:
        # Edit a copy and rename it into place: imapd processes reading the Berkeley DB while
        # saslpasswd2 writes it could see a half-written page. Realm = servername: what imapd
        # looks sasldb entries up under.
        with self._sasl_lock:
            new = self.sasldb_path.with_name(".sasldb2.new")
            new.unlink(missing_ok=True)
            if self.sasldb_path.exists():
                shutil.copyfile(self.sasldb_path, new)
            r = subprocess.run(
                [str(SASLPASSWD2), "-p", "-c", "-f", str(new), "-u", self.instance_name, user],
                input=password.encode(),
                capture_output=True,
                env=_env(),
            )
            if r.returncode != 0:
                raise CyrusError(f"saslpasswd2 {user} failed: {r.stderr.decode(errors='replace').strip()}")
            os.chown(new, self.uid, self.gid)
            new.chmod(0o640)
            os.replace(new, self.sasldb_path)

    def add_user(self, user: str, password: str) -> None:
        """Add (or re-password) a user: sasldb entry + INBOX (user.NAME / user/NAME)."""
        bad = r"[^A-Za-z0-9_@+-]" if self.flavor == "dot" else r"[^A-Za-z0-9_.@+-]"
        if not user or re.search(bad, user) or user == ADMIN:
            raise ValueError(f"unusable user name {user!r}")
        if self.root is None:
            self._prepare()
        self._saslpasswd(user, password)
        self._users[user] = password
        if self.running:
            self._create_inboxes([user])

    def _create_inboxes(self, users: Iterable[str]) -> None:
        with self.admin_client() as c:
            for user in users:
                typ, data = c._imap._simple_command("CREATE", _quote(self.mailbox(user)))
                if typ != "OK" and not _exists(b" ".join(data).decode(errors="replace")):
                    raise CyrusError(f"CREATE {self.mailbox(user)}: {typ} {data}")
                self._inboxes.add(user)

    # ---- IMAP clients
    def admin_client(self, timeout: float = 30):
        return self.client(ADMIN, self.admin_password, timeout=timeout)

    def client(self, user: str, password: str | None = None, *, tls: bool = False, timeout: float = 30):
        """imapclient.IMAPClient logged in as `user` on the plain port (this harness has no TLS)."""
        import imapclient

        if tls:
            raise CyrusError("CyrusServer serves plain IMAP only: no TLS port (use tls=False)")
        if password is None:
            password = self._users[user]
        c = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            c.login(user, password)
        except BaseException:
            c.shutdown()
            raise
        return c

    # ---- seeding and inspection (over IMAP as the user)
    def create_folder(self, user: str, folder: str) -> None:
        """CREATE as the user (parents are made implicitly); an existing folder is fine."""
        with self.client(user) as c:
            _create(c, folder)

    def save(
        self, user: str, folder: str, data: bytes, flags: Iterable[str] = (), *, date: datetime | None = None
    ) -> int:
        """APPEND `data` unchanged (one literal, via multiappend) as `user`; creates the folder
        when missing. Returns the UID from APPENDUID. Raises CyrusError with Cyrus' answer."""
        msg: dict = {"msg": data, "flags": list(flags)}
        if date is not None:
            msg["date"] = date
        with self.client(user) as c:
            typ, resp = c.multiappend(folder, [msg])
            if typ != "OK" and b"TRYCREATE" in b" ".join(resp).upper():
                _create(c, folder)
                typ, resp = c.multiappend(folder, [msg])
            text = b" ".join(resp)
            if typ != "OK":
                raise CyrusError(f"APPEND {folder}: {typ} {text.decode(errors='replace')}")
            m = re.search(rb"\[APPENDUID \d+ (\d+)\]", text)
            if not m:
                raise CyrusError(f"APPEND {folder}: no APPENDUID in {text!r}")
            return int(m.group(1))

    def list_folders(self, user: str) -> list[str]:
        with self.client(user) as c:
            return [name for _flags, _sep, name in c.list_folders()]

    def message_count(self, user: str, folder: str) -> int:
        with self.client(user) as c:
            return int(c.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])

    def __repr__(self) -> str:
        return f"<CyrusServer {self.instance_name} flavor={self.flavor} port={self.port}>"


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _create(c, folder: str) -> None:
    from imapclient.exceptions import IMAPClientError

    try:
        c.create_folder(folder)
    except IMAPClientError as e:
        if not _exists(str(e)):
            raise CyrusError(f"CREATE {folder}: {e}") from e


def _exists(text: str) -> bool:
    # Cyrus 3.6 answers a duplicate CREATE with a bare "NO Mailbox already exists" (no code).
    return "ALREADYEXISTS" in text.upper() or "already exists" in text.lower()
