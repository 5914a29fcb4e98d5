"""A small HTTPS OAuth2 server on 127.0.0.1 for sign-in and refresh tests.

It speaks just enough of Google's token endpoint and of Microsoft identity platform (OpenID
configuration, device-code and token endpoints) for google-auth, google-auth-oauthlib and msal to
run their real code against it. TLS uses the Dovecot harness's test CA, so a client process trusts
it with ``REQUESTS_CA_BUNDLE=<server.ca_file>``.

    with FakeOAuth(on_access_token=lambda tok, user: dovecot.oauth_tokens.__setitem__(tok, user)) as o:
        o.google_token_uri, o.ms_authority ...
        o.fail_refresh = ("invalid_grant", "Token has been expired or revoked.", [])

The web flow (authorization code with PKCE, RFC 7636): the authorization endpoints
(``google_auth_uri``, ``ms_authorize_uri``) stand for the person at the consent screen and
redirect at once to ``redirect_uri`` with a code for ``authorize_as`` (default: the login_hint),
or with ``error=access_denied`` when ``deny`` is set. Such a code is exchanged only with the
``code_verifier`` whose S256 hash is the ``code_challenge`` it was issued for, the same
redirect_uri and client_id; the answer carries a refresh token and an ID token naming the address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable

from tests.dovecot.harness import session_certs


class FakeOAuth:
    def __init__(self, on_access_token: Callable[[str, str], None] | None = None, *,
                 expires_in: int = 3600) -> None:
        self.on_access_token = on_access_token or (lambda token, user: None)
        self.expires_in = expires_in
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> IMAP user it signs in
        self.codes: dict[str, str] = {}  # Google authorization code -> user
        self.device_codes: dict[str, str] = {}  # Microsoft device code -> user
        self.device_user = ""  # the IMAP user a device-code sign-in signs in
        self.pending_polls = 1  # device flow: answer authorization_pending this many times first
        self.rotate = False  # Microsoft-style: every refresh returns a new refresh token
        self.fail_refresh: tuple[str, str, list[int]] | None = None  # (error, description, codes)
        self.fail_code: tuple[str, str, list[int]] | None = None
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, form) without secrets' values
        # The web flow (authorization code + PKCE).
        self.authorize_as: str | None = None  # the account the person picks; None: the login_hint
        self.deny = False  # the person refuses: error=access_denied
        self.authorizations: list[dict[str, str]] = []  # each authorization request's parameters
        self.web_codes: dict[str, dict[str, str]] = {}  # code -> user, challenge, redirect_uri, client_id
        self.codes_issued: list[str] = []
        self.verifiers_received: list[str] = []
        self.id_token_key = secrets.token_bytes(32)
        self.issued: list[str] = []  # access tokens handed out
        self.lock = threading.Lock()
        self.ca_file = session_certs()["ca"]
        handler = type("Handler", (_Handler,), {"owner": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certs = session_certs()
        ctx.load_cert_chain(certs["cert"], certs["key"])
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.base = f"https://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    # --- addresses
    @property
    def google_token_uri(self) -> str:
        return f"{self.base}/google/token"

    @property
    def google_auth_uri(self) -> str:
        return f"{self.base}/google/auth"

    @property
    def ms_authority(self) -> str:
        return f"{self.base}/ms/common"

    @property
    def ms_authorize_uri(self) -> str:
        return f"{self.ms_authority}/oauth2/v2.0/authorize"

    def env(self) -> dict[str, str]:
        return {"MAILMIGRATE_GOOGLE_TOKEN_URI": self.google_token_uri,
                "MAILMIGRATE_GOOGLE_AUTH_URI": self.google_auth_uri,
                "MAILMIGRATE_MS_AUTHORITY": self.ms_authority, "REQUESTS_CA_BUNDLE": self.ca_file,
                "MAILMIGRATE_KEYRING": "0"}

    # --- state
    def new_refresh_token(self, user: str) -> str:
        rt = "rt-" + secrets.token_urlsafe(16)
        with self.lock:
            self.refresh_tokens[rt] = user
        return rt

    def grants(self, grant_type: str) -> int:
        return sum(1 for path, form in self.requests if form.get("grant_type") == grant_type)

    def _issue(self, user: str, *, with_refresh: bool) -> dict[str, object]:
        token = "at-" + secrets.token_urlsafe(16)
        self.issued.append(token)
        self.on_access_token(token, user)
        out: dict[str, object] = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        if with_refresh:
            out["refresh_token"] = self.new_refresh_token(user)
        return out

    def id_token(self, user: str, client_id: str, issuer: str) -> str:
        """A JWT (HS256 with a key of this server) saying who signed in."""
        def part(data: dict[str, object]) -> bytes:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

        now = int(time.time())
        signing_input = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(
            {"iss": issuer, "aud": client_id, "sub": hashlib.sha256(user.encode()).hexdigest()[:20], "email": user,
             "email_verified": True, "preferred_username": user, "iat": now, "exp": now + 3600})
        signature = base64.urlsafe_b64encode(hmac.new(self.id_token_key, signing_input, "sha256").digest())
        return (signing_input + b"." + signature.rstrip(b"=")).decode()

    # --- lifecycle
    def start(self) -> FakeOAuth:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"fake-oauth-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> FakeOAuth:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: FakeOAuth

    def log_message(self, *args: object) -> None:  # keep tokens out of test output
        pass

    def _json(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, error: str, description: str, codes: list[int] | None = None, status: int = 400) -> None:
        body: dict[str, object] = {"error": error, "error_description": description}
        if codes:
            body["error_codes"] = codes
        self._json(status, body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authorize(self, query: dict[str, str]) -> None:
        """The consent screen, answered at once as the test chose."""
        o = self.owner
        with o.lock:
            o.authorizations.append(dict(query))
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")) or not query.get("client_id"):
            self._json(400, {"error": "invalid_request", "error_description": "redirect_uri and client_id"})
            return
        answer: dict[str, str]
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            answer = {"error": "invalid_request", "error_description": "PKCE with S256 is required"}
        elif o.deny:
            answer = {"error": "access_denied"}
        else:
            code = "wc-" + secrets.token_urlsafe(16)
            with o.lock:
                o.web_codes[code] = {"user": o.authorize_as or query.get("login_hint", ""),
                                     "challenge": query["code_challenge"], "redirect_uri": redirect_uri,
                                     "client_id": query["client_id"]}
                o.codes_issued.append(code)
            answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        sep = "&" if "?" in redirect_uri else "?"
        self._redirect(redirect_uri + sep + urllib.parse.urlencode(answer))

    def _web_code_grant(self, form: dict[str, str], issuer: str) -> None:
        o = self.owner
        with o.lock:
            issued = o.web_codes.pop(form.get("code", ""), None)
            if form.get("code_verifier"):
                o.verifiers_received.append(form["code_verifier"])
        if issued is None:  # used meanwhile: a code is good once
            self._error("invalid_grant", "Malformed auth code.")
            return
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or not hmac.compare_digest(digest, issued["challenge"]):
            self._error("invalid_grant", "Invalid code verifier.")
            return
        if form.get("redirect_uri") != issued["redirect_uri"] or form.get("client_id") != issued["client_id"]:
            self._error("invalid_grant", "Bad Request: redirect_uri or client_id does not match.")
            return
        answer = o._issue(issued["user"], with_refresh=True)
        answer["id_token"] = o.id_token(issued["user"], issued["client_id"], issuer)
        self._json(200, answer)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        o = self.owner
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/google/auth", "/ms/common/oauth2/v2.0/authorize"):
            self._authorize(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)))
            return
        if path == "/ms/common/v2.0/.well-known/openid-configuration":
            base = f"{o.base}/ms/common"
            self._json(200, {"issuer": f"{base}/v2.0", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                             "token_endpoint": f"{base}/oauth2/v2.0/token",
                             "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode"})
            return
        self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        o = self.owner
        n = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(n).decode()).items()}
        path = urllib.parse.urlsplit(self.path).path
        with o.lock:
            o.requests.append((path, {k: v for k, v in form.items() if k in ("grant_type", "client_id", "scope")}))
        grant = form.get("grant_type")
        if path == "/ms/common/oauth2/v2.0/devicecode":
            code = "dc-" + secrets.token_urlsafe(8)
            o.device_codes[code] = o.device_user
            self._json(200, {"device_code": code, "user_code": "ABCD-EFGH", "interval": 1, "expires_in": 900,
                             "verification_uri": "https://microsoft.com/devicelogin",
                             "message": "To sign in, use a web browser to open the page "
                                        "https://microsoft.com/devicelogin and enter the code ABCD-EFGH."})
            return
        if path not in ("/google/token", "/ms/common/oauth2/v2.0/token"):
            self._json(404, {"error": "not_found"})
            return
        if grant == "refresh_token":
            if o.fail_refresh:
                self._error(*o.fail_refresh)
                return
            user = o.refresh_tokens.get(form.get("refresh_token", ""))
            if user is None:
                self._error("invalid_grant", "Token has been expired or revoked.")
                return
            self._json(200, o._issue(user, with_refresh=o.rotate))
            return
        if grant == "authorization_code":  # Google installed-app flow, or the web flow with PKCE
            if o.fail_code:
                self._error(*o.fail_code)
                return
            if form.get("code", "") in o.web_codes:
                google = path.startswith("/google/")
                self._web_code_grant(form, "https://accounts.google.com" if google else f"{o.base}/ms/common/v2.0")
                return
            user = o.codes.pop(form.get("code", ""), None)
            if user is None:
                self._error("invalid_grant", "Malformed auth code.")
                return
            self._json(200, o._issue(user, with_refresh=True))
            return
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            if o.fail_code:
                self._error(*o.fail_code)
                return
            if o.pending_polls > 0:
                o.pending_polls -= 1
                self._error("authorization_pending", "AADSTS70016: OAuth 2.0 device flow error. Authorization "
                                                     "is pending.", [70016])
                return
            code = form.get("device_code", "")
            if code not in o.device_codes:
                self._error("expired_token", "AADSTS70019: Verification code expired.", [70019])
                return
            self._json(200, o._issue(o.device_codes.pop(code) or o.device_user, with_refresh=True))
            return
        self._error("unsupported_grant_type", f"grant {grant!r}")
