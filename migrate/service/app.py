"""The HTTP API (JSON). Routes and their answers are a public contract: keep the names.

    POST /api/login {"email", "password"}      -> session cookie + {"email", "csrf_token"}
    POST /api/logout
    POST /api/imports {...}                    -> 202 {"id", "state", ...}
    GET  /api/imports                          -> {"imports": [...]} (mine; all for an operator)
    GET  /api/imports/{id}                     -> one import
    POST /api/imports/{id}/cancel
    GET  /healthz, GET /batch.csv

A person signs in with the password of their mailbox on the operator's server (an IMAP LOGIN
there decides); an operator sends ``Authorization: Bearer $MAILMIGRATE_ADMIN_TOKEN``. Requests
that change something with a session cookie need ``X-CSRF-Token`` (the token /api/login returned,
also in the ``mm_csrf`` cookie); bearer requests do not.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..accounts import Secret
from ..errors import AuthFailed, MigrateError, UsageError
from ..gate import WriteGate
from ..report import to_jsonable
from ..sides import SECURITIES, SideOptions, build_side
from .config import ServiceConfig
from .crypto import SecretBox
from .db import Store
from .ratelimit import RateLimiter
from .runner import Runner

log = logging.getLogger(__name__)

SESSION_COOKIE = "mm_session"
CSRF_COOKIE = "mm_csrf"
LANGS = ("en", "de", "fr", "it")
_SAFE = ("GET", "HEAD", "OPTIONS")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status,
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **(headers or {})})


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Caller:
    """Who is asking: an operator (bearer token) or a signed-in person (session)."""

    def __init__(self, *, operator: bool = False, email: str | None = None,
                 session: dict[str, Any] | None = None) -> None:
        self.operator = operator
        self.email = email
        self.session = session


class Service:
    def __init__(self, cfg: ServiceConfig) -> None:
        self.cfg = cfg
        self.box = SecretBox.load(cfg.home, cfg.secret_key)
        self.store: Store | None = None
        self.runner: Runner | None = None
        self.limiter = RateLimiter(cfg.login_limit, cfg.login_window_s)

    # --- lifecycle ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.store = Store(self.cfg.db_path)
        self.runner = Runner(self.cfg, self.store, self.box)
        self.runner.start()
        try:
            yield
        finally:
            await run_in_threadpool(self.runner.stop)
            self.store.close()

    @property
    def db(self) -> Store:
        assert self.store is not None, "the service is not started (lifespan)"
        return self.store

    # --- who ------------------------------------------------------------------------------------

    def caller(self, request: Request, *, required: bool = True) -> Caller | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
            if self.cfg.admin_token and hmac.compare_digest(token.encode(), self.cfg.admin_token.encode()):
                return Caller(operator=True)
            raise ApiError(401, "invalid token")
        cookie = request.cookies.get(SESSION_COOKIE)
        session = self.db.session(cookie) if cookie else None
        if session is None:
            if required:
                raise ApiError(401, "sign in first")
            return None
        if request.method not in _SAFE:
            sent = request.headers.get("x-csrf-token", "")
            if not sent or not hmac.compare_digest(sent.encode(), session["csrf"].encode()):
                raise ApiError(403, "missing or wrong X-CSRF-Token")
        return Caller(email=session["email"], session=session)

    # --- sign-in --------------------------------------------------------------------------------

    def _target_options(self, email: str) -> SideOptions:
        cfg = self.cfg
        return SideOptions("target", email=email, username=email, provider="imap", host=cfg.target_host,
                           port=cfg.target_port, security=cfg.target_security, ca_file=cfg.target_ca_file,
                           insecure=cfg.target_insecure, interactive=False, timeout=cfg.imap_timeout)

    def check_login(self, email: str, password: str) -> None:
        opts = self._target_options(email)
        opts.password = Secret(password)
        side = build_side(opts, WriteGate(open=False))
        endpoint = side.factory()
        with contextlib.suppress(Exception):
            endpoint.close()

    async def login(self, request: Request) -> Response:
        body = await _body(request)
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not email.strip() or not isinstance(password, str) or not password:
            raise ApiError(422, "give email and password")
        email = email.strip()
        client = request.client.host if request.client else "unknown"
        wait = self.limiter.hit(f"address:{email.lower()}", f"client:{client}")
        if wait is not None:
            raise ApiError(429, "too many sign-in attempts: try again in a minute",
                           headers={"Retry-After": str(int(wait) + 1)})
        try:
            await run_in_threadpool(self.check_login, email, password)
        except AuthFailed:
            raise ApiError(401, "wrong address or password") from None
        except UsageError as exc:
            raise ApiError(422, exc.message) from None
        except MigrateError:
            log.warning("sign-in of %s: the mail server cannot be reached", email)
            raise ApiError(502, "the mail server cannot be reached: try again later") from None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        self.db.add_session(token, email, self.box.seal(password), csrf, self.cfg.session_ttl_s)
        resp = _json({"email": email, "csrf_token": csrf})
        secure = self.cfg.cookie_secure
        resp.set_cookie(SESSION_COOKIE, token, max_age=self.cfg.session_ttl_s, httponly=True, samesite="lax",
                        secure=secure, path="/")
        resp.set_cookie(CSRF_COOKIE, csrf, max_age=self.cfg.session_ttl_s, httponly=False, samesite="lax",
                        secure=secure, path="/")
        return resp

    async def logout(self, request: Request) -> Response:
        caller = self.caller(request, required=False)
        if caller is not None and caller.session is not None:
            self.db.drop_session(request.cookies[SESSION_COOKIE])
        resp = _json({"ok": True})
        resp.delete_cookie(SESSION_COOKIE, path="/")
        resp.delete_cookie(CSRF_COOKIE, path="/")
        return resp

    # --- imports --------------------------------------------------------------------------------

    async def create_import(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        ids = await self.submit_import(caller, await _body(request))
        row = self.db.job(ids[0])
        assert row is not None
        answer = self.view(row)
        answer["ids"] = ids
        if len(ids) > 1:
            answer["second_id"] = ids[1]
        return _json(answer, 202)

    async def submit_import(self, caller: Caller, body: dict[str, Any]) -> list[str]:
        """Check an import request (the API's JSON shape; the pages build the same dict), queue
        one job per source and return their ids. Raises ApiError with the answer to give."""
        target = body.get("target")
        if not isinstance(target, dict) or not isinstance(target.get("email"), str) or not target["email"].strip():
            raise ApiError(422, "target.email is required")
        target_email = target["email"].strip()
        if caller.operator:
            target_pw = target.get("password")
            if not isinstance(target_pw, str) or not target_pw:
                raise ApiError(422, "target.password is required")
        else:
            assert caller.session is not None and caller.email is not None
            if target_email.lower() != caller.email.lower():
                raise ApiError(403, "you can only import into your own mailbox")
            target_pw = self.box.open(caller.session["password"])
            if target_pw is None:
                raise ApiError(401, "sign in again")
        sources = [_source(body.get("source"), "source")]
        if body.get("second_source") is not None:
            sources.append(_source(body["second_source"], "second_source"))
        exclude = _strings(body.get("exclude"), "exclude")
        notify = _strings(body.get("notify"), "notify")
        if any("@" not in a for a in notify):
            raise ApiError(422, "notify: give e-mail addresses")
        lang = body.get("lang") or "en"
        if lang not in LANGS:
            raise ApiError(422, f"lang must be one of {', '.join(LANGS)}")
        for src, pw in sources:  # a wrong provider, port or security is an answer now, not a failed job
            try:
                opts = SideOptions("source", email=src["email"], username=src.get("username"),
                                   provider=src.get("provider"), host=src.get("host"), port=src.get("port"),
                                   security=src.get("security"), password=Secret(pw) if pw else None, interactive=False)
                await run_in_threadpool(build_side, opts, WriteGate(open=False))
            except MigrateError as exc:
                raise ApiError(422, exc.message) from None
        ids = []
        for src, pw in sources:
            job_id = secrets.token_hex(8)
            request_doc = {"source": src, "target": {"email": target_email}, "exclude": exclude,
                           "notify": notify, "lang": lang}
            self.db.add_job(job_id, owner=target_email.lower(),
                            created_by="operator" if caller.operator else str(caller.email),
                            request=request_doc, source_secret=self.box.seal(pw),
                            target_secret=self.box.seal(target_pw))
            ids.append(job_id)
        assert self.runner is not None
        for job_id in ids:
            self.runner.submit(job_id)
        return ids

    def _visible(self, caller: Caller, job_id: str) -> dict[str, Any]:
        row = self.db.job(job_id)
        if row is None or not (caller.operator or row["owner"] == str(caller.email).lower()):
            raise ApiError(404, "no such import")
        return row

    async def list_imports(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        rows = self.db.jobs(None if caller.operator else str(caller.email).lower())
        return _json({"imports": [self.view(r) for r in rows]})

    async def get_import(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        return _json(self.view(self._visible(caller, request.path_params["id"])))

    async def cancel_import(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        job_id = request.path_params["id"]
        self._visible(caller, job_id)
        assert self.runner is not None
        await run_in_threadpool(self.runner.cancel, job_id)
        row = self.db.job(job_id)
        assert row is not None
        return _json(self.view(row), 202)

    def view(self, row: dict[str, Any]) -> dict[str, Any]:
        req = json.loads(row["request"])
        live = self.runner.live_report(row["id"]) if self.runner is not None and row["state"] == "running" else None
        report = to_jsonable(live) if live is not None else (json.loads(row["report"]) if row["report"] else None)
        folders = []
        totals = {"copied": 0, "skipped_duplicates": 0, "failed": 0, "bytes": 0, "source_messages": 0}
        for f in (report or {}).get("folders", []):
            folders.append({k: f.get(k) for k in ("source", "target", "copied", "skipped_duplicates", "failed",
                                                  "bytes", "source_messages", "restored", "note")})
            for k in totals:
                totals[k] += int(f.get(k) or 0)
        src = req["source"]
        return {
            "id": row["id"], "state": row["state"],
            "source": {k: src.get(k) for k in ("email", "provider", "host", "port", "security", "username")
                       if src.get(k) is not None},
            "target": {"email": req["target"]["email"], "host": self.cfg.target_host},
            "totals": totals, "folders": folders,
            "error": row["error"] or ((report or {}).get("error") or {}).get("message"),
            "notification": (report or {}).get("notification"),
            "cancel_requested": bool(row["cancel_requested"]),
            "created_at": _iso(row["created_at"]), "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]),
        }

    # --- misc -----------------------------------------------------------------------------------

    async def healthz(self, _request: Request) -> Response:
        rows = self.db.jobs()
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        return _json({"ok": True, "jobs": counts})

    async def batch_csv(self, _request: Request) -> Response:
        here = Path(__file__).resolve().parent.parent
        for candidate in (here / "templates" / "batch.csv", here.parent / "templates" / "batch.csv"):
            if candidate.is_file():
                return Response(candidate.read_bytes(), media_type="text/csv; charset=utf-8",
                                headers={"Content-Disposition": 'attachment; filename="batch.csv"'})
        return _json({"error": "the batch template is missing"}, 404)


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(422, f"{what} must be a list of strings")
    return list(value)


def _source(value: Any, what: str) -> tuple[dict[str, Any], str]:
    """The source's settings (stored in clear: no secret) and its password (sealed apart)."""
    if not isinstance(value, dict):
        raise ApiError(422, f"{what} is required")
    email, password = value.get("email"), value.get("password")
    if not isinstance(email, str) or not email.strip():
        raise ApiError(422, f"{what}.email is required")
    if not isinstance(password, str) or not password:
        raise ApiError(422, f"{what}.password is required")
    out: dict[str, Any] = {"email": email.strip()}
    for key in ("provider", "host", "username"):
        v = value.get(key)
        if v is not None:
            if not isinstance(v, str) or not v.strip():
                raise ApiError(422, f"{what}.{key} must be a string")
            out[key] = v.strip()
    port = value.get("port")
    if port is not None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ApiError(422, f"{what}.port must be a port number (1-65535)")
        out["port"] = port
    security = value.get("security")
    if security is not None:
        if security not in SECURITIES:
            raise ApiError(422, f"{what}.security must be one of {', '.join(SECURITIES)}")
        out["security"] = security
    return out, password


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body must be JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def create_app(cfg: ServiceConfig | None = None) -> Starlette:
    """The ASGI app; its lifespan opens the database and starts (and stops) the worker pool."""
    svc = Service(cfg or ServiceConfig())

    async def on_api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _json({"error": exc.message}, exc.status, exc.headers)

    routes = [
        Route("/api/login", svc.login, methods=["POST"]),
        Route("/api/logout", svc.logout, methods=["POST"]),
        Route("/api/imports", svc.create_import, methods=["POST"]),
        Route("/api/imports", svc.list_imports, methods=["GET"]),
        Route("/api/imports/{id}", svc.get_import, methods=["GET"]),
        Route("/api/imports/{id}/cancel", svc.cancel_import, methods=["POST"]),
        Route("/healthz", svc.healthz, methods=["GET"]),
        Route("/batch.csv", svc.batch_csv, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=svc.lifespan, exception_handlers={ApiError: on_api_error})
    app.state.service = svc
    return app
