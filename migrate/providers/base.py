"""Provider presets as data, plus the hooks class the core consults.

A preset (one TOML file under ``presets/``) says where a provider's servers are, how to log
in, and which quirks the one generic IMAP adapter must switch on. Like rclone's S3 providers,
each quirk is a single behaviour switch; a ``ProviderHooks`` subclass is added only when data
cannot express a behaviour (see ``migrate.providers.register``).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache, cached_property
from typing import Any, Literal

from migrate.models import SPECIAL_USES, Security

AuthMethod = Literal["password", "app-password", "xoauth2", "oauthbearer"]

_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_DELAY_GROUPS = ("ms", "s")


PASSWORD_HINT = ("check the login and password; providers with two-factor login "
                 "(Gmail, Outlook, Yahoo, iCloud, GMX) need an app password")


class PresetError(Exception):
    """A preset file is broken: a packaging/programming error, never the user's fault."""


# --- the schema -------------------------------------------------------------------------
# Presets are checked like a pydantic model (types, ranges, no unknown keys) by the few lines
# below, not by pydantic: every run loads them, and importing pydantic's model machinery costs
# about 0.1 s of start-up, more than a whole re-run with nothing to copy.


def _limits(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
            min_length: int | None = None) -> dict[str, float | int]:
    return {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("min_length", min_length)) if v is not None}


