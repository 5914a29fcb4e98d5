"""Self-contained real PostgreSQL instances for integration tests.

Debian's packages (`scripts/setup.sh --postgres`: postgresql-15, system cluster never started)
give the binaries under /usr/lib/postgresql/<version>/bin (MM_PG_BIN overrides the folder). Each
PostgresServer owns a folder under /tmp: `initdb` writes the cluster there, `pg_ctl` starts it on
127.0.0.1 and a free port with its unix socket in that folder (never /var/run), and pg_hba.conf
trusts 127.0.0.1 and nothing else. Durability is off (fsync, synchronous_commit): a test cluster
is thrown away. Root cannot run initdb or postgres, so as root both run as the `postgres` user
(`runuser`) who is given the folder; any other user runs them as itself.

    server = PostgresServer().start()
    url = server.create_database()      # a fresh, empty database: postgresql://postgres@127.0.0.1:PORT/NAME
    server.close()                      # stopped and deleted
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

PG_USER = "postgres"  # the OS user the server runs as when we are root; also the database superuser
_lock = threading.Lock()
_live: set[PostgresServer] = set()


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path | None:
    """The newest installed server's bin folder (or MM_PG_BIN), None when there is none."""
    given = os.environ.get("MM_PG_BIN")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()])
    return Path(found[-1]).parent if found else None


def available() -> str | None:
    """None if PostgreSQL instances can run here, else the reason they can't."""
    fix = "run `bash scripts/setup.sh --postgres` as root"
    d = bin_dir()
    if d is None or not (d / "initdb").exists() or not (d / "pg_ctl").exists():
        return f"PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin ({fix})"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 is not installed in this Python (pip install -e '.[dev,postgres]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"no '{PG_USER}' user to run the server as ({fix})"
        if not shutil.which("runuser"):
            return "runuser not found (util-linux): cannot drop root for initdb"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.bin = bin_dir() or Path("/nonexistent")
        self.dir = Path(tempfile.mkdtemp(prefix="mm-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.running = False
        self._as_root = os.geteuid() == 0
        if self._as_root:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def __repr__(self) -> str:
        return f"PostgresServer(127.0.0.1:{self.port}, {self.dir})"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        r = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C.UTF-8"})
        if r.returncode != 0:
            raise PostgresError(f"{tool} failed ({r.returncode}): {r.stderr.strip()[-800:]}\n{self.log_tail()}")
        return r

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8",
                      "--locale=C.UTF-8", "--no-sync")
            # Only TCP from 127.0.0.1; the socket in our folder is for nobody (no "local" line).
            (self.data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        for attempt in range(5):  # the free port may be taken between the probe and the start
            self.port = _free_port()
            opts = (f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c synchronous_commit=off"
                    " -c full_page_writes=off -c max_connections=200 -c shared_buffers=16MB")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", opts, "start")
                break
            except PostgresError:
                if attempt == 4 or "already in use" not in self.log_tail():
                    raise
        self.running = True
        with _lock:
            _live.add(self)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = name or f"mm_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # a name we made
        return self.url(name)

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(PostgresError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
            self.running = False

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        with _lock:
            _live.discard(self)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@atexit.register
def _close_all() -> None:  # a session killed before its fixture teardown leaves no server behind
    for srv in list(_live):
        srv.close()
