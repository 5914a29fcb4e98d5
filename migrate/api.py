"""The seams the CLI (and the batch runner) call: build sides, run a job, write the report.

Jobs are driven through the engine's API (``migrate.engine``: ``start`` -> ``JobHandle``, typed
events); ``start_import`` is that API from user options, ``run_import`` the CLI's whole import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

# Only what the dataclass below needs is imported here: the engine, the sides and the mail are
# imported where first used, so that ``import migrate.api`` (the service, the batch runner, the
# CLI's option checks) does not pay for all of them. The CLI imports the engine itself while the
# logins run (cli.py, ``import_``).
if TYPE_CHECKING:
    from .engine import JobHandle, JobSpec, events
    from .engine.progress import Progress
    from .notify.options import NotifyOptions
    from .report import JobReport
    from .sides import Side, SideOptions
    from .store.location import PgJournal


@dataclass
class ImportRequest:
    source: SideOptions
    target: SideOptions
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    map_folder: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    journal: Path | PgJournal | None = None  # a SQLite file, or a namespace of a PostgreSQL database
    report_path: Path | None = None
    connections: int = 4
    retries: int = 8
    retry_base: float = 1.0
    batch_bytes: int = 4_000_000
    batch_count: int = 100
    rerun_command: str | None = None
    progress: bool = True
    notify: NotifyOptions | None = None
    gmail_single_copy: bool = False
    force: bool = False  # copy even when the fit check says the target is too small
    # Where daily budgets are counted (default: beside a journal file; a PgJournal's database).
    budget_store: Path | PgJournal | None = None


def sample_mailbox() -> Path:
    """The bundled sample Maildir (``samples/demo`` in a checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "samples" / "demo", here.parent / "samples" / "demo"):
        if candidate.is_dir():
            return candidate
    from .errors import UsageError
    raise UsageError("the bundled sample mailbox is missing", hint="reinstall mailmigrate from a full checkout")


def spec_for(req: ImportRequest, src: Side, dst: Side) -> JobSpec:
    from .engine import JobSpec
    from .engine.budget import daily_limits
    from .journal import default_journal_path, job_id_for
    from .store.location import resolve

    caps = [c for c in (src.connection_cap, dst.connection_cap) if c]
    connections = min([req.connections, *caps])
    src_quirks, dst_quirks = src.hooks.quirks, dst.hooks.quirks
    exclude = [*req.exclude, *src_quirks.source_skip_folders]
    rate = dst_quirks.max_messages_per_second
    batch_count = min(req.batch_count, max(1, int(rate))) if rate else req.batch_count
    journal_path = resolve(req.journal or default_journal_path(dst.label))
    if src.uid_book is not None:  # a source Maildir keeps its UIDs in this job's journal
        src.uid_book.journal_path = journal_path
    return JobSpec(
        source_label=src.label, target_label=dst.label, src_factory=src.factory, dst_factory=dst.factory,
        job_id=job_id_for(src.label, dst.label),
        journal_path=journal_path,
        source_email=src.email, target_email=dst.email, dry_run=req.dry_run, include=req.include,
        exclude=exclude, map_folder=req.map_folder, connections=connections, retries=req.retries,
        retry_base=req.retry_base, batch_bytes=req.batch_bytes, batch_count=batch_count, append_limit=dst.append_limit,
        flag_filter=dst.hooks.filter_flags if dst_quirks.drop_flags else None,
        prepare_body=dst.hooks.prepare_append if dst_quirks.ensure_trailing_crlf else None,
        target_special=dst.special_folders, rerun_command=req.rerun_command,
        reserved_folders=list(dst_quirks.reserved_folders), max_rate=rate,
        gmail_single_copy=req.gmail_single_copy, source_hooks=src.hooks, target_hooks=dst.hooks,
        source_folder_cap=src_quirks.folder_count_cap if src.at_preset_host else None,
        source_export_host=src_quirks.export_host, force=req.force, budgets=daily_limits(src, dst),
        budget_store=req.budget_store)


