"""Sign-in with Google or Microsoft in the service, and mailed sign-in links.

    GET  /oauth/{google|microsoft}/start[?next=/&email=ADDR]  a signed-in person's one-off import
    GET  /signin/{token}                                      the page a mailed link opens
    POST /signin/{token}                                      its button: the row owner's sign-in
    GET  /oauth/callback                                      the provider sends the browser back here

One-off: the sealed refresh token is kept for the person's session (``sources``) and an import
names it as ``{"source": {"email", "oauth": "google"}}``. Batch: a row whose Gmail or Microsoft
source has no password waits (``waiting_signin``); ``invite`` mails its owner a single-use link
that expires; signing in with it queues the row with the sealed refresh token as its secret.

Stored: a flow's state and a link's token as their SHA-256, the PKCE verifier and refresh tokens
sealed (``SecretBox``). Codes and access tokens are never stored.
"""

from __future__ import annotations

import html
import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import oauth
from ..errors import MigrateError, redact
from .db import WAITING, token_hash
from .oauth_web import PROVIDER_NAMES, SignInFailed, WebClient, job_record, pkce_pair, web_clients

if TYPE_CHECKING:
    from .app import Caller, Service

log = logging.getLogger(__name__)

STATE_TTL_S = 600  # a started sign-in must come back within 10 minutes
LANGS = ("en", "de", "fr", "it")
# The preset a source signed in with Google/Microsoft uses when it names no server.
DEFAULT_PROVIDER = {oauth.GOOGLE: "gmail", oauth.MICROSOFT: "outlook"}
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
             "X-Frame-Options": "DENY"}


def token_checked_later() -> Any:
    """Stands for a source's Google/Microsoft sign-in while an import request is only checked
    (nothing connects then; the job gets its own token provider)."""
    raise RuntimeError("a source's sign-in is not used while the request is checked")


