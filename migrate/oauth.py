"""OAuth2 sign-in for Gmail / Google Workspace and Outlook.com / Microsoft 365.

``mailmigrate auth gmail|outlook --email ADDR`` signs in once (Google: installed-app flow with a
loopback redirect to 127.0.0.1; Microsoft: device-code flow, which works over SSH) and stores the
**refresh token** (never an access token) either in the OS keyring, when the optional ``keyring``
module has a usable backend, or in ``$MAILMIGRATE_HOME/tokens/<google|microsoft>-<email>.json``
(directory 0700, file 0600, written atomically). Imports then call ``stored_token_provider`` and
get fresh access tokens without a prompt, refreshed through the libraries' own code paths
(``google.oauth2.credentials.Credentials.refresh`` and msal's ``acquire_token_by_refresh_token``).

Configuration (flags win over the environment):

* Google: ``--client-id``/``--client-secret`` or ``MAILMIGRATE_GOOGLE_CLIENT_ID`` /
  ``MAILMIGRATE_GOOGLE_CLIENT_SECRET`` (an OAuth client of type "Desktop app");
  ``MAILMIGRATE_GOOGLE_AUTH_URI`` and ``MAILMIGRATE_GOOGLE_TOKEN_URI`` move the endpoints.
* Microsoft: ``--client-id`` or ``MAILMIGRATE_MS_CLIENT_ID`` (an Entra app registration with
  "Allow public client flows"); ``MAILMIGRATE_MS_AUTHORITY`` (default
  ``https://login.microsoftonline.com/common``; a tenant, ``/organizations`` or ``/consumers``).
* ``MAILMIGRATE_KEYRING=0`` keeps the tokens in files even when a keyring is available.

The token endpoints are reached with ``requests``, so ``REQUESTS_CA_BUNDLE`` and the usual proxy
variables apply.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .accounts import Secret, TokenProvider
from .errors import AuthFailed, ConnectFailed, UsageError, register_secret

GOOGLE = "google"
MICROSOFT = "microsoft"
KINDS = (GOOGLE, MICROSOFT)

GOOGLE_SCOPES = ("https://mail.google.com/",)  # IMAP and SMTP
# offline_access (a refresh token) is requested as well: msal adds it, with openid and profile,
# to every request itself and refuses it when the caller lists it.
MS_SCOPES = ("https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send")

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
MS_AUTHORITY = "https://login.microsoftonline.com/common"

EARLY_REFRESH = 60.0  # seconds before expiry at which a cached access token is renewed
KEYRING_SERVICE = "mailmigrate"

GOOGLE_REGISTER = ("create an OAuth client of type 'Desktop app' (Google Cloud console > APIs & Services > "
                   "Credentials, with the Gmail API enabled) and pass --client-id/--client-secret or set "
                   "MAILMIGRATE_GOOGLE_CLIENT_ID and MAILMIGRATE_GOOGLE_CLIENT_SECRET")
MS_REGISTER = ("register an app in the Microsoft Entra admin center (App registrations > New; Authentication > "
               "'Allow public client flows' = Yes; API permissions: Office 365 Exchange Online "
               "IMAP.AccessAsUser.All, SMTP.Send, offline_access) and pass --client-id or set "
               "MAILMIGRATE_MS_CLIENT_ID")


# --- which flow a provider uses -----------------------------------------------------------


def kind_for(provider: str) -> str:
    """``gmail`` -> google, ``outlook``/``microsoft365`` -> microsoft (the flow names work too)."""
    name = provider.strip().lower()
    if name in KINDS:
        return name
    from . import providers

    preset = providers.get(name)
    if preset.oauth is None:
        oauth_presets = ", ".join(p.name for p in providers.all_presets() if p.oauth)
        raise UsageError(f"{preset.name} has no OAuth sign-in here",
                         hint=f"{preset.hint or 'use its password'} (OAuth sign-in exists for: {oauth_presets})")
    return preset.oauth


def _auth_command(kind: str, email: str) -> str:
    return f"mailmigrate auth {'gmail' if kind == GOOGLE else 'outlook'} --email {email}"


# --- client configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """The OAuth client (app) a refresh token belongs to, and where its token endpoint is."""

    kind: str
    client_id: str
    client_secret: str | None = None  # Google "Desktop app" clients have one (not confidential)
    token_uri: str | None = None  # Google
    auth_uri: str | None = None  # Google
    authority: str | None = None  # Microsoft


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def client_from_env(kind: str, client_id: str | None = None, client_secret: str | None = None) -> Client:
    """The client to sign in with: flags first, then the environment; UsageError if none."""
    if kind == GOOGLE:
        cid = client_id or _env("MAILMIGRATE_GOOGLE_CLIENT_ID")
        secret = client_secret or _env("MAILMIGRATE_GOOGLE_CLIENT_SECRET")
        if not cid or not secret:
            missing = "client id" if not cid else "client secret"
            raise UsageError(f"no Google OAuth {missing} configured", hint=GOOGLE_REGISTER)
        register_secret(secret)
        return Client(GOOGLE, cid, secret, token_uri=_env("MAILMIGRATE_GOOGLE_TOKEN_URI") or GOOGLE_TOKEN_URI,
                      auth_uri=_env("MAILMIGRATE_GOOGLE_AUTH_URI") or GOOGLE_AUTH_URI)
    cid = client_id or _env("MAILMIGRATE_MS_CLIENT_ID")
    if not cid:
        raise UsageError("no Microsoft OAuth client id configured", hint=MS_REGISTER)
    if client_secret:
        raise UsageError("--client-secret is for Google only",
                         hint="Microsoft sign-in uses a public client: give only --client-id")
    return Client(MICROSOFT, cid, authority=(_env("MAILMIGRATE_MS_AUTHORITY") or MS_AUTHORITY).rstrip("/"))


# --- storage --------------------------------------------------------------------------------


def tokens_dir() -> Path:
    from .journal import state_home

    return state_home() / "tokens"


def _slug(email: str) -> str:
    return re.sub(r"[^a-z0-9@._+-]", "_", email.strip().lower())[:200]


def token_path(kind: str, email: str) -> Path:
    """``$MAILMIGRATE_HOME/tokens/<google|microsoft>-<email>.json``."""
    return tokens_dir() / f"{kind}-{_slug(email)}.json"


def _keyring() -> Any | None:
    """The keyring backend if the optional ``keyring`` module has a usable one, else None."""
    if (os.environ.get("MAILMIGRATE_KEYRING") or "").strip().lower() in ("0", "no", "off", "false"):
        return None
    try:
        import keyring  # optional; never a dependency
        backend = keyring.get_keyring()
        usable = float(getattr(backend, "priority", 0)) > 0  # fail/null backends have priority <= 0
    except Exception:  # noqa: BLE001 - no keyring or a broken one: files will do
        return None
    return backend if usable else None


def _keyring_user(kind: str, email: str) -> str:
    return f"{kind}:{email.strip().lower()}"


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` so only this user can ever read it: 0700 directory, 0600 file, atomic
    replace, whatever the umask (the file is created 0600 with O_EXCL, then renamed)."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask, and the folder may be older
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # a umask like 0o277 would have left it unwritable
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _register(record: dict[str, Any]) -> None:
    for key in ("refresh_token", "client_secret"):
        register_secret(record.get(key))


def save_signin(kind: str, email: str, record: dict[str, Any], *, prefer: str | None = None) -> str:
    """Store a sign-in record; returns where ("keyring" or the file path). ``prefer="file"``
    keeps a record that came from a file in its file."""
    _register(record)
    data = json.dumps(record, indent=2, sort_keys=True).encode()
    backend = _keyring() if prefer != "file" else None
    if backend is not None:
        try:
            backend.set_password(KEYRING_SERVICE, _keyring_user(kind, email), data.decode())
        except Exception:  # noqa: BLE001 - a locked or broken keyring: fall back to the file
            pass
        else:
            with contextlib.suppress(FileNotFoundError):
                token_path(kind, email).unlink()  # one place only, so no stale copy wins later
            return "keyring"
    path = token_path(kind, email)
    try:
        write_private(path, data)
    except OSError as exc:
        raise UsageError(f"cannot store the sign-in in {path} ({exc.strerror or type(exc).__name__})",
                         hint="set MAILMIGRATE_HOME to a folder you can write") from None
    return str(path)


def load_signin(kind: str, email: str) -> tuple[dict[str, Any], str] | None:
    """The stored record and where it is ("file" or "keyring"), or None."""
    path = token_path(kind, email)
    text: str | None = None
    where = "file"
    try:
        st = path.stat()
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, 0o600)  # someone loosened it: a refresh token is a password
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        backend = _keyring()
        if backend is not None:
            with contextlib.suppress(Exception):
                text = backend.get_password(KEYRING_SERVICE, _keyring_user(kind, email))
            where = "keyring"
    except OSError as exc:
        raise UsageError(f"cannot read the stored sign-in {path} ({exc.strerror or type(exc).__name__})",
                         hint=f"fix its permissions or run `{_auth_command(kind, email)}` again") from None
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not record.get("refresh_token") or not record.get("client_id"):
        raise UsageError(f"the stored sign-in for {email} ({where}) is damaged",
                         hint=f"run `{_auth_command(kind, email)}` again")
    _register(record)
    return record, where


def forget_signin(kind: str, email: str) -> list[str]:
    """Delete a stored sign-in everywhere; returns what was removed."""
    gone: list[str] = []
    path = token_path(kind, email)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        gone.append(str(path))
    backend = _keyring()
    if backend is not None:
        with contextlib.suppress(Exception):
            backend.delete_password(KEYRING_SERVICE, _keyring_user(kind, email))
            gone.append("keyring")
    return gone


# --- errors users meet ------------------------------------------------------------------------


_AADSTS = re.compile(r"AADSTS(\d+)")
_MS_REAUTH = {"50173", "50078", "50076", "50079", "70008", "700082", "700084", "70043", "54005", "50132",
              "700081"}


def google_error(error: str, description: str | None, email: str, *, signing_in: bool) -> AuthFailed:
    """One clear line for a Google OAuth error code (token endpoint or authorization redirect)."""
    desc = (description or "").strip().rstrip(".")
    said = f"{error}: {desc}" if desc else error
    again = _auth_command(GOOGLE, email)
    if error == "access_denied":
        return AuthFailed(
            f"Google did not allow the sign-in for {email} ({said})",
            hint="if Google said the app is unverified or 'has not completed the Google verification process', "
                 "add this address as a test user (Google Cloud console > OAuth consent screen > Test users) "
                 "or use your own client (--client-id/--client-secret), accept all requested access, "
                 f"then run `{again}` again", reference="oauth-denied")
    if error == "invalid_grant":
        if signing_in:
            return AuthFailed(f"Google refused the sign-in code for {email} ({said})",
                              hint=f"run `{again}` again and finish within a few minutes")
        return AuthFailed(
            f"the stored Google sign-in for {email} was revoked or has expired ({said})",
            hint=f"run `{again}` again (apps in 'Testing' status get refresh tokens that expire after 7 days)")
    if error in ("invalid_client", "unauthorized_client", "deleted_client"):
        return AuthFailed(f"Google refused the OAuth client ({said})",
                          hint=f"check MAILMIGRATE_GOOGLE_CLIENT_ID/SECRET ({GOOGLE_REGISTER}), then run `{again}`")
    if error == "invalid_scope":
        return AuthFailed(f"Google refused the Gmail scope ({said})",
                          hint=f"enable the Gmail API for the client's project, then run `{again}`")
    return AuthFailed(f"Google sign-in for {email} failed ({said})", hint=f"run `{again}` again")


def microsoft_error(result: dict[str, Any], email: str, *, signing_in: bool) -> AuthFailed:
    """One clear line for an msal error result (``error``/``error_description``/``error_codes``)."""
    error = str(result.get("error") or "error")
    description = str(result.get("error_description") or "")
    first = description.strip().splitlines()[0] if description.strip() else ""
    said = f"{error}: {first}" if first else error
    codes = {str(c) for c in result.get("error_codes") or ()} | set(_AADSTS.findall(description))
    again = _auth_command(MICROSOFT, email)
    if codes & {"65001", "65004", "90094", "90095"} or error == "consent_required":
        return AuthFailed(
            f"Microsoft: the app is not allowed to read mail of {email} yet ({said})",
            hint=f"run `{again}` and accept the requested access; in a work or school tenant an administrator "
                 "may have to grant consent (Entra admin center > Enterprise applications > the app > "
                 "Permissions > Grant admin consent)", reference="oauth-consent-required")
    if "7000218" in codes:
        return AuthFailed(f"Microsoft: the app registration is not a public client ({said})",
                          hint="Entra admin center > App registrations > the app > Authentication > "
                               "'Allow public client flows' = Yes")
    if codes & {"700016", "90002", "50020", "500011"} or error in ("unauthorized_client", "invalid_client"):
        return AuthFailed(f"Microsoft does not know this app or account in the tenant ({said})",
                          hint="check MAILMIGRATE_MS_CLIENT_ID and MAILMIGRATE_MS_AUTHORITY (use .../common or "
                               f"your tenant id; .../consumers for Outlook.com accounts), then run `{again}`")
    if "53003" in codes:
        return AuthFailed(f"Microsoft: sign-in blocked by a Conditional Access policy ({said})",
                          hint="ask the tenant administrator to allow this app (and IMAP) for the account")
    if error in ("authorization_declined", "access_denied"):
        return AuthFailed(f"Microsoft sign-in for {email} was declined ({said})", hint=f"run `{again}` again")
    if error == "expired_token":
        return AuthFailed("Microsoft: the sign-in code expired before it was entered",
                          hint=f"run `{again}` again and enter the code within 15 minutes")
    if codes & _MS_REAUTH or error in ("invalid_grant", "interaction_required"):
        what = "sign-in" if signing_in else "stored Microsoft sign-in"
        return AuthFailed(f"the {what} for {email} is no longer valid ({said})", hint=f"run `{again}` again")
    return AuthFailed(f"Microsoft sign-in for {email} failed ({said})", hint=f"run `{again}` again")


def _unreachable(kind: str, where: str | None, exc: BaseException) -> ConnectFailed:
    name = "Google" if kind == GOOGLE else "Microsoft"
    place = f" {where}" if where else ""
    return ConnectFailed(f"cannot reach the {name} token endpoint{place} ({type(exc).__name__})",
                         hint="check the network (and HTTPS_PROXY / REQUESTS_CA_BUNDLE if a proxy is in the way); "
                              "re-running resumes")


# --- refreshing -----------------------------------------------------------------------------


@dataclass
class _Fresh:
    token: str
    expires_in: float | None
    refresh_token: str | None  # a rotated refresh token to store, if the server sent one


def _refresh_google(record: dict[str, Any], email: str) -> _Fresh:
    from google.auth import exceptions as gexc
    from google.auth.transport.requests import Request
    from google.oauth2.credentials import Credentials

    token_uri = _env("MAILMIGRATE_GOOGLE_TOKEN_URI") or record.get("token_uri") or GOOGLE_TOKEN_URI
    creds = Credentials(token=None, refresh_token=record["refresh_token"], token_uri=token_uri,
                        client_id=record["client_id"], client_secret=record.get("client_secret"),
                        scopes=list(record.get("scopes") or GOOGLE_SCOPES))
    try:
        creds.refresh(Request())
    except gexc.RefreshError as exc:
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        if data.get("error"):
            raise google_error(str(data["error"]), data.get("error_description"), email,
                               signing_in=False) from None
        raise AuthFailed(f"Google refused to refresh the sign-in for {email} ({exc.args[0] if exc.args else ''})",
                         hint=f"run `{_auth_command(GOOGLE, email)}` again") from None
    except gexc.TransportError as exc:
        raise _unreachable(GOOGLE, token_uri, exc) from None
    if not creds.token:
        raise AuthFailed(f"Google sent no access token for {email}", hint=f"run `{_auth_command(GOOGLE, email)}` again")
    expires_in = None
    if creds.expiry is not None:  # naive UTC
        expires_in = (creds.expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    rotated = creds.refresh_token if creds.refresh_token != record["refresh_token"] else None
    return _Fresh(creds.token, expires_in, rotated)


def _ms_app(client_id: str, authority: str) -> Any:
    import msal
    import requests

    try:
        # instance_discovery=False: the authority is used as given (tenants, sovereign clouds and
        # a local test endpoint alike); msal still reads its OpenID configuration.
        return msal.PublicClientApplication(client_id, authority=authority, instance_discovery=False)
    except requests.exceptions.RequestException as exc:
        raise _unreachable(MICROSOFT, authority, exc) from None
    except ValueError as exc:
        raise UsageError(f"Microsoft authority {authority} is not usable ({str(exc).splitlines()[0][:200]})",
                         hint="set MAILMIGRATE_MS_AUTHORITY to https://login.microsoftonline.com/<tenant> "
                              "(or .../common)") from None


def _refresh_microsoft(record: dict[str, Any], email: str) -> _Fresh:
    import requests

    authority = (_env("MAILMIGRATE_MS_AUTHORITY") or record.get("authority") or MS_AUTHORITY).rstrip("/")
    app = _ms_app(record["client_id"], authority)
    try:
        result = app.acquire_token_by_refresh_token(record["refresh_token"],
                                                    scopes=list(record.get("scopes") or MS_SCOPES))
    except requests.exceptions.RequestException as exc:
        raise _unreachable(MICROSOFT, authority, exc) from None
    if "access_token" not in result:
        raise microsoft_error(result, email, signing_in=False)
    rotated = result.get("refresh_token")
    return _Fresh(result["access_token"], _float(result.get("expires_in")),
                  rotated if rotated and rotated != record["refresh_token"] else None)


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class StoredToken:
    """A ``TokenProvider`` over a stored refresh token.

    Hands out a cached access token until ``EARLY_REFRESH`` seconds before it expires; when the
    server rejected the token a login got, the login calls ``after_rejection`` (see
    ``migrate.imap.session``), which refreshes. Concurrent connections share one refresh.
    """

    def __init__(self, kind: str, email: str, record: dict[str, Any], where: str) -> None:
        self.kind, self.email = kind, email
        self._record = record
        self._where = where
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._expires = 0.0  # monotonic
        self._refreshed_at = float("-inf")
        self._handed = threading.local()  # when this thread last got a token
        self.refreshes = 0

    def __call__(self) -> Secret:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires - EARLY_REFRESH:
                self._refresh()
            return self._hand_out()

    def after_rejection(self) -> Secret:
        """A fresh token: the server refused the one this thread got (revoked or expired early).
        If another connection refreshed meanwhile, its token is new enough."""
        with self._lock:
            if self._refreshed_at <= getattr(self._handed, "at", float("inf")):
                self._refresh()
            return self._hand_out()

    def _hand_out(self) -> Secret:
        assert self._token is not None
        self._handed.at = time.monotonic()
        return self._token

    def _refresh(self) -> None:
        fresh = (_refresh_google if self.kind == GOOGLE else _refresh_microsoft)(self._record, self.email)
        self.refreshes += 1
        self._token = Secret(fresh.token)
        lifetime = fresh.expires_in if fresh.expires_in is not None else 3600.0
        self._refreshed_at = time.monotonic()
        self._expires = self._refreshed_at + max(lifetime, 0.0)
        if fresh.refresh_token:  # rotated (Microsoft does, Google rarely): keep the new one
            register_secret(fresh.refresh_token)
            self._record = {**self._record, "refresh_token": fresh.refresh_token,
                            "updated_at": _now()}
            with contextlib.suppress(Exception):  # the old one still works for a while
                self._keep(self._record)

    def _keep(self, record: dict[str, Any]) -> None:
        """Store a rotated refresh token where the sign-in came from (the service keeps it in its job)."""
        save_signin(self.kind, self.email, record, prefer="file" if self._where == "file" else None)

    def __repr__(self) -> str:
        return f"StoredToken({self.kind!r}, {self.email!r})"


def stored_token_provider(preset: Any, email: str) -> TokenProvider | None:
    """A provider of fresh access tokens from ``mailmigrate auth``, or None if there is no
    stored sign-in for this preset's OAuth flow and address. Nothing is fetched until called."""
    kind = getattr(preset, "oauth", None)
    if kind not in KINDS or not email or "@" not in email:
        return None
    found = load_signin(kind, email)
    if found is None:
        return None
    record, where = found
    return StoredToken(kind, email, record, where)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# --- signing in -------------------------------------------------------------------------------


