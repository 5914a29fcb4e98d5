"""The import tool's web pages: server-rendered HTML in English, German, French and Italian.

    GET  /                 sign-in, or (signed in) the one-off import form
    POST /                 sign in (the same check, rate limit and session as POST /api/login)
    POST /signout          sign out
    POST /mailboxes        add another of my mailboxes (Service.add_mailbox)
    POST /imports          start an import (Service.submit_import, the API's JSON shape)
    GET  /imports          my imports;  GET /imports/{id}: one, with live progress
    POST /imports/{id}/cancel
    GET  /batch            a CSV of up to 25 mailboxes;  POST /batch: upload it
    GET  /batches/{id}     the rows of a batch

Every page goes through the same ``Service`` methods as the JSON API. A form that changes
something carries the session's CSRF token as ``csrf_token`` (the token the API takes as
X-CSRF-Token); the sign-in form, sent before there is a session, carries one of its own (a
cookie and the same value in the form). Templates autoescape everything; pages allow only this
site's own scripts and styles (no inline script) and refuse to be framed. The language comes from
``?lang=`` (the switch; remembered in a cookie), else the cookie, else Accept-Language.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import providers
from ..errors import MigrateError
from ..sides import SECURITIES
from . import i18n
from .app import CSRF_COOKIE, MAX_CSV_BYTES, SESSION_COOKIE, ApiError, Caller, Service
from .batches import BatchInvalid
from .db import FINAL
from .i18n import Translator

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

SIGNIN_COOKIE = "mm_signin"  # the sign-in form's own CSRF token (there is no session yet)
OAUTH_KINDS = ("google", "microsoft")
OAUTH_NAMES = {"google": "Google", "microsoft": "Microsoft"}
ACTIVE = ("queued", "running", "waiting", "waiting_signin")  # pages that follow a job live
NOTICES = {"mailbox_added": "notice_mailbox_added"}  # ?notice= values a redirect may show

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a sign-in link in the address must not travel in Referer
    "Cache-Control": "no-store",
    "Vary": "Accept-Language, Cookie",
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


class FormExpired(Exception):
    """A posted form without the right CSRF token: stale, or sent from another site."""


# --------------------------------------------------------------------------- rendering


class Renderer:
    """Jinja2 with autoescape on for every template, and the headers every page carries."""

    def __init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["when"] = _when

    def page(self, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        html = self.env.get_template(template).render(context)
        return HTMLResponse(html, status_code=status)


def _when(iso: str | None) -> str:
    """An API timestamp (ISO 8601, UTC) as ``2024-05-01 14:03 UTC``."""
    if not iso:
        return "–"
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def provider_catalog(t: Translator) -> dict[str, Any]:
    """What the form needs to name a provider and show its hint, here and in the page's script:
    ``{"domains": {domain: preset}, "presets": {preset: {"title", "hint", "oauth"}}}``."""
    presets: dict[str, dict[str, Any]] = {}
    domains: dict[str, str] = {}
    for p in providers.all_presets():
        title = t("provider_other") if p.name == "imap" else p.title
        presets[p.name] = {"title": title, "hint": t.hint(p.name) or p.hint, "oauth": p.oauth}
        for d in p.domains:
            domains[d] = p.name
    return {"domains": domains, "presets": presets}


def detect_provider(email: str, provider: str) -> str | None:
    """The preset a source uses: the one chosen, else the one its address's domain names, else
    ``imap`` (a server to give by hand) once the address has a domain."""
    if provider:
        return provider if provider in providers.names() else None
    if "@" not in email:
        return None
    try:
        preset = providers.detect(email)
    except MigrateError:
        return None
    return preset.name if preset is not None else "imap"


# --------------------------------------------------------------------------- the import form


SIDES = (("source", "source_"), ("second_source", "second_"))
SETTINGS = ("provider", "host", "port", "security", "username")
FORM_FIELDS = tuple(f"{prefix}{name}" for _side, prefix in SIDES for name in ("email", *SETTINGS)) + (
    "target", "exclude", "notify")


class ImportForm:
    """The one-off form's fields and the API's import body (the dict POST /api/imports takes).

    ``values`` keeps what the person typed, to show it again; passwords are never part of it."""

    def __init__(self, values: dict[str, str], passwords: dict[str, str] | None = None) -> None:
        self.values = {k: v for k, v in values.items() if k in FORM_FIELDS}
        self.passwords = passwords or {}
        self.errors: list[tuple[str | None, str]] = []  # (field or None, what to do)

    @classmethod
    def from_form(cls, form: FormData) -> ImportForm:
        values = {k: form.get(k) for k in FORM_FIELDS if k != "exclude"}
        values = {k: v.strip() for k, v in values.items() if isinstance(v, str)}
        # One folder a line in the form's box; one hidden field a folder in "Import again".
        values["exclude"] = "\n".join(v for v in form.getlist("exclude") if isinstance(v, str))
        passwords = {}
        for _side, prefix in SIDES:
            pw = form.get(f"{prefix}password")
            if isinstance(pw, str) and pw:
                passwords[prefix] = pw
        return cls(values, passwords)

    @classmethod
    def again(cls, request_doc: dict[str, Any]) -> ImportForm:
        """Prefilled from an earlier import's request: the same source settings, target, left-out
        folders and extra recipients (the password was erased when that import ended)."""
        src = request_doc.get("source") or {}
        values = {f"source_{k}": str(src[k]) for k in ("email", *SETTINGS) if src.get(k) not in (None, "")}
        values["target"] = str((request_doc.get("target") or {}).get("email") or "")
        values["exclude"] = "\n".join(request_doc.get("exclude") or [])
        values["notify"] = ", ".join(request_doc.get("notify") or [])
        return cls(values)

    def field_error(self, field: str) -> str | None:
        return next((msg for f, msg in self.errors if f == field), None)

    def has_second(self) -> bool:
        return any(self.values.get(f"second_{k}") for k in ("email", *SETTINGS)) or "second_" in self.passwords

    def body(self, t: Translator, *, mailboxes: list[str],
             oauth_sources: list[dict[str, str]]) -> dict[str, Any]:
        """The API body; ``errors`` says what is wrong (translated) when it is not complete."""
        self.errors = []
        body: dict[str, Any] = {"lang": t.lang}
        signed_in = {s["email"].lower(): s["kind"] for s in oauth_sources}
        for side, prefix in SIDES:
            if side == "second_source" and not self.has_second():
                continue
            body[side] = self._source(t, prefix, signed_in)
        target = self.values.get("target", "")
        mine = {m.lower(): m for m in mailboxes}
        if target.lower() not in mine:
            self.errors.append(("target", t("err_target")))
        body["target"] = {"email": mine.get(target.lower(), target)}
        body["exclude"] = [line.strip() for line in self.values.get("exclude", "").splitlines() if line.strip()]
        notify = [a for a in re.split(r"[,;\s]+", self.values.get("notify", "")) if a]
        for address in notify:
            if not is_email(address):
                self.errors.append(("notify", t("err_notify", value=address)))
        body["notify"] = notify
        return body

    def _source(self, t: Translator, prefix: str, signed_in: dict[str, str]) -> dict[str, Any]:
        v = self.values
        email = v.get(f"{prefix}email", "")
        second = prefix == "second_"

        def error(field: str, message: str) -> None:
            self.errors.append((f"{prefix}{field}", t("err_second", message=message) if second else message))

        src: dict[str, Any] = {"email": email}
        if not email:
            error("email", t("err_old_email"))
        elif not is_email(email):
            error("email", t("err_not_email", value=email))
        password = self.passwords.get(prefix)
        if password:
            src["password"] = password
        elif email.lower() in signed_in:
            src["oauth"] = signed_in[email.lower()]
        elif email:
            error("password", t("err_old_password", email=email))
        for key in ("provider", "host", "username"):
            if v.get(f"{prefix}{key}"):
                src[key] = v[f"{prefix}{key}"]
        port = v.get(f"{prefix}port", "")
        if port:
            if port.isdigit() and 0 < int(port) < 65536:
                src["port"] = int(port)
            else:
                error("port", t("err_port"))
        security = v.get(f"{prefix}security", "")
        if security in SECURITIES:
            src["security"] = security
        return src


# --------------------------------------------------------------------------- the pages


Handler = Callable[[Request, Translator], Awaitable[Response]]
SIGNIN_PROBLEMS = {401: "err_signin_wrong", 429: "err_rate_limited", 502: "err_server_unreachable"}


class PageKit:
    """What every page needs: who is asking, the posted form checked for its CSRF token, the
    language, rendering, and the answer to a problem."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.renderer = Renderer()

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint: the language, a problem answered as a page, the headers of every page."""

        async def endpoint(request: Request) -> Response:
            switched = request.query_params.get("lang")
            t = Translator(i18n.choose(query=switched, cookie=request.cookies.get(i18n.LANG_COOKIE),
                                       accept_language=request.headers.get("accept-language")))
            try:
                response = await handler(request, t)
            except FormExpired:
                response = self.problem(request, t, 403, t("error_title_403"), t("error_csrf"))
            except ApiError as exc:
                response = self.api_problem(request, t, exc)
            response.headers.update(PAGE_HEADERS)
            if switched == t.lang:
                response.set_cookie(i18n.LANG_COOKIE, t.lang, max_age=365 * 86400, httponly=True,
                                    samesite="lax", secure=self.svc.cfg.cookie_secure, path="/")
            return response

        return endpoint

    def person(self, request: Request) -> Caller | None:
        """Who is signed in (pages are for people: an operator uses the API). Reading it changes
        nothing, so no CSRF token is asked for here: a posted form's is checked by ``posted``."""
        return self.svc.caller(_session_only(request, method="GET"), required=False)

    async def posted(self, request: Request) -> tuple[Caller | None, FormData]:
        """A posted form and its sender: the form's ``csrf_token`` is checked against the session
        exactly as the API checks X-CSRF-Token (FormExpired when missing or wrong)."""
        form = await request.form(max_files=1, max_fields=100)
        token = form.get("csrf_token")
        sent = (token if isinstance(token, str) else "").encode("utf-8")
        try:
            caller = self.svc.caller(_session_only(request, csrf=sent), required=False)
        except ApiError as exc:
            if exc.status == 403:  # the only refusal of a session's request: the token
                raise FormExpired from None
            raise
        return caller, form

    def render(self, template: str, request: Request, t: Translator, caller: Caller | None, *,
               status: int = 200, **values: Any) -> HTMLResponse:
        context = {"t": t, "lang": t.lang, "langs": i18n.NATIVE_NAMES, "path": request.url.path,
                   "person": caller.email if caller else None,
                   "csrf": caller.session["csrf"] if caller and caller.session else "", **values}
        return self.renderer.page(template, context, status)

    def signin_page(self, request: Request, t: Translator, *, email: str = "", error: str | None = None,
                    status: int = 200) -> Response:
        """The sign-in form, with its own CSRF token (a cookie and the same value in the form)."""
        token = request.cookies.get(SIGNIN_COOKIE) or ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{32}", token):
            token = secrets.token_urlsafe(24)
        response = self.render("signin.html", request, t, None, status=status, signin_token=token, email=email,
                               error=error)
        response.set_cookie(SIGNIN_COOKIE, token, httponly=True, samesite="strict",
                            secure=self.svc.cfg.cookie_secure, path="/")
        return response

    def api_problem(self, request: Request, t: Translator, exc: ApiError) -> Response:
        if exc.status == 401:  # signed out meanwhile: sign in again
            return self.signin_page(request, t, error=t("err_session_ended"), status=401)
        if exc.status == 404:
            return self.problem(request, t, 404, t("error_title_404"), t("error_404"))
        return self.problem(request, t, exc.status, t("error_title"), exc.message)

    def problem(self, request: Request, t: Translator, status: int, title: str, text: str) -> Response:
        return self.render("error.html", request, t, self.person(request), status=status, title=title,
                           text=text)


