"""deploy/: every `mailmigrate` command line there (and in the README's "Running at scale") uses only
options the real CLI accepts, with env.example's options filled in; compose.yaml and the systemd
units have the parts the deployment relies on. Plain text checks: no YAML parser in the venv."""

from __future__ import annotations

import functools
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CLI = [sys.executable, str(ROOT / "cli.py")]
SECRETS = ("MAILMIGRATE_SECRET_KEY", "MAILMIGRATE_ADMIN_TOKEN", "PGPASSWORD", "SMTP_PASSWORD")


# --------------------------------------------------------------------------- reading the files


def env_example() -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile and compose's .env read them (quotes removed)."""
    out = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"env.example: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip().removeprefix('"').removesuffix('"')
    return out


def expand(text: str, env: dict[str, str]) -> str:
    """${X}, ${X:-default}, ${X:?message}, $X -> env.example's value (compose and systemd alike)."""
    def braced(m: re.Match) -> str:
        name, op, rest = m.group(1), m.group(2), m.group(3)
        if name in env and env[name]:
            return env[name]
        assert op != ":?", f"${{{name}}} is required but env.example does not set it"
        return rest if op == ":-" else ""

    text = re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", braced, text)
    return re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), text)


def compose_commands() -> list[tuple[str, str]]:
    """(where, command) of every `command:` in compose.yaml, folded blocks joined."""
    lines = (DEPLOY / "compose.yaml").read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)command:\s*(.*)$", line)
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2)
        if value in (">", ">-", "|", "|-"):
            block = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt.strip())
            value = " ".join(b for b in block if b)
        out.append((f"compose.yaml:{i + 1}", value))
    return out


def unit_commands() -> list[tuple[str, str]]:
    out = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for i, line in enumerate(unit.read_text().splitlines()):
            if line.startswith("ExecStart"):
                out.append((f"systemd/{unit.name}:{i + 1}", line.partition("=")[2]))
    return out


def shell_blocks(text: str, where: str) -> list[tuple[str, str]]:
    """Lines of ```sh blocks, a trailing backslash joining the next line, comments dropped."""
    out, in_block, pending, start = [], False, "", 0
    for i, line in enumerate(text.splitlines()):
        if line.startswith("```"):
            in_block = line.strip() in ("```sh", "```bash") if not in_block else False
            continue
        if not in_block:
            continue
        if not pending:
            start = i + 1
        pending += " " + line.rstrip().removesuffix("\\")
        if not line.rstrip().endswith("\\"):
            out.append((f"{where}:{start}", re.sub(r"\s#\s.*$", "", pending.strip())))
            pending = ""
    return out


