"""Send the confirmation mail after a job, and again later from the journal.

A failure to send never fails or rolls back the migration: it is recorded in the journal's
``notifications`` table (without the password: only an ``env:``/``file:`` reference is kept)
and ``mailmigrate notify --journal PATH`` sends it again, with corrected SMTP settings if need be
(also a mail that had no SMTP server to go to).

Whether a run mails at all is ``NotifyOptions.when`` (``--notify-when``): by default only a run
that copied, restored or failed something, stopped with an error, or is the job's first run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from ..accounts import Secret, resolve_secret
from ..errors import MigrateError, UsageError
from ..report import JobReport, load, utcnow
from ..store import NotificationRow, Store, open_store
from ..store.location import JournalLocation, PgJournal
from . import NotifyFailed
from .compose import compose_batch_mail, compose_job_mail
from .i18n import check_lang
from .options import NO_RECIPIENTS, NO_SMTP, NOT_SENT, OFF, OFF_NEVER, SENT, UNCHANGED, NotifyOptions
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


def _changed(r: JobReport) -> bool:
    """Is this run worth a mail: it copied, restored or failed something, or did not finish?"""
    t = r.totals
    return bool(t.copied or t.restored or t.failed or r.error is not None
                or r.status in ("failed", "interrupted", "partial"))


def skip_reason(opts: NotifyOptions, journal_path: JournalLocation | None, job_id: str, reports: list[JobReport]) -> str | None:
    """Why no mail goes out for this run (``--no-notify``, ``--notify-when``), or None to send one."""
    if not opts.enabled:
        return OFF
    if opts.when == "never":
        return OFF_NEVER
    if opts.when == "always" or any(_changed(r) for r in reports) or journal_path is None:
        return None
    try:  # the job's first run (this one is recorded already) always says what happened
        journal = open_store(journal_path)
        try:
            first = len(journal.runs(job_id)) <= 1
        finally:
            journal.close()
    except Exception:  # noqa: BLE001 - an unreadable journal: rather one mail too many
        first = True
    return None if first else UNCHANGED


def deliver(journal_path: JournalLocation | None, kind: str, job_id: str, reports: list[JobReport], opts: NotifyOptions,
            plan: SmtpPlan | None, *, password: Secret | None = None,
            token: Callable[[], Secret] | None = None) -> str:
    """Compose and send; record the outcome. Returns a one-line status for the summary.

    A mail with no SMTP server to go to is recorded too (not sent): ``mailmigrate notify
    --journal PATH --smtp-host HOST`` sends it."""
    if (skip := skip_reason(opts, journal_path, job_id, reports)) is not None:
        return skip
    lang = check_lang(opts.lang)
    recipients: list[str] = []
    for r in reports:
        for a in recipients_for(r, opts.extra):
            if a.lower() not in {x.lower() for x in recipients}:
                recipients.append(a)
    if not recipients:
        return NO_RECIPIENTS
    row = NotificationRow(
        job_id=job_id, kind=kind, recipients=json.dumps(recipients), lang=lang,
        smtp=json.dumps({**asdict(plan), "password_ref": _storable_ref(plan.password_ref)} if plan else None),
        sender=opts.sender or (plan.username if plan else None) or recipients[-1],
        state="pending" if plan else "failed", error=None if plan else _NO_SMTP_ERROR,
        attempts=0, updated_at=utcnow().isoformat(),
        reports=json.dumps([r.to_dict() for r in reports], ensure_ascii=False))
    journal = open_store(journal_path) if journal_path else None
    try:
        nid = journal.add_notification(row) if journal else None
        if plan is None:
            later = f"; send it with 'mailmigrate notify --journal {_journal_name(journal)} --smtp-host HOST'" if journal else ""
            return NO_SMTP + later
        return _send(journal, nid, row, plan, password, token)
    finally:
        if journal:
            journal.close()


_NO_SMTP_ERROR = "no SMTP server known for the target"


def _journal_name(journal: Store | None) -> str:
    """How to name the journal in a hint: its file, or its PostgreSQL database and namespace
    (never a password)."""
    path = getattr(journal, "path", None)
    if path is not None:
        return str(path)
    url, namespace = getattr(journal, "url", None), getattr(journal, "namespace", None)
    return str(PgJournal(url, namespace)) if url and namespace else "PATH"


def _send(journal: Store | None, nid: int | None, row: NotificationRow, plan: SmtpPlan,
          password: Secret | None, token: Callable[[], Secret] | None = None) -> str:
    recipients = json.loads(row.recipients)
    reports = [load(JobReport, r) for r in json.loads(row.reports)]
    sender = row.sender
    if "@" not in sender:
        sender = recipients[-1]
    if row.kind == "batch":
        msg = compose_batch_mail(reports, lang=row.lang, sender=sender, recipients=recipients)
    else:
        msg = compose_job_mail(reports[0], lang=row.lang, sender=sender, recipients=recipients)
    try:
        send_mail(msg, _settings(plan, password, token))
    except (NotifyFailed, UsageError) as exc:
        if journal and nid:
            journal.update_notification(nid, "failed", exc.message)
        return (f"{NOT_SENT} ({exc.message}); the migration itself is fine - "
                f"send it later with 'mailmigrate notify --journal {_journal_name(journal)}' "
                "(with --smtp-host/--smtp-port/--smtp-security/--smtp-user/--smtp-password to correct the SMTP "
                "settings)")
    if journal and nid:
        journal.update_notification(nid, "sent", None)
    return SENT + ", ".join(recipients)


def corrected_plan(stored: SmtpPlan | None, fix: NotifyOptions | None) -> SmtpPlan | None:
    """``mailmigrate notify`` with SMTP options: a new relay (``--smtp-host``), or the stored
    settings with the given ones changed (port, security, user, CA file, --insecure)."""
    if fix is None:
        return stored
    if fix.smtp_host:
        return smtp_plan(fix, preset_smtp=None, target_login=None, target_password_ref=None)
    if stored is None:
        return None
    changed = stored
    if fix.smtp_security:
        security = fix.smtp_security.lower()
        if security not in ("ssl", "starttls", "none"):
            raise UsageError(f"--smtp-security must be ssl, starttls or none (got '{fix.smtp_security}')")
        changed = replace(changed, security=security,
                          port=fix.smtp_port or {"ssl": 465, "starttls": 587, "none": 25}[security])
    if fix.smtp_port:
        changed = replace(changed, port=fix.smtp_port)
    if fix.smtp_user:
        changed = replace(changed, username=fix.smtp_user, password_ref=None)
    if fix.smtp_password:
        changed = replace(changed, password_ref=_storable_ref(fix.smtp_password))
    if fix.ca_file:
        changed = replace(changed, ca_file=fix.ca_file)
    if fix.insecure:
        changed = replace(changed, insecure=True)
    return changed


def resend(journal_path: JournalLocation, job: str | None, *, password: Secret | None, include_sent: bool = False,
           smtp: NotifyOptions | None = None) -> list[str]:
    """``mailmigrate notify``: send again every notification not yet sent (or the job's latest).
    ``smtp``: SMTP settings given to correct the stored ones (see ``corrected_plan``)."""
    j = open_store(journal_path)
    out: list[str] = []
    try:
        for row in j.notifications(job, include_sent=include_sent):
            if row.kind == "start":  # a late "your import has started" says nothing useful
                continue
            try:
                stored = json.loads(row.smtp) if row.smtp else None
                plan = corrected_plan(SmtpPlan(**stored) if stored else None, smtp)
                if plan is None:
                    out.append(f"{row.job_id}: {NOT_SENT} ({_NO_SMTP_ERROR}: give --smtp-host)")
                    continue
                if "@" not in row.sender and plan.username and "@" in plan.username:
                    row = replace(row, sender=plan.username)
                out.append(f"{row.job_id}: " + _send(j, row.id, row, plan, password))
            except MigrateError as exc:
                out.append(f"{row.job_id}: {NOT_SENT} ({exc.message})")
    finally:
        j.close()
    return out