@dataclass
class SignIn:
    kind: str
    email: str
    stored_in: str  # "keyring" or a file path
    account: str | None = None  # the account the provider says signed in, if it said


def sign_in(provider: str, email: str, *, client_id: str | None = None, client_secret: str | None = None,
            open_browser: bool = True, echo: Callable[[str], None] = print, timeout: float = 900) -> SignIn:
    """Run the interactive sign-in for ``provider`` and store the refresh token."""
    if not email or "@" not in email:
        raise UsageError(f"--email '{email}' is not an address", hint="use user@domain")
    kind = kind_for(provider)
    client = client_from_env(kind, client_id, client_secret)
    if kind == GOOGLE:
        refresh_token, account = _google_flow(client, email, open_browser=open_browser, echo=echo, timeout=timeout)
        record = {"client_id": client.client_id, "client_secret": client.client_secret,
                  "token_uri": client.token_uri, "scopes": list(GOOGLE_SCOPES)}
    else:
        refresh_token, account = _microsoft_flow(client, email, echo=echo)
        record = {"client_id": client.client_id, "authority": client.authority, "scopes": list(MS_SCOPES)}
    register_secret(refresh_token)
    record.update({"version": 1, "kind": kind, "email": email.strip().lower(), "refresh_token": refresh_token,
                   "account": account, "created_at": _now()})
    where = save_signin(kind, email, record)
    return SignIn(kind, email, where, account)


