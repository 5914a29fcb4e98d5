"""Run one migration job: plan folders, create them, sync every folder, write the report.

Concurrency: ``connections`` worker threads, each with its own source and target connection
and its own journal connection, take folders from a queue (largest first). Gmail's All Mail runs
last, after every label folder, so that it only adds what no label holds.

Errors are handled per class (``migrate.errors``): a retryable one (dropped connection, timeout,
throttling, expired token, a server restarting) closes that worker's connections, waits (the
server's suggested delay, else exponential backoff with jitter) and redoes the folder, which is
idempotent; a fatal one (login refused, target over quota) stops the job with a hint; a message
error only marks that message failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ..dedupe.keys import key_of
from ..dedupe.ledger import plan_copies
from ..endpoint import Endpoint
from ..errors import (
    ConnectFailed,
    ExitCode,
    FatalError,
    FolderRefused,
    MessageError,
    MigrateError,
    RetryableError,
    Throttled,
)
from ..folders import FolderMapping, FolderPlan, fallback_name, name_candidates, plan_folders
from ..journal import JobGuard, Journal, read_folder_map
from ..models import FolderStatus
from ..report import ErrorInfo, Failure, FolderReport, JobReport, utcnow
from .folder_sync import ByteBudget, Cancelled, FolderScan, FolderSync, SyncSettings, target_as_recorded
from .memory import tune_malloc
from .progress import Progress

EndpointFactory = Callable[[], Endpoint]


@dataclass
class JobSpec:
    source_label: str
    target_label: str
    src_factory: EndpointFactory
    dst_factory: EndpointFactory
    job_id: str
    journal_path: Path
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
    rerun_command: str | None = None


class Pacer:
    """At most ``rate`` messages per second across every worker of a job (Microsoft 365 answers
    faster uploads with "Request is throttled"; the preset knows its pace)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + n / self.rate
        # The batch may start now if earlier ones left room; it then holds the next n/rate s.
        delay = start - now
        if delay > 0:
            time.sleep(delay)


SPLIT_MIN = 1000  # a folder this big is copied by several connections at once
SPLIT_PER = 500  # ... one part per this many messages, at most one per connection


@dataclass
class _Group:
    """The parts of one folder: one scan, one report, complete when every part is."""

    mapping: FolderMapping
    scan: FolderScan
    remaining: int
    report: FolderReport


@dataclass
class _Part:
    group: _Group
    index: int
    count: int
    report: FolderReport