class Signin:
    """The routes above and what the rest of the service asks of them."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.clients = web_clients(svc.cfg)
        hide_secrets_in_access_log()

    # --- for the API and the pages ---------------------------------------------------------------

    def enabled(self, kind: str) -> bool:
        return kind in self.clients

    def kind_of(self, source: dict[str, Any]) -> str | None:
        """Which sign-in a source can use: its ``oauth``, else its provider's (gmail: google,
        outlook/microsoft365: microsoft, also detected from the address); None for the others."""
        if source.get("oauth") in oauth.KINDS:
            return str(source["oauth"])
        from .. import providers

        try:
            preset = providers.choose_preset(str(source.get("email") or ""), source.get("provider"))
        except MigrateError:
            return None
        kind = getattr(preset, "oauth", None)
        return kind if kind in oauth.KINDS else None

    def sources(self, caller: Caller) -> list[dict[str, str]]:
        """The Google/Microsoft accounts this person signed in with in this session."""
        if caller.session is None:
            return []
        return [{"email": r["email"], "kind": r["kind"]} for r in self.svc.db.oauth_sources(caller.session["token_hash"])]

    def seal_source(self, caller: Caller, source: dict[str, Any]) -> bytes:
        """The sealed sign-in for an import's ``{"email", "oauth"}`` source, from the session."""
        from .app import ApiError  # app imports this module

        kind, email = source["oauth"], source["email"]
        name = PROVIDER_NAMES[kind]
        if not self.enabled(kind):
            raise ApiError(422, f"sign-in with {name} is not set up on this service: give the source's password")
        if caller.session is None:
            raise ApiError(422, f"a {name} sign-in belongs to the person who signed in: import with the source's "
                                "password, or put the row in a batch without password (its owner gets a "
                                "sign-in link)")
        for row in self.svc.db.oauth_sources(caller.session["token_hash"]):
            if row["kind"] == kind and row["email"] == email.lower():
                record = self.svc.box.open(row["secret"])
                if record is None:
                    break  # sealed with an earlier key: sign in again
                return self.svc.box.seal(record)
        raise ApiError(422, f"sign in with {name} as {email} first (Sign in with {name}), then start the import")

    def invite(self, job_id: str) -> bool:
        """Mail the owner of a waiting job's source a single-use sign-in link. Blocking (SMTP): call
        it from a thread. False when no mail went out; the job then says why in its ``error``."""
        db, cfg = self.svc.db, self.svc.cfg
        row = db.job(job_id)
        if row is None or row["state"] != WAITING:
            return False
        req = json.loads(row["request"])
        source, lang = req["source"], req.get("lang") if req.get("lang") in LANGS else "en"
        kind = self.kind_of(source)
        if kind is None or not self.enabled(kind):
            what = PROVIDER_NAMES.get(kind or "", "Google or Microsoft")
            db.set_waiting_note(job_id, f"sign-in with {what} is not set up on this service: give the password")
            return False
        token = secrets.token_urlsafe(32)
        ttl_s = cfg.signin_link_days * 86400
        db.add_signin_link(token_hash(token), job_id=job_id, email=source["email"], kind=kind, ttl_s=ttl_s)
        subject, body = invitation(lang=lang, kind=kind, source=source["email"], target=req["target"]["email"],
                                   url=f"{cfg.public_url}/signin/{token}", expires_at=time.time() + ttl_s)
        try:
            self.svc.send_mail(source["email"], subject, body)
        except MigrateError as exc:
            log.warning("import %s: the sign-in link for %s could not be mailed: %s", job_id, source["email"],
                        exc.message)
            db.set_waiting_note(job_id, f"the sign-in link could not be mailed: {exc.message}")
            return False
        log.info("import %s: sign-in link mailed to %s", job_id, source["email"])
        db.set_waiting_note(job_id, None)
        return True

    def routes(self) -> list[Route]:
        return [Route("/oauth/{kind}/start", self.start, methods=["GET"]),
                Route("/oauth/callback", self.callback, methods=["GET"]),
                Route("/signin/{token}", self.link_page, methods=["GET"]),
                Route("/signin/{token}", self.link_start, methods=["POST"])]

    # --- pages ---------------------------------------------------------------------------------

    async def link_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        found = self._link(token)
        if isinstance(found, Response):
            return found
        link, job = found
        req = json.loads(job["request"])
        lang = req.get("lang") if req.get("lang") in LANGS else "en"
        t, name = TEXTS[lang], PROVIDER_NAMES[link["kind"]]
        until = _when(link["expires_at"])
        # The button posts to this same address: the page need not repeat the token, and a mail
        # scanner that fetches the link starts nothing.
        body = (f"<p>{_fill(t['link_intro'], source=link['email'], target=req['target']['email'], provider=name)}</p>"
                f'<form method="post"><button class="button" type="submit">{_fill(t["button"], provider=name)}'
                f"</button></form><p class=\"small\">{_fill(t['link_valid'], date=until)}</p>")
        return _page(lang, t["title"], body)

    async def link_start(self, request: Request) -> Response:
        """The link page's button: a sign-in bound to the link, as the row's source address."""
        found = self._link(request.path_params["token"])
        if isinstance(found, Response):
            return found
        link, job = found
        job_lang = json.loads(job["request"]).get("lang")
        lang = job_lang if job_lang in LANGS else "en"
        client = self.clients.get(link["kind"])
        if client is None:
            return _problem(lang, 404, "not_configured", provider=PROVIDER_NAMES[link["kind"]])
        return self._begin(client, lang=lang, session_hash=None, link_hash=link["token_hash"],
                           expected=link["email"], next_path="/", status=303)

    async def start(self, request: Request) -> Response:
        """A signed-in person's sign-in for a one-off import; back to ``next`` afterwards."""
        kind = request.path_params["kind"]
        lang = _browser_lang(request)
        client = self.clients.get(kind)
        if client is None:
            return _problem(lang, 404, "not_configured", provider=PROVIDER_NAMES.get(kind, kind))
        caller = self._caller(request)
        if caller is None or caller.session is None:
            return _problem(lang, 401, "sign_in_first", provider=client.name)
        email = (request.query_params.get("email") or "").strip()
        return self._begin(client, lang=lang, session_hash=caller.session["token_hash"], link_hash=None,
                           expected=email if "@" in email else None,
                           next_path=_local_path(request.query_params.get("next")), status=302)

    def _begin(self, client: WebClient, *, lang: str, session_hash: str | None, link_hash: str | None,
               expected: str | None, next_path: str, status: int) -> Response:
        """A new state and PKCE verifier (kept sealed, bound to the session or the link), then off
        to the provider's consent screen."""
        kind = client.kind
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        self.svc.db.add_oauth_state(token_hash(state), kind=kind, verifier=self.svc.box.seal(verifier),
                                    session_hash=session_hash, link_hash=link_hash, expected_email=expected,
                                    next_path=next_path, lang=lang, ttl_s=STATE_TTL_S)
        url = client.authorization_url(state=state, challenge=challenge, redirect_uri=self._redirect_uri(),
                                       login_hint=expected)
        return RedirectResponse(url, status_code=status, headers=_NO_STORE)

    async def callback(self, request: Request) -> Response:
        q = request.query_params
        state = q.get("state") or ""
        flow = self.svc.db.take_oauth_state(token_hash(state)) if state else None
        if flow is None:
            return _problem(_browser_lang(request), 400, "state_expired")
        lang, kind = flow["lang"], flow["kind"]
        name = PROVIDER_NAMES[kind]
        client = self.clients.get(kind)
        if client is None:
            return _problem(lang, 404, "not_configured", provider=name)
        job: dict[str, Any] | None = None
        if flow["session_hash"] is not None:
            caller = self._caller(request)
            if caller is None or caller.session is None or caller.session["token_hash"] != flow["session_hash"]:
                return _problem(lang, 400, "other_session")
        else:
            found = self._link_by_hash(flow["link_hash"], lang)
            if isinstance(found, Response):
                return found
            job = found[1]
        if q.get("error"):
            return _problem(lang, 400, "denied", provider=name, error=_short(q["error"]))
        code = q.get("code")
        if not code:
            return _problem(lang, 400, "state_expired")
        verifier = self.svc.box.open(flow["verifier"])
        if verifier is None:
            return _problem(lang, 400, "state_expired")
        try:
            signed = await run_in_threadpool(client.exchange, code, verifier, self._redirect_uri())
        except SignInFailed as exc:
            log.warning("%s sign-in failed: %s", name, exc.message)
            return _problem(lang, exc.status, "failed", detail=exc.message)
        expected = flow["expected_email"]
        if expected and signed.email.lower() != expected.lower():
            log.info("%s sign-in refused: %s signed in where %s was expected", name, signed.email, expected)
            return _problem(lang, 403, "wrong_account", got=signed.email, want=expected, provider=name)
        sealed = self.svc.box.seal(job_record(kind, signed.email, client, signed.refresh_token))
        if job is None:
            self.svc.db.add_oauth_source(flow["session_hash"], kind, signed.email, sealed)
            log.info("%s sign-in of %s kept for its session", name, signed.email)
            return RedirectResponse(flow["next_path"], status_code=303, headers=_NO_STORE)
        req = json.loads(job["request"])
        req["source"]["oauth"] = kind
        if not self.svc.db.complete_signin(flow["link_hash"], job["id"], sealed, req):  # used or cancelled meanwhile
            found = self._link_by_hash(flow["link_hash"], lang)
            return found if isinstance(found, Response) else _problem(lang, 410, "used")
        assert self.svc.runner is not None
        self.svc.runner.submit(job["id"])
        log.info("import %s: %s signed in with %s, queued", job["id"], signed.email, name)
        t = TEXTS[lang]
        return _page(lang, t["title"], f"<p>{_fill(t['done'], email=signed.email, target=req['target']['email'])}</p>")

    # --- helpers -------------------------------------------------------------------------------

    def _redirect_uri(self) -> str:
        return f"{self.svc.cfg.public_url}/oauth/callback"

    def _caller(self, request: Request) -> Caller | None:
        from .app import ApiError

        try:
            return self.svc.caller(request, required=False)
        except ApiError:
            return None

    def _link(self, token: str) -> tuple[dict[str, Any], dict[str, Any]] | Response:
        """The link and its waiting job, or the page that says why not (404 unknown, 410 used,
        expired or cancelled)."""
        return self._link_by_hash(token_hash(token), None)

    def _link_by_hash(self, link_hash: str, lang: str | None) -> tuple[dict[str, Any], dict[str, Any]] | Response:
        link = self.svc.db.signin_link(link_hash)
        job = self.svc.db.job(link["job_id"]) if link is not None else None
        if link is None or job is None:
            return _problem(lang or "en", 404, "unknown")
        if lang is None:
            lang = json.loads(job["request"]).get("lang")
            lang = lang if lang in LANGS else "en"
        if link["used_at"] is not None:
            return _problem(lang, 410, "used")
        if link["expires_at"] < time.time():
            return _problem(lang, 410, "expired")
        if job["state"] == "cancelled":
            return _problem(lang, 410, "cancelled")
        if job["state"] != WAITING:  # started through another link
            return _problem(lang, 410, "used")
        return link, job


