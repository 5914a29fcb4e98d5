"""The start mail of a long job: "your import has started: about 2 days: Gmail allows 2.5 GB a day".

A job that will take long (its fit check's finish time under a daily budget, or its first
progress estimate, says more than ``threshold_s()``: one hour unless ``MAILMIGRATE_START_MAIL_AFTER_S``
says otherwise) tells its recipients once, as it starts, so nobody waits in front of a screen for
days. The same recipients, language and SMTP path as the confirmation mail (``deliver``); once per
job across runs and resumes: the journal's ``notifications`` table records it (kind "start").
A short job sends none.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

from ..engine.eta import Window, finish_time
from ..errors import UsageError
from ..report import FitReport, utcnow
from ..store import NotificationRow, open_store
from ..store.location import JournalLocation
from . import NotifyFailed
from .compose import clean
from .i18n import check_lang
from .send import SmtpSettings, send_mail

START_KIND = "start"  # the notifications row of a start mail
AFTER_ENV = "MAILMIGRATE_START_MAIL_AFTER_S"
DEFAULT_AFTER_S = 3600.0

START_SENT = "start mail: sent to "
START_NOT_SENT = "start mail: NOT sent"
START_ALREADY = "start mail: sent on an earlier run"


def threshold_s(env: Mapping[str, str] | None = None) -> float:
    """Seconds a job must take at least for a start mail (``AFTER_ENV``, default one hour)."""
    raw = (os.environ if env is None else env).get(AFTER_ENV, "").strip()
    if not raw:
        return DEFAULT_AFTER_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise UsageError(f"{AFTER_ENV} must be a number of seconds (0 or more), not '{raw}'",
                         hint=f"unset it for the default of {DEFAULT_AFTER_S:.0f} s")
    return value


@dataclass(frozen=True)
class Estimate:
    seconds: float
    text: str  # the engine's sentence: "about 2 days: Gmail allows 2.5 GB a day; 6.1 GB to go"


def from_fit(fit: FitReport, windows: list[Window]) -> Estimate | None:
    """The fit check's finish time: what the daily budgets alone impose (no rate is known yet)."""
    eta = finish_time(fit.to_copy_bytes, None, windows)
    if eta.seconds is None or eta.text is None or not eta.budget_bound:
        return None
    return Estimate(eta.seconds, eta.text)


def from_progress(snapshot: Mapping[str, Any]) -> Estimate | None:
    """The first progress estimate (``Progress.snapshot()``: ``eta_s`` and, under a budget, ``eta_text``)."""
    seconds = snapshot.get("eta_s")
    if seconds is None:
        return None
    text = snapshot.get("eta_text") or _about(float(seconds))
    return Estimate(float(seconds), str(text))


def _about(seconds: float) -> str:
    from ..engine.eta import about
    return about(seconds)


def is_long(estimate: Estimate | None, threshold: float) -> bool:
    return estimate is not None and estimate.seconds > threshold


# --- wording ------------------------------------------------------------------------------------

_TEXTS = {
    "en": {"subject": "Your mailbox import has started: {duration}",
           "body": "Your mailbox import from {source} to {target} has started.\n\n"
                   "It will take {duration}.\nDetails: {detail}\n\n"
                   "You get another mail when it is done. Mail already copied is in the new mailbox.\n",
           "units": ("day", "days", "h", "min"), "about": "about {}", "soon": "less than an hour"},
    "de": {"subject": "Ihr Postfach-Import hat begonnen: {duration}",
           "body": "Ihr Postfach-Import von {source} nach {target} hat begonnen.\n\n"
                   "Er dauert {duration}.\nEinzelheiten: {detail}\n\n"
                   "Sie erhalten eine weitere E-Mail, wenn er fertig ist. Bereits kopierte E-Mails "
                   "sind schon im neuen Postfach.\n",
           "units": ("Tag", "Tage", "Std.", "Min."), "about": "etwa {}", "soon": "weniger als eine Stunde"},
    "fr": {"subject": "Votre importation de boîte aux lettres a commencé : {duration}",
           "body": "Votre importation de {source} vers {target} a commencé.\n\n"
                   "Elle prendra {duration}.\nDétails : {detail}\n\n"
                   "Vous recevrez un autre message quand elle sera terminée. Les messages déjà copiés "
                   "sont dans la nouvelle boîte.\n",
           "units": ("jour", "jours", "h", "min"), "about": "environ {}", "soon": "moins d'une heure"},
    "it": {"subject": "L'importazione della casella di posta è iniziata: {duration}",
           "body": "L'importazione da {source} a {target} è iniziata.\n\n"
                   "Durerà {duration}.\nDettagli: {detail}\n\n"
                   "Riceverà un'altra e-mail quando sarà terminata. I messaggi già copiati sono "
                   "già nella nuova casella.\n",
           "units": ("giorno", "giorni", "h", "min"), "about": "circa {}", "soon": "meno di un'ora"},
}


