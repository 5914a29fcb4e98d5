"""The job pool: ``jobs`` worker threads running queued imports through ``migrate.api``.

A job's passwords are unsealed only in the worker that runs it, handed to the engine as
``Secret``s, and erased from the database when the job ends. Jobs that are queued or running
when the service stops stay queued (running ones are cancelled cooperatively, their secrets
kept) and are started again by the next instance: the engine resumes from its journal.

A job that stops at a provider's daily budget (report status "waiting") waits in state
``waiting`` with its secrets and ``resume_at``; the scheduler thread queues it again at that
time, also after a restart (the time is stored). Its clock is the budgets' clock
(``migrate.engine.budget.utc_now``), so a test that moves one moves both."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..accounts import Secret
from ..api import ImportRequest, notify_job, spec_for, start_import
from ..engine import JobHandle
from ..engine import budget as _budget
from ..errors import MigrateError, redact
from ..gate import WriteGate
from ..journal import default_journal_path, state_home
from ..report import JobReport, to_jsonable
from ..sides import Side, SideOptions, build_side
from .config import ServiceConfig
from .connections import ConnectionShares, servers_of
from .crypto import SecretBox
from .db import BUDGET_WAITING, Store
from .network import guard_source
from .oauth_web import JobToken, job_token, parse_record

log = logging.getLogger(__name__)

_STOPPING = "the import service is stopping (the job resumes when it starts again)"
_CANCELLED = "cancelled"
_LOOK_AGAIN_S = 60.0  # the scheduler looks at the clock at least this often (a machine that slept)
_RETRY_LATER_S = 10.0  # a job stopped by a passing fault of the service's own goes on after this


def _budget_clock() -> float:
    return _budget.utc_now().timestamp()  # looked up at each call: a test's clock applies


class Runner:
    def __init__(self, cfg: ServiceConfig, store: Store, box: SecretBox, *,
                 clock: Callable[[], float] = _budget_clock) -> None:
        self.cfg = cfg
        self.store = store
        self.box = box
        self.networks = cfg.source_networks()  # where sources may be (the operator's allowances)
        self.shares = ConnectionShares()  # each server's connection cap, shared by the running imports
        self.clock = clock  # seconds since the epoch, as resume_at is stored
        self._due: dict[str, float] = {}  # waiting job -> resume_at (under _wake)
        self._wake = threading.Condition()
        self._scheduler: threading.Thread | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._handles: dict[str, JobHandle] = {}
        self._sides: dict[str, tuple[Side, Side]] = {}  # a running job's sides (to cut on cancel)
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for job_id in self.store.active_job_ids():  # left by an earlier instance: run them again
            self.store.requeue(job_id)
            self._queue.put(job_id)
        for i in range(self.cfg.jobs):
            t = threading.Thread(target=self._work, name=f"import-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        for job_id, resume_at in self.store.budget_waits():  # due ones are queued at once
            self.schedule(job_id, resume_at)
        self._scheduler = threading.Thread(target=self._schedule_loop, name="import-scheduler", daemon=True)
        self._scheduler.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        with self._lock:
            handles = list(self._handles.values())
        for h in handles:
            h.cancel(_STOPPING)
        self.wake()
        if self._scheduler is not None:
            self._scheduler.join(timeout)
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    # --- jobs waiting for a daily budget --------------------------------------------------------

    def schedule(self, job_id: str, resume_at: float) -> None:
        """Queue ``job_id`` (waiting for a budget) again at ``resume_at`` (epoch seconds)."""
        with self._wake:
            self._due[job_id] = resume_at
            self._wake.notify_all()

    def wake(self) -> None:
        """Look at the clock now (the clock was moved, or the service stops)."""
        with self._wake:
            self._wake.notify_all()

    def _schedule_loop(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                now = self.clock()
                due = [j for j, at in self._due.items() if at <= now]
                for j in due:
                    del self._due[j]
                if not due:
                    nearest = min(self._due.values(), default=now + _LOOK_AGAIN_S)
                    self._wake.wait(min(_LOOK_AGAIN_S, max(0.0, nearest - now)))
                    continue
            for job_id in due:
                if self.store.resume_waiting(job_id):  # not if it was cancelled meanwhile
                    log.info("import %s: the daily budget allows more: going on", job_id)
                    self._queue.put(job_id)

    def cancel(self, job_id: str) -> str | None:
        was = self.store.request_cancel(job_id)
        if was == BUDGET_WAITING:
            with self._wake:
                self._due.pop(job_id, None)
        if was == "running":
            self.stop_running(job_id)
        return was

    def stop_running(self, job_id: str) -> None:
        """Cancel the job if it runs here: it stops within its batch, or is cut after the grace."""
        with self._lock:
            handle = self._handles.get(job_id)
        if handle is not None:
            handle.cancel("the import was cancelled")
            threading.Thread(target=self._cut_after_grace, args=(job_id, handle), daemon=True,
                             name=f"cancel-{job_id}").start()

    def running_ids(self) -> list[str]:
        with self._lock:
            return list(self._handles)

    def _cut_after_grace(self, job_id: str, handle: JobHandle) -> None:
        """A cancelled job stops within its current batch; where a server stopped answering it
        would wait out the IMAP timeouts instead, so after a grace its connections are cut (what
        was copied stays copied: an APPEND cut off is settled by the next run, as after a drop)."""
        try:
            handle.wait(self.cfg.cancel_grace_s)
            return
        except TimeoutError:
            pass
        except Exception:  # noqa: BLE001 - the job ended (with an error): nothing to cut
            return
        while not handle.done:
            with self._lock:
                sides = self._sides.get(job_id)
            for side in sides or ():
                side.factory.abort()
            with contextlib.suppress(Exception):  # TimeoutError, or the job ended with an error
                handle.wait(1.0)  # new connections opened meanwhile are cut on the next round

    def live_report(self, job_id: str) -> JobReport | None:
        with self._lock:
            handle = self._handles.get(job_id)
        return handle.report if handle is not None else None

    def live_progress(self, job_id: str) -> dict[str, Any] | None:
        """The engine's counters of a running job (``Progress.snapshot()``), None if not running here."""
        with self._lock:
            handle = self._handles.get(job_id)
        return handle.progress.snapshot() if handle is not None else None

    # --- work -----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self._run(job_id)
            except Exception:  # noqa: BLE001 - one job's bug never stops the pool
                log.exception("import %s: internal error", job_id)
                with contextlib.suppress(Exception):
                    self.store.finish(job_id, "failed", None, "internal error")

    def _options(self, row: dict[str, Any]) -> tuple[ImportRequest, SideOptions, SideOptions]:
        req = json.loads(row["request"])
        s, t = req["source"], req["target"]
        cfg = self.cfg
        src = SideOptions("source", email=s["email"], username=s.get("username"), provider=s.get("provider"),
                          host=s.get("host"), port=s.get("port"), security=s.get("security"),
                          interactive=False, timeout=cfg.imap_timeout)
        guard_source(src, self.networks)  # checked again right before each connection (DNS may change)
        dst = cfg.target_options(t["email"])
        notify = cfg.notify_options(req.get("lang") or "en", list(req.get("notify") or []))
        imp = ImportRequest(source=src, target=dst, exclude=list(req.get("exclude") or []), progress=False,
                            notify=notify, connections=cfg.connections, retry_base=cfg.retry_base,
                            force=bool(req.get("force")))
        return imp, src, dst

    def _claim(self, job_id: str) -> bool:
        return self.store.claim(job_id)

    def _handed_back(self, job_id: str, *, after: float = 0.0) -> None:
        """A job put back in the queue by a stopping instance: the next one finds it queued."""

    def _retry_later(self, report: JobReport) -> bool:
        """Did the job stop for a reason of the service's own that passes (its database)?"""
        return False

    def _run(self, job_id: str) -> None:
        if not self._claim(job_id):
            return  # cancelled while queued, or taken already
        row = self.store.job(job_id)
        assert row is not None
        src_pw, dst_pw = self.box.open(row["source_secret"]), self.box.open(row["target_secret"])
        if src_pw is None or dst_pw is None:
            self.store.finish(job_id, "failed", None, "the passwords of this import are no longer available: "
                                                      "start it again")
            return
        req, src_opts, dst_opts = self._options(row)
        try:
            gate = WriteGate(open=True)
            # The passwords go in as values, never as env:/file: references to resolve.
            if json.loads(row["request"])["source"].get("oauth"):  # its secret: a Google/Microsoft sign-in
                src_opts.oauth_token = self._signed_in_source(job_id, src_pw)
            else:
                src_opts.password = Secret(src_pw) if src_pw else None
            dst_opts.password = Secret(dst_pw) if dst_pw else None
            src, dst = build_side(src_opts, gate), build_side(dst_opts, gate)
            if src.label == dst.label:
                raise MigrateError("the source and the target are the same mailbox")
            req.journal = self._journal_for(dst)
        except MigrateError as exc:
            self.store.finish(job_id, "failed", None, redact(exc.message))
            return
        req.connections, held = self._share_connections(src, dst)
        try:
            try:
                handle = start_import(req, sides=(src, dst))
            except MigrateError as exc:
                self.store.finish(job_id, "failed", None, redact(exc.message))
                return
            with self._lock:
                self._handles[job_id] = handle
                self._sides[job_id] = (src, dst)
            if self._stopping.is_set():  # stop() came while it started: its cancel missed this one
                handle.cancel(_STOPPING)
            try:  # the handle stays listed until the job's end is stored: its progress shows meanwhile
                self._finish(job_id, handle, req, src, dst)
            finally:
                with self._lock:
                    self._handles.pop(job_id, None)
                    self._sides.pop(job_id, None)
        finally:
            self._give_back(held)

    def _journal_for(self, dst: Side) -> Any:
        """Where the job's journal is: a file under the service's home (a queue worker: the database)."""
        return self.cfg.home / default_journal_path(dst.label).relative_to(state_home())

    def _give_back(self, held: Any) -> None:
        self.shares.give_back(held)

    def _share_connections(self, src: Side, dst: Side) -> tuple[int, Any]:
        """This import's part of its servers' connection caps (``connections.py``)."""
        with self._lock:
            running = len(self._handles) + 1
        contenders = min(self.cfg.jobs, running + self._queue.qsize())
        return self.shares.take(servers_of(src, dst), wanted=self.cfg.connections, contenders=contenders)

    def _signed_in_source(self, job_id: str, sealed_record: str) -> JobToken:
        """Fresh access tokens from the job's refresh token; a rotated one is sealed back into the job."""
        record = parse_record(sealed_record)
        if record is None:
            raise MigrateError("the Google/Microsoft sign-in of this import is damaged: sign in again")
        return job_token(self.cfg, record, lambda text: self.store.keep_source_secret(job_id, self.box.seal(text)))

    def _finish(self, job_id: str, handle: JobHandle, req: ImportRequest, src: Side, dst: Side) -> None:
        try:
            with contextlib.suppress(BaseException):  # the report carries what ended the job
                handle.wait()
            report = handle.report
        finally:
            src.factory.discard()
            dst.factory.discard()
        row = self.store.job(job_id)
        assert row is not None
        if report.status == "interrupted" and self._stopping.is_set() and not row["cancel_requested"]:
            self.store.requeue(job_id)  # secrets kept: the next instance resumes it
            self._handed_back(job_id)
            return
        if self._retry_later(report) and not row["cancel_requested"]:
            assert report.error is not None
            log.warning("import %s: %s: it goes on in %.0f s", job_id, redact(report.error.message), _RETRY_LATER_S)
            self.store.requeue(job_id)  # a passing fault of ours, not the import's: it goes on soon
            self._handed_back(job_id, after=_RETRY_LATER_S)
            return
        if report.status == "waiting" and report.resume_at is not None and not row["cancel_requested"]:
            self._wait_for_budget(job_id, handle, report)  # no confirmation mail: the job is not done
            return
        state = {"ok": "done", "partial": "partial", "failed": "failed"}.get(report.status, "failed")
        if row["cancel_requested"] and report.status in ("interrupted", "failed", "waiting"):
            state = "cancelled"
        if state != "cancelled":
            try:
                report.notification = notify_job(req, src, dst, spec_for(req, src, dst), report)
            except Exception:  # noqa: BLE001 - the migration is done whatever the mail does
                log.exception("import %s: confirmation mail failed", job_id)
        report.compute_totals()
        error = redact(report.error.message) if report.error is not None else None
        self.store.finish(job_id, state, to_jsonable(report), error, progress=handle.progress.snapshot())

    def _wait_for_budget(self, job_id: str, handle: JobHandle, report: JobReport) -> None:
        assert report.resume_at is not None
        report.compute_totals()
        error = redact(report.error.message) if report.error is not None else None
        resume_at = report.resume_at.timestamp()
        if self.store.wait_for_budget(job_id, to_jsonable(report), error, resume_at,
                                      progress=handle.progress.snapshot()):
            self.schedule(job_id, resume_at)
