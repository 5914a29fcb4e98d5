"""The one place where socket, TLS, imaplib/imapclient failures and IMAP server answers
become ``migrate.errors`` types.

Callers pass only a host:port label, a short description of what was being done and the
server's answer; never the account object, a password or a token. ``MigrateError`` runs
``redact`` over every message as a last line of defence.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from functools import cache
from typing import TYPE_CHECKING

from ..errors import (
    AuthFailed,
    ConnectFailed,
    ConnectionLost,
    FolderRefused,
    MessageError,
    MessageTooBig,
    MigrateError,
    OverQuota,
    Throttled,
    TlsFailed,
)
from ..providers.base import PASSWORD_HINT, server_throttle
from ..providers.hooks import MS_IMAP_HINT

if TYPE_CHECKING:
    from ..providers import ProviderHooks

CONNECT_HINT = "check the host and port"
TLS_HINT = ("pass the server's CA certificate with --source-ca-file/--target-ca-file, "
            "or --insecure to skip verification (not recommended)")
AUTH_HINT = PASSWORD_HINT
OAUTH_HINT = "check the OAuth client, its scopes (IMAP access) and the account name"
QUOTA_HINT = "free space on the target (or raise its quota), then re-run: the job resumes"

_TOO_BIG = ("[TOOBIG]", "[LIMIT]", "TOO BIG", "TOO LARGE", "SIZE EXCEEDS", "MESSAGE SIZE")


def text_of(data: object) -> str:
    """A server answer (bytes, list of bytes, exception) as one printable line."""
    if isinstance(data, BaseException):
        data = str(data)
    if isinstance(data, list | tuple):
        data = b" ".join(d if isinstance(d, bytes) else str(d).encode() for d in data if d is not None)
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    text = " ".join(str(data).split())
    # imaplib/imapclient wrap answers as "... [b'NO text']": keep just the server's words.
    text = re.sub(r"b'(.*?)'", r"\1", text)
    # Drop imaplib's "create failed: " prefix and Dovecot's "(0.001 + 0.000 secs)" timing.
    text = re.sub(r"^(?:command: )?[a-z]+ (?:failed:|=>)\s*", "", text)
    text = re.sub(r"\s*\((?:[\d.]+ \+ )*[\d.]+ secs\)", "", text)
    return text[:500]


def transient(text: str, what: str) -> MigrateError | None:
    """Throttling, quota and "try later" answers, which can come back from any command."""
    upper = text.upper()
    if "[OVERQUOTA]" in upper or "QUOTA" in upper:
        # Not transient: nothing fits until someone frees space; the job stops resumably.
        return OverQuota(f"{what}: the target is over quota: {text}", hint=QUOTA_HINT)
    if (found := server_throttle(text)) is not None:  # Exchange, Gmail, Yahoo texts (providers.base)
        return Throttled(f"{what}: {found[1]}: {text}", delay=found[0])
    if "[UNAVAILABLE]" in upper:
        # RFC 5530: a backend is temporarily unavailable.
        return Throttled(f"{what}: server temporarily unavailable: {text}", delay=10.0)
    if "[INUSE]" in upper:
        # RFC 5530: the mailbox is locked by another session for a moment.
        return Throttled(f"{what}: folder in use by another session: {text}", delay=5.0)
    if "AUTHENTICATED BUT NOT CONNECTED" in upper:
        # Exchange Online accepted the OAuth login, then refuses every command: IMAP is off for
        # the mailbox or tenant (or the app has no access to it). Retrying cannot help.
        return AuthFailed(f"{what}: {text}", hint=MS_IMAP_HINT)
    return None


@cache
def _hooks(provider: str) -> ProviderHooks | None:
    from .. import providers

    try:
        return providers.hooks_for(providers.get(provider))
    except MigrateError:  # an unknown name: no provider knowledge
        return None


def provider_throttle(provider: str | None, text: str, what: str) -> Throttled | None:
    """The preset's own "slow down" answers (``Quirks.throttle_patterns``, e.g. Gmail's bandwidth
    and connection-limit texts), for answers the generic rules in ``transient`` do not know."""
    hooks = _hooks(provider) if provider else None
    delay = hooks.classify(text) if hooks is not None else None
    if delay is None:
        return None
    return Throttled(f"{what}: server throttled the connection: {text}", delay=delay)


def refine_login_failure(exc: AuthFailed, provider: str | None, *, oauth: bool, email: str) -> MigrateError:
    """A refused login, seen with the account's provider preset: the preset's throttle texts
    become ``Throttled``; the generic hint becomes the provider's next step (app password,
    ``mailmigrate auth``, IMAP disabled for the tenant)."""
    found = provider_throttle(provider, exc.message, "login")
    if found is not None:
        return found
    hooks = _hooks(provider) if provider else None
    if hooks is None or exc.hint not in (AUTH_HINT, OAUTH_HINT):
        return exc
    hint = hooks.login_hint(oauth=oauth, email=email)
    if hint is None:
        return exc
    return AuthFailed(exc.message, hint=hint, reference=exc.reference)


def connect_error(exc: BaseException, where: str) -> MigrateError:
    """A failure while opening the connection, before or during TLS (``where`` = host:port)."""
    if isinstance(exc, MigrateError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "verification failed"
        return TlsFailed(f"TLS certificate of {where} not accepted: {reason}", hint=TLS_HINT)
    if isinstance(exc, ssl.SSLError):
        return TlsFailed(f"TLS handshake with {where} failed: {exc.reason or exc}",
                         hint="check that the port speaks the chosen security (ssl vs starttls)")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed(f"cannot resolve {where}: {exc.strerror}", hint=CONNECT_HINT)
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed(f"connection to {where} refused", hint=CONNECT_HINT)
    if isinstance(exc, TimeoutError | socket.timeout):
        return ConnectFailed(f"connection to {where} timed out",
                             hint=CONNECT_HINT + ", and ssl (usually 993) vs starttls (usually 143)")
    if isinstance(exc, imaplib.IMAP4.abort | EOFError | ConnectionResetError | BrokenPipeError):
        # The server hung up during the greeting; often a per-IP connection limit.
        return transient(text_of(exc), f"connect {where}") or ConnectionLost(
            f"{where} closed the connection during the greeting: {text_of(exc)}")
    if isinstance(exc, imaplib.IMAP4.error):
        # A BYE/NO greeting ("too many connections") is worth another try later.
        return transient(text_of(exc), f"connect {where}") or ConnectionLost(
            f"{where} refused the session: {text_of(exc)}")
    if isinstance(exc, OSError):
        return ConnectFailed(f"cannot connect to {where}: {exc.strerror or exc}", hint=CONNECT_HINT)
    return ConnectFailed(f"cannot connect to {where}: {type(exc).__name__}", hint=CONNECT_HINT)


def login_refusal(text: str, who: str, *, oauth: bool) -> MigrateError:
    """LOGIN/AUTHENTICATE answered NO (or BAD)."""
    found = transient(text, f"login {who}")
    if found is not None:
        return found
    upper = text.upper()
    if "[PRIVACYREQUIRED]" in upper or "PLAINTEXT" in upper or "LOGINDISABLED" in upper:
        return AuthFailed(f"login {who} refused without TLS: {text}", hint="use security ssl or starttls")
    if oauth:
        return AuthFailed(f"login {who} rejected the OAuth token (twice): {text}", hint=OAUTH_HINT)
    return AuthFailed(f"login {who} failed: {text}", hint=AUTH_HINT)


def is_connection_loss(exc: BaseException) -> bool:
    return isinstance(exc, imaplib.IMAP4.abort | OSError | EOFError)


def command_error(exc: BaseException, what: str) -> MigrateError:
    """An exception raised by imapclient during a command after login.

    Returns a ``ConnectionLost`` for any transport failure, else the transient/quota class, else
    a generic ``MessageError`` carrying the server's text (callers that know better, e.g.
    CREATE or APPEND, look at the text first).
    """
    if isinstance(exc, MigrateError):
        return exc
    text = text_of(exc)
    found = transient(text, what)
    if found is not None:
        return found
    if isinstance(exc, TimeoutError | socket.timeout):
        # A read timed out: the server or network stalled; a new connection usually works.
        return ConnectionLost(f"{what}: no answer from the server (timeout)")
    if is_connection_loss(exc):
        # BYE, EOF, reset or broken pipe: this connection is gone, a new one will do.
        return ConnectionLost(f"{what}: connection lost: {text or type(exc).__name__}")
    return MessageError(f"{what}: {text}")


def append_refusal(text: str, what: str) -> MigrateError:
    """APPEND answered NO/BAD: quota/throttling affect the job, anything else only this message."""
    found = transient(text, what)
    if found is not None:
        return found
    upper = text.upper()
    if any(marker in upper for marker in _TOO_BIG):
        return MessageTooBig(f"{what}: {text}")
    return MessageError(f"{what}: {text}")


def is_flag_refusal(text: str) -> bool:
    return "FLAG" in text.upper() or "KEYWORD" in text.upper()


def already_exists(text: str) -> bool:
    return "[ALREADYEXISTS]" in text.upper() or "ALREADY EXISTS" in text.upper()


def folder_refusal(text: str, name: str) -> MigrateError:
    """CREATE answered NO/BAD."""
    return transient(text, f"create folder {name!r}") or FolderRefused(
        f"server refused to create folder {name!r}: {text}")


def select_refusal(text: str, name: str) -> MigrateError:
    """SELECT/EXAMINE answered NO (missing folder, \\Noselect, no rights)."""
    return transient(text, f"open folder {name!r}") or FolderRefused(
        f"cannot open folder {name!r}: {text}")
