"""Turn what a user gave for one side (CLI options or a CSV row) into a ready endpoint factory.

This is where provider presets meet explicit options: a preset (named, or detected from the
address's domain) supplies host, port, security, limits and quirks; explicit options override it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import ssl
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .accounts import ImapAccount, LocalStore, Secret, TokenProvider, resolve_secret, tls_context
from .endpoint import Endpoint
from .errors import TlsFailed, UsageError
from .gate import WriteGate, gated

if TYPE_CHECKING:
    from .local._maildir_index import UidBook
    from .providers import ConnectionSettings, ProviderHooks

SECURITIES = ("ssl", "starttls", "none")


@dataclass
class SideOptions:
    """Everything a user can say about one side. ``role`` is "source" or "target"."""

    role: str
    email: str | None = None
    username: str | None = None
    password: str | Secret | None = None  # literal, env:NAME or file:PATH; or the value itself
    provider: str | None = None
    host: str | None = None
    port: int | None = None
    security: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    oauth_token: str | TokenProvider | None = None  # env:NAME or file:PATH; or a provider (the service's)
    oauth_mechanism: str = "XOAUTH2"
    maildir: Path | None = None
    mbox: Path | None = None
    timeout: float = 60.0
    interactive: bool = field(default_factory=lambda: sys.stdin.isatty())
    address_guard: Callable[[str, int], str] | None = None  # ImapAccount.address_guard (the service's)


class Connector:
    """An endpoint factory whose first endpoint can be opened ahead of time.

    ``warm()`` starts opening the first endpoint (connect, TLS, login) in a thread while the
    caller does other work: the CLI imports the engine meanwhile, and a re-run with nothing to
    copy is mostly start-up and two logins. The first call takes that endpoint (or raises what
    opening it raised); every other call opens a new one.
    """

    def __init__(self, open_endpoint: Callable[[], Endpoint], gate: WriteGate | None = None) -> None:
        self._open = open_endpoint
        self.gate = gate or WriteGate()  # what the endpoints may write (``migrate.gate``)
        self._lock = threading.Lock()
        self._opening: threading.Thread | None = None
        self._first: Endpoint | BaseException | None = None
        self._given: weakref.WeakSet[Endpoint] = weakref.WeakSet()  # for ``abort``

    def warm(self) -> None:
        with self._lock:
            if self._opening is None:
                self._opening = threading.Thread(target=self._open_first, name="connect-ahead", daemon=True)
                self._opening.start()

    def _open_first(self) -> None:
        try:
            self._first = self._open()
        except BaseException as exc:  # noqa: BLE001 - raised by the call that takes it
            self._first = exc

    def _take(self) -> Endpoint | BaseException | None:
        with self._lock:
            opening, self._opening = self._opening, None
        if opening is None:
            return None
        opening.join()
        first, self._first = self._first, None
        return first

    def __call__(self) -> Endpoint:
        first = self._take()
        if isinstance(first, BaseException):
            raise first
        endpoint = first if first is not None else self._open()
        with self._lock:
            self._given.add(endpoint)
        return endpoint

    def abort(self) -> None:
        """Cut every connection this connector handed out (``Endpoint.abort``): a cancelled job
        stops at once even where a server stopped answering."""
        with self._lock:
            given = list(self._given)
        for endpoint in given:
            with contextlib.suppress(Exception):  # one that is gone already
                endpoint.abort()

    def discard(self) -> None:
        """Close an endpoint opened ahead but never taken (the job ended before it connected)."""
        first = self._take()
        if first is not None and not isinstance(first, BaseException):
            with contextlib.suppress(Exception):  # closing a connection nobody used
                first.close()


@dataclass
class Side:
    label: str
    email: str | None
    factory: Connector
    hooks: ProviderHooks = field(default_factory=lambda: _generic_hooks())  # plain IMAP: the generic hooks
    provider: str | None = None
    at_preset_host: bool = False  # the preset's own server (not a host given to point elsewhere)
    connection: ConnectionSettings | None = None  # an IMAP side: where and how it connects
    connection_cap: int | None = None
    append_limit: int | None = None
    special_folders: dict[str, str] = field(default_factory=dict)
    smtp: tuple[str, int, str] | None = None  # host, port, security from the preset
    password: Secret | None = None
    login: str | None = None
    oauth_token: TokenProvider | None = None  # for the confirmation mail over SMTP (XOAUTH2)
    uid_book: UidBook | None = None  # a source Maildir: its UIDs go to the job journal (``spec_for``)

    @property
    def gate(self) -> WriteGate:
        """The side's write gate: the job's for a target, a sealed one for a source."""
        return self.factory.gate


def _generic_hooks() -> ProviderHooks:
    from .providers import generic_hooks

    return generic_hooks()


def _token_provider(spec: str, what: str) -> TokenProvider:
    if not (spec.startswith("env:") or spec.startswith("file:")):
        raise UsageError(f"{what}: an OAuth token must be given as env:NAME or file:PATH",
                         hint="never put a token on the command line")

    # Re-read on every call: a token file refreshed by another process is picked up when the
    # server rejects the old token.
    def provide() -> Secret:
        return resolve_secret(spec, what=what)

    provide()  # fail early, before anything connects
    return provide


def build_side(o: SideOptions, gate: WriteGate | None = None) -> Side:
    """``gate``: the job's write gate (closed in a dry run; default open). A target's endpoints
    write through it; a source gets a sealed gate of its own: it is never written to."""
    gate = gate or WriteGate()
    flag = f"--{o.role}"
    if o.maildir or o.mbox:
        if o.maildir and o.mbox:
            raise UsageError(f"{flag}-maildir and {flag}-mbox cannot both be given", hint="give only one of them")
        if o.mbox and o.role == "target":
            raise UsageError("an mbox cannot be a target (it is read-only here)", hint="use --target-maildir")
        return _local_side(o, gate)
    if not o.email:
        raise UsageError(f"{flag}-email is required", hint=f"give {flag}-email ADDRESS (or {flag}-maildir DIR)")
    if "@" not in o.email and not o.username and not o.host:
        raise UsageError(f"{flag}-email '{o.email}' is not an address", hint="use user@domain")
    from . import providers
    from .providers.connection import NoHost, resolve_connection

    preset = providers.choose_preset(o.email, o.provider)
    if o.security and o.security.lower() not in SECURITIES:
        raise UsageError(f"{flag}-security must be one of ssl, starttls, none (got '{o.security}')",
                         hint="ssl for port 993, starttls for port 143; none only on a trusted network")
    if o.port is not None and not 0 < o.port < 65536:
        raise UsageError(f"{flag}-port {o.port} is not a port number (1-65535)",
                         hint="IMAP uses 993 (ssl) or 143 (starttls)")
    try:
        conn = resolve_connection(o.email, host=o.host, port=o.port, security=o.security,
                                  username=o.username, preset=preset)
    except NoHost as exc:
        raise UsageError(str(exc), hint=f"give {flag}-host (and {flag}-port/{flag}-security) or {flag}-provider") from None
    host, port, security, username = conn.host, conn.port, conn.security, conn.username
    if o.ca_file:  # before a password prompt: a wrong path is known now
        check_ca_file(o.ca_file, f"{flag}-ca-file")
    password: Secret | None = None
    token: TokenProvider | None = None
    # A provider that takes no password over IMAP (Outlook.com, Microsoft 365) at its own server:
    # a password cannot work, and asking for one sends the user the wrong way.
    oauth_only = bool(preset and preset.oauth and conn.at_preset_host
                      and not {"password", "app-password"} & set(preset.auth))
    sign_in = f"mailmigrate auth {preset.name} --email {o.email}" if preset and preset.oauth else None
    if o.oauth_token:
        token = _token_provider(o.oauth_token, f"{flag}-oauth-token") if isinstance(o.oauth_token, str) \
            else o.oauth_token
    elif o.password:
        if oauth_only:
            assert preset is not None
            raise UsageError(f"{flag}-password: {preset.name} accepts no password over IMAP, only "
                             f"{_signin_name(preset.oauth)} sign-in",
                             hint=f"run '{sign_in}' once, then import without {flag}-password")
        password = resolve_secret(o.password, what=f"{flag}-password")
    else:
        token = _stored_signin(preset, o.email) if preset is not None else None
        if token is None:
            if oauth_only:
                assert preset is not None
                raise UsageError(f"no sign-in for the {o.role} account {o.email} ({preset.name} accepts only "
                                 f"{_signin_name(preset.oauth)} sign-in, no password)",
                                 hint=f"run '{sign_in}' once, then run this import again")
            if not o.interactive:
                other = f", or run '{sign_in}' once" if sign_in else " (or run interactively)"
                raise UsageError(f"no password for the {o.role} account {o.email}",
                                 hint=f"pass {flag}-password env:NAME or file:PATH{other}")
            password = Secret(getpass.getpass(f"Password for {o.role} {username or o.email}: "))
    account = ImapAccount(email=o.email, host=host, port=port, security=security,
                          username=username, password=password, oauth_token=token,
                          oauth_mechanism=o.oauth_mechanism, ca_file=o.ca_file, insecure=o.insecure,
                          timeout=o.timeout, provider=preset.name if preset else None,
                          address_guard=o.address_guard)

    side_gate = WriteGate.for_source(account.label) if o.role == "source" else gate

    def open_imap() -> Endpoint:
        from .imap import connect
        try:
            endpoint = connect(account)
        except TlsFailed as exc:  # say which side, and which CA file did not vouch for the server
            raise _tls_failure(exc, o.role, flag, account) from None
        return gated(endpoint, side_gate)  # type: ignore[no-any-return]

    return Side(label=account.label, email=o.email, factory=Connector(open_imap, side_gate),
                hooks=providers.hooks_for(preset) if preset is not None else providers.generic_hooks(),
                provider=preset.name if preset else None, at_preset_host=conn.at_preset_host, connection=conn,
                connection_cap=preset.quirks.max_connections if preset else None,
                append_limit=preset.quirks.append_limit if preset else None,
                special_folders=dict(preset.special_folders) if preset else {},
                smtp=(preset.smtp_host, preset.smtp_port, preset.smtp_security)
                if preset and preset.smtp_host and preset.smtp_port and preset.smtp_security else None,
                password=password, login=account.login, oauth_token=token)


def _signin_name(kind: str | None) -> str:
    return {"google": "Google", "microsoft": "Microsoft"}.get(kind or "", "OAuth")


_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH: the CA may be right, the name is not


def _tls_failure(exc: TlsFailed, role: str, flag: str, account: ImapAccount) -> TlsFailed:
    where = f"{account.host}:{account.port}"
    cause = exc.__cause__ or exc.__context__
    if not isinstance(cause, ssl.SSLCertVerificationError):  # handshake, no STARTTLS: just name the side
        return TlsFailed(f"{role}: {exc.message}", hint=exc.hint, reference=exc.reference)
    reason = cause.verify_message or cause.reason or "verification failed"
    if cause.verify_code == _HOSTNAME_MISMATCH:
        hint = (f"give {flag}-host the name the server's certificate is issued for; --insecure skips "
                "verification (not recommended)")
    elif account.ca_file:
        return TlsFailed(f"{role}: TLS certificate of {where} not trusted by {account.ca_file} ({reason})",
                         hint=f"give {flag}-ca-file the CA certificate (PEM) that signed {account.host}'s "
                              f"certificate", reference=exc.reference)
    else:
        hint = (f"pass the server's CA certificate with {flag}-ca-file (PEM); --insecure skips verification "
                "(not recommended)")
    return TlsFailed(f"{role}: TLS certificate of {where} not accepted: {reason}", hint=hint,
                     reference=exc.reference)


def check_ca_file(path: str, flag: str) -> None:
    """Load the CA file now, so a wrong path or a non-PEM file is a usage error, not a TLS failure later."""
    hint = "give the CA certificate (PEM, '-----BEGIN CERTIFICATE-----') that signed the server's certificate"
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path} does not exist", hint=hint)
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a directory", hint=hint)
    try:
        tls_context(path, insecure=False)
    except (ssl.SSLError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        raise UsageError(f"{flag} {path} is not a usable CA certificate ({reason})", hint=hint) from None


def _stored_signin(preset: object, email: str) -> TokenProvider | None:
    """A token provider from ``mailmigrate auth`` (stored refresh token), if one exists."""
    try:
        from .oauth import stored_token_provider
    except ImportError:
        return None
    return stored_token_provider(preset, email)


def _local_side(o: SideOptions, gate: WriteGate) -> Side:
    book: UidBook | None = None
    if o.maildir:
        store = LocalStore("maildir", Path(o.maildir).expanduser(), o.email)
        if o.role == "source" and not store.path.is_dir():
            raise UsageError(f"--source-maildir {store.path} is not a directory",
                             hint="give the Maildir folder (the one holding cur/, new/, tmp/)")
        side_gate = WriteGate.for_source(store.label) if o.role == "source" else gate
        if o.role == "source":  # its UIDs are kept in the job journal, written through the job's gate
            from .local._maildir_index import UidBook
            book = UidBook(str(store.path.resolve()), gate)

        def open_local() -> Endpoint:
            from .local.maildir import MaildirEndpoint
            return MaildirEndpoint(store.path, create=o.role == "target", gate=side_gate, uid_book=book)
    else:
        assert o.mbox is not None
        store = LocalStore("mbox", Path(o.mbox).expanduser(), o.email)
        if not store.path.exists():
            raise UsageError(f"--source-mbox {store.path} does not exist",
                             hint="give an mbox file or a folder of mbox files")
        side_gate = WriteGate.for_source(store.label)

        def open_local() -> Endpoint:
            from .local.mbox import MboxEndpoint
            return gated(MboxEndpoint(store.path), side_gate)  # type: ignore[no-any-return]
    return Side(label=store.label, email=o.email, factory=Connector(open_local, side_gate), uid_book=book)

