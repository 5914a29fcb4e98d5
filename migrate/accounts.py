"""How one side of a migration is reached: typed account specs and secret resolution.

A secret is given as the value itself, ``env:NAME`` or ``file:PATH``. Resolved secrets are
wrapped in ``Secret`` (whose repr hides the value) and registered with ``errors.redact`` so that
they can never leak into a message, a log line, the journal or a report.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError, register_secret
from .models import Security


class Secret:
    """A password or token. ``str(secret)`` and ``repr(secret)`` never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def resolve_secret(spec: str | Secret, *, what: str) -> Secret:
    """Turn ``env:NAME``, ``file:PATH`` or a literal into a Secret; one-line UsageError if not found.
    A ``Secret`` is already a value (a caller that holds the password itself, e.g. the service:
    a password that happens to begin with ``env:`` is never read as a reference)."""
    if isinstance(spec, Secret):
        return spec
    if spec.startswith("env:"):
        name = spec[4:]
        value = os.environ.get(name)
        if value is None or value == "":
            raise UsageError(f"{what}: environment variable {name} is not set",
                             hint=f"export {name}=... or pass file:PATH")
        return Secret(value)
    if spec.startswith("file:"):
        path = Path(spec[5:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"{what}: file {path} does not exist", hint="check the path after 'file:'") from None
        except PermissionError:
            raise UsageError(f"{what}: cannot read {path} (permission denied)",
                             hint="make the file readable by this user") from None
        except IsADirectoryError:
            raise UsageError(f"{what}: cannot read {path} (it is a directory)",
                             hint="give file:PATH of a file holding the secret") from None
        except UnicodeDecodeError:
            raise UsageError(f"{what}: cannot read {path} (not UTF-8 text)",
                             hint="put the secret as UTF-8 text on the first line") from None
        except OSError as exc:
            raise UsageError(f"{what}: cannot read {path} ({exc.strerror or type(exc).__name__})",
                             hint="check the path after 'file:'") from None
        value = text.rstrip("\r\n")
        if not value:
            raise UsageError(f"{what}: file {path} is empty", hint="put the secret on the first line")
        return Secret(value)
    return Secret(spec)


# A callable returning a fresh OAuth2 access token; called again when the server rejects one.
TokenProvider = Callable[[], Secret]


@dataclass(frozen=True)
class ImapAccount:
    """One IMAP login. ``login`` defaults to the address."""

    email: str
    host: str
    port: int
    security: Security = "ssl"
    username: str | None = None
    password: Secret | None = None
    oauth_token: TokenProvider | None = field(default=None, compare=False)
    oauth_mechanism: str = "XOAUTH2"  # or "OAUTHBEARER"
    ca_file: str | None = None
    insecure: bool = False  # skip certificate verification (warned about loudly by the CLI)
    timeout: float = 60.0  # socket read timeout, seconds
    provider: str | None = None  # preset name, for hooks and limits
    # (host, port) -> the address to connect to, or raises: the service's check of source servers
    # (TLS still names ``host``). None: connect to ``host``.
    address_guard: Callable[[str, int], str] | None = field(default=None, compare=False, repr=False)

    @property
    def login(self) -> str:
        return self.username or self.email

    @property
    def label(self) -> str:
        return f"{self.login}@{self.host}:{self.port}"


@dataclass(frozen=True)
class LocalStore:
    """A local mailbox: a Maildir directory (read/write) or an mbox file or folder (read)."""

    kind: str  # "maildir" | "mbox"
    path: Path
    email: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.path}"


def tls_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    """Verify certificate and host name (against ``ca_file`` if given) unless the user
    explicitly chose --insecure. Used for IMAP and SMTP alike."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