def readme_scale_section() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Running at scale\n(.*?)(?=^## )", text, re.S | re.M)
    return m.group(1) if m else ""  # test_every_file_has_its_commands says it is missing


def mailmigrate_calls(command: str) -> list[tuple[str, list[str]]]:
    """Each `mailmigrate <cmd> ...` in a command line: (cmd, its options), after shell splitting."""
    env = env_example()
    words = shlex.split(expand(command, env), comments=True)
    calls = []
    for k, w in enumerate(words):
        if (w == "mailmigrate" or w.endswith("/bin/mailmigrate")) and k + 1 < len(words) \
                and re.fullmatch(r"[a-z]+", words[k + 1]) and words[k + 1] != "mailmigrate":
            cmd, rest = words[k + 1], words[k + 2:]
            if cmd == "db" and rest:
                cmd, rest = f"db {rest[0]}", rest[1:]
            end = next((j for j, x in enumerate(rest) if x in ("&&", "||", ";", "|")), len(rest))
            calls.append((cmd, [x.split("=", 1)[0] for x in rest[:end] if x.startswith("--")]))
    return calls


def all_command_lines() -> list[tuple[str, str]]:
    lines = compose_commands() + unit_commands()
    lines += shell_blocks((DEPLOY / "README.md").read_text(), "deploy/README.md")
    lines += shell_blocks(readme_scale_section(), "README.md#running-at-scale")
    return [(where, c) for where, c in lines if mailmigrate_calls(c)]


@functools.cache
def accepted_options(cmd: str) -> frozenset[str]:
    """The options `mailmigrate <cmd> --help` lists (its Options: section only)."""
    r = subprocess.run([*CLI, *cmd.split(), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, f"`mailmigrate {cmd} --help` failed: {(r.stdout + r.stderr).strip()[-300:]}"
    opts = r.stdout.partition("\nOptions:\n")[2]
    found = set()
    for line in opts.splitlines():
        spec = re.match(r"^\s{2}(-\S.*?)(?:\s{2,}|$)", line)
        if spec:
            found.update(re.findall(r"--[a-z][a-z0-9-]*", spec.group(1)))
    assert found, f"no options found in `mailmigrate {cmd} --help`"
    return frozenset(found)


# --------------------------------------------------------------------------- the tests


def test_every_file_has_its_commands():
    where = " ".join(w for w, _c in all_command_lines())
    for needed in ("compose.yaml", "mailmigrate-serve.service", "mailmigrate-worker@.service",
                   "deploy/README.md", "README.md#running-at-scale"):
        assert needed in where, f"no mailmigrate command line found in {needed}"
    cmds = {cmd for _w, c in all_command_lines() for cmd, _o in mailmigrate_calls(c)}
    assert {"db upgrade", "serve", "worker"} <= cmds


@pytest.mark.parametrize("where,command", all_command_lines(), ids=[w for w, _c in all_command_lines()])
def test_command_uses_only_real_options(where, command):
    for cmd, opts in mailmigrate_calls(command):
        unknown = sorted(set(opts) - accepted_options(cmd))
        assert not unknown, f"{where}: `mailmigrate {cmd}` does not accept {unknown}"
        if cmd in ("db upgrade", "serve", "worker"):
            assert "--database" in opts, f"{where}: `mailmigrate {cmd}` without --database"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def _our_commands() -> list[tuple[str, str]]:
    """The command lines that run mailmigrate (not the database's own)."""
    return [(w, c) for w, c in compose_commands() + unit_commands() if mailmigrate_calls(c)]


@pytest.mark.parametrize("where,command", _our_commands(), ids=[w for w, _c in _our_commands()])
def test_command_values_pass_until_the_database(where, command, tmp_path):
    """Run the line as written, env.example filled in and a real key, against a database that does
    not answer: every option and value is accepted, and it fails only where it connects (exit 4)."""
    env = env_example()
    words = shlex.split(expand(command, env))
    start = next(k for k, w in enumerate(words) if w == "mailmigrate" or w.endswith("/bin/mailmigrate"))
    args = words[start + 1:]
    args[args.index("--database") + 1] = f"postgresql://mailmigrate@127.0.0.1:{_closed_port()}/mailmigrate"
    from cryptography.fernet import Fernet

    run_env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILMIGRATE_")}, **env,
               "MAILMIGRATE_SECRET_KEY": Fernet.generate_key().decode(), "MAILMIGRATE_HOME": str(tmp_path)}
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, env=run_env, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 4 and "cannot reach PostgreSQL" in r.stderr, f"{where}: exit {r.returncode}: {r.stderr}"


def test_serve_and_workers_get_the_same_shared_options():
    # The target and the allowed source networks must be the same on both sides of the queue.
    for where, command in compose_commands() + unit_commands():
        calls = dict(mailmigrate_calls(command))
        if "serve" in calls or "worker" in calls:
            assert re.search(r"\$\{?MM_COMMON_OPTS\b", command), f"{where}: no $MM_COMMON_OPTS"
            assert re.search(r"\$\{?MM_SMTP_OPTS\b", command), f"{where}: no $MM_SMTP_OPTS"


def test_env_example_has_no_real_secret_and_a_working_key_recipe():
    env = env_example()
    for name in SECRETS:
        assert env.get(name) == "change-me", f"env.example: {name} must be a placeholder"
    text = (DEPLOY / "env.example").read_text()
    m = re.search(r"python -c '([^']+)'", text)
    assert m and "Fernet.generate_key" in m.group(1)
    key = subprocess.run([sys.executable, "-c", m.group(1)], capture_output=True, text=True, check=True).stdout.strip()
    from cryptography.fernet import Fernet

    Fernet(key.encode())  # a valid key, as MAILMIGRATE_SECRET_KEY needs


def _services(text: str) -> dict[str, str]:
    """Top-level services' blocks (two-space indented names under `services:`)."""
    body = text.partition("\nservices:\n")[2]
    body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to the next top-level key
    parts = re.split(r"^  ([\w-]+):\s*$", body, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_compose_has_the_database_the_upgrade_serve_and_workers():
    text = (DEPLOY / "compose.yaml").read_text()
    assert "\t" not in text
    svc = _services(text)
    assert set(svc) == {"db", "upgrade", "serve", "worker"}
    assert re.search(r"image:\s*postgres:15\b", svc["db"])
    assert "healthcheck:" in svc["db"] and "pg_isready" in svc["db"]
    assert re.search(r"- pgdata:/var/lib/postgresql/data", svc["db"])
    assert re.search(r"^  pgdata:", text.partition("\nvolumes:\n")[2], re.M)
    anchor = text.partition("x-mailmigrate: &mailmigrate\n")[2].partition("\nservices:")[0]
    assert "env_file:" in anchor and "dockerfile: deploy/Dockerfile" in anchor
    assert "condition: service_completed_successfully" in anchor  # serve/workers wait for the upgrade
    for name in ("upgrade", "serve", "worker"):
        assert "<<: *mailmigrate" in svc[name], name
    assert "condition: service_healthy" in svc["upgrade"] and 'restart: "no"' in svc["upgrade"]
    assert '"127.0.0.1:8080:8080"' in svc["serve"]  # never on the host's public addresses
    assert re.search(r"replicas:\s*[2-9]", svc["worker"])
    assert re.search(r"stop_grace_period:\s*\d+m", svc["worker"])


def _unit(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _sep, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("name", ["mailmigrate-serve.service", "mailmigrate-worker@.service"])
def test_units_are_hardened_and_share_the_env_file(name):
    u = _unit(name)
    want = {"User": "mailmigrate", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
            "ReadWritePaths": "/var/lib/mailmigrate", "EnvironmentFile": "/etc/mailmigrate/env",
            "Environment": "MAILMIGRATE_HOME=/var/lib/mailmigrate", "KillSignal": "SIGTERM",
            "Restart": "on-failure"}
    for key, value in want.items():
        assert u.get(key) == [value], f"{name}: {key}={u.get(key)}, want {value}"
    assert u["ExecStart"][0].startswith("/opt/mailmigrate/bin/mailmigrate ")


def test_worker_gets_time_to_finish_its_batch():
    stop = _unit("mailmigrate-worker@.service")["TimeoutStopSec"][0]
    m = re.fullmatch(r"(\d+)(min|s)?", stop)
    assert m and int(m.group(1)) * (60 if m.group(2) == "min" else 1) >= 300, stop
