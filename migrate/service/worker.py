"""``mailmigrate worker``: runs the queued imports of a ``serve --database`` service, on any host.

A worker is a procrastinate worker (``queue.py``) whose one task runs an import through the same
code as ``serve``'s in-process pool (``runner.Runner``), with what changes when many processes
share one database:

- the journal, ledger, locks and daily budgets are in the database (``PgJournal``), so two
  imports into one target on two workers see each other's ledger and folder locks;
- caps hold across all workers (``slots.py``): ``--max-per-provider gmail=50`` imports from one
  provider at once, and each account's connections within its preset's cap; an import that finds
  no free slot goes back to the queue for ``RETRY_S`` seconds;
- a running import's report and progress are stored every ``LIVE_S`` for the pages and the API,
  and a cancel stored by ``serve`` is seen here within that time;
- a worker that dies leaves its imports to the others: it sends heartbeats, and every worker
  puts the imports of one silent for ``--stalled-after`` seconds back in the queue (the engine
  resumes them from the journal; the dead worker's locks died with its database sessions);
- SIGTERM (or Ctrl-C): the imports in flight stop after their current batch and go back to the
  queue for another worker, then the worker exits; a second signal does not cut them short.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..report import to_jsonable
from ..sides import Side
from ..store.location import DatabaseLost
from ..store.pg_locks import pool_for
from .config import ServiceConfig
from .crypto import SecretBox
from .db import BUDGET_WAITING, FINAL
from .queue import QUEUE, TASK, JobQueue, check_database, queue_app, unqueued_jobs
from .runner import Runner
from .slots import Slots

log = logging.getLogger(__name__)

LIVE_S = 1.0  # how often a running import's progress is stored and its cancel looked for
RETRY_S = 5.0  # an import that found no free slot is tried again after this long
SWEEP_S = 15.0  # how often a worker looks for imports without a queue entry


class NotNow(Exception):
    """The import cannot start now (a cap is full): back to the queue, tried again soon."""


class QueueRunner(Runner):
    """The in-process runner's job code, fed by the queue instead of its own threads."""

    def __init__(self, cfg: ServiceConfig, store: Any, box: SecretBox, *, queue: JobQueue, slots: Slots,
                 max_per_provider: dict[str, int]) -> None:
        super().__init__(cfg, store, box)
        assert cfg.database is not None
        self.queue = queue
        self.slots = slots
        self.max_per_provider = max_per_provider
        self._saver = threading.Thread(target=self._watch_running, name="import-live", daemon=True)
        self._cancelled: set[str] = set()

    # --- lifecycle: no threads of its own; the queue calls run_job ------------------------------

    def start(self) -> None:
        self._saver.start()

    def run_job(self, job_id: str) -> None:
        """Run (or go on with) one import: what a queue entry asks for."""
        row = self.store.job(job_id)
        if row is None or row["state"] in FINAL:
            return
        if row["state"] == BUDGET_WAITING:
            if (row["resume_at"] or 0) > self.clock():
                self.queue.put(job_id, at=row["resume_at"])  # an early entry (a clock moved back)
                return
            if not self.store.resume_waiting(job_id):
                return
        if self._stopping.is_set():  # taken while stopping: for another worker
            self._handed_back(job_id)
            return
        log.info("import %s: running here", job_id)
        try:
            self._run(job_id)
        except NotNow as why:
            log.info("import %s: %s: back in the queue for %.0f s", job_id, why, RETRY_S)
            self.store.requeue(job_id)
            self.queue.put(job_id, at=time.time() + RETRY_S)
        except DatabaseLost as exc:  # before the import began (its slots): the sweep queues it again
            log.warning("import %s: %s", job_id, exc.message)
            with contextlib.suppress(Exception):
                self.store.requeue(job_id)
                self.queue.put(job_id, at=time.time() + RETRY_S)
        except Exception:  # noqa: BLE001 - one import's bug never stops the worker
            log.exception("import %s: internal error", job_id)
            with contextlib.suppress(Exception):
                self.store.finish(job_id, "failed", None, "internal error")

    # --- the Runner's hooks ---------------------------------------------------------------------

    def _claim(self, job_id: str) -> bool:
        # A running one was left by a worker that died: procrastinate runs one entry of an
        # import at a time (its lock), so whoever runs this entry may take the import over.
        return self.store.claim(job_id, take_over=True)

    def _handed_back(self, job_id: str, *, after: float = 0.0) -> None:
        self.queue.put(job_id, at=time.time() + after if after else None)

    def _retry_later(self, report: Any) -> bool:
        # database-lost: the journal's database went away mid-import (restarted, fail-over).
        # job-running: the same import still holds its job lock: its worker's host was cut off,
        # and PostgreSQL ends that session (frees the lock) once its keepalives go unanswered.
        return report.error is not None and report.error.reference in ("database-lost", "job-running")

    def schedule(self, job_id: str, resume_at: float) -> None:
        self.queue.put(job_id, at=resume_at)

    def _journal_for(self, dst: Side) -> Any:
        from ..store import PgJournal

        assert self.cfg.database is not None
        return PgJournal(self.cfg.database, dst.label)

    def _share_connections(self, src: Side, dst: Side) -> tuple[int, Any]:
        """This worker's share (as in ``serve``), then slots that hold across all workers: the
        source provider's import cap and each account's connection cap. Raises NotNow."""
        n, local = super()._share_connections(src, dst)
        holding = self.slots.holding()
        try:
            provider = src.provider or "imap"
            cap = self.max_per_provider.get(provider)
            if cap is not None and not holding.take(f"imports:{provider}", cap):
                raise NotNow(f"{cap} imports from {provider} run already (--max-per-provider)")
            for side in (src, dst):
                if side.connection is None or not side.connection_cap:
                    continue
                account = f"connections:{side.connection.host.lower()}:{side.connection.port}:" \
                          f"{(side.login or side.email or side.label).lower()}"
                got = holding.take(account, side.connection_cap, want=n)
                if not got:
                    raise NotNow(f"{side.email or side.label} uses all its {side.connection_cap} connections")
                n = min(n, got)
        except BaseException:
            holding.release()
            super()._give_back(local)
            raise
        return n, (local, holding)

    def _give_back(self, held: Any) -> None:
        local, holding = held
        holding.release()
        super()._give_back(local)

    # --- live progress and cancels, for serve ---------------------------------------------------

    def _watch_running(self) -> None:
        while not self._stopping.wait(LIVE_S):
            try:
                self._store_live()
            except Exception:  # noqa: BLE001 - the database is away: the next round tries again
                log.warning("could not store the progress of the running imports", exc_info=True)

    def _store_live(self) -> None:
        ids = self.running_ids()
        if not ids:
            return
        self._cancelled &= set(ids)  # only running imports: the set does not grow with the years
        for job_id in self.store.cancel_requested(ids):
            if job_id not in self._cancelled:
                self._cancelled.add(job_id)
                log.info("import %s: cancelled", job_id)
                self.stop_running(job_id)
        for job_id in ids:
            with self._lock:
                handle = self._handles.get(job_id)
            if handle is not None and not handle.done:
                self.store.save_live(job_id, to_jsonable(handle.report), handle.progress.snapshot())


