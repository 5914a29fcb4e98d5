"""What the operator configures for the service."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..journal import state_home


@dataclass
class ServiceConfig:
    """``target_*``: the operator's own mail system, where every import goes and where people
    sign in. ``jobs``: how many imports run at once (0 queues without running: tests)."""

    target_host: str = "127.0.0.1"
    target_port: int | None = None
    target_security: str | None = None
    target_ca_file: str | None = None
    target_insecure: bool = False
    jobs: int = 4
    home: Path = field(default_factory=state_home)
    admin_token: str | None = field(default_factory=lambda: os.environ.get("MAILMIGRATE_ADMIN_TOKEN") or None)
    secret_key: str | None = field(default_factory=lambda: os.environ.get("MAILMIGRATE_SECRET_KEY") or None)
    session_ttl_s: int = 12 * 3600
    login_limit: int = 5  # sign-in attempts per window, per address and per client
    login_window_s: float = 60.0
    cookie_secure: bool = False  # set behind HTTPS
    imap_timeout: float = 30.0
    # Engine knobs for every job (tests make retries quick).
    retry_base: float = 1.0
    connections: int = 4

    @property
    def db_path(self) -> Path:
        return self.home / "service.sqlite"
