"""Root conftest.

Real-server fixtures (section "Dovecot"): tests share one Dovecot instance per (flavor, options)
per session (per xdist worker) but never a mailbox: every test makes its own users.

    def test_x(dovecot, new_user):
        server = dovecot("gmail")
        alice = new_user(server)
        server.save(alice.name, "INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        with alice.client() as c: ...
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

# The tests folder has no package root on sys.path under every runner; make `tests.` importable.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.dovecot.harness import DovecotServer, available  # noqa: E402

# The reliability suite prints its summary (kill points, faults, losses) from the whole run too.
pytest_plugins = ["tests.reliability.summary"]

# --------------------------------------------------------------------------- Dovecot


@dataclass
class User:
    """A fresh mailbox on a shared server."""

    server: DovecotServer
    name: str
    password: str

    def client(self, *, tls: bool = False):
        """Logged-in imapclient.IMAPClient (plain port, or implicit TLS with tls=True)."""
        return self.server.client(self.name, self.password, tls=tls)

    def save(self, folder: str, data: bytes, flags=()) -> int:
        return self.server.save(self.name, folder, data, flags)

    def __repr__(self) -> str:  # keep the password out of assertion output
        return f"User({self.name!r} on {self.server!r})"


def _require_dovecot() -> None:
    reason = available()
    if reason is None:
        return
    # CI installs Dovecot: there a missing server is a broken setup, not a reason to skip.
    if os.environ.get("MM_REQUIRE_DOVECOT") == "1":
        pytest.fail(f"real Dovecot required (MM_REQUIRE_DOVECOT=1) but unusable: {reason}", pytrace=False)
    pytest.skip(f"real Dovecot unavailable: {reason}")


@pytest.fixture(scope="session")
def dovecot():
    """Factory: dovecot(flavor="slash", **opts) -> running DovecotServer, one per (flavor, opts)
    per session; all stopped and deleted at session end. Options: starttls, quota_kb."""
    servers: dict[tuple, DovecotServer] = {}

    def get(flavor: str = "slash", **opts) -> DovecotServer:
        _require_dovecot()
        key = (flavor, tuple(sorted(opts.items())))
        srv = servers.get(key)
        if srv is None:
            srv = servers[key] = DovecotServer(flavor, **opts).start()
        elif not srv.running:  # a test stopped it (e.g. to test reconnects): bring it back
            srv.start()
        return srv

    yield get
    for srv in servers.values():
        srv.close()


def _slug(nodename: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", nodename.lower()).strip("_")[:24] or "user"


@pytest.fixture
def new_user(request):
    """Factory: new_user(server, name=None, password=None) -> User with a unique name."""

    def make(server: DovecotServer, name: str | None = None, password: str | None = None) -> User:
        name = name or f"{_slug(request.node.name)}_{uuid.uuid4().hex[:8]}"
        password = password or secrets.token_urlsafe(12)
        server.add_user(name, password)
        return User(server, name, password)

    return make


@pytest.fixture
def mail_user(dovecot, new_user) -> User:
    """A fresh user on the shared default ("slash") server."""
    return new_user(dovecot("slash"))


# --------------------------------------------------------------------------- Cyrus
# Real Cyrus IMAP 3.6 (tests/servers/cyrus.py, unpacked by `scripts/setup.sh --cyrus`). Same
# pattern as Dovecot: one instance per (flavor, options) per session, a fresh user per test:
#     server = cyrus("slash"); bob = new_user(server); bob.save("INBOX", raw); bob.client()

from tests.servers.cyrus import CyrusServer  # noqa: E402
from tests.servers.cyrus import available as cyrus_available  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "cyrus: needs real Cyrus IMAP instances (started by the fixture)")
    config.addinivalue_line("markers", "postgres: needs a real PostgreSQL instance (started by the fixture)")


def _require_cyrus() -> None:
    reason = cyrus_available()
    if reason is None:
        return
    # CI unpacks Cyrus (MM_REQUIRE_CYRUS=1 in .ci/run): there a missing server is a broken setup.
    if os.environ.get("MM_REQUIRE_CYRUS") == "1":
        pytest.fail(f"real Cyrus required (MM_REQUIRE_CYRUS=1) but unusable: {reason}", pytrace=False)
    pytest.skip(f"real Cyrus unavailable: {reason}")


@pytest.fixture(scope="session")
def cyrus():
    """Factory: cyrus(flavor="dot", **opts) -> running CyrusServer ("dot": `.` separator,
    "slash": `/`), one per (flavor, opts) per session; all stopped and deleted at session end.
    Options: altnamespace (default True), extra_config (lines for imapd.conf)."""
    servers: dict[tuple, CyrusServer] = {}

    def get(flavor: str = "dot", **opts) -> CyrusServer:
        _require_cyrus()
        key = (flavor, tuple(sorted(opts.items())))
        srv = servers.get(key)
        if srv is None:
            srv = servers[key] = CyrusServer(flavor, **opts).start()
        elif not srv.running:  # a test stopped it: bring it back
            srv.start()
        return srv

    yield get
    for srv in servers.values():
        srv.close()


# --------------------------------------------------------------------------- PostgreSQL
# Real PostgreSQL from Debian's packages (tests/servers/postgres.py, installed by
# `scripts/setup.sh --postgres`): one instance per session (per xdist worker), a fresh database
# or namespace per test:
#     url = postgres.create_database()

from tests.servers.postgres import PostgresServer  # noqa: E402
from tests.servers.postgres import available as postgres_available  # noqa: E402


def _require_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    # CI installs PostgreSQL (MM_REQUIRE_POSTGRES=1 in .ci/run): there a missing server is a broken setup.
    if os.environ.get("MM_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"real PostgreSQL required (MM_REQUIRE_POSTGRES=1) but unusable: {reason}", pytrace=False)
    pytest.skip(f"real PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres():
    """A running PostgresServer on 127.0.0.1 for the whole session; stopped and deleted at its
    end. ``postgres.create_database()`` -> the URL of a new empty database."""
    _require_postgres()
    srv = PostgresServer().start()
    yield srv
    srv.close()
