"""Errors a user or the engine can meet, classified once, at the boundary.

Each error carries a kebab-case ``reference``, a one-line ``message`` (what happened), an
optional ``hint`` (what to do) and an ``exit_code``. The endpoint layers translate library and
socket exceptions into these; the engine reacts per class:

* ``RetryableError``  -> reconnect / back off and try again (bounded);
* ``MessageError``    -> this one message is recorded as failed, the run goes on;
* ``FatalError``      -> this mailbox (job) stops; re-running resumes.

Messages never contain secrets: callers pass only hosts, logins and server answers, and
``redact`` scrubs anything registered as secret as a last line of defence.
"""

from __future__ import annotations

import threading
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PARTIAL = 1  # done, but some messages failed
    USAGE = 2  # usage or input error
    AUTH = 3  # authentication failed
    CONNECTION = 4  # connection/TLS failure or interrupted: re-run resumes


_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret so that ``redact`` removes it from any text shown or stored."""
    if value and len(value) >= 3:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, "********")
    return text


class MigrateError(Exception):
    reference = "migrate-error"
    exit_code = ExitCode.CONNECTION

    def __init__(self, message: str, *, hint: str | None = None, reference: str | None = None) -> None:
        self.message = redact(message)
        self.hint = redact(hint) if hint else None
        if reference:
            self.reference = reference
        super().__init__(self.message)

    def one_line(self) -> str:
        line = f"error: {self.message}"
        if self.hint:
            line += f" (hint: {self.hint})"
        return line


# --- user input -------------------------------------------------------------------------


class UsageError(MigrateError):
    reference = "usage-error"
    exit_code = ExitCode.USAGE


# --- fatal for a job --------------------------------------------------------------------


class FatalError(MigrateError):
    """Stops this mailbox; the journal keeps it resumable."""

    exit_code = ExitCode.CONNECTION


class AuthFailed(FatalError):
    reference = "login-failed"
    exit_code = ExitCode.AUTH


class ConnectFailed(FatalError):
    """Could not reach the server at all (DNS, refused, TLS handshake, certificate)."""

    reference = "connect-failed"
    exit_code = ExitCode.CONNECTION


class TlsFailed(ConnectFailed):
    reference = "tls-failed"


class OverQuota(FatalError):
    reference = "target-over-quota"
    exit_code = ExitCode.CONNECTION


class JobLocked(FatalError):
    reference = "job-running"
    exit_code = ExitCode.USAGE


# --- retry ------------------------------------------------------------------------------


class RetryableError(MigrateError):
    """Transient: the connection dropped, timed out, or the server asked us to slow down."""

    reference = "transient"
    exit_code = ExitCode.CONNECTION


class ConnectionLost(RetryableError):
    reference = "connection-lost"


class Throttled(RetryableError):
    reference = "throttled"

    def __init__(self, message: str, *, delay: float | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.delay = delay


class TokenExpired(RetryableError):
    """An OAuth access token was rejected mid-run: refresh it and log in again."""

    reference = "oauth-token-expired"


# --- one message ------------------------------------------------------------------------


class MessageError(MigrateError):
    """Only this message failed (refused by the target, too big, unreadable on the source)."""

    reference = "message-refused"
    exit_code = ExitCode.PARTIAL


class MessageTooBig(MessageError):
    reference = "message-too-big"


class FolderRefused(MigrateError):
    """The target refused to create a folder under this name."""

    reference = "folder-refused"
    exit_code = ExitCode.PARTIAL
