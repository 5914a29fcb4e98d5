"""``mailmigrate worker`` and ``serve --database`` refuse bad input with one line and the
documented exit code, before doing anything: a bad cap, an out-of-range number, a database whose
schema is behind (with ``db upgrade`` as the hint), a server that cannot be reached."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.mailbox import ROOT

TARGET = ["--target-host", "127.0.0.1", "--target-port", "143", "--target-security", "none"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, timeout=60)


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("args", "says"), [
    (["--max-per-provider", "gmail"], "is not PROVIDER=N"),
    (["--max-per-provider", "gmail=0"], "is not PROVIDER=N"),
    (["--max-per-provider", "nosuchmail=5"], "no provider preset named 'nosuchmail'"),
    (["--concurrency", "0"], "--concurrency 0 is out of range"),
    (["--stalled-after", "1"], "--stalled-after 1 is too short"),
])
def test_worker_refuses_bad_options_before_connecting(args, says):
    r = cli("worker", "--database", f"postgresql://u:secretpw@127.0.0.1:{closed_port()}/mm", *TARGET, *args)
    assert r.returncode == 2, r.stderr
    line = one_line(r)
    assert says in line and "secretpw" not in line


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_unreachable_database_is_exit_4_without_the_password(command):
    r = cli(command, "--database", f"postgresql://u:secretpw@127.0.0.1:{closed_port()}/mm", *TARGET)
    assert r.returncode == 4, r.stderr
    line = one_line(r)
    assert "cannot reach PostgreSQL" in line and "secretpw" not in line


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["worker", "serve"])
def test_a_database_behind_is_refused_with_db_upgrade_as_the_hint(postgres, command):
    url = postgres.create_database()  # empty: never upgraded
    r = cli(command, "--database", url, *TARGET)
    assert r.returncode == 2, r.stderr
    line = one_line(r)
    assert "schema is not up to date" in line and "mailmigrate db upgrade --database URL" in line
