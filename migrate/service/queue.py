"""Imports on a PostgreSQL task queue: procrastinate, in the database that holds everything else.

``serve --database`` stores a job (``db``) and puts its id on the queue; ``mailmigrate worker``
processes on any host take ids off it (``worker.py``). The service's jobs table stays the truth
of what an import is and where it stands; a queue entry only says "run this one now (or at
``schedule_at``)". So an entry that got lost (the service died between storing a job and queueing
it) is found again by the workers' sweep (``unqueued_jobs``), and one queued twice is harmless:
every entry of an import has the same ``lock`` (procrastinate never runs two at once) and a job
is claimed in the jobs table before it runs.

procrastinate's own tables (``procrastinate_jobs``, ...) are created by ``mailmigrate db upgrade``
(``apply_schema``) with ours; a worker checks that they exist before it starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import procrastinate
    import psycopg

log = logging.getLogger(__name__)

TASK = "mailmigrate.run_import"  # the one task: run (or go on with) the import of this id
QUEUE = "imports"


def _procrastinate():  # type: ignore[no-untyped-def]
    try:
        import procrastinate
    except ImportError:
        raise UsageError("the task queue (procrastinate) is not installed",
                         hint="pip install 'mailmigrate[postgres]'") from None
    return procrastinate


def queue_app(url: str, *, pool_size: int = 4, sync: bool = False) -> procrastinate.App:
    """A procrastinate app on the database at ``url`` (not opened): for a worker's event loop, or
    (``sync``) to queue from any thread. (Its pools check a connection before lending it: after a
    database restart the first use gets a new connection, not a dead one.)"""
    procrastinate = _procrastinate()
    args = {"conninfo": url, "min_size": 1, "max_size": pool_size,
            "kwargs": {"application_name": "mailmigrate-queue"}}
    connector = procrastinate.SyncPsycopgConnector(**args) if sync else procrastinate.PsycopgConnector(**args)
    return procrastinate.App(connector=connector)


def has_schema(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
    return row is not None and row[0] is not None


def check_database(url: str) -> None:
    """Refuse to start serve or a worker on a database without our tables or the queue's: one
    line, exit 2 (3 or 4 when PostgreSQL refuses the login or cannot be reached)."""
    from ..store import postgres_schema
    from ..store.postgres import connect

    with contextlib.closing(connect(url)) as conn:
        if postgres_schema.pending(conn) or not has_schema(conn):
            raise UsageError("the database's schema is not up to date for this mailmigrate",
                             hint="run: mailmigrate db upgrade --database URL, then start again")


def apply_schema(conn: psycopg.Connection) -> bool:
    """Create procrastinate's tables if they are missing (``db upgrade``); True if it did."""
    if has_schema(conn):
        return False
    procrastinate = _procrastinate()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x6D6D_6462_0002,))  # two upgrades at once
        if has_schema(conn):
            return False
        conn.execute(procrastinate.schema.SchemaManager.get_schema())  # type: ignore[arg-type]
    return True


class JobQueue:
    """Puts imports on the queue (from any thread, synchronously)."""

    def __init__(self, url: str) -> None:
        self.app = queue_app(url, pool_size=2, sync=True)
        self.app.open()

    def put(self, job_id: str, at: float | None = None) -> None:
        """Run ``job_id`` now, or not before ``at`` (epoch seconds). One waiting entry per import:
        a second is not added (``queueing_lock``)."""
        procrastinate = _procrastinate()
        schedule = dt.datetime.fromtimestamp(at, dt.UTC) if at is not None else None
        # AlreadyEnqueued: an entry waits already; the job reads its state from the jobs table when it runs.
        with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
            self.app.configure_task(TASK, queue=QUEUE, lock=job_id, queueing_lock=job_id,
                                    schedule_at=schedule).defer(job_id=job_id)

    def close(self) -> None:
        self.app.close()


# Jobs the service holds as queued (or running) that have no entry to run them: the service died
# between storing a job and queueing it, or an entry failed. Workers look for them now and then.
_UNQUEUED = """
SELECT j.id FROM service.jobs j
WHERE j.state IN ('queued', 'running')
  AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs p
                  WHERE p.lock = j.id AND p.status IN ('todo', 'doing'))
ORDER BY j.created_at
"""


def unqueued_jobs(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(_UNQUEUED).fetchall()]


class QueueClient:
    """What ``serve --database`` has in place of the in-process pool: it queues, workers run.

    A running import's progress and report are what its worker last stored (every second or so);
    a cancel is stored and seen by the worker that runs the import."""

    def __init__(self, url: str, store: Any) -> None:
        self.store = store
        self.queue = JobQueue(url)

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 30.0) -> None:
        self.queue.close()

    def submit(self, job_id: str) -> None:
        self.queue.put(job_id)

    def cancel(self, job_id: str) -> str | None:
        return self.store.request_cancel(job_id)

    def live_report(self, job_id: str) -> None:
        return None

    def live_progress(self, job_id: str) -> None:
        return None