def duration_text(seconds: float, lang: str) -> str:
    """"about 2 days", "etwa 5 Std. 10 Min." in the mail's language."""
    t = _TEXTS[check_lang(lang)]
    day, days, hours, minutes = t["units"]
    s = max(0.0, seconds)
    if s < 3600:
        return str(t["soon"])
    if s >= 2 * 86_400:
        n = round(s / 86_400)
        return str(t["about"]).format(f"{n} {days}")
    if s >= 86_400:
        h = round((s - 86_400) / 3600)
        return str(t["about"]).format(f"1 {day}" + (f" {h} {hours}" if h else ""))
    h, m = divmod(round(s / 60), 60)
    return str(t["about"]).format(f"{h} {hours}" + (f" {m} {minutes}" if m else ""))


def compose_start_mail(*, job_id: str, source: str, target: str, estimate: Estimate, lang: str,
                       sender: str, recipients: list[str]) -> EmailMessage:
    lang = check_lang(lang)
    t = _TEXTS[lang]
    duration = duration_text(estimate.seconds, lang)
    msg = EmailMessage()
    msg["Subject"] = clean(str(t["subject"]).format(duration=duration), 300)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid("mailmigrate", domain=parseaddr(sender)[1].rpartition("@")[2] or "invalid")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
    msg["X-Mailmigrate-Job"] = job_id
    msg["X-Mailmigrate-Mail"] = START_KIND
    msg.set_content(str(t["body"]).format(source=clean(source), target=clean(target), duration=duration,
                                          detail=clean(estimate.text)), charset="utf-8")
    msg["Content-Language"] = lang
    return msg


# --- once per job -------------------------------------------------------------------------------


def sent_before(journal_path: JournalLocation, job_id: str) -> bool:
    """Did an earlier run (or resume) of this job record its start mail?"""
    journal = open_store(journal_path)
    try:
        return any(r.kind == START_KIND and r.job_id == job_id
                   for r in journal.notifications(job_id, include_sent=True))
    finally:
        journal.close()


def deliver_start(journal_path: JournalLocation, job_id: str, *, source: str, target: str, recipients: list[str],
                  lang: str, sender: str, estimate: Estimate, settings: Callable[[], SmtpSettings],
                  plan: Any) -> str:
    """Send the start mail once for this job; record it in the journal first (so a crash mid-way
    never sends a second one). ``settings``: the SMTP settings, built only when a mail goes out."""
    if not recipients:
        return "start mail: no recipient addresses"
    journal = open_store(journal_path)
    try:
        if any(r.kind == START_KIND and r.job_id == job_id for r in journal.notifications(job_id, include_sent=True)):
            return START_ALREADY
        row = NotificationRow(
            job_id=job_id, kind=START_KIND, recipients=json.dumps(recipients), lang=lang,
            smtp=json.dumps({**asdict(plan), "password_ref": None}), sender=sender, state="pending", error=None,
            attempts=0, updated_at=utcnow().isoformat(), reports=json.dumps([{"estimate": estimate.text}]))
        nid = journal.add_notification(row)
        msg = compose_start_mail(job_id=job_id, source=source, target=target, estimate=estimate, lang=lang,
                                 sender=sender, recipients=recipients)
        try:
            send_mail(msg, settings())
        except (NotifyFailed, UsageError) as exc:
            journal.update_notification(nid, "failed", exc.message)
            return f"{START_NOT_SENT} ({exc.message})"
        journal.update_notification(nid, "sent", None)
        return START_SENT + ", ".join(recipients)
    finally:
        journal.close()


__all__ = ["AFTER_ENV", "DEFAULT_AFTER_S", "START_KIND", "Estimate", "compose_start_mail",
           "deliver_start", "duration_text", "from_fit", "from_progress", "is_long", "sent_before", "threshold_s"]
