"""The worker pool that copies a job's folders, and the one retry policy of the engine.

``connections`` worker threads, each with its own source and target connection and its own
journal connection, take folder parts from a queue. A big folder is split into parts (contiguous
UID ranges) so that one huge INBOX does not become the critical path of the whole job.

Errors are handled per class (``migrate.errors``): a retryable one (dropped connection, timeout,
throttling, expired token, a server restarting) closes that worker's connections, waits
(``RetryPolicy``) and redoes the part, which is idempotent; a folder error fails that folder alone;
a fatal one (login refused, target over quota) stops the pool and is kept in ``fatal``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..endpoint import Endpoint
from ..errors import (
    ConnectFailed,
    FatalError,
    FolderRefused,
    MessageError,
    MigrateError,
    RetryableError,
    Throttled,
)
from ..folders import FolderMapping
from ..journal import Journal
from ..models import FolderStatus
from ..report import Failure, FolderReport
from ..store import open_store
from ..store.location import JournalLocation
from .budget import BudgetReached
from .folder_sync import Cancelled, FolderScan, FolderSync, SyncSettings
from .progress import Progress

if TYPE_CHECKING:
    import tenacity

EndpointFactory = Callable[[], Endpoint]
T = TypeVar("T")

NOT_STARTED = "not started: the job stopped"  # a folder's note when the job stopped before or in it
STOPPED = "stopped: the job was interrupted"
SPLIT_MIN = 1000  # a folder this big is copied by several connections at once
SPLIT_PER = 500  # ... one part per this many messages, at most one per connection


# --- retries -------------------------------------------------------------------------------------


class RetryPolicy:
    """The engine's one retry policy, for planning and for every folder part (tenacity).

    * retried: ``RetryableError`` (dropped connection, timeout, throttling, expired token), and
      ``ConnectFailed`` (the server went away after we had connected) - except, with
      ``first_connect_fatal``, at the very first attempt: a server that cannot be reached at all
      is a fatal error, reported at once;
    * wait: the server's hint (``Throttled.delay``) when it gave one, else exponential backoff
      from ``base`` seconds, doubled per retry, capped at 60 s, with jitter (half to all of it);
    * the wait is cut short by ``cancel`` (the job's cancel event): ``Cancelled`` is raised;
    * stop: after ``retries`` retries in a row that made no headway. With ``headway`` (a function
      whose value changes when an attempt moved on: copied messages, narrowed a drop down to one
      message) an attempt that made headway does not use up a retry, so a folder with several
      poison messages still finishes, in bounded time. Then the last error is raised.
    """

    CAP = 60.0

    def __init__(self, retries: int, base: float, cancel: threading.Event) -> None:
        self.retries = retries
        self.base = base
        self.cancel = cancel

    def delay(self, exc: BaseException | None, fruitless: int) -> float:
        if isinstance(exc, Throttled) and exc.delay:
            return exc.delay  # the server said how long: honour it
        return min(self.base * (2 ** fruitless), self.CAP) * (0.5 + random.random() / 2)

    def sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled()

    def call(self, fn: Callable[[], T], *, headway: Callable[[], object] | None = None,
             first_connect_fatal: bool = False,
             on_retry: Callable[[MigrateError, float], None] | None = None) -> T:
        """``fn()``, retried by this policy; ``on_retry(error, delay)`` before each wait."""
        import tenacity  # here, not at module import: importing the engine stays cheap

        state = _Attempts(headway)

        def retryable(rs: tenacity.RetryCallState) -> bool:
            exc = _error(rs)
            if isinstance(exc, RetryableError):
                return True
            return isinstance(exc, ConnectFailed) and not (first_connect_fatal and rs.attempt_number == 1)

        def before_sleep(rs: tenacity.RetryCallState) -> None:
            state.fruitless += 1
            exc = _error(rs)
            if on_retry is not None and isinstance(exc, MigrateError):
                on_retry(exc, rs.upcoming_sleep)

        retrying = tenacity.Retrying(
            retry=retryable,
            stop=lambda rs: state.fruitless >= self.retries,
            wait=lambda rs: self.delay(_error(rs), state.fruitless),
            sleep=self.sleep, before=state.start, after=state.check, before_sleep=before_sleep,
            reraise=True)
        return retrying(fn)


@dataclass
class _Attempts:
    headway: Callable[[], object] | None
    mark: object = None
    fruitless: int = 0  # retries since the last attempt that made headway

    def start(self, rs: tenacity.RetryCallState) -> None:
        self.mark = self.headway() if self.headway is not None else None

    def check(self, rs: tenacity.RetryCallState) -> None:
        if self.headway is not None and self.headway() != self.mark:
            self.fruitless = 0


def _error(rs: tenacity.RetryCallState) -> BaseException | None:
    return rs.outcome.exception() if rs.outcome is not None else None


# --- pacing --------------------------------------------------------------------------------------


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


# --- connections and journals --------------------------------------------------------------------


class Conns:
    """A worker's pair of connections, opened lazily and replaced after a failure."""

    def __init__(self, src_factory: EndpointFactory, dst_factory: EndpointFactory) -> None:
        self._src_factory, self._dst_factory = src_factory, dst_factory
        self._src: Endpoint | None = None
        self._dst: Endpoint | None = None

    def src(self) -> Endpoint:
        if self._src is None:
            self._src = self._src_factory()
        return self._src

    def dst(self) -> Endpoint:
        if self._dst is None:
            self._dst = self._dst_factory()
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


class Journals:
    """Where a job's journal connections come from. A real run: one connection per thread on the
    job's file or PostgreSQL namespace (``path``: a Path or a ``PgJournal``; connections are not
    shared between threads). A dry run (``path`` None): one private in-memory journal, written
    nowhere, shared by the job and its one worker."""

    def __init__(self, path: JournalLocation | None) -> None:
        self.path = path
        self._shared = open_store(Path(":memory:")) if path is None else None

    @property
    def in_memory(self) -> bool:
        return self._shared is not None

    def open(self) -> Journal:
        if self._shared is not None:
            return self._shared
        assert self.path is not None
        return open_store(self.path)

    def close(self, journal: Journal) -> None:
        """Close a worker's connection (the shared in-memory one is closed by the job)."""
        if journal is not self._shared:
            journal.close()


# --- the pool ------------------------------------------------------------------------------------


@dataclass
class Group:
    """The parts of one folder: one scan, one report, complete when every part is."""

    mapping: FolderMapping
    scan: FolderScan
    remaining: int
    report: FolderReport
    finished: int = 0  # parts that ended, however


@dataclass
class Part:
    group: Group
    index: int
    count: int
    report: FolderReport
    scan_only: bool = False  # the scan phase (``FolderPool.scan``): read the folder, copy nothing


class FolderPool:
    """Runs folder parts on up to ``connections`` workers (see the module docstring).

    ``settings``: the job's sync settings (one copy per part); ``on_folder_done(report)``: called
    once a folder's last part ended, whatever its outcome."""

    def __init__(self, *, connections: int, src_factory: EndpointFactory, dst_factory: EndpointFactory,
                 settings: SyncSettings, journals: Journals, progress: Progress, cancel: threading.Event,
                 retry: RetryPolicy, on_folder_done: Callable[[FolderReport], None] | None = None) -> None:
        self.connections = connections
        self.src_factory, self.dst_factory = src_factory, dst_factory
        self.settings = settings
        self.journals = journals
        self.progress = progress
        self.cancel = cancel
        self.retry = retry
        self.on_folder_done = on_folder_done
        self.fatal: MigrateError | None = None  # the first fatal error: the job stops
        self._lock = threading.Lock()

    def parts(self, mappings: list[FolderMapping], sizes: dict[str, int], reports: dict[str, FolderReport],
              statuses: dict[str, FolderStatus], target_statuses: dict[str, FolderStatus]) -> list[Part]:
        """Split big folders into parts. Parts of one folder are interleaved with the other
        folders: the first parts of every folder first (largest first)."""
        out: list[Part] = []
        for m in mappings:
            size = sizes.get(m.source, 0)
            n = 1
            if self.connections > 1 and size >= SPLIT_MIN:
                n = min(self.connections, max(2, size // SPLIT_PER))
            group = Group(mapping=m, scan=FolderScan(status=statuses.get(m.source),
                                                     target_status=target_statuses.get(m.target or "")),
                          remaining=n, report=reports[m.source])
            out += [Part(group, i, n, FolderReport(source=m.source, target=m.target)) for i in range(n)]
        return sorted(out, key=lambda p: p.index)

    def scan(self, work: list[Part]) -> list[Part]:
        """The scan phase: read every folder of ``work`` (one part per folder, on the workers)
        before any is copied, so that the totals (messages, bytes) are final when copying starts.
        Returns the parts of the folders that were read: a folder that failed here is over."""
        # One part per folder, that answers for the whole folder (count 1) should it fail here.
        firsts = [dataclasses.replace(p, scan_only=True, count=1, report=FolderReport(source=p.report.source,
                                                                                      target=p.report.target))
                  for p in work if p.index == 0]
        self.progress.scan_phase(len(firsts))
        self.run(firsts)
        self.progress.copy_phase()
        return [p for p in work if p.group.scan.done]

    def run(self, work: list[Part], *, all_mail: bool = False) -> None:
        if not work:
            return
        local = threading.local()
        n = max(1, min(self.connections, len(work)))
        opened: list[tuple[Conns, Journal]] = []

        def task(p: Part) -> None:
            try:
                if self.cancel.is_set():
                    p.group.report.note = NOT_STARTED
                    return
                if not hasattr(local, "conns"):
                    local.conns = Conns(self.src_factory, self.dst_factory)
                    local.journal = self.journals.open()
                    with self._lock:
                        opened.append((local.conns, local.journal))
                self._sync_one(p, local.conns, local.journal, all_mail=all_mail)
            finally:
                self._merge(p)
                self._part_ended(p)

        pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="folder")
        futures: list[Future[None]] = [pool.submit(task, p) for p in work]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:
                exc = f.exception() if f.done() else None
                if isinstance(exc, MigrateError) and self.fatal is None:
                    self.fatal = exc
                    self.cancel.set()
                elif exc is not None and not isinstance(exc, MigrateError):
                    self.cancel.set()
                    raise exc
            wait(futures)
            for f in futures:
                exc = f.exception()
                if isinstance(exc, MigrateError) and self.fatal is None:
                    self.fatal = exc
                elif exc is not None and not isinstance(exc, MigrateError):
                    raise exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for conns, j in opened:  # LOGOUT now: the next pool or job must find the cap free
                conns.reset()
                self.journals.close(j)

    def _part_ended(self, p: Part) -> None:
        if p.scan_only:  # read: its copy is still to come; failed: the folder is over
            if p.report.failures and self.on_folder_done is not None:
                self.on_folder_done(p.group.report)
            return
        with self._lock:
            p.group.finished += 1
            last = p.group.finished == p.count
        if last and self.on_folder_done is not None:
            self.on_folder_done(p.group.report)

    def _merge(self, p: Part) -> None:
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

    def _sync_one(self, p: Part, conns: Conns, journal: Journal, *, all_mail: bool) -> None:
        m, report = p.group.mapping, p.report
        assert m.target is not None
        settings = dataclasses.replace(self.settings)
        if all_mail:
            settings.exclude_keys = lambda: self._keys_elsewhere(journal, self.settings.job_id, m.source)
        self.progress.folder_state(m.source, "scanning" if p.scan_only else "copying")

        def attempt() -> None:
            if self.cancel.is_set():
                raise Cancelled()
            # A retry redoes this part: keep what this run copied, recount the rest.
            report.skipped_duplicates = 0
            report.failed = 0
            report.failures.clear()
            try:
                sync = FolderSync(settings, m.source, m.target, conns.src(), conns.dst(), journal,
                                  self.progress, report, scan=p.group.scan, part=p.index, parts=p.count)
                sync.run(scan_only=p.scan_only)
                if p.scan_only:
                    self._scanned(p)
                    self.progress.folder_state(m.source, "scanned")
                    return
            except (RetryableError, ConnectFailed):
                # ConnectFailed here means the server went away after we had connected (restart,
                # network blip): worth retrying. At the very first connect it is fatal (planning).
                conns.reset()
                raise
            with self._lock:
                p.group.remaining -= 1
                last = p.group.remaining == 0
            if last:  # every part done: the folder is complete as of the scan
                sync.save_complete()
                p.group.scan.release()
                self.progress.folder_state(m.source, "done")

        def on_retry(exc: MigrateError, delay: float) -> None:
            self.progress.retried(f"{m.source}: {exc.reference}, retrying in {delay:.1f}s")

        try:
            self.retry.call(attempt, headway=lambda: self._headway(p), on_retry=on_retry)
        except Cancelled:
            report.note = STOPPED
        except (FolderRefused, MessageError) as exc:
            # This folder alone fails (the server will not open it, or refuses what it must
            # read to copy it); every other folder goes on.
            conns.reset()
            self._fail_folder(p, exc)
        except (RetryableError, ConnectFailed):
            raise  # retries used up: the job stops here (a re-run resumes)
        except BudgetReached:
            conns.reset()  # the folder is not failed: it goes on when the budget allows
            report.note = "waiting: a daily budget is used up"
            raise
        except FatalError:
            conns.reset()
            self.progress.folder_state(m.source, "failed")
            raise

    def _scanned(self, p: Part) -> None:
        """The scan counted the folder: its report says so now, not only once its copy ends (a
        running job's report would otherwise show 0 for every folder still waiting its turn)."""
        sc = p.group.scan
        counted = len(sc.metas) or (sc.status.exists if sc.status else 0)
        with self._lock:
            p.group.report.source_messages = max(p.group.report.source_messages, counted)

    @staticmethod
    def _headway(p: Part) -> tuple[int, int, int]:
        return p.report.copied, p.report.restored, sum(p.group.scan.alone_drops.values())

    def _fail_folder(self, p: Part, exc: MigrateError) -> None:
        """Count what this part could not copy as failed, with the server's answer."""
        m, report = p.group.mapping, p.report
        st = p.group.scan.status
        with self._lock:
            total = max(report.source_messages, st.exists if st else 0)
            if p.count > 1:  # each part answers for its share
                total = total * (p.index + 1) // p.count - total * p.index // p.count
            done = report.copied + report.restored + report.skipped_duplicates + report.failed
            missing = max(0, total - done)
            report.failed += missing
            report.failures.append(Failure(folder=m.source, reason=exc.message))
            report.note = f"folder failed: {exc.message}"
        self.progress.failed_message(m.source, None, exc.message, count=missing)
        self.progress.folder_state(m.source, "failed")

    @staticmethod
    def _keys_elsewhere(journal: Journal, job_id: str, source_folder: str) -> set[str]:
        """Keys this job met in any other folder (Gmail: the message has a label already)."""
        return journal.keys_elsewhere(job_id, source_folder)