def api_text(t: Translator, exc: ApiError) -> str:
    """A refusal of the service in the page's language where it has a text, else its message."""
    return t(exc.text[0], **exc.text[1]) if exc.text else exc.message


def signin_problem(t: Translator, exc: ApiError) -> str:
    """What a refused sign-in (or added mailbox) says, in the page's language where we know it."""
    key = SIGNIN_PROBLEMS.get(exc.status)
    return t(key) if key else exc.message


class ImportPages:
    """The one-off form (the start page once signed in), my imports, one import, cancel."""

    def __init__(self, kit: PageKit) -> None:
        self.kit = kit
        self.svc = kit.svc

    def routes(self) -> list[Route]:
        p = self.kit.page
        return [Route("/", p(self.home), methods=["GET"]),
                Route("/imports", p(self.start_import), methods=["POST"]),
                Route("/imports", p(self.imports), methods=["GET"]),
                Route("/imports/{id}", p(self.one_import), methods=["GET"]),
                Route("/imports/{id}/cancel", p(self.cancel), methods=["POST"])]

    async def home(self, request: Request, t: Translator) -> Response:
        caller = self.kit.person(request)
        if caller is None:
            return self.kit.signin_page(request, t)
        form = ImportForm({"target": caller.email or ""})
        signed_in = self.svc.oauth_sources(caller)
        if signed_in:  # back from "Sign in with Google/Microsoft": that address is the old one
            form.values["source_email"] = signed_in[-1]["email"]
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return self.form_page(request, t, caller, form, notice=t(notice) if notice else None)

    def form_page(self, request: Request, t: Translator, caller: Caller, form: ImportForm, *,
                  notice: str | None = None, mailbox_error: str | None = None, mailbox_email: str = "",
                  status: int = 200) -> Response:
        catalog = provider_catalog(t)
        presets = catalog["presets"]
        signed_in = self.svc.oauth_sources(caller)
        sides = []
        for side, prefix in SIDES:
            email = form.values.get(f"{prefix}email", "")
            preset = detect_provider(email, form.values.get(f"{prefix}provider", ""))
            oauth_as = next((s for s in signed_in if email and s["email"].lower() == email.lower()), None)
            sides.append({"side": side, "prefix": prefix, "info": presets.get(preset) if preset else None,
                          "oauth_as": oauth_as,
                          "advanced_open": any(form.values.get(f"{prefix}{k}") for k in SETTINGS)})
        by_title = sorted((name for name in presets if name != "imap"), key=lambda name: presets[name]["title"])
        return self.kit.render(
            "import_form.html", request, t, caller, status=status, form=form, sides=sides,
            mailboxes=self.svc.mailboxes(caller), oauth=[k for k in OAUTH_KINDS if self.svc.oauth_enabled(k)],
            oauth_names=OAUTH_NAMES, catalog_json=json.dumps(catalog, ensure_ascii=False), presets=presets,
            provider_order=[*by_title, "imap"], securities=SECURITIES, notice=notice,
            mailbox_error=mailbox_error, mailbox_email=mailbox_email)

    async def start_import(self, request: Request, t: Translator) -> Response:
        caller, posted = await self.kit.posted(request)
        if caller is None:
            return self.kit.signin_page(request, t, error=t("err_session_ended"), status=401)
        form = ImportForm.from_form(posted)
        body = form.body(t, mailboxes=self.svc.mailboxes(caller), oauth_sources=self.svc.oauth_sources(caller))
        if not form.errors:
            try:
                ids = await self.svc.submit_import(caller, body)
            except ApiError as exc:
                form.errors.append((None, api_text(t, exc)))
            else:
                return RedirectResponse(f"/imports/{ids[0]}", status_code=303)
        return self.form_page(request, t, caller, form, status=422)

    async def imports(self, request: Request, t: Translator) -> Response:
        caller = self.kit.person(request)
        if caller is None:
            return RedirectResponse("/", status_code=303)
        views = self.svc.imports(caller)
        return self.kit.render("imports.html", request, t, caller, imports=views,
                               any_active=any(v["state"] in ACTIVE for v in views))

    async def one_import(self, request: Request, t: Translator) -> Response:
        caller = self.kit.person(request)
        if caller is None:
            return RedirectResponse("/", status_code=303)
        view = self.svc.import_view(caller, request.path_params["id"])  # 404 unless it is theirs
        again = None
        row = self.svc.db.job(view["id"])
        if row is not None and view["state"] in FINAL:
            again = ImportForm.again(json.loads(row["request"]))
        return self.kit.render("import.html", request, t, caller, job=view, again=again,
                               active=view["state"] in ACTIVE)

    async def cancel(self, request: Request, t: Translator) -> Response:
        caller, _posted = await self.kit.posted(request)
        if caller is None:
            return RedirectResponse("/", status_code=303)
        job_id = self.svc.import_view(caller, request.path_params["id"])["id"]  # 404 unless it is theirs
        assert self.svc.runner is not None
        await run_in_threadpool(self.svc.runner.cancel, job_id)
        return RedirectResponse(f"/imports/{job_id}", status_code=303)


