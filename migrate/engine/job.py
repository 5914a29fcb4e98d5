"""Run one migration job: plan, read every folder, check the fit, create the folders, copy, set the status.

The pieces (each its own module): ``planning`` decides where each folder goes and creates what
the target lacks; ``pool`` reads (scans) and copies the folders on ``connections`` workers and
retries what a dropped connection or throttling interrupted (``RetryPolicy``); ``folder_sync``
copies one folder; ``fit`` decides whether the job fits the target, after every folder was read
and before the first write to the target (a folder the target lacks reads as empty until then);
``budget`` keeps the providers' daily budgets (a job that reaches one ends "waiting").
This module orchestrates them and turns what happened into the report's status and exit code.
A label source's \\All folder (Gmail's All Mail, ``ProviderHooks.label_tree``) runs last, after every label folder, so that it only adds what no label holds.

A dry run is the same path with the job's write gate closed (``migrate.gate``): both sides are
read, folders that would be created read as empty, nothing is fetched or appended, and the
journal is a private in-memory one, so nothing is written anywhere. Each folder then says "would
copy N, already present M".

Events (``migrate.engine.events``) go to ``emit``: see ``migrate.engine.api`` for the driver.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..endpoint import Endpoint
from ..errors import ExitCode, MigrateError
from ..folders import FolderMapping, FolderPlan, check_patterns
from ..gate import dry_target, job_gate
from ..journal import Journal
from ..models import FolderStatus, Quota
from ..report import ErrorInfo, FitReport, FolderReport, JobReport, utcnow
from ..store import FolderMapRow, open_store
from ..store.location import JournalLocation, budget_location, is_pg, job_guard, locks_for, read_folder_map
from . import events
from .budget import BudgetReached, DailyBudgets, DailyLimit
from .fit import DoesNotFit, FolderSizes, Limits
from .fit import check as check_fit
from .folder_sync import ByteBudget, Cancelled, SyncSettings, target_as_recorded
from .locks import Locks, NoLocks
from .memory import tune_malloc
from .planning import FolderCreator, Listing, count_refused, plan_job_folders
from .pool import NOT_STARTED, STOPPED, Conns, FolderPool, Group, Journals, Pacer, Part, RetryPolicy
from .progress import Progress
from .quota import count_not_copied

if TYPE_CHECKING:
    from ..providers import ProviderHooks

EndpointFactory = Callable[[], Endpoint]
log = logging.getLogger(__name__)


@dataclass
class JobSpec:
    source_label: str
    target_label: str
    src_factory: EndpointFactory
    dst_factory: EndpointFactory
    job_id: str
    journal_path: JournalLocation  # a SQLite file's Path, or a PgJournal (``migrate.store.location``)
    source_email: str | None = None
    target_email: str | None = None
    dry_run: bool = False
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    map_folder: dict[str, str] = field(default_factory=dict)
    connections: int = 4
    batch_bytes: int = 4_000_000
    batch_count: int = 100
    retries: int = 8
    retry_base: float = 1.0  # seconds; doubled per attempt, capped at 60
    append_limit: int | None = None  # provider preset cap (APPENDLIMIT is read from the server)
    flag_filter: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None
    prepare_body: Callable[[bytes], bytes] | None = None
    target_special: dict[str, str] = field(default_factory=dict)
    gmail_single_copy: bool = False  # keep one copy per message across labels (first label wins)
    reserved_folders: Sequence[str] = ()  # target names the provider keeps for itself (O365 "Files")
    max_rate: float | None = None  # messages per second the target accepts (provider preset)
    source_folder_cap: int | None = None  # the source shows at most this many messages per folder (Yahoo)
    source_export_host: str | None = None  # ... and this read-only host shows them all
    source_hooks: ProviderHooks | None = None  # the sides' provider behaviour (None: plain IMAP)
    target_hooks: ProviderHooks | None = None
    rerun_command: str | None = None
    force: bool = False  # copy even when the fit check says it does not fit
    budgets: Sequence[DailyLimit] = ()  # the accounts' daily budgets (``migrate.engine.budget.daily_limits``)
    # Where they are counted; default: ``_budgets.sqlite`` beside a journal file, the budgets'
    # namespace of a PgJournal's database (``migrate.store.location.budget_location``).
    budget_store: JournalLocation | None = None


class Job:
    """One run of a job. ``emit`` receives the job's events (``migrate.engine.events``) one at a
    time, all but ``JobDone``, which the driver (``migrate.engine.api.JobHandle``) sends."""

    def __init__(self, spec: JobSpec, progress: Progress | None = None,
                 emit: Callable[[events.Event], None] | None = None) -> None:
        self.spec = spec
        self.progress = progress or Progress()
        self.cancel = threading.Event()  # set from outside (Ctrl-C, batch) or on a fatal error
        self._done = threading.Event()  # the run is over (stops the progress ticker)
        self._stopped_early = False
        self._stop_message: str | None = None
        self.report = JobReport(job_id=spec.job_id, source=spec.source_label, target=spec.target_label,
                                source_email=spec.source_email, target_email=spec.target_email,
                                started_at=utcnow(), dry_run=spec.dry_run, rerun_command=spec.rerun_command,
                                journal=None if spec.dry_run else str(spec.journal_path))
        self._statuses: dict[str, FolderStatus] = {}
        self._target_statuses: dict[str, FolderStatus] = {}
        self._refused: dict[str, str] = {}
        self._append_limit: int | None = None
        self._server_append_limit: int | None = None  # the target's APPENDLIMIT
        self._quota: Quota | None = None
        self._listing: Listing | None = None
        self._recorded: dict[str, str] = {}
        store = spec.budget_store or budget_location(spec.journal_path)
        self._daily = DailyBudgets(spec.budgets, store, dry_run=spec.dry_run) if spec.budgets else None
        if self._daily:
            self.progress.budget_windows = self._daily.windows  # the ETA counts the budget windows ahead
        self._pace = Pacer(spec.max_rate) if spec.max_rate else None
        self._locks: Locks | None = None  # a real run's (``locks_for``), taken with the job guard
        # Message bytes in memory across all workers: two batches per connection.
        self._budget = ByteBudget(2 * spec.batch_bytes * max(1, spec.connections))
        self._retry = RetryPolicy(spec.retries, spec.retry_base, self.cancel)
        self._fatal: MigrateError | None = None
        self._lock = threading.Lock()
        self._emit = emit
        self._emit_lock = threading.Lock()
        self._mappings: dict[str, FolderMapping] = {}
        self._folders_done: set[str] = set()
        # Planned folders the target lacks: they read as empty until created (after the fit check;
        # in a dry run never: the closed gate keeps them from being created).
        self._pending: set[str] = set()
        self._gate = job_gate(spec)
        self._src_factory: EndpointFactory = spec.src_factory
        self._dst_factory: EndpointFactory = spec.dst_factory
        if emit is not None:
            self.progress.on_change = self._progressed
            self.progress.on_failure = lambda folder, uid, reason: self._send(events.MessageFailed(folder, uid, reason))

    def stop(self, message: str | None = None) -> None:
        """Stop cooperatively: every worker ends within its current batch, what was copied stays
        copied and is reported (status "interrupted"; a re-run resumes). ``message``: the
        report's error message (default "the job was stopped before it finished")."""
        if message and self._stop_message is None:
            self._stop_message = message
        self.cancel.set()

    # --- events ---------------------------------------------------------------------------

    def _send(self, event: events.Event) -> None:
        if self._emit is None:
            return
        with self._emit_lock:  # one event at a time, whichever thread it comes from
            try:
                self._emit(event)
            except Exception:  # noqa: BLE001 - a listener's bug never stops the job
                log.exception("event listener failed on %s", type(event).__name__)

    def _progressed(self, progress: Progress) -> None:
        c = progress.counters()
        self._send(events.Progress(copied=c["copied"], bytes=c["bytes"], total_messages=c["total_messages"],
                                   total_bytes=c["total_bytes"], current_folders=progress.current_folders(),
                                   done_messages=c["done_messages"], duplicates=c["duplicates"],
                                   failed=c["failed"]))

    def _folder_done(self, fr: FolderReport) -> None:
        """A folder is over (copied, failed, skipped, unchanged or stopped): once per folder."""
        with self._lock:
            if fr.source in self._folders_done:
                return
            self._folders_done.add(fr.source)
            m = self._mappings.get(fr.source)
            if self.spec.dry_run and m is not None:
                if m.target is None or not m.selectable:
                    fr.note = fr.note or m.reason
                elif fr.note is None:
                    fr.note = f"{m.reason}; would copy {fr.copied + fr.restored}, already present {fr.skipped_duplicates}"
            snapshot = copy.deepcopy(fr)
        self._send(events.FolderDone(snapshot))

    # --- entry ----------------------------------------------------------------------------

    def run(self) -> JobReport:
        t0 = time.monotonic()
        tune_malloc()
        # Every write passes the job's gate (``migrate.gate``). Closed (a dry run): the journal is
        # a private in-memory one, the target's writes are recorded and folders that would be
        # created read as empty; the rest is the normal path. In every run a planned folder the
        # target lacks reads as empty until it is created (``_pending``).
        real = self._gate.allow("journal", self.spec.journal_path)
        gate, pending, factory = self._gate, self._pending, self.spec.dst_factory
        self._dst_factory = lambda: dry_target(factory(), gate, pending)
        journals = Journals(self.spec.journal_path if real else None)
        journal = journals.open()
        guard = None
        ticker: threading.Thread | None = None
        run_id: int | None = None
        if real:
            guard = job_guard(self.spec.journal_path, self.spec.job_id)
            try:
                guard.acquire()
                # One set of locks for the whole run: a PgJournal's pooled lock connections are
                # all given back when it is closed, at the end of the run.
                self._locks = locks_for(self.spec.journal_path)
                if self._pace is not None and is_pg(self.spec.journal_path):
                    # Other workers may upload into this mailbox too: its pace is kept in the database.
                    from ..store.pg_pace import SharedPacer

                    self._pace = SharedPacer(self.spec.journal_path, self._pace.rate)  # type: ignore[arg-type]
                run_id = journal.start_job(self.spec.job_id, self.spec.source_label, self.spec.target_label,
                                           source_email=self.spec.source_email, target_email=self.spec.target_email,
                                           command=self.spec.rerun_command)
            except BaseException:
                if self._locks is not None:
                    self._locks.close()
                guard.release()
                journal.close()
                raise
            ticker = threading.Thread(target=self._tick, args=(run_id,), daemon=True)
            ticker.start()
        try:
            self._run(journal, journals)
        except MigrateError as exc:
            self._set_error(exc)
        except Cancelled:
            pass  # stopped while waiting to retry: reported as stopped (``_finish``)
        except KeyboardInterrupt:
            self.cancel.set()
            self.report.error = ErrorInfo(reference="interrupted", message="interrupted by the user",
                                          hint="run the same command again: the job resumes")
            self.report.exit_code = int(ExitCode.CONNECTION)
        finally:
            self._stopped_early = self.cancel.is_set() and self._fatal is None
            self._done.set()
            report = self._finish(t0, journal if real else None, run_id)
            if ticker is not None:
                ticker.join()  # its journal connection closed too: the journal is left whole (no -wal)
            if self._locks is not None:
                self._locks.close()
            if guard is not None:
                guard.release()
            journal.close()
            for fr in report.folders:  # stopped before they began: over too
                self._folder_done(fr)
        return report

    def _tick(self, run_id: int) -> None:
        """Publish progress to the journal for ``mailmigrate status --follow``."""
        j = open_store(self.spec.journal_path)
        try:
            while not self._done.wait(1.0):
                with contextlib.suppress(Exception):
                    j.set_progress(run_id, self.progress.snapshot())
        finally:
            j.close()

    def _set_error(self, exc: MigrateError) -> None:
        self.report.error = ErrorInfo(reference=exc.reference, message=exc.message, hint=exc.hint)
        if isinstance(exc, BudgetReached):
            self.report.resume_at = exc.resume_at
        self.report.exit_code = int(exc.exit_code)
        self.report.status = "failed" if self.report.totals.copied == 0 else "interrupted"

    def _finish(self, t0: float, journal: Journal | None, run_id: int | None) -> JobReport:
        r = self.report
        r.finished_at = utcnow()
        r.duration_s = round(time.monotonic() - t0, 3)
        count_not_copied(r)  # a full target: what the started folders did not copy, and why (quota.py)
        r.compute_totals()
        if r.error is None and self._stopped_early:
            r.status, r.exit_code = "interrupted", int(ExitCode.CONNECTION)
            r.error = ErrorInfo(reference="interrupted",
                                message=self._stop_message or "the job was stopped before it finished",
                                hint="run the same command again: the job resumes")
        elif r.error is None:
            if r.dry_run:  # exit 2 when the real run would stop at the fit check
                misfit = r.fit is not None and r.fit.outcome == "does_not_fit" and not self.spec.force
                r.status, r.exit_code = "dry-run", int(ExitCode.USAGE if misfit else ExitCode.OK)
            elif r.totals.failed:
                r.status, r.exit_code = "partial", int(ExitCode.PARTIAL)
            else:
                r.status, r.exit_code = "ok", int(ExitCode.OK)
        elif r.error.reference == BudgetReached.reference:
            r.status, r.exit_code = "waiting", int(ExitCode.CONNECTION)  # goes on at ``resume_at``
        else:
            # "failed": nothing could be done (login refused, server unreachable, does not fit);
            # "interrupted": stopped part way, a re-run resumes.
            nothing = r.totals.copied == 0 and not any(f.skipped_duplicates for f in r.folders)
            r.status = "failed" if r.error.reference in ("login-failed", "usage-error", DoesNotFit.reference) or (
                nothing and r.error.reference in ("connect-failed", "tls-failed")) else "interrupted"
            if not r.exit_code:
                r.exit_code = int(ExitCode.CONNECTION)
        if r.status in ("interrupted", "failed", "waiting"):  # a folder never begun says so, not 0 like a finished one
            why = ("waiting for a daily budget" if r.status == "waiting" else "does not fit the target"
                   if r.error is not None and r.error.reference == DoesNotFit.reference else "the job stopped")
            for fr in r.folders:
                fp = self.progress.folders.get(fr.source)
                if fr.note in (NOT_STARTED, STOPPED) and r.status == "waiting":  # said by the workers
                    fr.note = fr.note.split(":")[0] + f": {why}"
                if fr.target and not fr.note and fp is not None and fp.state in ("pending", "scanning", "scanned") and not (
                        fr.copied or fr.skipped_duplicates or fr.failed or fr.restored):
                    fr.note = f"not started: {why}"
        if journal is not None and run_id is not None:
            self._record_finish(journal, run_id)
        return r

    def _record_finish(self, journal: Journal, run_id: int) -> None:
        """Record the run's end. A journal whose connection dropped (``DatabaseLost``, a
        PostgreSQL journal) gets one fresh connection for it; if that fails too the run stays
        "running" in the journal, the report still says what happened."""
        r = self.report
        with contextlib.suppress(Exception):
            journal.set_progress(run_id, self.progress.snapshot())
        try:
            journal.finish_run(self.spec.job_id, run_id, r.status, r.to_json())
        except MigrateError:
            try:
                fresh = open_store(self.spec.journal_path)
            except MigrateError:
                return
            try:
                fresh.finish_run(self.spec.job_id, run_id, r.status, r.to_json())
            except MigrateError:
                pass
            finally:
                fresh.close()

    # --- planning -------------------------------------------------------------------------

    def _prepare(self, journal: Journal) -> tuple[FolderPlan, dict[str, FolderStatus]]:
        """Plan the folders and read every source folder's status, and the target's limits
        (quota, APPENDLIMIT). Nothing is created yet: a planned folder the target lacks reads as
        empty until the fit check passed (``_create_folders``). Retried like a folder after a
        dropped connection; only a failure of the very first connect is final."""

        def attempt() -> tuple[FolderPlan, dict[str, FolderStatus]]:
            conns = Conns(self._src_factory, self._dst_factory)
            try:
                src, dst = conns.both()
                listing = Listing.read(src, dst)
                # A folder's target is decided once: what earlier runs recorded wins (read only:
                # the dry run reads it too, and writes nothing).
                recorded = read_folder_map(self.spec.journal_path, self.spec.job_id)
                plan = plan_job_folders(listing, include=self.spec.include, exclude=self.spec.exclude,
                                        map_folder=self.spec.map_folder,
                                        target_special=self.spec.target_special or None, recorded=recorded,
                                        source_hooks=self.spec.source_hooks, target_hooks=self.spec.target_hooks)
                check_patterns(plan)  # an --include/--map-folder naming no source folder: exit 2, nothing copied
                self._listing, self._recorded = listing, recorded
                existing = {f.name for f in listing.dst_folders}
                self._pending.update(m.target for m in plan.mappings if m.target and m.target not in existing
                                     and m.target.upper() != "INBOX")
                caps = dst.capabilities()
                self._server_append_limit = caps.append_limit
                limit = caps.append_limit
                if self.spec.append_limit:
                    limit = min(limit, self.spec.append_limit) if limit else self.spec.append_limit
                self._append_limit = limit
                quota = getattr(dst, "quota", None)  # IMAP targets (GETQUOTAROOT); a local one: not known
                self._quota = quota() if quota is not None else None
                statuses = src.statuses([m.source for m in plan.mappings if m.target is not None and m.selectable])
                # The target's side too (one more LIST-STATUS): a folder is settled without a look
                # only when both sides are as the last complete pass left them.
                self._target_statuses = dst.statuses(sorted({m.target for m in plan.mappings
                                                             if m.target is not None and m.selectable}))
                return plan, statuses
            finally:
                conns.reset()

        return self._retry.call(attempt, first_connect_fatal=True, on_retry=lambda exc, delay: self.progress.event(
            f"planning: {exc.reference}, retrying in {delay:.1f}s"))

    def _create_folders(self, journal: Journal, plan: FolderPlan) -> FolderPlan:
        """Create every planned folder the target lacks (after the fit check: the job's first
        write to the target). Returns the plan with each folder's final target (None: refused
        under every name)."""

        def record(pending: list[tuple[str, str, str]]) -> None:
            # Each folder's target is recorded as soon as it is known: every later run reuses it.
            journal.save_folder_map(self.spec.job_id, [FolderMapRow(*r) for r in pending])

        def attempt() -> FolderPlan:
            conns = Conns(self._src_factory, self._dst_factory)
            try:
                created = FolderCreator(conns.dst(), self._listing, reserved=self.spec.reserved_folders,
                                        recorded=self._recorded, record=record,
                                        on_refused=lambda source, why: self.progress.event(f"{source}: {why}"),
                                        ).create(dataclasses.replace(plan, mappings=list(plan.mappings)))
                self.report.renamed_folders = created.renamed
                self._refused = created.refused
                return created.plan
            finally:
                conns.reset()

        final = self._retry.call(attempt, on_retry=lambda exc, delay: self.progress.event(
            f"creating folders: {exc.reference}, retrying in {delay:.1f}s"))
        if self._gate.open:
            self._pending.clear()  # created: from now on every folder is read as it is
        return final

    # --- the fit check ----------------------------------------------------------------------

    def _check_fit(self, groups: list[Group]) -> FitReport:
        """Set what the scan found against the target's limits and the daily budgets
        (``migrate.engine.fit``); stop with ``DoesNotFit`` if it cannot fit, unless forced or dry."""
        folders = []
        for g in groups:
            sc, m = g.scan, g.mapping
            metas = sc.metas
            folders.append(FolderSizes(
                source=m.source, target=m.target, messages=len(metas) or (sc.status.exists if sc.status else 0),
                bytes=sum(x.size for x in metas.values()), copy=[metas[u] for u in sc.likely if u in metas],
                largest=max(metas.values(), key=lambda x: x.size, default=None),
                target_messages=sc.target_status.exists if sc.target_status else 0))
        preset = self.spec.target_hooks.preset if self.spec.target_hooks is not None else None
        limits = Limits(quota=self._quota, append_limit=self._server_append_limit,
                        preset_size_limit=self.spec.append_limit, preset=preset.name if preset else "",
                        provider=preset.short_title if preset else "the target",
                        messages_per_folder=preset.budget.max_messages_per_folder if preset else None,
                        folder_limit_source=f"preset {preset.name}: {preset.budget.source}" if preset else "",
                        budgets=self._daily.usage() if self._daily else (),
                        windows=self._daily.windows() if self._daily else ())
        fit = check_fit(folders, limits)
        fit.forced = fit.outcome == "does_not_fit" and self.spec.force and not self.spec.dry_run
        self.report.fit = fit
        self._send(events.FitChecked(fit))
        if fit.outcome == "does_not_fit" and not self.spec.force and not self.spec.dry_run:
            hint = ("free space on the target or raise its quota, then run the same command again; "
                    "--force copies what fits (the rest fails with its reason)")
            raise DoesNotFit(fit.text, hint=hint)
        return fit

    # --- the run --------------------------------------------------------------------------

    def _run(self, journal: Journal, journals: Journals) -> None:
        plan, statuses = self._prepare(journal)
        sizes = {k: v.exists for k, v in statuses.items()}
        reports: dict[str, FolderReport] = {}
        for m in plan.mappings:
            self._mappings[m.source] = m
            reports[m.source] = FolderReport(source=m.source, target=m.target,
                                             note=None if m.target else m.reason)
            self.progress.add_folder(m.source, m.target)
            if m.target is None or not m.selectable:
                self.progress.folder_state(m.source, "skipped")
        self.report.folders = [reports[m.source] for m in plan.mappings]
        cap = self.spec.source_folder_cap
        for src_name, st in statuses.items():
            if cap and st.exists >= cap:  # looks like data loss to users: say why and what to do
                host = self.spec.source_export_host
                reports[src_name].note = (f"the source shows at most {cap} messages per folder"
                                          + (f"; run again with --source-host {host} to copy the rest" if host else ""))
        for m in plan.mappings:
            self._send(events.FolderPlanned(m.source, m.target, statuses[m.source].exists if m.source in statuses
                                            else 0, m.reason))
        counts = journal.counts(self.spec.job_id)
        work = [m for m in plan.mappings if m.target is not None and m.selectable
                and not self._unchanged(journal, m, statuses.get(m.source), counts, reports[m.source])]
        self._statuses = statuses
        for m in plan.mappings:  # nothing to do: skipped or unchanged
            if m not in work:
                self._folder_done(reports[m.source])
        real = not journals.in_memory
        settings = SyncSettings(
            job_id=self.spec.job_id, journal_path=self.spec.journal_path, batch_bytes=self.spec.batch_bytes,
            batch_count=self.spec.batch_count, append_limit=self._append_limit, flag_filter=self.spec.flag_filter,
            prepare_body=self.spec.prepare_body, cancel=self.cancel, pace=self._pace, budget=self._budget,
            daily=self._daily if real else None, locks=self._locks if real else NoLocks(), gate=self._gate)
        pool = FolderPool(connections=self.spec.connections if real else 1,  # a dry run: one journal
                          src_factory=self._src_factory, dst_factory=self._dst_factory, settings=settings,
                          journals=journals, progress=self.progress, cancel=self.cancel, retry=self._retry,
                          on_folder_done=self._folder_done)

        all_mail = [m for m in work if m.after_labels]
        first = sorted((m for m in work if m not in all_mail), key=lambda m: -sizes.get(m.source, 0))
        self.progress.planned(sizes)
        # Every folder is read before any is copied: the totals are final when copying starts,
        # and the fit check knows what the job will copy before the target is touched.
        parts = pool.scan(pool.parts(first + all_mail, sizes, reports, self._statuses, self._target_statuses))
        self._fatal = self._fatal or pool.fatal
        if self._fatal:
            raise self._fatal
        groups = list({id(p.group): p.group for p in parts}.values())
        self._check_fit(groups)
        work, parts = self._settle_folders(journal, plan, reports, statuses, work, parts)

        def run_pool(mappings: list[FolderMapping], *, all_mail: bool = False) -> None:
            sources = {m.source for m in mappings}
            pool.run([p for p in parts if p.group.mapping.source in sources], all_mail=all_mail)
            self._fatal = self._fatal or pool.fatal

        all_mail = [m for m in work if m.after_labels]
        first = [m for m in work if m not in all_mail]
        if self.spec.gmail_single_copy:
            # One copy per message, first label wins: folders one after the other in plan order
            # (INBOX first), each leaving out what an earlier one holds. Slower, deterministic.
            for m in first:
                if self._fatal or self.cancel.is_set():
                    break
                run_pool([m], all_mail=True)
        else:
            run_pool(first)
        if all_mail and not self._fatal and not self.cancel.is_set():
            run_pool(all_mail, all_mail=True)
        if self._fatal:
            raise self._fatal

    def _settle_folders(self, journal: Journal, planned: FolderPlan, reports: dict[str, FolderReport],
                        statuses: dict[str, FolderStatus], work: list[FolderMapping],
                        parts: list[Part]) -> tuple[list[FolderMapping], list[Part]]:
        """Create the folders (``_create_folders``) and bring the work in line with where each
        folder finally goes: a folder the target refused under every name fails alone."""
        final = {m.source: m for m in self._create_folders(journal, planned).mappings}
        refused_counts = {source: statuses[source].exists if source in statuses else 0 for source in self._refused}
        for source, m in final.items():
            self._mappings[source] = m
            reports[source].target = m.target
        count_refused(self.report.folders, self._refused, refused_counts)
        for source, why in self._refused.items():
            self._send(events.MessageFailed(source, None, f"folder not created: {why}"))
            self.progress.folder_state(source, "failed")
            self._folder_done(reports[source])
        for p in parts:
            p.group.mapping = final[p.group.mapping.source]
        kept = [final[m.source] for m in work if final[m.source].target is not None]
        return kept, [p for p in parts if p.group.mapping.target is not None]

    def _unchanged(self, journal: Journal, m: FolderMapping, st: FolderStatus | None,
                   counts: dict[str, dict[str, int]], report: FolderReport) -> bool:
        """The fast re-run: a folder whose UIDVALIDITY, UIDNEXT, EXISTS and HIGHESTMODSEQ are as
        at the end of the last complete pass, with nothing failed, needs no connection at all."""
        rec = journal.folder(self.spec.job_id, m.source)
        c = counts.get(m.source, {})
        if not (st and rec and rec.complete and rec.target_folder == m.target and not c.get("failed")
                and (rec.uidvalidity, rec.uidnext, rec.exists) == (st.uidvalidity, st.uidnext, st.exists)
                and st.highestmodseq is not None and rec.highestmodseq == st.highestmodseq
                and target_as_recorded(rec, self._target_statuses.get(m.target or ""))):
            return False
        report.source_messages = st.exists
        report.skipped_duplicates = c.get("copied", 0) + c.get("duplicate", 0)
        report.note = report.note or "unchanged"
        self.progress.folder_total(m.source, st.exists)
        self.progress.count(m.source, duplicates=report.skipped_duplicates)
        self.progress.folder_state(m.source, "done")
        return True
