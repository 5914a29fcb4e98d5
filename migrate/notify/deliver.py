"""Send the confirmation mail after a job, and again later from the journal.

A failure to send never fails or rolls back the migration: it is recorded in the journal's
``notifications`` table (without the password: only an ``env:``/``file:`` reference is kept)
and ``mailmigrate notify --journal PATH`` sends it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..accounts import Secret, resolve_secret
from ..errors import MigrateError, UsageError
from ..journal import Journal
from ..report import JobReport, load, utcnow
from . import NotifyFailed
from .compose import compose_batch_mail, compose_job_mail
from .i18n import check_lang
from .options import NotifyOptions
from .send import SmtpSettings, recipients_for, send_mail


@dataclass
class SmtpPlan:
    """Where and how to send; ``password_ref`` is only ever an env:/file: reference."""

    host: str
    port: int
    security: str
    username: str | None
    password_ref: str | None
    ca_file: str | None = None
    insecure: bool = False


def smtp_plan(opts: NotifyOptions, *, preset_smtp: tuple[str, int, str] | None, target_login: str | None,
              target_password_ref: str | None) -> SmtpPlan | None:
    """An explicit relay wins; otherwise the target provider's SMTP server with the target's login."""
    if opts.smtp_host:
        security = (opts.smtp_security or "starttls").lower()
        if security not in ("ssl", "starttls", "none"):
            raise UsageError(f"--smtp-security must be ssl, starttls or none (got '{opts.smtp_security}')")
        port = opts.smtp_port or {"ssl": 465, "starttls": 587, "none": 25}[security]
        return SmtpPlan(opts.smtp_host, port, security, opts.smtp_user, opts.smtp_password,
                        opts.ca_file, opts.insecure)
    if preset_smtp:
        host, port, security = preset_smtp
        return SmtpPlan(host, port, security, target_login, target_password_ref, opts.ca_file, opts.insecure)
    return None


def _settings(plan: SmtpPlan, password: Secret | None, token: Callable[[], Secret] | None = None) -> SmtpSettings:
    if password is None and token is None and plan.password_ref:
        password = resolve_secret(plan.password_ref, what="SMTP password")
    return SmtpSettings(host=plan.host, port=plan.port, security=plan.security,  # type: ignore[arg-type]
                        username=plan.username, password=password, ca_file=plan.ca_file,
                        insecure=plan.insecure, oauth_token=token)


def _storable_ref(ref: str | None) -> str | None:
    return ref if ref and (ref.startswith("env:") or ref.startswith("file:")) else None


def deliver(journal_path: Path | None, kind: str, job_id: str, reports: list[JobReport], opts: NotifyOptions,
            plan: SmtpPlan | None, *, password: Secret | None = None,
            token: Callable[[], Secret] | None = None) -> str:
    """Compose and send; record the outcome. Returns a one-line status for the summary."""
    if not opts.enabled:
        return "confirmation mail: off (--no-notify)"
    lang = check_lang(opts.lang)
    recipients: list[str] = []
    for r in reports:
        for a in recipients_for(r, opts.extra):
            if a.lower() not in {x.lower() for x in recipients}:
                recipients.append(a)
    if not recipients:
        return "confirmation mail: no recipient addresses"
    if plan is None:
        return "confirmation mail: not sent (no SMTP server known for the target: give --smtp-host)"
    row = {"job_id": job_id, "kind": kind, "recipients": json.dumps(recipients), "lang": lang,
           "smtp": json.dumps({**asdict(plan), "password_ref": _storable_ref(plan.password_ref)}),
           "sender": opts.sender or plan.username or recipients[-1], "state": "pending", "error": None,
           "attempts": 0, "updated_at": utcnow().isoformat(),
           "reports": json.dumps([r.to_dict() for r in reports], ensure_ascii=False)}
    journal = Journal(journal_path) if journal_path else None
    try:
        nid = journal.add_notification(row) if journal else None
        return _send(journal, nid, row, plan, password, token)
    finally:
        if journal:
            journal.close()


def _send(journal: Journal | None, nid: int | None, row: dict[str, object], plan: SmtpPlan,
          password: Secret | None, token: Callable[[], Secret] | None = None) -> str:
    recipients = json.loads(str(row["recipients"]))
    reports = [load(JobReport, r) for r in json.loads(str(row["reports"]))]
    sender = str(row["sender"])
    if "@" not in sender:
        sender = recipients[-1]
    if row["kind"] == "batch":
        msg = compose_batch_mail(reports, lang=str(row["lang"]), sender=sender, recipients=recipients)
    else:
        msg = compose_job_mail(reports[0], lang=str(row["lang"]), sender=sender, recipients=recipients)
    try:
        send_mail(msg, _settings(plan, password, token))
    except (NotifyFailed, UsageError) as exc:
        if journal and nid:
            journal.update_notification(nid, "failed", exc.message)
        return (f"confirmation mail: NOT sent ({exc.message}); the migration itself is fine - "
                f"send it later with 'mailmigrate notify --journal {journal.path if journal else 'PATH'}'")
    if journal and nid:
        journal.update_notification(nid, "sent", None)
    return f"confirmation mail: sent to {', '.join(recipients)}"


def resend(journal_path: Path, job: str | None, *, password: Secret | None, include_sent: bool = False) -> list[str]:
    """``mailmigrate notify``: send again every notification not yet sent (or the job's latest)."""
    j = Journal(journal_path)
    out: list[str] = []
    try:
        for row in j.notifications(job, include_sent=include_sent):
            plan = SmtpPlan(**json.loads(str(row["smtp"])))
            try:
                out.append(f"{row['job_id']}: " + _send(j, int(row["id"]), row, plan, password))  # type: ignore[arg-type]
            except MigrateError as exc:
                out.append(f"{row['job_id']}: confirmation mail NOT sent ({exc.message})")
    finally:
        j.close()
    return out
