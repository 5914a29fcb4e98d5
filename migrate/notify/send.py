"""Deliver a composed mail over SMTP and choose its recipients.

Every smtplib/socket/TLS failure becomes one ``NotifyFailed`` with a one-line message and a hint.
The password is only ever handed to ``smtp.login``; messages carry host, port, user and the
server's answer, and ``MigrateError`` runs them through ``redact`` as a last line of defence.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Literal

from migrate.accounts import Secret, tls_context
from migrate.report import JobReport

from . import NotifyFailed
from .compose import clean

Security = Literal["ssl", "starttls", "none"]


@dataclass
class SmtpSettings:
    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: Secret | None = None
    ca_file: str | None = None
    insecure: bool = False  # skip certificate verification (the CLI warns about it)
    timeout: float = 30
    oauth_token: Callable[[], Secret] | None = None  # XOAUTH2 (Gmail, Microsoft) instead of a password

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def _answer(exc: smtplib.SMTPResponseException) -> str:
    err = exc.smtp_error
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
    return clean(f"{exc.smtp_code} {text}", 200)


def send_mail(msg: EmailMessage, settings: SmtpSettings) -> None:
    """Send ``msg`` to the addresses in its To/Cc/Bcc headers; raise ``NotifyFailed`` on any failure."""
    s, where = settings, settings.label
    if s.security not in ("ssl", "starttls", "none"):
        raise NotifyFailed(f"unknown SMTP security {s.security!r}", hint="use ssl, starttls or none")
    if s.username and s.password is None and s.oauth_token is None:
        raise NotifyFailed(f"SMTP user {s.username} has no password", hint="give the SMTP password (env:NAME or file:PATH)")
    try:
        ctx = tls_context(s.ca_file, s.insecure) if s.security != "none" else None
        if s.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with smtp:
            if s.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if s.username and s.oauth_token is not None:
                token = s.oauth_token().get()
                # RFC 7628-style XOAUTH2 initial response (Gmail, Microsoft 365 SMTP AUTH).
                smtp.ehlo_or_helo_if_needed()
                smtp.auth("XOAUTH2", lambda challenge=None: f"user={s.username}\x01auth=Bearer {token}\x01\x01",
                          initial_response_ok=True)
            elif s.username and s.password is not None:
                smtp.login(s.username, s.password.get())
            refused = smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise NotifyFailed(f"SMTP server {where} refused the login for {s.username}: {_answer(exc)}",
                           hint="check the SMTP user and password") from None
    except smtplib.SMTPRecipientsRefused as exc:
        bad = ", ".join(f"{clean(a, 100)} ({clean(r[0], 10)})" for a, r in exc.recipients.items())
        raise NotifyFailed(f"SMTP server {where} refused every recipient: {bad}",
                           hint="check the addresses, or whether this server relays to them") from None
    except smtplib.SMTPSenderRefused as exc:
        raise NotifyFailed(f"SMTP server {where} refused the sender {clean(exc.sender, 100)}: {_answer(exc)}",
                           hint="use a sender address this server accepts for your login") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise NotifyFailed(f"SMTP server {where} does not support what we need: {clean(exc, 200)}",
                           hint="try another --smtp-security (ssl, starttls) or port") from None
    except smtplib.SMTPServerDisconnected as exc:
        raise NotifyFailed(f"SMTP server {where} closed the connection: {clean(exc, 200) or 'no answer'}",
                           hint="check host, port and --smtp-security (465 is usually ssl, 587 starttls)") from None
    except smtplib.SMTPResponseException as exc:
        raise NotifyFailed(f"SMTP server {where} answered {_answer(exc)}",
                           hint="see the server's answer; re-send later if it is temporary") from None
    except smtplib.SMTPException as exc:
        raise NotifyFailed(f"sending mail via {where} failed: {clean(exc, 200)}",
                           hint="check the SMTP settings") from None
    except ssl.SSLCertVerificationError as exc:
        raise NotifyFailed(f"SMTP server {where}: certificate not trusted ({clean(exc.verify_message, 120)})",
                           hint="give the CA with --smtp-ca-file, or fix the server certificate") from None
    except ssl.SSLError as exc:
        raise NotifyFailed(f"TLS with SMTP server {where} failed: {clean(exc.reason or exc, 120)}",
                           hint="check --smtp-security and port (465 is usually ssl, 587 starttls)") from None
    except TimeoutError:
        raise NotifyFailed(f"SMTP server {where} did not answer within {s.timeout:g} s",
                           hint="check host, port and firewall") from None
    except ConnectionRefusedError:
        raise NotifyFailed(f"cannot connect to SMTP server {where}: connection refused",
                           hint="check host and port, and that the mail server is running") from None
    except socket.gaierror:
        raise NotifyFailed(f"cannot resolve SMTP server host {s.host}", hint="check the host name") from None
    except OSError as exc:
        raise NotifyFailed(f"cannot reach SMTP server {where}: {clean(exc.strerror or type(exc).__name__, 120)}",
                           hint="check host, port and network") from None
    if refused:  # some recipients got it, some did not: say who did not
        bad = ", ".join(f"{clean(a, 100)} ({r[0]})" for a, r in refused.items())
        raise NotifyFailed(f"SMTP server {where} refused some recipients: {bad}",
                           hint="the others received the mail; check these addresses")


_ADDR = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\]+$")


def _address(value: str | None) -> str | None:
    """The bare address from ``value`` (``a@b`` or ``Name <a@b>``), or None if it is not one."""
    if not value or not value.strip():
        return None
    addr = parseaddr(value.strip())[1] if "<" in value else value.strip()
    if not _ADDR.match(addr) or addr.endswith(".") or ".." in addr.rpartition("@")[2]:
        return None
    return addr


def recipients_for(report: JobReport, extra: list[str]) -> list[str]:
    """Source address, target address, then ``extra``: valid ones only, each once (case-insensitive)."""
    seen: set[str] = set()
    out: list[str] = []
    for value in [report.source_email, report.target_email, *extra]:
        addr = _address(value)
        if addr and addr.lower() not in seen:
            seen.add(addr.lower())
            out.append(addr)
    return out
