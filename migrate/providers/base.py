"""Provider presets as data, plus the hooks class the core consults.

A preset (one TOML file under ``presets/``) says where a provider's servers are, how to log
in, and which quirks the one generic IMAP adapter must switch on. Like rclone's S3 providers,
each quirk is a single behaviour switch; a ``ProviderHooks`` subclass is added only when data
cannot express a behaviour (see ``migrate.providers.register``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from migrate.models import SPECIAL_USES, Security

AuthMethod = Literal["password", "app-password", "xoauth2", "oauthbearer"]

_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_DELAY_GROUPS = ("ms", "s")


class PresetError(Exception):
    """A preset file is broken: a packaging/programming error, never the user's fault."""


class Quirks(BaseModel):
    """Behaviour switches the core consults; defaults mean "plain RFC 3501 server"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_connections: int = Field(default=4, ge=1)  # per account, ours (leave headroom below the cap)
    append_limit: int | None = Field(default=None, gt=0)  # bytes; used when APPENDLIMIT isn't announced
    drop_flags: list[str] = []  # flags the target rejects or that cause harm (e.g. $MDNSent)
    ensure_trailing_crlf: bool = False  # Yahoo answers BAD [CLIENTBUG] otherwise
    # Regexes (searched, case-insensitive) over a server answer meaning "slow down"; a named
    # group ``ms`` or ``s`` carries the server's suggested delay.
    throttle_patterns: list[str] = []
    throttle_delay: float = Field(default=30.0, gt=0)  # seconds, when a pattern gives no delay
    max_messages_per_second: float | None = Field(default=None, gt=0)
    daily_download_bytes: int | None = Field(default=None, gt=0)
    daily_upload_bytes: int | None = Field(default=None, gt=0)
    source_skip_folders: list[str] = []  # exact names never read from this provider
    reserved_folders: list[str] = []  # names this provider won't let us create/use as a target
    gmail_labels: bool = False  # source is a label tree: \All last, skip \Important/\Flagged
    folder_count_cap: int | None = Field(default=None, gt=0)  # messages visible per folder
    export_host: str | None = None  # read-only host without the cap (Yahoo)

    @field_validator("throttle_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad throttle pattern {pattern!r}: {exc}") from exc
            unknown = set(compiled.groupindex) - set(_DELAY_GROUPS)
            if unknown:
                raise ValueError(f"throttle pattern {pattern!r}: only groups 'ms' or 's' allowed")
        return value


class ProviderPreset(BaseModel):
    """Where a provider's servers are and how to talk to them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    domains: list[str] = []  # exact address domains (lowercase); subdomains never match
    imap_host: str | None = None  # None only for the generic preset: the user gives the host
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Security = "ssl"
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_security: Security | None = None
    auth: list[AuthMethod] = Field(min_length=1)
    username: Literal["email", "localpart"] = "email"  # login form for IMAP
    oauth: Literal["google", "microsoft"] | None = None  # which OAuth flow provides tokens
    special_folders: dict[str, str] = {}  # "\\Sent" -> provider's name; fallback to SPECIAL-USE
    hint: str = ""  # what a user must do first (enable IMAP, create an app password, ...)
    quirks: Quirks = Quirks()

    @field_validator("name")
    @classmethod
    def _kebab_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"preset name {value!r} must be lowercase kebab-case")
        return value

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        domains = [d.strip().lower() for d in value]
        if len(set(domains)) != len(domains):
            raise ValueError("a domain is listed twice")
        if any(not d or "@" in d or d.startswith(".") for d in domains):
            raise ValueError("domains must be bare names like 'gmail.com'")
        return domains

    @field_validator("special_folders")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - set(SPECIAL_USES)
        if unknown:
            raise ValueError(f"unknown special-use roles {sorted(unknown)}; known: {list(SPECIAL_USES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProviderPreset:
        needs_oauth = {"xoauth2", "oauthbearer"} & set(self.auth)
        if needs_oauth and self.oauth is None:
            raise ValueError(f"auth {sorted(needs_oauth)} needs an 'oauth' flow (google or microsoft)")
        if (self.smtp_host is None) != (self.smtp_port is None) or (self.smtp_host is None) != (
            self.smtp_security is None
        ):
            raise ValueError("smtp_host, smtp_port and smtp_security go together")
        return self

    @property
    def imap_endpoint(self) -> str:
        host = self.imap_host or "<host>"
        return f"{host}:{self.imap_port} {self.imap_security}"

    @property
    def smtp_endpoint(self) -> str | None:
        if self.smtp_host is None:
            return None
        return f"{self.smtp_host}:{self.smtp_port} {self.smtp_security}"


class ProviderHooks:
    """Provider-specific behaviour; the defaults only apply the preset's quirks.

    Subclass (and ``@register`` the subclass) only where data can't express a behaviour.
    """

    def __init__(self, preset: ProviderPreset) -> None:
        self.preset = preset

    @property
    def quirks(self) -> Quirks:
        return self.preset.quirks

    @cached_property
    def _throttle_res(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p, re.IGNORECASE) for p in self.quirks.throttle_patterns)

    def classify(self, answer: str) -> float | None:
        """Seconds to wait if ``answer`` is this provider's "slow down" signal, else None."""
        for pattern in self._throttle_res:
            match = pattern.search(answer)
            if match is None:
                continue
            groups = match.groupdict()
            if groups.get("ms"):
                return int(groups["ms"]) / 1000
            if groups.get("s"):
                return float(groups["s"])
            return self.quirks.throttle_delay
        return None

    def prepare_append(self, body: bytes) -> bytes:
        """Adjust a message's bytes for this target just before APPEND."""
        if self.quirks.ensure_trailing_crlf and not body.endswith(b"\r\n"):
            return body + b"\r\n"
        return body

    def filter_flags(self, flags: Iterable[str]) -> tuple[str, ...]:
        """Flags to store on this target: ``drop_flags`` removed (IMAP flags ignore case)."""
        drop = {f.lower() for f in self.quirks.drop_flags}
        if not drop:
            return tuple(flags)
        return tuple(f for f in flags if f.lower() not in drop)