def _checked(value: Any, hint: Any, where: str) -> Any:
    """``value`` if it fits the type ``hint`` (int accepted for float), else ValueError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _checked(value, option, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: {value!r} is not a valid {_type_name(hint)}")
    if hint is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in args:
            return value
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    elif origin is list:
        if isinstance(value, list | tuple):
            return [_checked(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, Mapping):
            return {_checked(k, args[0], where): _checked(v, args[1], f"{where}.{k}") for k, v in value.items()}
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return from_mapping(hint, value, where)
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ValueError(f"{where}: {value!r} is not a valid {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _validate(obj: Any) -> None:
    """Check (and normalize, e.g. int -> float) every field of a frozen dataclass instance."""
    hints = _hints(type(obj))
    for f in fields(obj):
        where = f.name
        value = _checked(getattr(obj, f.name), hints[f.name], where)
        limits = f.metadata
        if value is not None:
            if "ge" in limits and value < limits["ge"]:
                raise ValueError(f"{where}: must be >= {limits['ge']} (got {value!r})")
            if "gt" in limits and value <= limits["gt"]:
                raise ValueError(f"{where}: must be > {limits['gt']} (got {value!r})")
            if "le" in limits and value > limits["le"]:
                raise ValueError(f"{where}: must be <= {limits['le']} (got {value!r})")
            if "min_length" in limits and len(value) < limits["min_length"]:
                raise ValueError(f"{where}: needs at least {limits['min_length']} item(s)")
        object.__setattr__(obj, f.name, value)


def from_mapping(cls: type[Any], data: Mapping[str, Any], where: str = "") -> Any:
    """Build a preset dataclass from TOML data; unknown or missing keys are errors."""
    prefix = f"{where}." if where else ""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}")
    missing = [n for n, f in known.items() if n not in data and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(prefix + k for k in missing)}")
    return cls(**data)  # __post_init__ checks every value (and builds nested tables, see _checked)


@dataclass(frozen=True, kw_only=True)
class Quirks:
    """Behaviour switches the core consults; defaults mean "plain RFC 3501 server"."""

    max_connections: int = field(default=4, metadata=_limits(ge=1))  # per account, ours (headroom below the cap)
    append_limit: int | None = field(default=None, metadata=_limits(gt=0))  # bytes, when APPENDLIMIT is absent
    drop_flags: list[str] = field(default_factory=list)  # flags the target rejects or that harm (e.g. $MDNSent)
    ensure_trailing_crlf: bool = False  # Yahoo answers BAD [CLIENTBUG] otherwise
    # Regexes (searched, case-insensitive) over a server answer meaning "slow down"; a named
    # group ``ms`` or ``s`` carries the server's suggested delay.
    throttle_patterns: list[str] = field(default_factory=list)
    throttle_delay: float = field(default=30.0, metadata=_limits(gt=0))  # seconds, when a pattern gives none
    max_messages_per_second: float | None = field(default=None, metadata=_limits(gt=0))
    source_skip_folders: list[str] = field(default_factory=list)  # exact names never read from this provider
    reserved_folders: list[str] = field(default_factory=list)  # names it won't let us create/use as a target
    folder_count_cap: int | None = field(default=None, metadata=_limits(gt=0))  # messages visible per folder
    export_host: str | None = None  # read-only host without the cap (Yahoo)

    def __post_init__(self) -> None:
        _validate(self)
        for pattern in self.throttle_patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad throttle pattern {pattern!r}: {exc}") from exc
            unknown = set(compiled.groupindex) - set(_DELAY_GROUPS)
            if unknown:
                raise ValueError(f"throttle pattern {pattern!r}: only groups 'ms' or 's' allowed")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What a provider allows one account: the daily budgets the engine keeps to
    (``migrate.engine.budget``; MB = 1,000,000 bytes, counted per UTC day) and the folder limits
    the fit check compares with (``migrate.engine.fit``). None: not known, not checked."""

    download_mb_per_day: float | None = field(default=None, metadata=_limits(gt=0))  # read over IMAP
    upload_mb_per_day: float | None = field(default=None, metadata=_limits(gt=0))  # APPENDed over IMAP
    max_messages_per_folder: int | None = field(default=None, metadata=_limits(gt=0))  # as a target
    source: str = ""  # where the numbers come from (shown in the fit report)

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, kw_only=True)
class ProviderPreset:
    """Where a provider's servers are and how to talk to them."""

    name: str
    title: str
    domains: list[str] = field(default_factory=list)  # exact address domains (lowercase); no subdomains
    imap_host: str | None = None  # None only for the generic preset: the user gives the host
    imap_port: int = field(default=993, metadata=_limits(ge=1, le=65535))
    imap_security: Security = "ssl"
    smtp_host: str | None = None
    smtp_port: int | None = field(default=None, metadata=_limits(ge=1, le=65535))
    smtp_security: Security | None = None
    auth: list[AuthMethod] = field(metadata=_limits(min_length=1))
    username: Literal["email", "localpart"] = "email"  # login form for IMAP
    oauth: Literal["google", "microsoft"] | None = None  # which OAuth flow provides tokens
    special_folders: dict[str, str] = field(default_factory=dict)  # "\Sent" -> name; fallback SPECIAL-USE
    hint: str = ""  # what a user must do first (enable IMAP, create an app password, ...)
    quirks: Quirks = field(default_factory=Quirks)
    budget: Budget = field(default_factory=Budget)

    def __post_init__(self) -> None:
        _validate(self)
        if not _NAME_RE.match(self.name):
            raise ValueError(f"preset name {self.name!r} must be lowercase kebab-case")
        domains = [d.strip().lower() for d in self.domains]
        if len(set(domains)) != len(domains):
            raise ValueError("a domain is listed twice")
        if any(not d or "@" in d or d.startswith(".") for d in domains):
            raise ValueError("domains must be bare names like 'gmail.com'")
        object.__setattr__(self, "domains", domains)
        unknown = set(self.special_folders) - set(SPECIAL_USES)
        if unknown:
            raise ValueError(f"unknown special-use roles {sorted(unknown)}; known: {list(SPECIAL_USES)}")
        needs_oauth = {"xoauth2", "oauthbearer"} & set(self.auth)
        if needs_oauth and self.oauth is None:
            raise ValueError(f"auth {sorted(needs_oauth)} needs an 'oauth' flow (google or microsoft)")
        if (self.smtp_host is None) != (self.smtp_port is None) or (self.smtp_host is None) != (
            self.smtp_security is None
        ):
            raise ValueError("smtp_host, smtp_port and smtp_security go together")

    @property
    def short_title(self) -> str:
        """The provider's name in a sentence: "Gmail" for "Gmail / Google Workspace"."""
        return self.title.split(" / ")[0].split(" (")[0]

    @property
    def imap_endpoint(self) -> str:
        host = self.imap_host or "<host>"
        return f"{host}:{self.imap_port} {self.imap_security}"

    @property
    def smtp_endpoint(self) -> str | None:
        if self.smtp_host is None:
            return None
        return f"{self.smtp_host}:{self.smtp_port} {self.smtp_security}"