def _sides(req: ImportRequest, sides: tuple[Side, Side] | None) -> tuple[Side, Side]:
    if sides is None:
        from .gate import WriteGate
        from .sides import build_side

        gate = WriteGate(open=not req.dry_run)
        sides = (build_side(req.source, gate), build_side(req.target, gate))
    if sides[1].gate.open == req.dry_run:
        raise ValueError(f"sides built with a {sides[1].gate!r} for a {'dry' if req.dry_run else 'real'} run")
    return sides


def start_import(req: ImportRequest, *, on_event: Callable[[events.Event], None] | None = None,
                 stream: bool = False, progress: Progress | None = None,
                 sides: tuple[Side, Side] | None = None) -> JobHandle:
    """Start the import ``req`` describes and return its handle (``migrate.engine.JobHandle``:
    ``cancel()``, ``state``, ``report``, ``wait()``, ``events()``). The job only: the report file
    and the confirmation mail are ``run_import``'s; the start mail of a long job goes from here."""
    from .engine import start
    from .engine.progress import Progress

    src, dst = _sides(req, sides)
    spec = spec_for(req, src, dst)
    progress = progress or Progress()
    on_event = with_start_mail(on_event, req, src, dst, spec, progress)
    return start(spec, on_event=on_event, stream=stream, progress=progress)


class StartMail:
    """An ``on_event`` hook: when the fit check's finish time (under a daily budget) or the first
    progress estimate says the job takes longer than ``migrate.notify.start.threshold_s()``, the
    job's confirmation-mail recipients get one "your import has started" mail, once per job (the
    journal records it). It is sent in the job's thread, before or while copying: one short mail."""

    def __init__(self, req: ImportRequest, src: Side, dst: Side, spec: JobSpec, progress: Progress) -> None:
        from .notify.start import threshold_s

        self.req, self.src, self.dst, self.spec, self.progress = req, src, dst, spec, progress
        self.threshold = threshold_s()
        self.decided = False
        self.note: str | None = None  # what happened to the start mail

    def __call__(self, event: events.Event) -> None:
        from .engine import events
        from .notify.start import from_fit, from_progress, is_long

        if self.decided:
            return
        if isinstance(event, events.FitChecked):
            if event.fit.outcome == "does_not_fit" and not self.spec.force:
                self.decided = True  # the job ends here
                return
            windows = self.progress.budget_windows() if self.progress.budget_windows is not None else []
            estimate = from_fit(event.fit, windows)
            if not is_long(estimate, self.threshold):
                return  # the first progress estimate decides
        elif isinstance(event, events.Progress):
            estimate = from_progress(self.progress.snapshot())
            if estimate is None:
                return  # no rate measured yet
        else:
            return
        self.decided = True
        if is_long(estimate, self.threshold):
            assert estimate is not None
            self.note = self._send(estimate)

    def _send(self, estimate: object) -> str:
        from .accounts import resolve_secret
        from .errors import MigrateError
        from .notify.deliver import _settings, smtp_plan
        from .notify.send import recipients_for
        from .notify.start import deliver_start
        from .report import JobReport, utcnow

        opts = self.req.notify
        assert opts is not None
        spec, dst = self.spec, self.dst
        try:
            plan = smtp_plan(opts, preset_smtp=dst.smtp, target_login=dst.login,
                             target_password_ref=self.req.target.password)
            if plan is None:
                return "start mail: not sent (no SMTP server known for the target)"
            recipients = recipients_for(JobReport(job_id=spec.job_id, source=spec.source_label,
                                                  target=spec.target_label, source_email=spec.source_email,
                                                  target_email=spec.target_email, started_at=utcnow()), opts.extra)
            sender = opts.sender or plan.username or (recipients[-1] if recipients else "")
            if "@" not in sender and recipients:
                sender = recipients[-1]

            def settings():  # type: ignore[no-untyped-def]
                if opts.smtp_host and opts.smtp_password:
                    return _settings(plan, resolve_secret(opts.smtp_password, what="--smtp-password"))
                if not opts.smtp_host:
                    return _settings(plan, dst.password, dst.oauth_token)  # the target's own sign-in
                return _settings(plan, None)

            return deliver_start(spec.journal_path, spec.job_id, source=spec.source_email or spec.source_label,
                                 target=spec.target_email or spec.target_label, recipients=recipients,
                                 lang=opts.lang, sender=sender, estimate=estimate,  # type: ignore[arg-type]
                                 settings=settings, plan=plan)
        except MigrateError as exc:
            return f"start mail: NOT sent ({exc.message})"


