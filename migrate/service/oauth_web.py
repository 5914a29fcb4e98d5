"""Google and Microsoft sign-in for the web service: the OAuth 2.0 authorization-code flow with
PKCE (RFC 7636, S256), and the token providers the workers use for a source signed in that way.

The CLI's ``migrate/oauth.py`` does the desktop flows and the refreshing; this module adds what a
web server needs: an authorization URL with a code challenge, the code exchange with the
verifier, and the signed-in address read from the ID token. Refreshes go through
``migrate.oauth.StoredToken`` (google-auth and msal), so a job refreshes like ``mailmigrate import``.

The token endpoints are reached with ``requests``: ``REQUESTS_CA_BUNDLE`` and proxies apply.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import oauth
from ..errors import UsageError, redact, register_secret
from .config import ServiceConfig

# What the mailbox needs (refreshes ask for these) and what the sign-in adds to learn the address.
MAILBOX_SCOPES = {oauth.GOOGLE: ("https://mail.google.com/",),
                  oauth.MICROSOFT: ("https://outlook.office.com/IMAP.AccessAsUser.All",)}
SIGNIN_SCOPES = {oauth.GOOGLE: ("https://mail.google.com/", "openid", "email"),
                 oauth.MICROSOFT: ("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access",
                                   "openid", "profile", "email")}
PROVIDER_NAMES = {oauth.GOOGLE: "Google", oauth.MICROSOFT: "Microsoft"}
CLOCK_SKEW_S = 300


class SignInFailed(Exception):
    """The sign-in did not give a usable refresh token: one line for the page (no secret)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(redact(message))
        self.message = redact(message)
        self.status = status


@dataclass(frozen=True)
class SignedIn:
    email: str
    refresh_token: str


@dataclass(frozen=True)
class WebClient:
    """The operator's OAuth client for one provider and where its endpoints are."""

    kind: str
    client_id: str
    client_secret: str | None
    auth_url: str
    token_url: str
    authority: str | None = None  # Microsoft: msal refreshes against it

    @property
    def name(self) -> str:
        return PROVIDER_NAMES[self.kind]

    def authorization_url(self, *, state: str, challenge: str, redirect_uri: str, login_hint: str | None) -> str:
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                 "scope": " ".join(SIGNIN_SCOPES[self.kind]), "state": state, "code_challenge": challenge,
                 "code_challenge_method": "S256"}
        if self.kind == oauth.GOOGLE:  # a refresh token every time, even for an earlier consent
            query.update({"access_type": "offline", "prompt": "consent", "include_granted_scopes": "false"})
        else:
            query["prompt"] = "select_account"
        if login_hint:
            query["login_hint"] = login_hint
        sep = "&" if "?" in self.auth_url else "?"
        return f"{self.auth_url}{sep}{urllib.parse.urlencode(query)}"

    def exchange(self, code: str, verifier: str, redirect_uri: str) -> SignedIn:
        """Trade the code (and the PKCE verifier) for tokens; the address comes from the ID token."""
        import requests

        form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                "redirect_uri": redirect_uri, "client_id": self.client_id}
        if self.kind == oauth.MICROSOFT:
            form["scope"] = " ".join(SIGNIN_SCOPES[self.kind])
        if self.client_secret:
            form["client_secret"] = self.client_secret
        try:
            resp = requests.post(self.token_url, data=form, headers={"Accept": "application/json"}, timeout=30)
        except requests.exceptions.RequestException as exc:
            raise SignInFailed(f"{self.name} cannot be reached right now ({type(exc).__name__}): try again "
                               "in a few minutes", status=502) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SignInFailed(f"{self.name} answered the sign-in with HTTP {resp.status_code} and no usable "
                               "content: try again in a few minutes", status=502)
        if "error" in body or resp.status_code != 200:
            error = str(body.get("error") or f"HTTP {resp.status_code}")[:80]
            raise SignInFailed(f"{self.name} refused the sign-in ({error}): start the sign-in again")
        refresh_token = body.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise SignInFailed(f"{self.name} sent no refresh token, so the import could not run unattended: "
                               "remove this service's access in your account's security settings, then sign "
                               "in again")
        register_secret(refresh_token)  # from now on redacted wherever it could appear
        register_secret(body.get("access_token") if isinstance(body.get("access_token"), str) else None)
        email = self._address(body.get("id_token"))
        return SignedIn(email=email, refresh_token=refresh_token)

    def _address(self, id_token: object) -> str:
        """The signed-in address. The ID token came straight from the token endpoint over TLS, which
        vouches for its issuer (OpenID Connect Core 3.1.3.7); its audience and expiry are checked."""
        claims = _jwt_claims(id_token)
        if claims is None:
            raise SignInFailed(f"{self.name} did not say which account signed in: start the sign-in again",
                               status=502)
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.client_id not in audiences:
            raise SignInFailed(f"{self.name} answered for another application: start the sign-in again")
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires + CLOCK_SKEW_S < time.time():
            raise SignInFailed(f"{self.name}'s answer has expired: start the sign-in again")
        if claims.get("email_verified") is False:
            raise SignInFailed(f"{self.name} has not verified this account's address: use a verified account")
        email = claims.get("email") or claims.get("preferred_username") or claims.get("upn")
        if not isinstance(email, str) or "@" not in email:
            raise SignInFailed(f"{self.name} did not say the address of the account that signed in: start the "
                               "sign-in again", status=502)
        return email.strip()