class _Conns:
    """A worker's pair of connections, opened lazily and replaced after a failure."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self._src: Endpoint | None = None
        self._dst: Endpoint | None = None

    def src(self) -> Endpoint:
        if self._src is None:
            self._src = self.spec.src_factory()
        return self._src

    def dst(self) -> Endpoint:
        if self._dst is None:
            self._dst = self.spec.dst_factory()
        return self._dst

    def both(self) -> tuple[Endpoint, Endpoint]:
        """Open both sides at once: each login is several round trips the other need not wait for
        (a re-run with nothing to copy is mostly these). A source failure is reported first."""
        if self._src is not None or self._dst is not None:
            return self.src(), self.dst()
        failed: list[BaseException] = []

        def open_source() -> None:
            try:
                self.src()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failed.append(exc)

        opener = threading.Thread(target=open_source, name="connect-source", daemon=True)
        opener.start()
        try:
            self.dst()
        except BaseException:
            opener.join()
            if failed:
                raise failed[0] from None
            raise
        opener.join()
        if failed:
            raise failed[0]
        return self.src(), self.dst()

    def reset(self) -> None:
        for ep in (self._src, self._dst):
            if ep is not None:
                with contextlib.suppress(Exception):
                    ep.close()
        self._src = self._dst = None


def _backoff(spec: JobSpec, attempt: int, exc: BaseException) -> float:
    if isinstance(exc, Throttled) and exc.delay:
        return exc.delay  # the server said how long: honour it
    return min(spec.retry_base * (2 ** attempt), 60.0) * (0.5 + random.random() / 2)


class Job:
    def __init__(self, spec: JobSpec, progress: Progress | None = None) -> None:
        self.spec = spec
        self.progress = progress or Progress()
        self.cancel = threading.Event()  # set from outside (Ctrl-C, batch) or on a fatal error
        self._done = threading.Event()  # the run is over (stops the progress ticker)
        self._stopped_early = False
        self.report = JobReport(job_id=spec.job_id, source=spec.source_label, target=spec.target_label,
                                source_email=spec.source_email, target_email=spec.target_email,
                                started_at=utcnow(), dry_run=spec.dry_run, rerun_command=spec.rerun_command,
                                journal=None if spec.dry_run else str(spec.journal_path))
        self._statuses: dict[str, FolderStatus] = {}
        self._target_statuses: dict[str, FolderStatus] = {}
        self._pace = Pacer(spec.max_rate) if spec.max_rate else None
        # Message bytes in memory across all workers: two batches per connection.
        self._budget = ByteBudget(2 * spec.batch_bytes * max(1, spec.connections))
        self._fatal: MigrateError | None = None
        self._lock = threading.Lock()

    # --- entry ----------------------------------------------------------------------------

    def run(self) -> JobReport:
        from ..gate import job_gate

        t0 = time.monotonic()
        tune_malloc()
        # Every write passes the job's gate (``migrate.gate``); closed (a dry run), the journal is
        # not even opened: read both sides, write nothing anywhere.
        self._gate = job_gate(self.spec)
        if not self._gate.allow("journal", self.spec.journal_path):
            try:
                self._dry_run()
            except MigrateError as exc:
                self._set_error(exc)
            return self._finish(t0, None, None)
        journal = Journal(self.spec.journal_path)
        guard = JobGuard(self.spec.journal_path, self.spec.job_id)
        guard.acquire()
        run_id = journal.start_job(self.spec.job_id, self.spec.source_label, self.spec.target_label,
                                   source_email=self.spec.source_email, target_email=self.spec.target_email,
                                   command=self.spec.rerun_command)
        ticker = threading.Thread(target=self._tick, args=(run_id,), daemon=True)
        ticker.start()
        try:
            self._run(journal)
        except MigrateError as exc:
            self._set_error(exc)
        except KeyboardInterrupt:
            self.cancel.set()
            self.report.error = ErrorInfo(reference="interrupted", message="interrupted by the user",
                                          hint="run the same command again: the job resumes")
            self.report.exit_code = int(ExitCode.CONNECTION)
        finally:
            self._stopped_early = self.cancel.is_set() and self._fatal is None
            self._done.set()
            report = self._finish(t0, journal, run_id)
            ticker.join()  # its journal connection closed too: the journal is left whole (no -wal)
            guard.release()
            journal.close()
        return report

    def _tick(self, run_id: int) -> None:
        """Publish progress to the journal for ``mailmigrate status --follow``."""
        j = Journal(self.spec.journal_path)
        try:
            while not self._done.wait(1.0):
                with contextlib.suppress(Exception):
                    j.set_progress(run_id, self.progress.snapshot())
        finally:
            j.close()

    def _set_error(self, exc: MigrateError) -> None:
        self.report.error = ErrorInfo(reference=exc.reference, message=exc.message, hint=exc.hint)
        self.report.exit_code = int(exc.exit_code)
        self.report.status = "failed" if self.report.totals.copied == 0 else "interrupted"

    def _finish(self, t0: float, journal: Journal | None, run_id: int | None) -> JobReport:
        r = self.report
        r.finished_at = utcnow()
        r.duration_s = round(time.monotonic() - t0, 3)
        self._count_refused_folders()  # folder planning/creation (see _create_folders)
        r.compute_totals()
        if r.error is None and self._stopped_early:
            r.status, r.exit_code = "interrupted", int(ExitCode.CONNECTION)
            r.error = ErrorInfo(reference="interrupted", message="the job was stopped before it finished",
                                hint="run the same command again: the job resumes")
        elif r.error is None:
            if r.dry_run:
                r.status, r.exit_code = "dry-run", int(ExitCode.OK)
            elif r.totals.failed:
                r.status, r.exit_code = "partial", int(ExitCode.PARTIAL)
            else:
                r.status, r.exit_code = "ok", int(ExitCode.OK)
        else:
            # "failed": nothing could be done (login refused, server unreachable); "interrupted":
            # stopped part way, a re-run resumes.
            nothing = r.totals.copied == 0 and not any(f.skipped_duplicates for f in r.folders)
            r.status = "failed" if r.error.reference == "login-failed" or (
                nothing and r.error.reference in ("connect-failed", "tls-failed")) else "interrupted"
            if not r.exit_code:
                r.exit_code = int(ExitCode.CONNECTION)
        if journal is not None and run_id is not None:
            with contextlib.suppress(Exception):
                journal.set_progress(run_id, self.progress.snapshot())
            journal.finish_run(self.spec.job_id, run_id, r.status, r.to_json())
        return r

    # --- planning -------------------------------------------------------------------------

    def _plan(self, src: Endpoint, dst: Endpoint) -> FolderPlan:
        self._dst_ns, self._dst_folders = dst.namespace(), dst.list_folders()  # reused by _create_folders
        # A folder's target is decided once: what earlier runs recorded wins (read only: the dry
        # run reads it too, and writes nothing).
        self._recorded = read_folder_map(self.spec.journal_path, self.spec.job_id)
        return plan_folders(src.namespace(), src.list_folders(), self._dst_ns, self._dst_folders,
                            include=self.spec.include, exclude=self.spec.exclude,
                            map_folder=self.spec.map_folder, target_special=self.spec.target_special or None,
                            recorded=self._recorded)

    def _create_folders(self, dst: Endpoint, plan: FolderPlan) -> FolderPlan:
        """Create every planned folder the target lacks (a special one with its SPECIAL-USE where
        the target can). A refused name is retried under ever safer names (``name_candidates``);
        a folder that no name works for fails alone: its mapping loses its target and
        ``_refused`` keeps the server's answer (its messages are counted failed at the end).
        Each folder's target is recorded in the journal as soon as it is known, so that every
        later run reuses it."""
        self.report.renamed_folders = [r.as_dict() for r in plan.renamed]  # name collisions
        self._refused: dict[str, str] = {}
        recorded = dict(getattr(self, "_recorded", {}))
        existing = {f.name for f in self._dst_folders}
        existing_ci = {n.casefold() for n in existing if n.upper() == "INBOX"}
        claimed = {m.target for m in plan.mappings if m.target}  # by the source folders of this plan
        taken = set(existing) | claimed
        ns = self._dst_ns
        reserved = {r.casefold() for r in self.spec.reserved_folders}
        special_of = {name: role for role, name in plan.new_special.items()}
        create_special = getattr(dst, "create_special_folder", None)
        out: list[FolderMapping] = []
        renamed_parent: dict[str, str] = {}
        pending: list[tuple[str, str, str]] = []
        journal = Journal(self.spec.journal_path)

        def record(m: FolderMapping, target: str) -> None:
            if recorded.get(m.source) != target:
                recorded[m.source] = target
                pending.append((m.source, target, m.reason))

        def flush() -> None:
            if pending:
                journal.save_folder_map(self.spec.job_id, pending)
                pending.clear()

        try:
            for m in plan.mappings:
                if m.target is None:
                    out.append(m)
                    continue
                target = m.target
                for old, new in renamed_parent.items():  # children follow a renamed parent
                    if ns.delimiter and target.startswith(old + ns.delimiter):
                        target = new + target[len(old):]
                if target.casefold() in reserved:
                    new = fallback_name(target, ns, taken | set(self.spec.reserved_folders))
                    taken.add(new)
                    renamed_parent[target] = new
                    self.report.renamed_folders.append(
                        {"source": m.source, "wanted": target, "target": new, "reason": "reserved by the provider"})
                    target = new
                if target in existing or target.casefold() in existing_ci or target.upper() == "INBOX":
                    out.append(dataclasses.replace(m, target=target))
                    record(m, target)
                    continue
                role = special_of.get(m.target)
                # Only the levels below the deepest folder that exists are ours to rename.
                parent = max((p for p in existing if ns.delimiter and target.startswith(p + ns.delimiter)),
                             key=len, default="")
                refusals: list[FolderRefused] = []
                chosen = None
                # Suffixes only against names other source folders claim: a fallback that exists
                # already is used as it is, like any planned name that exists (a run that lost its
                # journal finds '_backup' again instead of making '_backup (2)').
                for name in name_candidates(target, ns, claimed - {target}, keep=parent):
                    if name in existing:
                        chosen = name
                        break
                    try:
                        if role and create_special is not None:
                            create_special(name, role)
                        else:
                            dst.create_folder(name)
                    except FolderRefused as exc:
                        refusals.append(exc)
                        continue
                    chosen = name
                    break
                if chosen is None:
                    why = refusals[0].message + (f" ({len(refusals)} names tried)" if len(refusals) > 1 else "")
                    self._refused[m.source] = why
                    self.progress.event(f"{m.source}: {why}")
                    out.append(dataclasses.replace(m, target=None, reason=f"not created: {why}"))
                    continue
                if chosen != target:
                    taken.add(chosen)
                    claimed.add(chosen)
                    renamed_parent[target] = chosen
                    self.report.renamed_folders.append(
                        {"source": m.source, "wanted": target, "target": chosen, "reason": refusals[0].message})
                existing.add(chosen)
                out.append(dataclasses.replace(m, target=chosen))
                record(m, chosen)
                flush()  # created: from now on this is where the folder lives, even after a crash
        finally:
            try:
                flush()
            finally:
                journal.close()
        plan.mappings = out
        return plan

    def _count_refused_folders(self) -> None:
        """A folder the target refused under every name: its messages count as failed (the job
        ends "partial"), with the server's answer as the reason."""
        refused: dict[str, str] = getattr(self, "_refused", {})
        counts: dict[str, int] = getattr(self, "_refused_counts", {})
        for fr in self.report.folders:
            why = refused.get(fr.source)
            if why is None or fr.failures:
                continue
            fr.source_messages = fr.source_messages or counts.get(fr.source, 0)
            fr.failed = counts.get(fr.source, 0)
            fr.note = f"not created: {why}"
            fr.failures.append(Failure(folder=fr.source, reason=f"folder not created: {why}"))

    # --- real run -------------------------------------------------------------------------

    def _prepare(self) -> tuple[FolderPlan, dict[str, FolderStatus]]:
        """Plan and create the folders, read every source folder's status. Retried like a
        folder after a dropped connection; only a failure of the very first connect is final."""
        for attempt in range(self.spec.retries + 1):
            conns = _Conns(self.spec)
            try:
                src, dst = conns.both()
                plan = self._create_folders(dst, self._plan(src, dst))
                limit = dst.capabilities().append_limit
                if self.spec.append_limit:
                    limit = min(limit, self.spec.append_limit) if limit else self.spec.append_limit
                self._append_limit = limit
                statuses = src.statuses([m.source for m in plan.mappings if m.target is not None and m.selectable])
                refused = [m.source for m in plan.mappings if m.source in self._refused and m.selectable]
                self._refused_counts = {k: v.exists for k, v in src.statuses(refused).items()} if refused else {}
                # The target's side too (one more LIST-STATUS): a folder is settled without a look
                # only when both sides are as the last complete pass left them.
                self._target_statuses = dst.statuses(sorted({m.target for m in plan.mappings
                                                             if m.target is not None and m.selectable}))
                return plan, statuses
            except (RetryableError, ConnectFailed) as exc:
                if (isinstance(exc, ConnectFailed) and attempt == 0) or attempt >= self.spec.retries:
                    raise
                delay = _backoff(self.spec, attempt, exc)
                self.progress.event(f"planning: {exc.reference}, retrying in {delay:.1f}s")
                if self.cancel.wait(delay):
                    raise
            finally:
                conns.reset()
        raise AssertionError("unreachable")

    def _run(self, journal: Journal) -> None:
        plan, statuses = self._prepare()
        sizes = {k: v.exists for k, v in statuses.items()}
        reports: dict[str, FolderReport] = {}
        for m in plan.mappings:
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
        counts = journal.counts(self.spec.job_id)
        work = [m for m in plan.mappings if m.target is not None and m.selectable
                and not self._unchanged(journal, m, statuses.get(m.source), counts, reports[m.source])]
        self._statuses = statuses
        all_mail = [m for m in work if m.reason == "gmail-all-mail"]
        first = sorted((m for m in work if m not in all_mail), key=lambda m: -sizes.get(m.source, 0))
        if self.spec.gmail_single_copy:
            # One copy per message, first label wins: folders one after the other in plan order
            # (INBOX first), each leaving out what an earlier one holds. Slower, deterministic.
            for m in (x for x in work if x not in all_mail):
                if self._fatal or self.cancel.is_set():
                    break
                self._run_pool(self._parts([m], sizes, reports), reports, journal, all_mail=True)
        else:
            self._run_pool(self._parts(first, sizes, reports), reports, journal)
        if all_mail and not self._fatal and not self.cancel.is_set():
            self._run_pool(self._parts(all_mail, sizes, reports), reports, journal, all_mail=True)
        if self._fatal:
            raise self._fatal

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

    def _parts(self, mappings: list[FolderMapping], sizes: dict[str, int],
               reports: dict[str, FolderReport]) -> list[_Part]:
        """Split big folders into parts so that one huge INBOX does not become the critical
        path of the whole job. Parts of one folder are interleaved with the other folders."""
        out: list[_Part] = []
        for m in mappings:
            size = sizes.get(m.source, 0)
            n = 1
            if self.spec.connections > 1 and size >= SPLIT_MIN:
                n = min(self.spec.connections, max(2, size // SPLIT_PER))
            group = _Group(mapping=m, scan=FolderScan(status=self._statuses.get(m.source),
                                                      target_status=self._target_statuses.get(m.target or "")),
                           remaining=n,
                           report=reports[m.source])
            out += [_Part(group, i, n, FolderReport(source=m.source, target=m.target)) for i in range(n)]
        return sorted(out, key=lambda p: p.index)  # first parts of every folder first (largest first)

    def _run_pool(self, work: list[_Part], reports: dict[str, FolderReport], journal: Journal,
                  *, all_mail: bool = False) -> None:
        if not work:
            return
        local = threading.local()
        n = max(1, min(self.spec.connections, len(work)))
        opened: list[tuple[_Conns, Journal]] = []

        def task(p: _Part) -> None:
            if self.cancel.is_set():
                p.group.report.note = "not started: the job stopped"
                return
            if not hasattr(local, "conns"):
                local.conns = _Conns(self.spec)
                local.journal = Journal(self.spec.journal_path)
                with self._lock:
                    opened.append((local.conns, local.journal))
            try:
                self._sync_one(p, local.conns, local.journal, all_mail=all_mail)
            finally:
                self._merge(p)

        pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="folder")
        futures: list[Future[None]] = [pool.submit(task, p) for p in work]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:
                exc = f.exception() if f.done() else None
                if isinstance(exc, MigrateError) and self._fatal is None:
                    self._fatal = exc
                    self.cancel.set()
                elif exc is not None and not isinstance(exc, MigrateError):
                    self.cancel.set()
                    raise exc
            wait(futures)
            for f in futures:
                exc = f.exception()
                if isinstance(exc, MigrateError) and self._fatal is None:
                    self._fatal = exc
                elif exc is not None and not isinstance(exc, MigrateError):
                    raise exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for conns, j in opened:  # LOGOUT now: the next pool or job must find the cap free
                conns.reset()
                j.close()

    def _merge(self, p: _Part) -> None:
        """Add a finished part's counts to its folder's report."""
        with self._lock:
            r, x = p.group.report, p.report
            r.copied += x.copied
            r.skipped_duplicates += x.skipped_duplicates
            r.failed += x.failed
            r.failures.extend(x.failures)
            r.bytes += x.bytes
            r.dropped_keywords += x.dropped_keywords
            r.flags_updated += x.flags_updated
            r.restored += x.restored
            r.stored_differently += x.stored_differently
            r.source_messages = max(r.source_messages, x.source_messages)
            r.duration_s = max(r.duration_s, x.duration_s)
            r.note = x.note or r.note

    def _sync_one(self, p: _Part, conns: _Conns, journal: Journal, *, all_mail: bool) -> None:
        m, report = p.group.mapping, p.report
        assert m.target is not None
        settings = SyncSettings(
            job_id=self.spec.job_id, journal_path=self.spec.journal_path, batch_bytes=self.spec.batch_bytes,
            batch_count=self.spec.batch_count,
            append_limit=self._append_limit, flag_filter=self.spec.flag_filter,
            prepare_body=self.spec.prepare_body, cancel=self.cancel, pace=self._pace, budget=self._budget)
        if all_mail:
            settings.exclude_keys = lambda: self._keys_elsewhere(journal, self.spec.job_id, m.source)
        self.progress.folder_state(m.source, "copying")
        attempt = 0
        while True:
            if self.cancel.is_set():
                report.note = "stopped: the job was interrupted"
                return
            # An attempt that moved on before the connection went (copied messages, or narrowed a
            # drop down to one message, which fails after MAX_ALONE_DROPS) does not use up a
            # retry: a folder with several poison messages still finishes, in bounded time.
            before = self._headway(p)
            try:
                # A retry redoes this part: keep what this run copied, recount the rest.
                report.skipped_duplicates = 0
                report.failed = 0
                report.failures.clear()
                sync = FolderSync(settings, m.source, m.target, conns.src(), conns.dst(), journal,
                                  self.progress, report, scan=p.group.scan, part=p.index, parts=p.count)
                sync.run()
                with self._lock:
                    p.group.remaining -= 1
                    last = p.group.remaining == 0
                if last:  # every part done: the folder is complete as of the scan
                    sync.save_complete()
                    p.group.scan.release()
                    self.progress.folder_state(m.source, "done")
                return
            except Cancelled:
                report.note = "stopped: the job was interrupted"
                return
            except (FolderRefused, MessageError) as exc:
                # This folder alone fails (the server will not open it, or refuses what it must
                # read to copy it); every other folder goes on.
                conns.reset()
                self._fail_folder(p, exc)
                return
            except (RetryableError, ConnectFailed) as exc:
                # ConnectFailed here means the server went away after we had connected (restart,
                # network blip): worth retrying. At the very first connect it is fatal (see _run).
                conns.reset()
                if self._headway(p) != before:
                    attempt = 0
                if attempt >= self.spec.retries:
                    raise
                delay = _backoff(self.spec, attempt, exc)
                with self.progress._lock:
                    self.progress.retries += 1
                self.progress.event(f"{m.source}: {exc.reference}, retrying in {delay:.1f}s")
                if self.cancel.wait(delay):
                    return
                attempt += 1
            except FatalError:
                conns.reset()
                self.progress.folder_state(m.source, "failed")
                raise

    @staticmethod
    def _headway(p: _Part) -> tuple[int, int, int]:
        return p.report.copied, p.report.restored, sum(p.group.scan.alone_drops.values())

    def _fail_folder(self, p: _Part, exc: MigrateError) -> None:
        """Count what this part could not copy as failed, with the server's answer."""
        m, report = p.group.mapping, p.report
        st = p.group.scan.status or self._statuses.get(m.source)
        with self._lock:
            total = max(report.source_messages, st.exists if st else 0)
            if p.count > 1:  # each part answers for its share
                total = total * (p.index + 1) // p.count - total * p.index // p.count
            done = report.copied + report.restored + report.skipped_duplicates + report.failed
            missing = max(0, total - done)
            report.failed += missing
            report.failures.append(Failure(folder=m.source, reason=exc.message))
            report.note = f"folder failed: {exc.message}"
        self.progress.count(m.source, failed=missing)
        self.progress.folder_state(m.source, "failed")

    @staticmethod
    def _keys_elsewhere(journal: Journal, job_id: str, source_folder: str) -> set[str]:
        """Keys this job met in any other folder (Gmail: the message has a label already)."""
        return {r[0] for r in journal.conn.execute(
            "SELECT DISTINCT key FROM messages WHERE job_id=? AND source_folder<>?"
            " AND state IN ('copied','duplicate')", (job_id, source_folder))}

    # --- dry run: read both sides, write nothing anywhere ------------------------------------

    def _dry_run(self) -> None:
        conns = _Conns(self.spec)
        try:
            src, dst = conns.src(), conns.dst()
            plan = self._plan(src, dst)
            existing = {f.name for f in self._dst_folders}
            for m in plan.mappings:
                fr = FolderReport(source=m.source, target=m.target, note=m.reason)
                self.report.folders.append(fr)
                if m.target is None or not m.selectable:
                    continue
                if m.target not in existing:  # recorded by the closed gate: what a real run would do
                    self._gate.allow("create-folder", f"{self.spec.target_label}: {m.target}")
                metas = list(src.fetch_meta(m.source, None, with_keys=True))
                fr.source_messages = len(metas)
                keys = [key_of(x) for x in metas]
                target_counts: dict[str, int] = {}
                if m.target in existing:
                    for t in dst.fetch_meta(m.target, None, with_keys=True):
                        k = key_of(t)
                        target_counts[k] = target_counts.get(k, 0) + 1
                from collections import Counter
                src_counts = Counter(keys)
                open_by_key: dict[str, list[int]] = {}
                for x, k in zip(metas, keys, strict=True):
                    open_by_key.setdefault(k, []).append(x.uid)
                copy, dup = plan_copies(src_counts, Counter(target_counts), open_by_key)
                fr.copied, fr.skipped_duplicates = len(copy), len(dup)
                sizes = {x.uid: x.size for x in metas}
                fr.bytes = sum(sizes[u] for u in copy)
                fr.note = f"{m.reason}; would copy {len(copy)}, already present {len(dup)}"
                if copy:
                    self._gate.allow("append", f"{self.spec.target_label}: {len(copy)} message(s) into {m.target}")
        finally:
            conns.reset()