def with_start_mail(on_event: Callable[[events.Event], None] | None, req: ImportRequest, src: Side, dst: Side,
                    spec: JobSpec, progress: Progress) -> Callable[[events.Event], None] | None:
    """``on_event`` and, for a real run that mails (``req.notify``), the start-mail hook."""
    opts = req.notify
    if opts is None or not opts.enabled or opts.when == "never" or req.dry_run:
        return on_event
    hook = StartMail(req, src, dst, spec, progress)
    if on_event is None:
        return hook

    def both(event: events.Event) -> None:
        hook(event)
        on_event(event)
    return both


def run_import(req: ImportRequest, progress: Progress | None = None,
               sides: tuple[Side, Side] | None = None,
               on_event: Callable[[events.Event], None] | None = None) -> JobReport:
    """Run one import. ``sides``: already built from ``req`` with a gate closed in a dry run (the
    CLI builds them first, to start the logins while it imports the engine). Ctrl-C stops the job
    cooperatively (within a batch; the report says "interrupted"; a second Ctrl-C propagates).

    Every write passes the target side's gate (``migrate.gate``): folders, messages and flags in
    the target, the journal (the engine), the report and the confirmation mail (here)."""
    from .engine import start
    from .engine.progress import Progress
    from .ui import live_progress

    src, dst = _sides(req, sides)
    gate = dst.gate
    spec = spec_for(req, src, dst)
    progress = progress or Progress()
    try:
        with live_progress(progress, req.progress):
            handle = start(spec, on_event=with_start_mail(on_event, req, src, dst, spec, progress), progress=progress)
            try:
                report = handle.wait()
            except KeyboardInterrupt:
                handle.cancel("interrupted by the user")
                report = handle.wait()
    finally:
        src.factory.discard()
        dst.factory.discard()
    if req.notify is not None and gate.allow("mail", f"confirmation mail of job {spec.job_id}"):
        report.notification = notify_job(req, src, dst, spec, report)
    if req.report_path and gate.allow("report", req.report_path):  # --dry-run writes nothing anywhere
        report.write_json(req.report_path)
    return report


def notify_job(req: ImportRequest, src: Side, dst: Side, spec: JobSpec, report: JobReport) -> str:
    """Send the confirmation mail; never raises for a mail problem (the migration is done)."""
    opts = req.notify
    assert opts is not None
    if not opts.enabled:
        return "confirmation mail: off (--no-notify)"
    if report.status == "waiting":  # not done: the run that finishes the job sends it
        return "confirmation mail: not sent yet (the job waits for a daily budget)"
    from .accounts import resolve_secret
    from .errors import MigrateError
    from .notify.deliver import deliver, skip_reason, smtp_plan

    if (skip := skip_reason(opts, spec.journal_path, spec.job_id, [report])) is not None:
        return skip  # --notify-when: before any SMTP password is looked up
    try:
        plan = smtp_plan(opts, preset_smtp=dst.smtp, target_login=dst.login,
                         target_password_ref=req.target.password)
        password = None
        token = None
        if plan is not None and opts.smtp_host and opts.smtp_password:
            password = resolve_secret(opts.smtp_password, what="--smtp-password")
        elif plan is not None and not opts.smtp_host:
            password, token = dst.password, dst.oauth_token  # the target's own sign-in
        return deliver(spec.journal_path, "job", spec.job_id, [report], opts, plan, password=password, token=token)
    except MigrateError as exc:
        return f"confirmation mail: NOT sent ({exc.message})"