def parse_caps(values: list[str] | None) -> dict[str, int]:
    """``["gmail=50", ...]`` -> ``{"gmail": 50}``; a one-line UsageError for a bad one."""
    from ..errors import UsageError
    from ..providers import names

    caps: dict[str, int] = {}
    for value in values or ():
        name, sep, number = value.partition("=")
        name = name.strip().lower()
        if not sep or not number.strip().isdigit() or int(number) < 1:
            raise UsageError(f"--max-per-provider {value!r} is not PROVIDER=N", hint="e.g. --max-per-provider gmail=50")
        if name not in names():
            raise UsageError(f"--max-per-provider: no provider preset named {name!r}",
                             hint=f"one of: {', '.join(names())}")
        caps[name] = int(number)
    return caps


class Worker:
    """One ``mailmigrate worker`` process."""

    def __init__(self, cfg: ServiceConfig, *, concurrency: int, max_per_provider: dict[str, int],
                 stalled_after: float) -> None:
        assert cfg.database is not None
        self.cfg = cfg
        self.concurrency = concurrency
        self.max_per_provider = max_per_provider
        self.stalled_after = stalled_after
        self.name = f"{socket.gethostname()}-{os.getpid()}"

    def check(self) -> None:
        assert self.cfg.database is not None
        check_database(self.cfg.database)

    def run(self) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(self._main())

    async def _main(self) -> None:
        from .db import open_service_store

        url = self.cfg.database
        assert url is not None
        loop = asyncio.get_running_loop()
        # procrastinate runs each (synchronous) import in the loop's default executor.
        loop.set_default_executor(ThreadPoolExecutor(self.concurrency + 2, thread_name_prefix="import"))
        # The worker keeps idle database connections for the next import (journals, locks, slots):
        # hundreds of imports, not thousands of connections opened and closed.
        connections = pool_for(url)
        connections.retain()
        store = open_service_store(self.cfg)
        box = SecretBox.load(self.cfg.home, self.cfg.secret_key)
        jobs = JobQueue(url)
        slots = Slots(url)
        runner = QueueRunner(self.cfg, store, box, queue=jobs, slots=slots, max_per_provider=self.max_per_provider)
        app = queue_app(url, pool_size=self.concurrency + 3)

        @app.task(name=TASK, queue=QUEUE)
        def run_import(job_id: str) -> None:
            runner.run_job(job_id)

        from procrastinate.worker import Worker as QueueWorker

        runner.start()
        async with app.open_async():
            worker = QueueWorker(
                app, queues=[QUEUE], name=self.name, concurrency=self.concurrency, install_signal_handlers=False,
                update_heartbeat_interval=max(0.5, self.stalled_after / 6),
                stalled_worker_timeout=self.stalled_after, listen_notify=True,
                fetch_job_polling_interval=2.0)

            def on_signal(signum: int) -> None:
                log.info("worker %s: %s: handing the running imports back", self.name, signal.Signals(signum).name)
                threading.Thread(target=runner.stop, name="hand-back", daemon=True).start()
                worker.stop()  # takes no new entry; waits for the running ones to end

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig)
            sweeper = asyncio.create_task(self._sweep(app, jobs, store))
            print(f"mailmigrate worker {self.name}: {self.concurrency} at once; waiting for imports", flush=True)
            try:
                await worker.run()
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sweeper
        await asyncio.to_thread(runner.stop)
        jobs.close()
        slots.close()
        store.close()
        connections.release()
        print(f"mailmigrate worker {self.name}: stopped", flush=True)

    async def _sweep(self, app: Any, jobs: JobQueue, store: Any) -> None:
        """Now and then: put the imports of silent (dead) workers back in the queue, and queue
        those that have no entry (the service died between storing and queueing one)."""
        last_unqueued = 0.0
        while True:
            await asyncio.sleep(max(0.5, self.stalled_after / 3))
            try:
                stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=self.stalled_after)
                for entry in stalled:
                    log.warning("import %s: its worker stopped answering: back in the queue",
                                entry.task_kwargs.get("job_id"))
                    try:
                        await app.job_manager.retry_job(entry, retry_at=dt.datetime.now(dt.UTC))
                    except Exception:  # noqa: BLE001 - another worker's sweep was first
                        log.info("import %s: taken back already", entry.task_kwargs.get("job_id"))
                if time.monotonic() - last_unqueued >= SWEEP_S:
                    last_unqueued = time.monotonic()
                    for job_id in await asyncio.to_thread(self._unqueued):
                        log.warning("import %s: had no queue entry: queued", job_id)
                        await asyncio.to_thread(jobs.put, job_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database is away: next round
                log.warning("worker %s: sweep failed", self.name, exc_info=True)

    def _unqueued(self) -> list[str]:
        assert self.cfg.database is not None
        pool = pool_for(self.cfg.database)  # kept by this worker: no connect every round
        conn = pool.get()[0]
        try:
            return unqueued_jobs(conn)
        finally:
            pool.put(conn)