class AccountPages:
    """Sign in (the start page's form), sign out, add another of my mailboxes."""

    def __init__(self, kit: PageKit, import_pages: ImportPages) -> None:
        self.kit = kit
        self.svc = kit.svc
        self.import_pages = import_pages  # where an added mailbox's problem is shown

    def routes(self) -> list[Route]:
        p = self.kit.page
        return [Route("/", p(self.sign_in), methods=["POST"]),
                Route("/signout", p(self.sign_out), methods=["POST"]),
                Route("/mailboxes", p(self.add_mailbox), methods=["POST"])]

    async def sign_in(self, request: Request, t: Translator) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        email, password, token = (form.get(k) for k in ("email", "password", "csrf_token"))
        email = email.strip() if isinstance(email, str) else ""
        cookie = request.cookies.get(SIGNIN_COOKIE, "")
        if not (isinstance(token, str) and cookie and hmac.compare_digest(token.encode(), cookie.encode())):
            raise FormExpired
        if not email or not isinstance(password, str) or not password:
            return self.kit.signin_page(request, t, email=email, error=t("err_give_email_password"), status=422)
        try:
            session_token, csrf = await self.svc.open_session(email, password, _client(request))
        except ApiError as exc:
            return self.kit.signin_page(request, t, email=email, error=signin_problem(t, exc),
                                        status=exc.status)
        response = RedirectResponse("/", status_code=303)
        self.svc.set_session_cookies(response, session_token, csrf)
        return response

    async def sign_out(self, request: Request, t: Translator) -> Response:
        caller, _form = await self.kit.posted(request)
        if caller is not None:
            self.svc.db.drop_session(request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    async def add_mailbox(self, request: Request, t: Translator) -> Response:
        caller, posted = await self.kit.posted(request)
        if caller is None:
            return self.kit.signin_page(request, t, error=t("err_session_ended"), status=401)
        email, password = (posted.get(k) for k in ("email", "password"))
        email = email.strip() if isinstance(email, str) else ""
        password = password if isinstance(password, str) else ""
        try:
            if not email or not password:
                raise ApiError(422, t("err_give_email_password"))
            await self.svc.add_mailbox(caller, email, password, client=_client(request))
        except ApiError as exc:
            return self.import_pages.form_page(request, t, caller, ImportForm({"target": caller.email or ""}),
                                               mailbox_error=signin_problem(t, exc), mailbox_email=email,
                                               status=exc.status)
        return RedirectResponse("/?notice=mailbox_added", status_code=303)


class BatchPages:
    """A CSV of up to 25 mailboxes: the upload (every problem listed first), then its rows."""

    def __init__(self, kit: PageKit) -> None:
        self.kit = kit
        self.svc = kit.svc

    def routes(self) -> list[Route]:
        p = self.kit.page
        return [Route("/batch", p(self.batch), methods=["GET"]),
                Route("/batch", p(self.upload), methods=["POST"]),
                Route("/batches/{id}", p(self.one_batch), methods=["GET"])]

    def _page(self, request: Request, t: Translator, caller: Caller, *,
              errors: list[dict[str, Any]] | None = None, error: str | None = None, status: int = 200) -> Response:
        return self.kit.render("batch.html", request, t, caller, status=status, errors=errors or [],
                               error=error)

    async def batch(self, request: Request, t: Translator) -> Response:
        caller = self.kit.person(request)
        if caller is None:
            return RedirectResponse("/", status_code=303)
        return self._page(request, t, caller)

    async def upload(self, request: Request, t: Translator) -> Response:
        caller, posted = await self.kit.posted(request)
        if caller is None:
            return self.kit.signin_page(request, t, error=t("err_session_ended"), status=401)
        upload = posted.get("csv")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return self._page(request, t, caller, error=t("err_batch_no_file"), status=422)
        data = await upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            return self._page(request, t, caller, error=t("err_batch_too_big"), status=413)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return self._page(request, t, caller, error=t("err_batch_encoding"), status=422)
        try:
            answer = await self.svc.submit_batch(caller, text, lang=t.lang,
                                                 not_mine=lambda email: t("batch_not_your_mailbox", email=email))
        except BatchInvalid as exc:  # each problem in the page's language where it has a text
            errors = [{"line": p.line, "message": t.problem(p), "code": p.code} for p in exc.problems]
            return self._page(request, t, caller, errors=errors, status=422)
        except ApiError as exc:
            return self._page(request, t, caller, error=api_text(t, exc), status=exc.status)
        return RedirectResponse(f"/batches/{answer['id']}", status_code=303)

    async def one_batch(self, request: Request, t: Translator) -> Response:
        caller = self.kit.person(request)
        if caller is None:
            return RedirectResponse("/", status_code=303)
        batch = self.svc.batch(caller, request.path_params["id"])  # 404 unless it is theirs
        return self.kit.render("batch_rows.html", request, t, caller, batch=batch,
                               any_active=any(r["state"] in ACTIVE for r in batch["rows"]))


def _session_only(request: Request, *, method: str | None = None, csrf: bytes | None = None) -> Request:
    """The request as ``Service.caller`` should judge it for a page: by its session cookie only
    (an operator's bearer token is for the API), with the form's CSRF token as the header."""
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"authorization", b"x-csrf-token")]
    if csrf is not None:
        headers.append((b"x-csrf-token", csrf))
    return Request({**request.scope, "headers": headers, "method": method or request.method})


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def error_pages(svc: Service) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The answer to a URL nothing serves (404) or a method a URL does not take (405): a
    translated page, or ``{"error"}`` under /api/."""
    kit = PageKit(svc)

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status, headers = exc.status_code, dict(exc.headers or {})  # 405: Allow
        if request.url.path.startswith("/api/"):
            message = ("no such API endpoint" if status == 404
                       else f"{request.method} is not allowed here (allowed: {headers.get('Allow', '-')})")
            return JSONResponse({"error": message}, status_code=status,
                                headers={"Cache-Control": "no-store", **headers})

        async def show(req: Request, t: Translator) -> Response:
            key = "404" if status == 404 else "405"
            return kit.problem(req, t, status, t(f"error_title_{key}"), t(f"error_{key}"))

        response = await kit.page(show)(request)
        response.headers.update(headers)
        return response

    return handler


def page_routes(svc: Service) -> list[Route]:
    """The pages' routes (the app mounts ``STATIC`` at /static for their style and script)."""
    kit = PageKit(svc)
    import_pages = ImportPages(kit)
    return [*import_pages.routes(), *AccountPages(kit, import_pages).routes(), *BatchPages(kit).routes()]
