"""Test helpers: seed real mailboxes, snapshot them, and run imports (in-process or as the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from migrate.api import ImportRequest, run_import
from migrate.report import JobReport
from migrate.sides import SideOptions

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus" / "real"


def side(role: str, user, *, security: str = "none", port: int | None = None, **kw) -> SideOptions:
    """SideOptions for a test user on a harness server (plain port by default)."""
    srv = user.server
    env = f"MMTEST_PW_{role.upper()}_{user.name}".replace("-", "_")
    os.environ[env] = user.password
    return SideOptions(role, email=f"{user.name}@example.test", username=user.name, password=f"env:{env}",
                       host="127.0.0.1", port=port or srv.port, security=security, provider="imap",
                       interactive=False, timeout=kw.pop("timeout", 20.0), **kw)


def import_job(src_user, dst_user, tmp_path: Path, *, src_kw=None, dst_kw=None, **kw) -> JobReport:
    req = ImportRequest(source=side("source", src_user, **(src_kw or {})),
                        target=side("target", dst_user, **(dst_kw or {})),
                        journal=kw.pop("journal", tmp_path / "journal.sqlite"), progress=False,
                        retry_base=kw.pop("retry_base", 0.05), **kw)
    return run_import(req)


def folders(user) -> dict[str, set[str]]:
    with user.client() as c:
        return {name: {f.decode() if isinstance(f, bytes) else str(f) for f in flags}
                for flags, _d, name in c.list_folders()}


def snapshot(user, folder: str) -> Counter:
    """Multiset of (exact bytes, flags, INTERNALDATE instant) of one folder."""
    out: Counter = Counter()
    with user.client() as c:
        c.normalise_times = False
        c.select_folder(folder, readonly=True)
        uids = c.search("ALL")
        for i in range(0, len(uids), 200):
            data = c.fetch(uids[i:i + 200], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
            for v in data.values():
                flags = tuple(sorted(f.decode() for f in v[b"FLAGS"] if f != b"\\Recent"))
                idate = v[b"INTERNALDATE"]
                ts = idate.astimezone(UTC).timestamp() if idate.tzinfo else idate.timestamp()
                out[(v[b"BODY[]"], flags, int(ts))] += 1
    return out


def count(user, folder: str) -> int:
    with user.client() as c:
        return c.select_folder(folder, readonly=True)[b"EXISTS"]


def append(user, folder: str, body: bytes, flags=(), date: datetime | None = None) -> None:
    with user.client() as c:
        if not c.folder_exists(folder):
            c.create_folder(folder)
        c.append(folder, body, flags=flags, msg_time=date)


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real command line as a separate process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


def cli_args(role: str, user) -> list[str]:
    env = f"MMTEST_PW_{role.upper()}_{user.name}".replace("-", "_")
    os.environ[env] = user.password
    return [f"--{role}-email", f"{user.name}@example.test", f"--{role}-username", user.name,
            f"--{role}-password", f"env:{env}", f"--{role}-host", "127.0.0.1",
            f"--{role}-port", str(user.server.port), f"--{role}-security", "none", f"--{role}-provider", "imap"]


def msg(i: int, *, mid: str | None = "auto", subject: str | None = None, body: str | None = None,
        extra: bytes = b"") -> bytes:
    """A small RFC 5322 message; ``mid=None`` leaves the Message-ID out."""
    lines = []
    if mid == "auto":
        mid = f"<m{i}@example.test>"
    if mid:
        lines.append(f"Message-ID: {mid}")
    lines += ["From: Alice <alice@example.test>", "To: bob@example.test",
              f"Date: Mon, 1 Jan 2024 10:{i % 60:02d}:00 +0000", f"Subject: {subject or f'message {i}'}"]
    return ("\r\n".join(lines) + "\r\n").encode() + extra + f"\r\n{body or f'body {i}'}\r\n".encode()