@dataclass(frozen=True)
class LabelTree:
    """How a source whose folders are labels over one ``\\All`` folder is copied (Gmail): the
    ``\\All`` folder last, with only what no label holds; the views skipped; the ``\\Noselect``
    container level above them dropped. ``*_reason``: the folder plan's reasons (reported)."""

    views: tuple[str, ...]  # roles that only show messages other folders hold
    containers: tuple[str, ...]  # names of the container level (localized)
    all_reason: str = "gmail-all-mail"
    view_reason: str = "gmail-view"
    container_reason: str = "gmail-container"


GMAIL_LABELS = LabelTree(views=("\\Important", "\\Flagged"), containers=("[Gmail]", "[Google Mail]"))

# Answers meaning "slow down" that servers give whatever preset a side uses (an Exchange or a
# Yahoo back end may sit behind any host name): (regex, seconds to wait; None = the retry
# policy's own backoff; what the server did). A group ``ms`` carries the suggested delay.
_THROTTLED = "server throttled the connection"
SERVER_THROTTLE_RULES: tuple[tuple[re.Pattern[str], float | None, str], ...] = (
    # Exchange/Outlook rate limiting: the server tells us exactly how long to wait.
    (re.compile(r"Suggested Backoff Time:\s*(?P<ms>\d+)\s*milli", re.IGNORECASE), None, _THROTTLED),
    # Gmail/Yahoo-style rate limit that lifts after a pause.
    (re.compile(re.escape("[THROTTLED]"), re.IGNORECASE), None, _THROTTLED),
    # Yahoo's (and Exchange Online's) generic backend hiccup; it says itself to try again.
    (re.compile(re.escape("SERVER ERROR - PLEASE TRY AGAIN LATER"), re.IGNORECASE), 30.0,
     "server asked to try again later"),
)


def server_throttle(answer: str) -> tuple[float | None, str] | None:
    """(delay, what the server did) if ``answer`` is one of ``SERVER_THROTTLE_RULES`` (delay
    None: the server suggested none)."""
    for pattern, delay, what in SERVER_THROTTLE_RULES:
        match = pattern.search(answer)
        if match is not None:
            ms = match.groupdict().get("ms")
            return (int(ms) / 1000 if ms else delay), what
    return None


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

    def label_tree(self, lists_all_folder: bool) -> LabelTree | None:
        """Label handling for this source. A source that lists an ``\\All`` folder stores labels
        like Gmail (whatever its preset: a Gmail-like server behind a custom host too)."""
        return GMAIL_LABELS if lists_all_folder else None

    def container_names(self) -> tuple[str, ...]:
        """Folder names under which a well-known special folder name still counts (besides INBOX)."""
        return GMAIL_LABELS.containers

    def login_hint(self, *, oauth: bool, email: str) -> str | None:
        """What to do when this provider refused a login (None: keep the generic hint)."""
        preset = self.preset
        if preset.name == "imap":
            return None
        flow = {"google": "gmail", "microsoft": "outlook"}.get(preset.oauth or "")
        auth = f"mailmigrate auth {flow} --email {email}"
        if oauth:
            return self.oauth_login_hint(auth)
        if preset.oauth and not {"password", "app-password"} & set(preset.auth):
            return (f"{preset.title} accepts only OAuth sign-in over IMAP: run `{auth}` once, then import "
                    "without a password")
        hint = f"check the login and password. {preset.title}: {preset.hint or PASSWORD_HINT}"
        if preset.oauth:
            hint += f" Or sign in with OAuth once: {auth}"
        return hint

    def oauth_login_hint(self, auth: str) -> str | None:
        """A refused OAuth login at this provider: what to check (None: the generic hint)."""
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