def _jwt_claims(token: object) -> dict[str, Any] | None:
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge): 64 url-safe characters, within RFC 7636's 43-128."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def web_clients(cfg: ServiceConfig) -> dict[str, WebClient]:
    """The providers the operator configured (serve options first, then the environment the CLI
    reads: ``MAILMIGRATE_GOOGLE_CLIENT_ID`` ..., see ``migrate.oauth``). A provider without a
    client id is not offered; a Google client id without its secret is a UsageError."""
    clients: dict[str, WebClient] = {}
    if cfg.google_client_id or os.environ.get("MAILMIGRATE_GOOGLE_CLIENT_ID", "").strip():
        try:
            g = oauth.client_from_env(oauth.GOOGLE, cfg.google_client_id, cfg.google_client_secret)
        except UsageError as exc:  # the CLI's hint is about its desktop client
            raise UsageError(exc.message, hint="give --google-client-secret env:NAME (or set "
                             "MAILMIGRATE_GOOGLE_CLIENT_SECRET): the secret of the OAuth client of type 'Web "
                             f"application' whose redirect URI is {cfg.public_url}/oauth/callback") from None
        clients[oauth.GOOGLE] = WebClient(oauth.GOOGLE, g.client_id, g.client_secret,
                                          auth_url=cfg.google_auth_url or g.auth_uri or oauth.GOOGLE_AUTH_URI,
                                          token_url=cfg.google_token_url or g.token_uri or oauth.GOOGLE_TOKEN_URI)
    if cfg.microsoft_client_id or os.environ.get("MAILMIGRATE_MS_CLIENT_ID", "").strip():
        m = oauth.client_from_env(oauth.MICROSOFT, cfg.microsoft_client_id)
        authority = (cfg.microsoft_authority or m.authority or oauth.MS_AUTHORITY).rstrip("/")
        clients[oauth.MICROSOFT] = WebClient(oauth.MICROSOFT, m.client_id, None,
                                             auth_url=f"{authority}/oauth2/v2.0/authorize",
                                             token_url=f"{authority}/oauth2/v2.0/token", authority=authority)
    return clients


# --- what a job keeps, and the token provider built from it ------------------------------------


def job_record(kind: str, email: str, client: WebClient, refresh_token: str) -> str:
    """The source secret of a job (or of a person's session) signed in with OAuth: JSON to seal.
    The client secret stays in the operator's configuration."""
    return json.dumps({"kind": kind, "email": email, "client_id": client.client_id,
                       "refresh_token": refresh_token, "scopes": list(MAILBOX_SCOPES[kind])})


def parse_record(text: str) -> dict[str, Any] | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("kind") not in oauth.KINDS or not record.get("refresh_token"):
        return None
    register_secret(record["refresh_token"])
    return record


class JobToken(oauth.StoredToken):
    """``StoredToken`` for a service job: a rotated refresh token goes back into the job (sealed by
    ``keep``), never into a token file."""

    def __init__(self, record: dict[str, Any], keep: Callable[[str], None]) -> None:
        super().__init__(record["kind"], record["email"], record, where="service")
        self._keep_sealed = keep

    def _keep(self, record: dict[str, Any]) -> None:
        stored = {k: record.get(k) for k in ("kind", "email", "client_id", "refresh_token", "scopes")}
        self._keep_sealed(json.dumps(stored))


def job_token(cfg: ServiceConfig, record: dict[str, Any], keep: Callable[[str], None]) -> JobToken:
    """A token provider for a job's source: refreshes at the configured token endpoint."""
    kind = record["kind"]
    client = web_clients(cfg).get(kind)
    full = dict(record)
    if kind == oauth.GOOGLE:
        full["token_uri"] = client.token_url if client else oauth.GOOGLE_TOKEN_URI
        full["client_secret"] = client.client_secret if client else None
    else:
        full["authority"] = client.authority if client else oauth.MS_AUTHORITY
    return JobToken(full, keep)
