"""The engine as a library: start a job, follow its events, cancel it, read its outcome.

    from migrate.engine import JobSpec, start, events

    handle = start(spec, on_event=print)     # runs in its own thread
    ...
    handle.cancel()                          # cooperative: ends within the current batch
    report = handle.wait()                   # the JobReport (status, exit_code, folders...)

or, pulling the events instead::

    handle = start(spec, stream=True)
    for event in handle.events():            # ends after JobDone
        ...

A ``JobSpec`` says what to copy where (its endpoint factories open the two sides; build one from
user options with ``migrate.api.spec_for``). Events are frozen dataclasses
(``migrate.engine.events``): ``FolderPlanned``, ``Progress``, ``MessageFailed``, ``FolderDone``,
then ``JobDone`` exactly once, last, whatever happened. ``on_event`` is called from the job's own
threads, one event at a time: keep it quick.

Before anything is copied the job checks that it fits the target (``FitChecked``; the report's
``fit``); a job stopped by a provider's daily budget ends with status "waiting" and ``resume_at``
(run it again then: ``migrate.engine.budget.run_with_waits``); while it runs,
``handle.progress.snapshot()["eta_text"]`` says when a budget makes it long.

The CLI's ``import`` (through ``migrate.api.run_import``) and the batch runner drive jobs through
this module only.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Literal

from ..errors import ExitCode, MigrateError, redact
from ..report import ErrorInfo, JobReport, utcnow
from . import events
from .job import Job, JobSpec
from .progress import Progress

log = logging.getLogger(__name__)

JobState = Literal["created", "running", "stopping", "done"]


class JobHandle:
    """One job, started (``start``) or ready to start (``JobHandle(spec).start()``)."""

    def __init__(self, spec: JobSpec, *, on_event: Callable[[events.Event], None] | None = None,
                 progress: Progress | None = None, stream: bool = False) -> None:
        self.spec = spec
        self._on_event = on_event
        self._queue: queue.SimpleQueue[events.Event] | None = queue.SimpleQueue() if stream else None
        self._job = Job(spec, progress, emit=self._deliver)
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._state: JobState = "created"
        self._lock = threading.Lock()

    # --- control ------------------------------------------------------------------------------

    def start(self) -> JobHandle:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this job was started already")
            self._thread = threading.Thread(target=self._run, name=f"job-{self.spec.job_id}", daemon=True)
            if self._state == "created":
                self._state = "running"
        self._thread.start()
        return self

    def cancel(self, message: str | None = None) -> None:
        """Ask the job to stop: every worker ends within its current batch, what was copied stays
        copied and is reported (status "interrupted": a re-run resumes). A handle cancelled
        before it started still runs to JobDone, copying nothing. ``message``: the report's
        error message (default "the job was stopped before it finished")."""
        with self._lock:
            if self._state in ("created", "running"):
                self._state = "stopping"
        self._job.stop(message)

    def wait(self, timeout: float | None = None) -> JobReport:
        """The final report, once the job is done. Re-raises what ended the job if it could not
        even begin (e.g. ``JobLocked``: the same job runs elsewhere; a journal that cannot be
        opened): the report then carries that error too. ``TimeoutError`` if not done in time."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"job {self.spec.job_id} still running")
        if self._error is not None:
            raise self._error
        return self._job.report

    # --- state --------------------------------------------------------------------------------

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def report(self) -> JobReport:
        """The job's report: final once ``state`` is "done" (filled in as the job goes before)."""
        return self._job.report

    @property
    def progress(self) -> Progress:
        """The live counters (what the terminal UI draws)."""
        return self._job.progress

    def events(self) -> Iterator[events.Event]:
        """Every event of the job, in order, ending with ``JobDone`` (needs ``stream=True``)."""
        if self._queue is None:
            raise RuntimeError("start the job with stream=True to iterate over its events")
        while True:
            event = self._queue.get()
            yield event
            if isinstance(event, events.JobDone):
                return

    # --- internals ----------------------------------------------------------------------------

    def _deliver(self, event: events.Event) -> None:
        if self._queue is not None:
            self._queue.put(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # noqa: BLE001 - a listener's bug never stops the job
                log.exception("event listener failed on %s", type(event).__name__)

    def _run(self) -> None:
        try:
            self._job.run()
        except BaseException as exc:  # noqa: BLE001 - handed to wait(), and into the report
            self._error = exc
            r = self._job.report
            if isinstance(exc, MigrateError):
                r.error = ErrorInfo(reference=exc.reference, message=exc.message, hint=exc.hint)
                r.exit_code = int(exc.exit_code)
            else:
                r.error = ErrorInfo(reference="internal-error",
                                    message=redact(f"internal error: {type(exc).__name__}: {exc}"))
                r.exit_code = int(ExitCode.CONNECTION)
            r.status = "failed" if r.totals.copied == 0 else "interrupted"
            r.finished_at = r.finished_at or utcnow()
        finally:
            with self._lock:
                self._state = "done"
            self._deliver(events.JobDone(self._job.report))
            self._finished.set()


def start(spec: JobSpec, *, on_event: Callable[[events.Event], None] | None = None,
          progress: Progress | None = None, stream: bool = False) -> JobHandle:
    """Start the job ``spec`` describes, in its own thread; see the module docstring.

    ``on_event``: called with each event; ``stream``: also keep them for ``handle.events()``;
    ``progress``: live counters to update (the terminal UI passes the ones it draws)."""
    return JobHandle(spec, on_event=on_event, progress=progress, stream=stream).start()


def run(spec: JobSpec, *, on_event: Callable[[events.Event], None] | None = None,
        progress: Progress | None = None) -> JobReport:
    """Start the job and wait for its report (Ctrl-C cancels it cooperatively, then waits)."""
    handle = start(spec, on_event=on_event, progress=progress)
    try:
        return handle.wait()
    except KeyboardInterrupt:
        handle.cancel("interrupted by the user")
        return handle.wait()
