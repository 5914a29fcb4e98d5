"""What the operator configures for the service."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..journal import state_home

if TYPE_CHECKING:
    from ..notify.options import NotifyOptions
    from ..notify.send import SmtpSettings
    from ..sides import SideOptions
    from .network import SourceNetworks


@dataclass
class ServiceConfig:
    """``target_*``: the operator's own mail system, where every import goes and where people
    sign in: ``target_provider`` (a preset: its IMAP host, port and security) or ``target_host``
    (with ``target_port``/``target_security``), exactly one. ``jobs``: how many imports run at
    once (0 queues without running: tests). ``smtp_*``/``mail_from``: the relay for the service's
    own mails (confirmation mails, sign-in links); ``smtp_password`` is a literal, ``env:NAME`` or
    ``file:PATH``, read (and checked) when the config is made."""

    target_host: str | None = None
    target_port: int | None = None
    target_security: str | None = None
    target_ca_file: str | None = None
    target_insecure: bool = False
    target_provider: str | None = None
    jobs: int = 4
    home: Path = field(default_factory=state_home)
    # The service's state: a PostgreSQL URL shared by every serve/worker process (``mailmigrate db
    # upgrade`` first), or None for service.sqlite in ``home`` (one process).
    database: str | None = None
    admin_token: str | None = field(default_factory=lambda: os.environ.get("MAILMIGRATE_ADMIN_TOKEN") or None,
                                    repr=False)
    secret_key: str | None = field(default_factory=lambda: os.environ.get("MAILMIGRATE_SECRET_KEY") or None,
                                   repr=False)
    session_ttl_s: int = 12 * 3600
    login_limit: int = 5  # sign-in attempts per window, per address and per client
    login_window_s: float = 60.0
    cookie_secure: bool = False  # set behind HTTPS: Secure cookies and Strict-Transport-Security
    # Ranges (CIDR) of internal addresses people's source servers may have (network.py); none by
    # default: a person could otherwise make the service connect into the operator's network.
    allow_source_networks: tuple[str, ...] = ()
    imap_timeout: float = 30.0
    cancel_grace_s: float = 3.0  # a cancelled job's connections are cut after this (silent servers)
    # Engine knobs for every job (tests make retries quick).
    retry_base: float = 1.0
    connections: int = 4
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str | None = None
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_ca_file: str | None = None
    mail_from: str | None = None
    # Google / Microsoft sign-in (oauth_web.py, signin.py). Client ids and the Google secret: these
    # or the CLI's environment (MAILMIGRATE_GOOGLE_CLIENT_ID/_SECRET, MAILMIGRATE_MS_CLIENT_ID);
    # endpoints: the real ones unless moved here or by MAILMIGRATE_GOOGLE_AUTH_URI/_TOKEN_URI,
    # MAILMIGRATE_MS_AUTHORITY. ``public_url``: where browsers reach the service (redirect URI, links).
    public_url: str = "http://127.0.0.1:8080"
    signin_link_days: float = 7.0
    google_client_id: str | None = None
    google_client_secret: str | None = field(default=None, repr=False)
    microsoft_client_id: str | None = None
    google_auth_url: str | None = None
    google_token_url: str | None = None
    microsoft_authority: str | None = None

    def __post_init__(self) -> None:
        if bool(self.target_host) == bool(self.target_provider):
            raise UsageError("give the mail system people import into: --target-provider NAME or "
                             "--target-host HOST (exactly one)",
                             hint="e.g. --target-host mail.example.com --target-security ssl")
        if self.target_provider:
            from .. import providers

            preset = providers.get(self.target_provider)  # UsageError naming the known ones
            if not preset.imap_host:
                raise UsageError(f"--target-provider {preset.name} has no IMAP host",
                                 hint="give --target-host HOST instead")
            if not {"password", "app-password"} & set(preset.auth):
                raise UsageError(f"--target-provider {preset.name} does not accept passwords: people sign in "
                                 "to the service with the password of their mailbox",
                                 hint="give --target-host HOST of a mail system with password logins")
            self.target_provider = preset.name
        if self.smtp_security is not None and self.smtp_security.lower() not in ("ssl", "starttls", "none"):
            raise UsageError(f"--smtp-security must be ssl, starttls or none (got '{self.smtp_security}')")
        if self.smtp_password:
            from ..accounts import resolve_secret

            # Read now: a missing variable or file is a start-up error, and the value is known to
            # the redaction of every later message.
            resolve_secret(self.smtp_password, what="--smtp-password")
        if self.mail_from is not None and "@" not in self.mail_from:
            raise UsageError(f"--mail-from {self.mail_from!r} is not an e-mail address",
                             hint="e.g. --mail-from imports@example.com")
        if not self.public_url.startswith(("http://", "https://")) or "?" in self.public_url:
            raise UsageError(f"--public-url {self.public_url!r} is not an http(s) address",
                             hint="the address browsers use to reach this service, e.g. --public-url "
                                  "https://import.example.com")
        self.public_url = self.public_url.rstrip("/")
        from .network import parse_networks

        try:
            parse_networks(self.allow_source_networks)
        except ValueError as exc:
            raise UsageError(f"--allow-source-network {exc} is not a network",
                             hint="give a range in CIDR form, e.g. --allow-source-network 10.0.0.0/8") from None
        self.allow_source_networks = tuple(self.allow_source_networks)
        if not 0 < self.signin_link_days <= 90:
            raise UsageError(f"--signin-link-days {self.signin_link_days:g} is out of range (more than 0, at most 90)",
                             hint="sign-in links last 7 days by default")

    def source_networks(self) -> SourceNetworks:
        """The check of people's source servers (internal addresses refused unless allowed)."""
        from .network import SourceNetworks, parse_networks

        return SourceNetworks(parse_networks(self.allow_source_networks))

    @property
    def db_path(self) -> Path:
        return self.home / "service.sqlite"

    @property
    def target_server(self) -> str:
        """The IMAP host people sign in to (the preset's with ``target_provider``)."""
        if self.target_host:
            return self.target_host
        from .. import providers

        return str(providers.get(str(self.target_provider)).imap_host)

    def target_connection(self) -> tuple[str, str, int, str]:
        """(provider, host, port, security) of the operator's mail system, as every job connects."""
        from .. import providers
        from ..providers.connection import resolve_connection

        preset = providers.get(self.target_provider or "imap")
        conn = resolve_connection("someone@" + self.target_server, host=self.target_host, port=self.target_port,
                                  security=self.target_security, preset=preset)
        return preset.name, conn.host, conn.port, conn.security

    def target_options(self, email: str) -> SideOptions:
        """The target side of every import (and of every sign-in check): ``email`` on the
        operator's mail system, logging in with the address."""
        from ..sides import SideOptions

        return SideOptions("target", email=email, username=email, provider=self.target_provider or "imap",
                           host=self.target_host, port=self.target_port, security=self.target_security,
                           ca_file=self.target_ca_file, insecure=self.target_insecure, interactive=False,
                           timeout=self.imap_timeout)

    def notify_options(self, lang: str, extra: list[str]) -> NotifyOptions:
        """The confirmation mail of an import: through ``--smtp-host`` when given, else the
        target provider's SMTP server with the target login (``migrate.api.notify_job``)."""
        from ..notify.options import NotifyOptions

        return NotifyOptions(enabled=True, lang=lang, extra=extra, sender=self.mail_from,
                             smtp_host=self.smtp_host, smtp_port=self.smtp_port,
                             smtp_security=self.smtp_security, smtp_user=self.smtp_user,
                             smtp_password=self.smtp_password, ca_file=self.smtp_ca_file)

    def smtp_settings(self) -> SmtpSettings:
        """The relay for the service's own mails; UsageError when none is configured."""
        from ..accounts import resolve_secret
        from ..notify.send import SmtpSettings

        if not self.smtp_host:
            raise UsageError("the service has no SMTP server for its mails",
                             hint="start it with --smtp-host HOST (and --smtp-user/--smtp-password)")
        security = (self.smtp_security or "starttls").lower()
        port = self.smtp_port or {"ssl": 465, "starttls": 587, "none": 25}[security]
        password = resolve_secret(self.smtp_password, what="--smtp-password") if self.smtp_password else None
        return SmtpSettings(host=self.smtp_host, port=port, security=security,  # type: ignore[arg-type]
                            username=self.smtp_user, password=password, ca_file=self.smtp_ca_file)