def _google_flow(client: Client, email: str, *, open_browser: bool, echo: Callable[[str], None],
                 timeout: float) -> tuple[str, str | None]:
    from google_auth_oauthlib.flow import InstalledAppFlow, WSGITimeoutError
    from oauthlib.oauth2.rfc6749 import errors as oerr

    config = {"installed": {"client_id": client.client_id, "client_secret": client.client_secret,
                            "auth_uri": client.auth_uri, "token_uri": client.token_uri,
                            "redirect_uris": ["http://127.0.0.1"]}}
    flow = InstalledAppFlow.from_client_config(config, scopes=list(GOOGLE_SCOPES))
    prompt = ("Open this address in a browser and sign in as " + email + ":\n{url}\n"
              "(it redirects to a one-time local address on this computer; over SSH, forward that port or "
              "open the final 127.0.0.1 address with curl on this machine)")
    try:
        creds = flow.run_local_server(host="127.0.0.1", port=0, open_browser=open_browser,
                                      authorization_prompt_message=prompt,
                                      success_message="mailmigrate: signed in. You can close this window.",
                                      timeout_seconds=int(timeout), login_hint=email, prompt="consent",
                                      access_type="offline")
    except oerr.OAuth2Error as exc:
        raise google_error(exc.error or "error", exc.description, email, signing_in=True) from None
    except WSGITimeoutError:
        raise UsageError(f"no answer from the browser within {int(timeout)} s",
                         hint=f"run `{_auth_command(GOOGLE, email)}` again and finish the sign-in") from None
    except Exception as exc:
        import requests

        if isinstance(exc, requests.exceptions.RequestException):
            raise _unreachable(GOOGLE, client.token_uri, exc) from None
        raise
    if not creds.refresh_token:
        raise AuthFailed("Google sent no refresh token",
                         hint=f"remove mailmigrate's access at https://myaccount.google.com/permissions, "
                              f"then run `{_auth_command(GOOGLE, email)}` again")
    return creds.refresh_token, None


def _microsoft_flow(client: Client, email: str, *, echo: Callable[[str], None]) -> tuple[str, str | None]:
    import requests

    assert client.authority is not None
    app = _ms_app(client.client_id, client.authority)
    try:
        flow = app.initiate_device_flow(scopes=list(MS_SCOPES))
        if "user_code" not in flow:
            raise microsoft_error(flow, email, signing_in=True)
        echo(str(flow.get("message") or f"Open {flow.get('verification_uri')} and enter the code "
                                         f"{flow['user_code']}"))
        echo(f"(sign in as {email}; this waits until you are done)")
        result = app.acquire_token_by_device_flow(flow)
    except requests.exceptions.RequestException as exc:
        raise _unreachable(MICROSOFT, client.authority, exc) from None
    if "access_token" not in result:
        raise microsoft_error(result, email, signing_in=True)
    if not result.get("refresh_token"):
        raise AuthFailed("Microsoft sent no refresh token",
                         hint="the app registration must allow the offline_access permission")
    claims = result.get("id_token_claims") or {}
    account = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
    return result["refresh_token"], str(account) if account else None
