"""Build the confirmation mails (job and batch) from ``JobReport`` objects.

Both parts (plain text and HTML) are rendered from the same rows, so they always agree with each
other and with the JSON report (we read ``report.totals`` as stored; we never recompute). Every
string that comes from the report (folder names, server answers, subjects) is untrusted: control
and bidi characters are removed and the HTML part escapes it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from migrate.errors import UsageError
from migrate.report import Failure, JobReport, utcnow

from . import i18n

MAX_FAILURES = 100  # listed in the mail; the JSON report has all of them
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+")

# Status colours for the HTML part (border/badge), chosen to stay readable on white.
_COLOURS = {"ok": "#1a7f37", "partial": "#9a6700", "problems": "#9a6700", "interrupted": "#cf222e",
            "full": "#cf222e", "dry_run": "#0969da"}

# What the engine writes in English (report notes and reasons) -> the key of its translation.
# "the new mailbox is full" is migrate.engine.quota's FULL.
_NOTES = {"unchanged": "note_unchanged", "excluded": "note_excluded", "not-included": "note_not_included",
          "gmail-container": "note_gmail_container", "gmail-view": "note_gmail_view",
          "stopped: the job was interrupted": "note_stopped", "not started: the job stopped": "note_not_started",
          "the new mailbox is full": "reason_full",
          "not started: the new mailbox is full": "note_full_not_started"}
_NOTE_PREFIXES = {"folder failed: ": "note_folder_failed", "not created: ": "note_not_created"}
_REASONS = {"the new mailbox is full": "reason_full"}
_FULL = "target-over-quota"  # migrate.errors.OverQuota.reference


def _note(note: str, lang: str) -> str:
    """A folder note in the mail's language where we know it (the rest is a server's words)."""
    t = i18n.strings(lang)
    if note in _NOTES:
        return t[_NOTES[note]]
    for prefix, key in _NOTE_PREFIXES.items():
        if note.startswith(prefix):
            return f"{t[key]}{i18n.colon(lang)} {_reason(note[len(prefix):], lang)}"
    return note


def _reason(reason: str, lang: str) -> str:
    key = _REASONS.get(reason)
    return i18n.strings(lang)[key] if key else reason


def _is_full(r: JobReport) -> bool:
    return r.error is not None and r.error.reference == _FULL


def _error_text(r: JobReport, lang: str) -> tuple[str, str | None]:
    """The job's error and hint for an end user: a full target in plain words, else as reported."""
    assert r.error is not None
    if _is_full(r):
        t = i18n.strings(lang)
        return t["full_error"], t["full_hint"]
    return clean(r.error.message, 500), clean(r.error.hint, 500) if r.error.hint else None


def _status_text(r: JobReport, lang: str) -> str:
    t = i18n.strings(lang)
    return t["status_full"] if _is_full(r) else t.get(f"status_{r.status}", clean(r.status))


