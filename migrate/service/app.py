"""The HTTP API (JSON). Routes and their answers are a public contract: keep the names.

    POST /api/login {"email", "password"}      -> session cookie + {"email", "csrf_token"}
    POST /api/logout
    GET  /api/me                               -> {"email", "mailboxes", "csrf_token"} ({"operator": true})
    POST /api/mailboxes {"email", "password"}  -> another mailbox of mine, for this session
    POST /api/imports {...}                    -> 202 {"id", "state", ...}
    GET  /api/imports                          -> {"imports": [...]} (mine; all for an operator)
    GET  /api/imports/{id}                     -> one import (with "progress" and "failures")
    GET  /api/imports/{id}/events              -> Server-Sent Events: progress..., end
    POST /api/imports/{id}/cancel
    POST /api/batches (text/csv)               -> 202 {"id", "imports"} or 422 {"errors": [{"line", "message"}]}
    GET  /api/batches/{id}                     -> each row's state and totals
    GET  /healthz, GET /batch.csv

A person signs in with the password of their mailbox on the operator's server (an IMAP LOGIN
there decides), may add further mailboxes of theirs to the session the same way, and sees and
imports into those mailboxes only (anything else answers 404); an operator sends ``Authorization: Bearer $MAILMIGRATE_ADMIN_TOKEN``. Requests
that change something with a session cookie need ``X-CSRF-Token`` (the token /api/login returned,
also in the ``mm_csrf`` cookie); bearer requests do not.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..accounts import Secret
from ..errors import AuthFailed, MigrateError, UsageError
from ..gate import WriteGate
from ..report import to_jsonable
from ..sides import SECURITIES, SideOptions, build_side
from .batches import MAX_ROWS, BatchInvalid, api_not_mine, batch_view, plan_rows
from .config import ServiceConfig
from .crypto import SecretBox
from .db import BUDGET_WAITING, WAITING, Store, open_service_store
from .network import PrivateSourceServer
from .progress import failures_of, fit_of, progress_of, view_events
from .ratelimit import RateLimiter
from .runner import Runner
from .signin import DEFAULT_PROVIDER, Signin, token_checked_later

log = logging.getLogger(__name__)

SESSION_COOKIE = "mm_session"
CSRF_COOKIE = "mm_csrf"
LANGS = ("en", "de", "fr", "it")
_SAFE = ("GET", "HEAD", "OPTIONS")
MAX_CSV_BYTES = 1_000_000


class ApiError(Exception):
    """A refusal: ``message`` for the API; ``text`` (an i18n key and its values), when given, is
    what the pages show instead, in the page's language."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, *,
                 text: tuple[str, dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.text = text


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

    @property
    def session_hash(self) -> str:
        assert self.session is not None, "an operator has no session"
        return str(self.session["token_hash"])


class Service:
    def __init__(self, cfg: ServiceConfig) -> None:
        self.cfg = cfg
        self.box = SecretBox.load(cfg.home, cfg.secret_key)
        self.store: Store | None = None
        self.runner: Runner | None = None
        self.limiter = RateLimiter(cfg.login_limit, cfg.login_window_s)
        self.signin = Signin(self)  # Google/Microsoft sign-in and mailed sign-in links
        self.networks = cfg.source_networks()  # which source servers people may import from
        self.open_streams = 0  # Server-Sent Events streams being served (each ends with its client)

    # --- lifecycle ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.store = open_service_store(self.cfg)
        if self.cfg.database:  # imports run on `mailmigrate worker` processes: queue them
            from .queue import QueueClient

            self.runner = QueueClient(self.cfg.database, self.store)  # type: ignore[assignment]
        else:
            self.runner = Runner(self.cfg, self.store, self.box)
        self.runner.start()
        try:
            yield
        finally:
            await run_in_threadpool(self.runner.stop)
            self.store.close()

    def check_database(self) -> None:
        """Before serving on PostgreSQL: reachable and its schema current, or a one-line error."""
        from .queue import check_database

        assert self.cfg.database is not None
        check_database(self.cfg.database)

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

    def check_login(self, email: str, password: str) -> None:
        opts = self.cfg.target_options(email)
        opts.password = Secret(password)
        side = build_side(opts, WriteGate(open=False))
        endpoint = side.factory()
        with contextlib.suppress(Exception):
            endpoint.close()

    async def verify_password(self, email: str, password: str, client: str) -> None:
        """The IMAP LOGIN that decides a sign-in (and an added mailbox), rate-limited per address
        and per client; raises ApiError with the answer to give."""
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

    async def open_session(self, email: str, password: str, client: str) -> tuple[str, str]:
        """A checked sign-in's new session: (session token, CSRF token). Raises ApiError. The API's
        /api/login and the sign-in page both come here."""
        await self.verify_password(email, password, client)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        self.db.add_session(token, email, self.box.seal(password), csrf, self.cfg.session_ttl_s)
        return token, csrf

    async def login(self, request: Request) -> Response:
        email, password = _credentials(await _body(request))
        token, csrf = await self.open_session(email, password, _client(request))
        resp = _json({"email": email, "csrf_token": csrf})
        self.set_session_cookies(resp, token, csrf)
        return resp

    def set_session_cookies(self, resp: Response, token: str, csrf: str) -> None:
        secure = self.cfg.cookie_secure
        resp.set_cookie(SESSION_COOKIE, token, max_age=self.cfg.session_ttl_s, httponly=True, samesite="lax",
                        secure=secure, path="/")
        resp.set_cookie(CSRF_COOKIE, csrf, max_age=self.cfg.session_ttl_s, httponly=False, samesite="lax",
                        secure=secure, path="/")

    async def logout(self, request: Request) -> Response:
        caller = self.caller(request, required=False)
        if caller is not None and caller.session is not None:
            self.db.drop_session(request.cookies[SESSION_COOKIE])
        resp = _json({"ok": True})
        resp.delete_cookie(SESSION_COOKIE, path="/")
        resp.delete_cookie(CSRF_COOKIE, path="/")
        return resp

    # --- a person's mailboxes ------------------------------------------------------------------

    def _mailbox_secrets(self, caller: Caller) -> dict[str, tuple[str, bytes]]:
        """lowercase address -> (address, sealed password) of every mailbox of the session,
        the one signed in with first."""
        assert caller.session is not None and caller.email is not None
        out = {caller.email.lower(): (caller.email, caller.session["password"])}
        for m in self.db.session_mailboxes(caller.session_hash):
            out.setdefault(m["email"].lower(), (m["email"], m["password"]))
        return out

    def mailboxes(self, caller: Caller) -> list[str]:
        """The mailboxes a person may see and import into (the session's own address first);
        none for an operator, who may import into any."""
        if caller.operator:
            return []
        return [email for email, _ in self._mailbox_secrets(caller).values()]

    async def add_mailbox(self, caller: Caller, email: str, password: str, *, client: str = "unknown") -> None:
        """Add another mailbox of the signed-in person to the session, proved by its password (an
        IMAP LOGIN, rate-limited like a sign-in); raises ApiError."""
        if caller.operator or caller.session is None:
            raise ApiError(403, "an operator imports into any mailbox: there is nothing to add")
        if not isinstance(email, str) or not email.strip() or not isinstance(password, str) or not password:
            raise ApiError(422, "give email and password")
        email = email.strip()
        if email.lower() in self._mailbox_secrets(caller):
            return
        await self.verify_password(email, password, client)
        self.db.add_session_mailbox(caller.session_hash, email, self.box.seal(password))

    def me(self, caller: Caller) -> dict[str, Any]:
        if caller.operator:
            return {"operator": True}
        assert caller.session is not None
        return {"email": caller.email, "mailboxes": self.mailboxes(caller), "csrf_token": caller.session["csrf"]}

    async def get_me(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        return _json(self.me(caller))

    async def create_mailbox(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        email, password = _credentials(await _body(request))
        await self.add_mailbox(caller, email, password, client=_client(request))
        return _json(self.me(caller))

    def oauth_enabled(self, kind: str) -> bool:
        """Whether "Sign in with Google/Microsoft" (kind google|microsoft) is set up."""
        return self.signin.enabled(kind)

    def oauth_sources(self, caller: Caller) -> list[dict[str, str]]:
        """[{"email", "kind"}]: the accounts this person signed in with (this session), usable as
        an import's source ``{"email", "oauth": kind}``."""
        return self.signin.sources(caller)

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
            raise ApiError(422, "target.email is required", text=("err_target", {}))
        target_email = target["email"].strip()
        if caller.operator:
            target_pw = target.get("password")
            if not isinstance(target_pw, str) or not target_pw:
                raise ApiError(422, "target.password is required")
        else:
            mine = self._mailbox_secrets(caller).get(target_email.lower())
            if mine is None:
                raise ApiError(403, "you can only import into your own mailboxes (add one with POST /api/mailboxes)",
                               text=("err_target", {}))
            target_email = mine[0]
            target_pw = self.box.open(mine[1])
            if target_pw is None:
                raise ApiError(401, "sign in again")
        sources = [_source(body.get("source"), "source")]
        if body.get("second_source") is not None:
            sources.append(_source(body["second_source"], "second_source"))
        exclude = _strings(body.get("exclude"), "exclude")
        notify = _strings(body.get("notify"), "notify")
        if bad_notify := [a for a in notify if "@" not in a]:
            raise ApiError(422, "notify: give e-mail addresses", text=("err_notify", {"value": bad_notify[0]}))
        lang = body.get("lang") or "en"
        if lang not in LANGS:
            raise ApiError(422, f"lang must be one of {', '.join(LANGS)}")
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise ApiError(422, "force must be true or false")
        if force and not caller.operator:  # copying into a target too small for it is the operator's call
            raise ApiError(403, "only an operator may force an import the fit check refuses: leave out force")
        # An OAuth source's secret is the person's sign-in with it, kept for the session.
        source_secrets = [self.signin.seal_source(caller, src) if src.get("oauth") else self.box.seal(str(pw))
                          for src, pw in sources]
        for src, pw in sources:  # a wrong provider, port or security is an answer now, not a failed job
            try:
                opts = SideOptions("source", email=src["email"], username=src.get("username"),
                                   provider=src.get("provider"), host=src.get("host"), port=src.get("port"),
                                   security=src.get("security"), password=Secret(pw) if pw else None, interactive=False,
                                   oauth_token=token_checked_later if src.get("oauth") else None)
                side = await run_in_threadpool(build_side, opts, WriteGate(open=False))
                if side.connection is not None and not side.at_preset_host:
                    await run_in_threadpool(self.networks.check_submitted, None, side.connection.host,
                                            side.connection.port)
            except PrivateSourceServer as exc:
                raise ApiError(422, f"{exc.message}: {exc.hint}",
                               text=("err_private_source", {"host": exc.host})) from None
            except MigrateError as exc:
                raise ApiError(422, exc.message, text=_source_refusal_text(src)) from None
        ids = []
        for (src, _pw), source_secret in zip(sources, source_secrets, strict=True):
            job_id = secrets.token_hex(8)
            request_doc = {"source": src, "target": {"email": target_email}, "exclude": exclude,
                           "notify": notify, "lang": lang, **({"force": True} if force else {})}
            self.db.add_job(job_id, owner=target_email.lower(),
                            created_by="operator" if caller.operator else str(caller.email),
                            request=request_doc, source_secret=source_secret,
                            target_secret=self.box.seal(target_pw))
            ids.append(job_id)
        assert self.runner is not None
        for job_id in ids:
            self.runner.submit(job_id)
        return ids

    def _owners(self, caller: Caller) -> list[str] | None:
        """Whose imports the caller sees: None (all) for an operator."""
        return None if caller.operator else [m.lower() for m in self.mailboxes(caller)]

    def _visible(self, caller: Caller, job_id: str) -> dict[str, Any]:
        row = self.db.job(job_id)
        owners = self._owners(caller)
        if row is None or not (owners is None or row["owner"] in owners):
            raise ApiError(404, "no such import")
        return row

    def imports(self, caller: Caller) -> list[dict[str, Any]]:
        """The views of every import the caller may see, newest first."""
        return [self.view(r) for r in self.db.jobs(self._owners(caller))]

    def import_view(self, caller: Caller, job_id: str) -> dict[str, Any]:
        """One import's view; ApiError 404 if the caller may not see it."""
        return self.view(self._visible(caller, job_id))

    async def list_imports(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        return _json({"imports": self.imports(caller)})

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

    async def import_events(self, request: Request) -> Response:
        """Server-Sent Events of one import: ``progress`` (its view) whenever it changes, then
        ``end`` with the final view; the stream closes then, or when the client goes away."""
        caller = self.caller(request)
        assert caller is not None
        job_id = self._visible(caller, request.path_params["id"])["id"]

        def view_of() -> dict[str, Any] | None:
            row = self.db.job(job_id)
            return self.view(row) if row is not None else None

        async def stream() -> AsyncIterator[str]:
            self.open_streams += 1
            try:
                async for chunk in view_events(view_of):
                    yield chunk
            finally:
                self.open_streams -= 1

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                          "X-Accel-Buffering": "no"})  # a proxy must pass events on at once

    def view(self, row: dict[str, Any]) -> dict[str, Any]:
        """An import as the API and the pages show it (no secret in it)."""
        req = json.loads(row["request"])
        running = self.runner is not None and row["state"] == "running"
        live = self.runner.live_report(row["id"]) if running and self.runner is not None else None
        report = to_jsonable(live) if live is not None else (json.loads(row["report"]) if row["report"] else None)
        folders = []
        # restored: copied again because the target had lost it (the engine counts it apart from copied)
        totals = {"copied": 0, "skipped_duplicates": 0, "failed": 0, "bytes": 0, "source_messages": 0,
                  "restored": 0}
        for f in (report or {}).get("folders", []):
            folders.append({k: f.get(k) for k in ("source", "target", "copied", "skipped_duplicates", "failed",
                                                  "bytes", "source_messages", "restored", "note")})
            for k in totals:
                totals[k] += int(f.get(k) or 0)
        src = req["source"]
        snapshot = self.runner.live_progress(row["id"]) if running and self.runner is not None else None
        if snapshot is None and running and row.get("progress"):  # run by a worker: what it stored last
            snapshot = json.loads(row["progress"])
        if snapshot is not None:
            # A folder's report gets its counts when a part of it ends; the engine's counters move
            # with every batch, so a running import's totals are never behind what it did.
            live = {"copied": int(snapshot.get("copied") or 0) - totals["restored"],  # it counts both
                    "skipped_duplicates": int(snapshot.get("duplicates") or 0),
                    "failed": int(snapshot.get("failed") or 0), "bytes": int(snapshot.get("bytes") or 0)}
            for key, value in live.items():
                totals[key] = max(totals[key], value)
        if snapshot is None and row.get("progress"):
            snapshot = json.loads(row["progress"])
        failures, more = failures_of(report)
        return {
            "id": row["id"], "state": row["state"],
            "source": {k: src.get(k) for k in ("email", "provider", "host", "port", "security", "username", "oauth")
                       if src.get(k) is not None},
            "target": {"email": req["target"]["email"], "host": self.cfg.target_server},
            "totals": totals, "folders": folders,
            "progress": progress_of(row["state"], snapshot, totals),
            "failures": failures, **({"failures_truncated": more} if more else {}),
            "batch_id": row.get("batch_id"),
            "error": row["error"] or ((report or {}).get("error") or {}).get("message"),
            "notification": (report or {}).get("notification"),
            "cancel_requested": bool(row["cancel_requested"]),
            "fit": fit_of(report),
            "resume_at": _iso(row.get("resume_at")) if row["state"] == BUDGET_WAITING else None,
            "created_at": _iso(row["created_at"]), "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]),
        }

    # --- batches --------------------------------------------------------------------------------

    async def submit_batch(self, caller: Caller, csv_text: str, *, lang: str = "en",
                           not_mine: Callable[[str], str] = api_not_mine) -> dict[str, Any]:
        """Check a batch CSV for the caller and queue one job per row (all or none); the answer
        of ``POST /api/batches``. Raises BatchInvalid (every problem, with its line) or ApiError.
        ``not_mine(email)``: what a row whose target is not the caller's mailbox says."""
        if lang not in LANGS:
            raise ApiError(422, f"lang must be one of {', '.join(LANGS)}")
        if caller.operator:
            mailboxes = None
        else:
            mailboxes = {}
            for key, (email, sealed) in self._mailbox_secrets(caller).items():
                pw = self.box.open(sealed)
                if pw is None:
                    raise ApiError(401, "sign in again")
                mailboxes[key] = (email, pw)
        planned = await run_in_threadpool(plan_rows, csv_text, target=self.cfg.target_connection(),
                                          mailboxes=mailboxes, lang=lang, networks=self.networks,
                                          signin_offered=self.oauth_enabled, not_mine=not_mine)
        batch_id = secrets.token_hex(8)
        created_by = "operator" if caller.operator else str(caller.email)
        jobs = [{"id": secrets.token_hex(8), "line": row.line, "owner": row.request["target"]["email"].lower(),
                 "created_by": created_by, "request": row.request,
                 "state": WAITING if row.waits_for_signin else "queued",
                 "source_secret": None if row.source_password is None else self.box.seal(row.source_password),
                 "target_secret": self.box.seal(row.target_password)} for row in planned]
        self.db.add_batch(batch_id, "operator" if caller.operator else str(caller.email).lower(), jobs)
        assert self.runner is not None
        for job in jobs:
            if job["state"] == "queued":
                self.runner.submit(job["id"])
            else:  # the sign-in link goes by mail (SMTP): off the event loop
                await run_in_threadpool(self.signin.invite, job["id"])
        views = []
        for job in jobs:
            row = self.db.job(job["id"])
            assert row is not None
            views.append(self.view(row))
        return {"id": batch_id, "state": self.batch(caller, batch_id)["state"], "imports": views}

    def batch(self, caller: Caller, batch_id: str) -> dict[str, Any]:
        """``GET /api/batches/{id}``'s answer; ApiError 404 unless the caller made it (an
        operator sees every batch)."""
        batch = self.db.batch(batch_id)
        owners = self._owners(caller)
        if batch is None or not (owners is None or batch["owner"] in owners):
            raise ApiError(404, "no such batch")
        rows = self.db.batch_jobs(batch_id)
        return batch_view(batch, [(r["batch_line"], self.view(r)) for r in rows], _iso(batch["created_at"]))

    async def create_batch(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "text/csv":
            raise ApiError(415, "send the batch as CSV: Content-Type: text/csv (the columns of /batch.csv)")
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_CSV_BYTES:
            raise ApiError(413, f"the CSV is too large (over {MAX_CSV_BYTES} bytes; at most {MAX_ROWS} rows)")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_CSV_BYTES:
                raise ApiError(413, f"the CSV is too large (over {MAX_CSV_BYTES} bytes; at most {MAX_ROWS} rows)")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            return _json({"errors": [{"line": line, "message": "not UTF-8: save the file as UTF-8 CSV"}]}, 422)
        try:
            answer = await self.submit_batch(caller, text, lang=request.query_params.get("lang") or "en")
        except BatchInvalid as exc:
            return _json({"error": str(exc), "errors": exc.errors}, 422)
        return _json(answer, 202)

    async def get_batch(self, request: Request) -> Response:
        caller = self.caller(request)
        assert caller is not None
        return _json(self.batch(caller, request.path_params["id"]))

    # --- mail -------------------------------------------------------------------------------------

    def send_mail(self, to: str | list[str], subject: str, body: str) -> None:
        """Send a plain-text mail from ``--mail-from`` through the service's SMTP server
        (``--smtp-host``). Blocking (call it through ``run_in_threadpool``); raises MigrateError
        (one line, no secret) when no SMTP server is configured or the mail is refused."""
        from email.message import EmailMessage

        from ..notify.send import send_mail

        settings = self.cfg.smtp_settings()
        recipients = [to] if isinstance(to, str) else list(to)
        msg = EmailMessage()
        msg["From"] = self.cfg.mail_from or self.cfg.smtp_user or recipients[0]
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = subject
        msg.set_content(body)
        send_mail(msg, settings)

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


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _credentials(body: dict[str, Any]) -> tuple[str, str]:
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not email.strip() or not isinstance(password, str) or not password:
        raise ApiError(422, "give email and password")
    return email.strip(), password


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(422, f"{what} must be a list of strings")
    return list(value)


def _source(value: Any, what: str) -> tuple[dict[str, Any], str | None]:
    """The source's settings (stored in clear: no secret) and its password (sealed apart); None
    for a source signed in with Google/Microsoft (``"oauth"``)."""
    if not isinstance(value, dict):
        raise ApiError(422, f"{what} is required", text=("err_old_email", {}))
    email, password, oauth_kind = value.get("email"), value.get("password"), value.get("oauth")
    if not isinstance(email, str) or not email.strip():
        raise ApiError(422, f"{what}.email is required", text=("err_old_email", {}))
    if oauth_kind is not None:
        if oauth_kind not in DEFAULT_PROVIDER:
            raise ApiError(422, f"{what}.oauth must be google or microsoft")
        password = None
    elif not isinstance(password, str) or not password:
        raise ApiError(422, f"{what}.password is required (or {what}.oauth: google|microsoft once signed in "
                            "with it)", text=("err_old_password", {"email": email.strip()}))
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
            raise ApiError(422, f"{what}.port must be a port number (1-65535)", text=("err_port", {}))
        out["port"] = port
    security = value.get("security")
    if security is not None:
        if security not in SECURITIES:
            raise ApiError(422, f"{what}.security must be one of {', '.join(SECURITIES)}",
                           text=("err_security", {}))
        out["security"] = security
    if oauth_kind is not None:
        out["oauth"] = oauth_kind
        if "provider" not in out and "host" not in out:
            out["provider"] = DEFAULT_PROVIDER[oauth_kind]
    return out, password


def _source_refusal_text(src: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The pages' text for a source the engine refused (``build_side``), found by its cause in
    the order the engine checks: the provider, then a server to connect to, then a password
    where only a sign-in works. None (the English message) for any other refusal."""
    from ..providers.connection import choose_preset

    try:
        preset = choose_preset(src["email"], src.get("provider"))
    except MigrateError:
        return "err_provider_unknown", {"provider": src.get("provider")}
    host = src.get("host")
    if not host and not (preset and preset.imap_host):
        return "err_no_host", {"domain": src["email"].rpartition("@")[2]}
    at_preset_host = preset is not None and (not host or host.lower() == (preset.imap_host or "").lower())
    if (preset is not None and preset.oauth and at_preset_host and not src.get("oauth")
            and not {"password", "app-password"} & set(preset.auth)):
        return "err_password_not_accepted", {"provider": preset.title}
    return None


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
        Route("/api/me", svc.get_me, methods=["GET"]),
        Route("/api/mailboxes", svc.create_mailbox, methods=["POST"]),
        Route("/api/imports", svc.create_import, methods=["POST"]),
        Route("/api/imports", svc.list_imports, methods=["GET"]),
        Route("/api/imports/{id}", svc.get_import, methods=["GET"]),
        Route("/api/imports/{id}/cancel", svc.cancel_import, methods=["POST"]),
        Route("/api/imports/{id}/events", svc.import_events, methods=["GET"]),
        Route("/api/batches", svc.create_batch, methods=["POST"]),
        Route("/api/batches/{id}", svc.get_batch, methods=["GET"]),
        Route("/healthz", svc.healthz, methods=["GET"]),
        Route("/batch.csv", svc.batch_csv, methods=["GET"]),
        *svc.signin.routes(),
    ]
    from .web import STATIC, error_pages, page_routes  # the pages build on this module

    routes += page_routes(svc)
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    unknown = error_pages(svc)
    app = Starlette(routes=routes, lifespan=svc.lifespan,
                    exception_handlers={ApiError: on_api_error, 404: unknown, 405: unknown},
                    middleware=[Middleware(SecurityHeaders, hsts=svc.cfg.cookie_secure)])
    app.state.service = svc
    return app


class SecurityHeaders:
    """Headers every answer carries, whichever part of the app made it: no content sniffing,
    no Referer (a sign-in link in the address must not leave with it), and behind HTTPS
    (``cookie_secure``) Strict-Transport-Security."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
        if hsts:
            self.headers["Strict-Transport-Security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