# --- pages and the mail --------------------------------------------------------------------------


def _page(lang: str, title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
           '<meta name="viewport" content="width=device-width, initial-scale=1">'
           '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">'
           f"<title>{html.escape(title)}</title><style>"
           "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}"
           ".button{display:inline-block;padding:.6rem 1.2rem;background:#0969da;color:#fff;border-radius:6px;"
           "text-decoration:none}.small{color:#555;font-size:.9rem}"
           f"</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(doc, status_code=status, headers=_NO_STORE)


def _problem(lang: str, status: int, key: str, **values: str) -> HTMLResponse:
    t = TEXTS[lang if lang in LANGS else "en"]
    return _page(lang, t["problem_title"], f"<p>{_fill(t[key], **values)}</p>", status)


def _fill(text: str, **values: str) -> str:
    """``text`` with its {placeholders} filled in, every value escaped."""
    return text.format(**{k: html.escape(redact(str(v))) for k, v in values.items()})


def _short(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "", value)[:60] or "error"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _local_path(value: str | None) -> str:
    """``next``: a path on this service only (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or any(
            ord(c) < 33 for c in value):
        return "/"
    return value


def _browser_lang(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return str(asked)
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";", 1)[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return "en"


def invitation(*, lang: str, kind: str, source: str, target: str, url: str, expires_at: float) -> tuple[str, str]:
    """The sign-in link mail: (subject, plain text)."""
    t = TEXTS[lang]
    return (t["mail_subject"].format(source=source),
            t["mail_body"].format(source=source, target=target, provider=PROVIDER_NAMES[kind], url=url,
                                  date=_when(expires_at)))


TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Sign in to start your import",
        "problem_title": "Sign-in not possible",
        "link_intro": "Your mail from {source} is to be copied to {target}. Sign in with {provider} as {source} "
                      "to start: the service then copies your mail on its own.",
        "button": "Sign in with {provider}",
        "link_valid": "This link is valid until {date} and can be used once.",
        "done": "Signed in as {email}. Your mail is being copied to {target} now: you can close this page.",
        "unknown": "This sign-in link is not known: open the link from the mail again, the whole address.",
        "used": "This sign-in link has already been used: the import was started with it.",
        "expired": "This sign-in link has expired: ask whoever set up the import for a new one.",
        "cancelled": "This import was cancelled: the sign-in link is no longer needed.",
        "state_expired": "This sign-in was not finished in time or was already completed: start it again.",
        "other_session": "This sign-in was started in another browser or session: start it again here.",
        "denied": "{provider} did not allow the sign-in ({error}): start it again and accept the requested access.",
        "wrong_account": "You signed in as {got}, but this import is for {want}: start again and choose {want} "
                         "at {provider}.",
        "not_configured": "Sign-in with {provider} is not set up on this service.",
        "sign_in_first": "Sign in to this service first, then choose Sign in with {provider}.",
        "failed": "The sign-in did not work: {detail}",
        "mail_subject": "Sign in to copy your mail from {source}",
        "mail_body": "Hello,\n\nyour mail from {source} is to be copied to {target}. To start, open this link and "
                     "sign in with {provider} as {source}:\n\n{url}\n\nThe link can be used once and is valid "
                     "until {date}. If you did not expect this mail, ignore it: nothing happens without your "
                     "sign-in.\n",
    },
    "de": {
        "title": "Anmelden und Import starten",
        "problem_title": "Anmeldung nicht möglich",
        "link_intro": "Ihre E-Mails von {source} sollen nach {target} kopiert werden. Melden Sie sich mit "
                      "{provider} als {source} an, um zu beginnen: danach kopiert der Dienst Ihre E-Mails selbständig.",
        "button": "Mit {provider} anmelden",
        "link_valid": "Dieser Link gilt bis {date} und kann einmal verwendet werden.",
        "done": "Angemeldet als {email}. Ihre E-Mails werden jetzt nach {target} kopiert: Sie können diese Seite "
                "schliessen.",
        "unknown": "Dieser Anmeldelink ist unbekannt: öffnen Sie den Link aus der E-Mail noch einmal, die ganze "
                   "Adresse.",
        "used": "Dieser Anmeldelink wurde bereits verwendet: der Import wurde damit gestartet.",
        "expired": "Dieser Anmeldelink ist abgelaufen: bitten Sie die Person, die den Import eingerichtet hat, "
                   "um einen neuen.",
        "cancelled": "Dieser Import wurde abgebrochen: der Anmeldelink wird nicht mehr gebraucht.",
        "state_expired": "Diese Anmeldung wurde nicht rechtzeitig beendet oder ist schon abgeschlossen: beginnen "
                         "Sie sie neu.",
        "other_session": "Diese Anmeldung wurde in einem anderen Browser oder einer anderen Sitzung begonnen: "
                         "beginnen Sie sie hier neu.",
        "denied": "{provider} hat die Anmeldung nicht erlaubt ({error}): beginnen Sie sie neu und erlauben Sie den "
                  "angefragten Zugriff.",
        "wrong_account": "Sie haben sich als {got} angemeldet, dieser Import ist aber für {want}: beginnen Sie neu "
                         "und wählen Sie bei {provider} {want}.",
        "not_configured": "Die Anmeldung mit {provider} ist auf diesem Dienst nicht eingerichtet.",
        "sign_in_first": "Melden Sie sich zuerst bei diesem Dienst an und wählen Sie dann Mit {provider} anmelden.",
        "failed": "Die Anmeldung hat nicht geklappt: {detail}",
        "mail_subject": "Anmelden, um Ihre E-Mails von {source} zu kopieren",
        "mail_body": "Guten Tag\n\nIhre E-Mails von {source} sollen nach {target} kopiert werden. Öffnen Sie zum "
                     "Starten diesen Link und melden Sie sich mit {provider} als {source} an:\n\n{url}\n\nDer Link "
                     "kann einmal verwendet werden und gilt bis {date}. Wenn Sie diese E-Mail nicht erwartet haben, "
                     "ignorieren Sie sie: ohne Ihre Anmeldung geschieht nichts.\n",
    },
    "fr": {
        "title": "Connectez-vous pour lancer votre import",
        "problem_title": "Connexion impossible",
        "link_intro": "Vos e-mails de {source} doivent être copiés vers {target}. Connectez-vous avec {provider} "
                      "en tant que {source} pour commencer : le service copie ensuite vos e-mails tout seul.",
        "button": "Se connecter avec {provider}",
        "link_valid": "Ce lien est valable jusqu'au {date} et ne peut servir qu'une fois.",
        "done": "Connecté en tant que {email}. Vos e-mails sont en train d'être copiés vers {target} : vous pouvez "
                "fermer cette page.",
        "unknown": "Ce lien de connexion est inconnu : ouvrez à nouveau le lien de l'e-mail, l'adresse complète.",
        "used": "Ce lien de connexion a déjà été utilisé : l'import a été lancé avec lui.",
        "expired": "Ce lien de connexion a expiré : demandez-en un nouveau à la personne qui a préparé l'import.",
        "cancelled": "Cet import a été annulé : le lien de connexion n'est plus nécessaire.",
        "state_expired": "Cette connexion n'a pas été terminée à temps ou est déjà terminée : recommencez-la.",
        "other_session": "Cette connexion a été commencée dans un autre navigateur ou une autre session : "
                         "recommencez-la ici.",
        "denied": "{provider} n'a pas autorisé la connexion ({error}) : recommencez et acceptez l'accès demandé.",
        "wrong_account": "Vous êtes connecté en tant que {got}, mais cet import concerne {want} : recommencez et "
                         "choisissez {want} chez {provider}.",
        "not_configured": "La connexion avec {provider} n'est pas configurée sur ce service.",
        "sign_in_first": "Connectez-vous d'abord à ce service, puis choisissez Se connecter avec {provider}.",
        "failed": "La connexion n'a pas abouti : {detail}",
        "mail_subject": "Connectez-vous pour copier vos e-mails de {source}",
        "mail_body": "Bonjour,\n\nvos e-mails de {source} doivent être copiés vers {target}. Pour commencer, "
                     "ouvrez ce lien et connectez-vous avec {provider} en tant que {source} :\n\n{url}\n\nLe lien "
                     "ne peut servir qu'une fois et est valable jusqu'au {date}. Si vous n'attendiez pas cet "
                     "e-mail, ignorez-le : rien ne se passe sans votre connexion.\n",
    },
    "it": {
        "title": "Accedi per avviare l'importazione",
        "problem_title": "Accesso non possibile",
        "link_intro": "La tua posta di {source} deve essere copiata in {target}. Accedi con {provider} come "
                      "{source} per iniziare: poi il servizio copia la tua posta da solo.",
        "button": "Accedi con {provider}",
        "link_valid": "Questo link è valido fino al {date} e si può usare una sola volta.",
        "done": "Accesso eseguito come {email}. La tua posta viene ora copiata in {target}: puoi chiudere questa "
                "pagina.",
        "unknown": "Questo link di accesso non è noto: apri di nuovo il link dell'e-mail, l'indirizzo completo.",
        "used": "Questo link di accesso è già stato usato: l'importazione è stata avviata con esso.",
        "expired": "Questo link di accesso è scaduto: chiedine uno nuovo a chi ha preparato l'importazione.",
        "cancelled": "Questa importazione è stata annullata: il link di accesso non serve più.",
        "state_expired": "Questo accesso non è stato completato in tempo o è già concluso: ricomincialo.",
        "other_session": "Questo accesso è stato avviato in un altro browser o in un'altra sessione: ricomincialo "
                         "qui.",
        "denied": "{provider} non ha permesso l'accesso ({error}): ricomincia e accetta l'accesso richiesto.",
        "wrong_account": "Hai eseguito l'accesso come {got}, ma questa importazione è per {want}: ricomincia e "
                         "scegli {want} su {provider}.",
        "not_configured": "L'accesso con {provider} non è configurato su questo servizio.",
        "sign_in_first": "Accedi prima a questo servizio, poi scegli Accedi con {provider}.",
        "failed": "L'accesso non è riuscito: {detail}",
        "mail_subject": "Accedi per copiare la tua posta di {source}",
        "mail_body": "Buongiorno,\n\nla tua posta di {source} deve essere copiata in {target}. Per iniziare, apri "
                     "questo link e accedi con {provider} come {source}:\n\n{url}\n\nIl link si può usare una "
                     "sola volta ed è valido fino al {date}. Se non aspettavi questa e-mail, ignorala: senza il "
                     "tuo accesso non succede nulla.\n",
    },
}


# --- uvicorn's access log ------------------------------------------------------------------------

# A link's token is in its path; a callback's code and state in the query.
_SECRET_IN_PATH = re.compile(r"(/signin/)[^/?#\s\"]+|([?&](?:code|state)=)[^&#\s\"]+")


class _HideSecretsInAccessLog(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_SECRET_IN_PATH.sub(lambda m: (m.group(1) or m.group(2)) + "…", a)
                                if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _SECRET_IN_PATH.sub(lambda m: (m.group(1) or m.group(2)) + "…", record.msg)
        return True


def hide_secrets_in_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _HideSecretsInAccessLog) for f in access.filters):
        access.addFilter(_HideSecretsInAccessLog())