def clean(text: object, limit: int = 300) -> str:
    """One line of untrusted text: control/bidi characters become spaces, long text is cut."""
    s = " ".join(_UNSAFE.sub(" ", str(text)).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


@dataclass
class _Doc:
    """What both renderers show: facts, one table, extra sections."""

    lang: str
    subject: str
    headline: str
    outcome: str
    facts: list[tuple[str, str]]
    columns: list[str]  # first column text, the rest numbers
    rows: list[list[str]]
    notes: list[str | None]  # one per row: a short remark under the first cell
    total: list[str] | None
    table_note: str | None = None
    sections: list[tuple[str, list[str]]] = field(default_factory=list)  # title, lines
    command: tuple[str, str, str] | None = None  # title, text, command
    numeric_from: int = 1  # index of the first right-aligned column


def _route(r: JobReport) -> str:
    return f"{clean(r.source_email or r.source, 120)} → {clean(r.target_email or r.target, 120)}"


def _outcome(r: JobReport) -> str:
    if _is_full(r):
        return "full"
    if r.status in ("failed", "interrupted"):
        return "interrupted"
    if r.dry_run or r.status == "dry-run":
        return "dry_run"
    if r.totals.failed > 0:
        return "partial"
    return "problems" if r.status == "partial" else "ok"


def job_subject(r: JobReport, lang: str = "en") -> str:
    t, outcome = i18n.strings(lang), _outcome(r)
    key = i18n.plural_key(lang, "subject_partial", r.totals.failed) if outcome == "partial" else f"subject_{outcome}"
    return t[key].format(n=i18n.fmt_int(r.totals.failed, lang), route=_route(r))


def _job_doc(r: JobReport, lang: str) -> _Doc:
    t, outcome = i18n.strings(lang), _outcome(r)
    n = lambda v: i18n.fmt_int(v, lang)  # noqa: E731
    failed = r.totals.failed
    headline = (i18n.tr_n(lang, f"headline_{outcome}", failed) if outcome in ("partial", "full")
                else t[f"headline_{outcome}"])
    facts = [
        (t["label_from"], clean(r.source_email or r.source) + (f" ({clean(r.source)})" if r.source_email else "")),
        (t["label_to"], clean(r.target_email or r.target) + (f" ({clean(r.target)})" if r.target_email else "")),
        (t["label_started"], i18n.fmt_datetime(r.started_at, lang)),
        (t["label_finished"], i18n.fmt_datetime(r.finished_at, lang)),
        (t["label_duration"], i18n.fmt_duration(r.duration_s, lang)),
        (t["label_status"], _status_text(r, lang)),
        (t["label_job"], clean(r.job_id)),
    ]
    if r.totals.restored:
        facts.append((t["label_restored"], t["restored_text"].format(n=n(r.totals.restored))))
    if r.error:
        message, hint = _error_text(r, lang)
        facts.append((t["label_error"], message))
        if hint:
            facts.append((t["label_hint"], hint))
    rows, notes = [], []
    for f in r.folders:
        name = clean(f.source, 200)
        if f.target is not None and f.target != f.source:
            name += f" → {clean(f.target, 200)}"
        note = _note(clean(f.note, 200), lang) if f.note else None  # translated after cleaning: keeps NBSPs
        if f.target is None:
            note = f"{t['not_imported']}{i18n.colon(lang)} {note}" if note else t["not_imported"]
        rows.append([name, n(f.copied), n(f.skipped_duplicates), n(f.failed)])
        notes.append(note)
    tot = r.totals
    doc = _Doc(
        lang=lang, subject=job_subject(r, lang), headline=headline, outcome=outcome, facts=facts,
        columns=[t["col_folder"], t["col_copied"], t["col_skipped"], t["col_failed"]],
        rows=rows, notes=notes,
        total=[t["total"], n(tot.copied), n(tot.skipped_duplicates), n(tot.failed)],
        table_note=t["skipped_note"] if tot.skipped_duplicates else (None if rows else t["no_folders"]),
    )
    failures = r.failures()
    if failures:
        lines = [_failure_line(x, lang) for x in failures[:MAX_FAILURES]]
        if len(failures) > MAX_FAILURES:
            lines.append(t["failures_more"].format(n=n(len(failures) - MAX_FAILURES)))
        doc.sections.append((t["failures_title"], lines))
    if r.rerun_command:
        doc.command = (t["rerun_title"], t["rerun_text"], clean(r.rerun_command, 2000))
    return doc


def _failure_line(x: Failure, lang: str) -> str:
    t = i18n.strings(lang)
    parts = [clean(x.folder, 200)]
    if x.uid is not None:
        parts.append(t["failure_uid"].format(uid=x.uid))
    if x.subject:
        parts.append(i18n.quote(clean(x.subject, 120), lang))
    if x.size is not None:
        parts.append(i18n.fmt_size(x.size, lang))
    return f"{', '.join(parts)}{i18n.colon(lang)} {_reason(clean(x.reason, 400), lang)}"


def _batch_doc(reports: Sequence[JobReport], lang: str) -> _Doc:
    t = i18n.strings(lang)
    n = lambda v: i18n.fmt_int(v, lang)  # noqa: E731
    outcomes = [_outcome(r) for r in reports]
    with_failures = sum(o in ("partial", "problems") for o in outcomes)
    interrupted = outcomes.count("interrupted") + outcomes.count("full")
    mailboxes = i18n.tr_n(lang, "batch_mailboxes", len(reports))
    issues = []
    if with_failures:
        issues.append(i18n.tr_n(lang, "batch_with_failures", with_failures))
    if interrupted:
        issues.append(i18n.tr_n(lang, "batch_interrupted", interrupted))
    if issues:
        subject = t["batch_subject_issues"].format(mailboxes=mailboxes, issues=", ".join(issues))
    else:
        subject = t["batch_subject_ok"].format(mailboxes=mailboxes)
    starts = [r.started_at for r in reports]
    ends = [r.finished_at for r in reports if r.finished_at is not None]
    facts = [
        (t["label_started"], i18n.fmt_datetime(min(starts) if starts else None, lang)),
        (t["label_finished"], i18n.fmt_datetime(max(ends) if ends else None, lang)),
    ]
    rows = [[_route(r), _status_text(r, lang), n(r.totals.copied),
             n(r.totals.skipped_duplicates), n(r.totals.failed)] for r in reports]
    total = [t["total"], "", n(sum(r.totals.copied for r in reports)),
             n(sum(r.totals.skipped_duplicates for r in reports)), n(sum(r.totals.failed for r in reports))]
    doc = _Doc(
        lang=lang, subject=subject, headline=t["batch_headline_issues" if issues else "batch_headline_ok"],
        outcome="interrupted" if interrupted else ("partial" if with_failures else "ok"), facts=facts,
        columns=[t["col_mailbox"], t["col_status"], t["col_copied"], t["col_skipped"], t["col_failed"]],
        rows=rows, notes=[None] * len(rows), total=total, numeric_from=2,
        table_note=t["skipped_note"] if any(r.totals.skipped_duplicates for r in reports) else None,
    )
    errors = []
    for r in reports:
        if r.error:
            message, hint = _error_text(r, lang)
            errors.append(f"{_route(r)}{i18n.colon(lang)} {message}" + (f" ({hint})" if hint else ""))
    if errors:
        doc.sections.append((t["batch_errors_title"], errors))
    return doc


# --- rendering ---------------------------------------------------------------------------


def render_text(doc: _Doc) -> str:
    t = i18n.strings(doc.lang)
    out = [doc.headline, ""]
    colon = i18n.colon(doc.lang)
    width = max(len(k) for k, _ in doc.facts) + len(colon)
    out += [f"{(k + colon).ljust(width)}  {v}" for k, v in doc.facts]
    if doc.rows:
        table = [doc.columns, *doc.rows] + ([doc.total] if doc.total else [])
        widths = [max(len(row[i]) for row in table) for i in range(len(doc.columns))]

        def line(row: list[str]) -> str:
            cells = [c.rjust(w) if i >= doc.numeric_from else c.ljust(w) for i, (c, w) in
                     enumerate(zip(row, widths, strict=True))]
            return "  ".join(cells).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        out += ["", line(doc.columns), rule]
        for row, note in zip(doc.rows, doc.notes, strict=True):
            out.append(line(row))
            if note:
                out.append(f"  ({note})")
        if doc.total:
            out += [rule, line(doc.total)]
    if doc.table_note:
        out += ["", doc.table_note]
    for title, lines in doc.sections:
        out += ["", title + colon] + [f"- {x}" for x in lines]
    if doc.command:
        title, text, cmd = doc.command
        out += ["", title + colon, text, "", f"    {cmd}"]
    out += ["", "-- ", t["footer"], ""]
    return "\n".join(out)


_TD = "padding:6px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top;"


def render_html(doc: _Doc) -> str:
    e = html.escape
    t = i18n.strings(doc.lang)
    colour = _COLOURS.get(doc.outcome, "#57606a")
    facts = "".join(
        f'<tr><td style="padding:2px 16px 2px 0;color:#57606a;white-space:nowrap;vertical-align:top;">{e(k)}</td>'
        f'<td style="padding:2px 0;">{e(v)}</td></tr>' for k, v in doc.facts)
    parts = [
        f'<!DOCTYPE html><html lang="{e(doc.lang)}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(doc.subject)}</title></head>',
        '<body style="margin:0;padding:16px;background:#f6f8fa;">',
        '<div style="max-width:720px;margin:0 auto;background:#ffffff;border:1px solid #d0d7de;'
        'font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.5;color:#1f2328;">',
        f'<div style="padding:16px 20px;border-left:6px solid {colour};">'
        f'<p style="margin:0;font-size:17px;font-weight:bold;">{e(doc.headline)}</p></div>',
        '<div style="padding:8px 20px 20px 20px;">',
        f'<table role="presentation" cellpadding="0" cellspacing="0" style="border-collapse:collapse;'
        f'margin:8px 0 16px 0;">{facts}</table>',
    ]
    if doc.rows:
        body = []
        for row, note in zip(doc.rows, doc.notes, strict=True):
            sub = f'<br><span style="color:#57606a;font-size:12px;">{e(note)}</span>' if note else ""
            body.append(f"<tr>{_cells(doc, row, 'td', first_extra=sub)}</tr>")
        if doc.total:
            body.append(f"<tr>{_cells(doc, doc.total, 'td', 'font-weight:bold;border-top:2px solid #d0d7de;')}</tr>")
        parts.append(
            '<table cellpadding="0" cellspacing="0" style="border-collapse:collapse;width:100%;">'
            f"<thead><tr>{_cells(doc, doc.columns, 'th', 'background:#f6f8fa;font-weight:bold;')}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")
    if doc.table_note:
        parts.append(f'<p style="margin:12px 0 0 0;color:#57606a;font-size:13px;">{e(doc.table_note)}</p>')
    for title, lines in doc.sections:
        items = "".join(f'<li style="margin:2px 0;">{e(x)}</li>' for x in lines)
        parts.append(f'<p style="margin:20px 0 4px 0;font-weight:bold;">{e(title)}</p>'
                     f'<ul style="margin:0;padding-left:20px;">{items}</ul>')
    if doc.command:
        title, text, cmd = doc.command
        parts.append(f'<p style="margin:20px 0 4px 0;font-weight:bold;">{e(title)}</p><p style="margin:0 0 6px 0;">'
                     f'{e(text)}</p><pre style="margin:0;padding:10px;background:#f6f8fa;border:1px solid #d0d7de;'
                     f'font-family:Consolas,Menlo,monospace;font-size:13px;white-space:pre-wrap;word-break:break-all;">'
                     f'{e(cmd)}</pre>')
    parts.append(f'</div><div style="padding:12px 20px;border-top:1px solid #d0d7de;color:#57606a;font-size:12px;">'
                 f'{e(t["footer"])}</div></div></body></html>')
    return "\n".join(parts) + "\n"


def _cells(doc: _Doc, row: list[str], tag: str, extra: str = "", first_extra: str = "") -> str:
    out = []
    for i, c in enumerate(row):
        style = _TD + extra
        if i >= doc.numeric_from:
            style += "text-align:right;white-space:nowrap;"
            # a non-zero "failed" count (always the last column) is shown in red
            if tag == "td" and i == len(row) - 1 and c.strip("0"):
                style += "color:#cf222e;font-weight:bold;"
        else:
            style += "text-align:left;word-break:break-word;"
        out.append(f'<{tag} style="{style}">{html.escape(c)}{first_extra if i == 0 else ""}</{tag}>')
    return "".join(out)


# --- the message -------------------------------------------------------------------------


def _message(doc: _Doc, *, sender: str, recipients: Sequence[str], extra: dict[str, str]) -> EmailMessage:
    if not recipients:
        raise UsageError("the confirmation mail has no recipients", hint="give a source/target address or --notify")
    msg = EmailMessage(policy=SMTP)
    subject = clean(doc.subject, 400)
    if subject.isascii():
        msg["Subject"] = subject
    else:
        # Encode it ourselves: the policy's folder can break after a space next to an encoded
        # word, which readers then show as a double space ("alice@example.com  → bob").
        msg.set_raw("Subject", Header(subject, "utf-8", header_name="Subject").encode())
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(utcnow())
    domain = parseaddr(sender)[1].rpartition("@")[2] or "mailmigrate.invalid"
    msg["Message-ID"] = make_msgid("mailmigrate", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
    msg["X-Auto-Response-Suppress"] = "All"  # the same for Exchange/Outlook
    for k, v in extra.items():
        msg[k] = clean(v, 200)
    # quoted-printable: safe for servers without 8BITMIME and still readable in raw form
    msg.set_content(render_text(doc), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(render_html(doc), subtype="html", charset="utf-8", cte="quoted-printable")
    msg["Content-Language"] = doc.lang  # after set_content, which clears Content-* headers
    return msg


def compose_job_mail(report: JobReport, *, lang: str = "en", sender: str, recipients: list[str]) -> EmailMessage:
    """The confirmation mail for one finished (or interrupted) job."""
    lang = i18n.check_lang(lang)
    doc = _job_doc(report, lang)
    return _message(doc, sender=sender, recipients=recipients,
                    extra={"X-Mailmigrate-Job": report.job_id, "X-Mailmigrate-Status": report.status})


def compose_batch_mail(reports: Sequence[JobReport], *, lang: str = "en", sender: str,
                       recipients: list[str]) -> EmailMessage:
    """One summary mail for a whole batch: a line per row (mailbox), status and counts."""
    lang = i18n.check_lang(lang)
    return _message(_batch_doc(list(reports), lang), sender=sender, recipients=recipients, extra={})


compose_batch = compose_batch_mail  # the name used in the issue
