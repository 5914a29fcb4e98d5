"""Run a validated batch (``read_batch``): many mailboxes at once, each an ordinary import job.

Concurrency is bounded twice:

* ``parallel`` rows run at the same time at most (``mailmigrate batch --parallel``);
* per IMAP server (host and port), the connections of all running rows together never exceed the
  provider preset's connection cap. Each row gets ``connections = min(preset caps of its sides,
  the server's cap shared among the rows that may run on it at once)`` (at least 1), and a row
  starts only when every server it uses has room for its connections (a row whose own need is
  larger than a cap, e.g. source and target on one server with a cap of 1, waits until it has
  that server to itself). Rows that fit start in file order; a row waiting for a busy server does
  not hold up rows for other servers.

Rows never share state except through the journal: by default each row's journal is the
per-target default (``migrate.journal.default_journal_path``), so rows with one target share one
SQLite file and its per-folder locks, and a message present in two sources arrives once. One bad
row (wrong password, unreachable host, full target, even an internal error) is recorded with its
outcome and never stops the others. The batch resumes like a single import: run it again and every
row continues from its journal; finished rows re-check quickly and copy nothing.

Batch exit code (``BatchReport.exit_code``): 0 every row ok; 1 the batch ran to the end but at
least one row failed, stopped, or had messages that failed (see each row's ``exit_code``: 1 some
messages failed, 2 input error or does not fit the target, 3 login refused, 4 connection/TLS
failure or stopped); 4 the batch itself was interrupted (Ctrl-C), or every row not done waits for
a daily budget (``--no-wait``): running the same command again resumes. (An invalid CSV is
refused by the CLI with 2 before anything runs.)

Secrets from the CSV only flow as the row's ``SideSpec`` refs into ``build_side``, which turns
them into ``Secret`` objects (registered with ``errors.redact``); the report, the tables and the
journal hold addresses, server labels, counts and redacted server answers only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from ..api import ImportRequest, notify_job, spec_for, with_start_mail
from ..engine import JobHandle, JobSpec
from ..engine.budget import sleep_until
from ..engine.progress import Progress
from ..errors import ExitCode, MigrateError, redact, register_secret
from ..gate import WriteGate
from ..journal import default_journal_path
from ..notify.options import NotifyOptions, mail_state
from ..report import ErrorInfo, JobReport, dumps, load, utcnow, write_private
from ..sides import Side, SideOptions, build_side
from .reader import BatchRow, SideSpec

RowStatus = Literal["ok", "partial", "failed", "interrupted", "dry-run", "waiting"]
BatchStatus = Literal["ok", "partial", "interrupted", "dry-run", "waiting"]
ServerKey = tuple[str, int]


# --- the report ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class RowReport:
    """One CSV row's outcome. ``report`` is the row's job report (None if it never ran)."""

    line: int  # physical line of the row in the CSV file
    row_id: str
    source: str  # source address as written in the CSV
    target: str
    source_account: str | None = None  # login@host:port (never a secret)
    target_account: str | None = None
    status: RowStatus = "failed"
    exit_code: int = int(ExitCode.CONNECTION)
    error: ErrorInfo | None = None
    connections: int = 0  # per side, as granted by the connection budget
    journal: str | None = None
    notify: list[str] = field(default_factory=list)
    # What happened to the row's confirmation mail: sent | failed | no-smtp | unchanged | off |
    # no-recipients | interrupted | none (see ``migrate.notify.options.mail_state``).
    mail: str = "none"
    duration_s: float = 0.0
    report: JobReport | None = None


@dataclass(kw_only=True)
class BatchTotals:
    rows: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    interrupted: int = 0
    waiting: int = 0  # stopped at a daily budget (``--no-wait``)
    copied: int = 0
    skipped_duplicates: int = 0
    failed_messages: int = 0
    bytes: int = 0
    source_messages: int = 0


@dataclass(kw_only=True)
class BatchReport:
    file: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float = 0.0
    dry_run: bool = False
    parallel: int = 4
    status: BatchStatus = "ok"
    exit_code: int = 0
    rows: list[RowReport] = field(default_factory=list)
    totals: BatchTotals = field(default_factory=BatchTotals)
    rerun_command: str | None = None

    def compute(self, *, interrupted: bool = False) -> None:
        t = BatchTotals(rows=len(self.rows))
        for r in self.rows:
            if r.status in ("ok", "dry-run"):
                t.ok += 1
            elif r.status == "partial":
                t.partial += 1
            elif r.status == "interrupted":
                t.interrupted += 1
            elif r.status == "waiting":
                t.waiting += 1
            else:
                t.failed += 1
            if r.report is not None:
                rt = r.report.totals
                t.copied += rt.copied
                t.skipped_duplicates += rt.skipped_duplicates
                t.failed_messages += rt.failed
                t.bytes += rt.bytes
                t.source_messages += rt.source_messages
        self.totals = t
        if interrupted:
            self.status, self.exit_code = "interrupted", int(ExitCode.CONNECTION)
        elif t.waiting and t.ok + t.waiting == t.rows:  # the rest goes on when the budgets allow
            self.status, self.exit_code = "waiting", int(ExitCode.CONNECTION)
        elif t.ok == t.rows:
            self.status, self.exit_code = ("dry-run" if self.dry_run else "ok"), int(ExitCode.OK)
        else:
            self.status, self.exit_code = "partial", int(ExitCode.PARTIAL)

    def to_json(self, indent: int | None = None) -> str:
        return dumps(self, indent=indent)

    def write_json(self, path: Path) -> None:
        # Private like the job reports it contains (addresses, subjects of failed messages).
        write_private(Path(path), self.to_json(indent=2))

    @classmethod
    def read_json(cls, path: Path) -> BatchReport:
        return load(cls, json.loads(Path(path).read_text(encoding="utf-8")))


# --- connection budget --------------------------------------------------------------------


def server_key(spec: SideSpec) -> ServerKey:
    return (spec.host.lower(), spec.port)


class ConnectionBudget:
    """Connections in use per server; a row takes all it needs at once or waits (no deadlock:
    nothing is held while waiting). A need larger than the cap is granted on an idle server."""

    def __init__(self, caps: dict[ServerKey, int]) -> None:
        self.caps = dict(caps)
        self.used: dict[ServerKey, int] = {k: 0 for k in caps}
        self.peak: dict[ServerKey, int] = {k: 0 for k in caps}
        self._lock = threading.Lock()

    def try_take(self, need: dict[ServerKey, int]) -> bool:
        with self._lock:
            if not all(self.used[k] == 0 or self.used[k] + n <= self.caps[k] for k, n in need.items()):
                return False
            for k, n in need.items():
                self.used[k] += n
                self.peak[k] = max(self.peak[k], self.used[k])
            return True

    def give_back(self, need: dict[ServerKey, int]) -> None:
        with self._lock:
            for k, n in need.items():
                self.used[k] -= n


def plan_connections(needs: list[dict[ServerKey, int]], caps: dict[ServerKey, int], *, parallel: int,
                     wanted: int) -> list[int]:
    """Connections per side for each row. ``needs[i]`` maps each capped server row i uses to how
    many of its sides are on it (1, or 2 when source and target share a server); a server's cap
    is shared among the rows that may run on it at once (at most ``parallel``)."""
    users: dict[ServerKey, int] = {}
    for need in needs:
        for k in need:
            users[k] = users.get(k, 0) + 1
    out = []
    for need in needs:
        n = wanted
        for k, sides in need.items():
            n = min(n, caps[k] // (sides * min(parallel, users[k])))
        out.append(max(1, n))
    return out


# --- one row's life -----------------------------------------------------------------------


@dataclass
class _Row:
    row: BatchRow
    out: RowReport
    src: Side | None = None
    dst: Side | None = None
    spec: JobSpec | None = None
    req: ImportRequest | None = None
    need: dict[ServerKey, int] = field(default_factory=dict)
    progress: Progress | None = None
    job: JobHandle | None = None
    state: str = "pending"  # pending | running | ok | partial | failed | interrupted | dry-run
    started: float | None = None


def side_options(spec: SideSpec, role: str, *, timeout: float = 60.0) -> SideOptions:
    return SideOptions(role, email=spec.email, username=spec.username, password=spec.password_ref,
                       provider=spec.provider, host=spec.host, port=spec.port, security=spec.security,
                       ca_file=spec.ca_file, insecure=spec.insecure,
                       oauth_token=spec.oauth_token_ref, timeout=timeout, interactive=False)


def with_tls(rows: list[BatchRow], *, source_ca_file: str | None = None, target_ca_file: str | None = None,
             insecure: bool = False) -> list[BatchRow]:
    """The batch's ``--source-ca-file``/``--target-ca-file``/``--insecure`` applied to every row
    (a row's own ``*_ca_file`` cell wins over the option)."""
    def side(spec: SideSpec, ca: str | None) -> SideSpec:
        return replace(spec, ca_file=spec.ca_file or ca, insecure=insecure)

    return [replace(r, source=side(r.source, source_ca_file), target=side(r.target, target_ca_file))
            for r in rows]


def _error(exc: MigrateError) -> ErrorInfo:
    return ErrorInfo(reference=exc.reference, message=exc.message, hint=exc.hint)


def _row_status(report: JobReport) -> RowStatus:
    # The job tells "failed" (never got going: login refused, server unreachable) from
    # "interrupted" (stopped midway, or cancelled: a re-run resumes) itself.
    return report.status


_INTERRUPTED = ErrorInfo(reference="interrupted", message="interrupted by the user",
                         hint="run the same command again: the batch resumes")
_NOT_STARTED = ErrorInfo(reference="not-started", message="not started: the batch was interrupted",
                         hint="run the same command again: the batch resumes")


# --- the runner ---------------------------------------------------------------------------


def run_batch(rows: list[BatchRow], *, parallel: int = 4, connections: int = 4,
              journal_dir: Path | None = None, report_path: Path | None = None, progress_ui: bool = False,
              dry_run: bool = False, retries: int = 8, retry_base: float = 1.0, timeout: float = 60.0,
              batch_count: int = 100, rerun_command: str | None = None, file: str | None = None,
              notify: NotifyOptions | None = None, source_ca_file: str | None = None,
              target_ca_file: str | None = None, insecure: bool = False, force: bool = False,
              wait: bool = True, wait_until: Callable[[datetime], None] | None = None,
              on_wait: Callable[[list[RowReport], datetime], None] | None = None) -> BatchReport:
    """Run every row (validated by ``read_batch``) and return the batch report.

    ``source_ca_file``/``target_ca_file``: trust this CA for every row's source/target (a row's own
    ``*_ca_file`` cell wins); ``insecure``: verify no certificate (``batch --insecure``).

    ``notify``: after each row (not in a dry run) a confirmation mail goes to the row's source and
    target addresses plus its ``notify`` cell's addresses (``notify.extra`` are added to every
    row), as ``mailmigrate import`` sends it; its outcome is the row report's ``notification``.

    ``force``: run rows the fit check says do not fit (``batch --force``); without it such a row
    fails alone (exit 2, its report's ``fit`` says why) and the others go on.

    A row stopped by a provider's daily budget (status "waiting", ``migrate.engine.budget``) is run
    again once the budget allows (``wait_until(resume_at)``, after ``on_wait(rows, resume_at)``);
    ``wait=False`` (``batch --no-wait``) leaves it waiting: the batch then exits 4.

    ``KeyboardInterrupt`` (Ctrl-C) stops the batch gracefully: running rows finish the folder they
    are in and stop, rows not started are reported "interrupted", and the report (written to
    ``report_path`` unless ``dry_run``) says exit 4. A second Ctrl-C while winding down propagates.
    """
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    rows = with_tls(rows, source_ca_file=source_ca_file, target_ca_file=target_ca_file, insecure=insecure)
    # Literal passwords from the CSV: scrub them from anything shown or stored, before anything runs.
    for r in rows:
        for s in (r.source, r.target):
            if s.password_ref and not s.password_ref.startswith(("env:", "file:")):
                register_secret(s.password_ref)

    report = BatchReport(file=file, started_at=utcnow(), dry_run=dry_run, parallel=parallel,
                         rerun_command=rerun_command)
    gate = WriteGate(open=not dry_run)  # every write of every row passes it (migrate/gate.py)
    t0 = time.monotonic()
    states: list[_Row] = []
    for r in rows:
        st = _Row(r, RowReport(line=r.line, row_id=r.row_id, source=r.source.email, target=r.target.email,
                               notify=list(r.notify)))
        states.append(st)
        try:  # resolves env:/file: secrets and presets; connects to nothing
            st.src = build_side(side_options(r.source, "source", timeout=timeout), gate)
            st.dst = build_side(side_options(r.target, "target", timeout=timeout), gate)
        except MigrateError as exc:
            _finish_row(st, error=_error(exc), exit_code=int(exc.exit_code), status="failed")
            continue
        st.out.source_account, st.out.target_account = st.src.label, st.dst.label

    # Connection caps per server, and each runnable row's share of them.
    caps: dict[ServerKey, int] = {}
    runnable = [st for st in states if st.src is not None and st.dst is not None]
    for st in runnable:
        for spec, side in ((st.row.source, st.src), (st.row.target, st.dst)):
            if side is not None and side.connection_cap:
                k = server_key(spec)
                caps[k] = min(caps.get(k, side.connection_cap), side.connection_cap)
                st.need[k] = st.need.get(k, 0) + 1
    granted = plan_connections([st.need for st in runnable], caps, parallel=parallel, wanted=connections)
    for st, n in zip(runnable, granted, strict=True):
        assert st.src is not None and st.dst is not None
        journal = journal_dir / default_journal_path(st.dst.label).name if journal_dir else None
        row_notify = None
        if notify is not None:
            row_notify = replace(notify, enabled=notify.enabled and not dry_run,
                                 extra=[*st.row.notify, *(a for a in notify.extra if a not in st.row.notify)])
        st.req = ImportRequest(source=side_options(st.row.source, "source", timeout=timeout),
                               target=side_options(st.row.target, "target", timeout=timeout),
                               dry_run=dry_run, journal=journal, connections=n, retries=retries,
                               retry_base=retry_base, batch_count=batch_count, rerun_command=rerun_command,
                               progress=False, notify=row_notify, force=force)
        st.spec = spec_for(st.req, st.src, st.dst)
        st.out.connections = st.spec.connections
        st.need = {k: sides * st.spec.connections for k, sides in st.need.items()}
        st.out.journal = None if dry_run else str(st.spec.journal_path)
    budget = ConnectionBudget(caps)

    stop = threading.Event()

    def work(st: _Row) -> None:
        assert st.spec is not None
        st.progress = Progress()
        assert st.req is not None and st.src is not None and st.dst is not None
        start_mail = with_start_mail(None, st.req, st.src, st.dst, st.spec, st.progress)  # a long row says so
        st.job = JobHandle(st.spec, on_event=start_mail, progress=st.progress)  # Ctrl-C cancels it from now on
        if stop.is_set():
            return
        try:
            jr = st.job.start().wait()
        except MigrateError as exc:  # e.g. the journal cannot be opened
            _finish_row(st, error=_error(exc), exit_code=int(exc.exit_code), status="failed")
            return
        except Exception as exc:  # noqa: BLE001 - one row's bug never stops the others
            _finish_row(st, error=ErrorInfo(reference="internal-error",
                                            message=redact(f"internal error: {type(exc).__name__}: {exc}"),
                                            hint="set MAILMIGRATE_DEBUG=1 and run this row with "
                                                 "'mailmigrate import' for details"),
                        exit_code=int(ExitCode.CONNECTION), status="failed")
            return
        st.out.report = jr
        cancelled = stop.is_set()
        if cancelled and jr.status == "interrupted":
            _finish_row(st, error=_INTERRUPTED, exit_code=int(ExitCode.CONNECTION), status="interrupted")
        else:
            _finish_row(st, error=jr.error, exit_code=jr.exit_code, status=_row_status(jr))
        if st.req is not None and st.req.notify is not None and st.src and st.dst \
                and gate.allow("mail", f"confirmation mail of row {st.row.line}"):
            if cancelled:  # the mail would announce an unfinished job as done: the re-run sends it
                jr.notification = "confirmation mail: not sent (the batch was interrupted)"
                return
            try:  # never raises for a mail problem; anything else must not fail the migrated row
                jr.notification = notify_job(st.req, st.src, st.dst, st.spec, jr)
            except Exception as exc:  # noqa: BLE001
                jr.notification = redact(f"confirmation mail: NOT sent ({type(exc).__name__}: {exc})")

    interrupted = False
    with _live_table(states, enabled=progress_ui):
        pending = list(runnable)
        running: dict[Future[None], _Row] = {}
        pool = ThreadPoolExecutor(max_workers=min(parallel, max(1, len(pending))), thread_name_prefix="row")
        try:
            while True:
                while pending or running:
                    if not stop.is_set():
                        for st in list(pending):
                            if len(running) >= parallel:
                                break
                            if budget.try_take(st.need):
                                pending.remove(st)
                                st.state, st.started = "running", time.monotonic()
                                running[pool.submit(work, st)] = st
                    elif pending:
                        for st in pending:
                            _finish_row(st, error=_NOT_STARTED, exit_code=int(ExitCode.CONNECTION),
                                        status="interrupted")
                        pending.clear()
                    if not running:
                        continue
                    try:
                        done, _ = wait_for(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                    except KeyboardInterrupt:
                        if stop.is_set():
                            raise  # second Ctrl-C: the caller decides how hard to stop
                        interrupted = True
                        stop.set()
                        for st in running.values():
                            if st.job is not None:
                                st.job.cancel()
                        continue
                    for fut in done:
                        st = running.pop(fut)
                        budget.give_back(st.need)
                        exc = fut.exception()
                        if exc is not None:  # work() catches everything; belt and braces
                            _finish_row(st, error=ErrorInfo(reference="internal-error",
                                                            message=redact(f"{type(exc).__name__}: {exc}")),
                                        exit_code=int(ExitCode.CONNECTION), status="failed")
                        elif st.state == "running":  # stopped before the job began
                            _finish_row(st, error=_NOT_STARTED, exit_code=int(ExitCode.CONNECTION),
                                        status="interrupted")
                # Rows stopped at a daily budget go on when it allows, unless told not to wait.
                waiting = [st for st in runnable if st.state == "waiting" and st.out.report is not None
                           and st.out.report.resume_at is not None]
                if not (wait and waiting) or stop.is_set() or dry_run:
                    break
                resume = min(st.out.report.resume_at for st in waiting)  # type: ignore[union-attr,type-var]
                if on_wait is not None:
                    on_wait([st.out for st in waiting], resume)
                try:
                    (wait_until or sleep_until)(resume)
                except KeyboardInterrupt:
                    interrupted = True
                    stop.set()
                    break
                for st in waiting:
                    st.state = "pending"
                pending = list(waiting)
        finally:
            pool.shutdown(wait=not running, cancel_futures=True)

    for st in states:  # what happened to each row's mail, for the table and the JSON report
        st.out.mail = mail_state(st.out.report.notification if st.out.report is not None else None)
    report.rows = [st.out for st in states]
    report.finished_at = utcnow()
    report.duration_s = round(time.monotonic() - t0, 3)
    report.compute(interrupted=interrupted)
    if report_path is not None and gate.allow("report", report_path):  # --dry-run writes nothing anywhere
        report.write_json(Path(report_path))
    return report


def _finish_row(st: _Row, *, error: ErrorInfo | None, exit_code: int, status: RowStatus) -> None:
    st.out.error = error
    st.out.exit_code = exit_code
    st.out.status = status
    st.out.duration_s = round(time.monotonic() - st.started, 3) if st.started else 0.0
    st.state = status


# --- live table (stderr) ------------------------------------------------------------------


def _human_bytes(n: float) -> str:
    from ..ui import human_bytes
    return human_bytes(n)


_STATE_STYLE = {"pending": "dim", "running": "cyan", "ok": "green", "dry-run": "cyan", "partial": "yellow",
                "failed": "red", "interrupted": "red", "waiting": "yellow"}


def live_table(states: list[_Row]):  # type: ignore[no-untyped-def]
    from rich.table import Table
    from rich.text import Text

    table = Table(title="mailmigrate batch", title_justify="left", expand=False)
    for col, just in (("line", "right"), ("source", "left"), ("target", "left"), ("state", "left"),
                      ("messages", "right"), ("size", "right"), ("rate", "right"), ("errors", "left")):
        table.add_column(col, justify=just, no_wrap=col != "errors", overflow="ellipsis")  # type: ignore[arg-type]
    for st in states:
        snap = st.progress.snapshot() if st.progress is not None else None
        state = st.state
        if state == "running" and snap is not None:
            state = (f"copying {snap['folders_done']}/{snap['folders_total']}" if snap["folders_total"]
                     else "connecting")
        msgs = f"{snap['done_messages']}/{snap['total_messages']}" if snap else "-"
        size = _human_bytes(float(snap["bytes"])) if snap else "-"  # type: ignore[arg-type]
        rate = f"{snap['rate_msgs_s']}/s" if snap and st.state == "running" else ""
        errors = []
        if snap and snap["failed"]:
            errors.append(f"{snap['failed']} failed")
        if snap and snap["retries"]:
            errors.append(f"{snap['retries']} retries")
        if st.out.error is not None:
            errors.append(st.out.error.message)
        table.add_row(str(st.row.line), st.row.source.email, st.row.target.email,
                      Text(state, style=_STATE_STYLE.get(st.state, "")), msgs, size, rate,
                      Text("; ".join(errors), style="red" if st.out.error or (snap and snap["failed"]) else ""))
    return table


def _live_table(states: list[_Row], *, enabled: bool) -> AbstractContextManager[None]:
    from ..ui import live

    return live(lambda: live_table(states), enabled)


# --- final table (stdout) -----------------------------------------------------------------


def summary_table(report: BatchReport):  # type: ignore[no-untyped-def]
    from rich.table import Table
    from rich.text import Text

    title = "batch" + (f" {Path(report.file).name}" if report.file else "")
    if report.dry_run:
        title += "  (dry run: nothing written)"
    table = Table(title=title, title_justify="left")
    table.add_column("line", justify="right")
    table.add_column("source")
    table.add_column("target")
    table.add_column("outcome")
    table.add_column("would copy" if report.dry_run else "copied", justify="right")
    table.add_column("already present", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("size", justify="right")
    table.add_column("time", justify="right")
    if not report.dry_run:
        table.add_column("mail", no_wrap=True)
    for r in report.rows:
        t = r.report.totals if r.report is not None else None
        cells = [str(r.line), r.source, r.target,
                 Text(f"{r.status} (exit {r.exit_code})", style=_STATE_STYLE.get(r.status, "")),
                 str(t.copied) if t else "-", str(t.skipped_duplicates) if t else "-",
                 Text(str(t.failed), style="red" if t.failed else "") if t else Text("-"),
                 _human_bytes(t.bytes) if t else "-", f"{r.duration_s:.1f}s"]
        if not report.dry_run:
            word, style = _MAIL_WORDS.get(r.mail, ("-", ""))
            cells.append(Text(word, style=style))
        table.add_row(*cells)
    tt = report.totals
    total = [Text("total", style="bold"), "", "", f"{tt.ok}/{tt.rows} ok", str(tt.copied),
             str(tt.skipped_duplicates), Text(str(tt.failed_messages), style="bold red" if tt.failed_messages
                                              else "bold"),
             _human_bytes(tt.bytes), f"{report.duration_s:.1f}s"]
    if not report.dry_run:
        sent = sum(r.mail == "sent" for r in report.rows)
        total.append(f"{sent}/{tt.rows} sent")
    table.add_row(*total)
    return table


# RowReport.mail -> the table's "mail" cell
_MAIL_WORDS = {"sent": ("sent", "green"), "failed": ("NOT sent", "red"), "no-smtp": ("not sent: no SMTP", "red"),
               "unchanged": ("not needed", ""), "off": ("off", ""), "no-recipients": ("no recipients", "red"),
               "interrupted": ("not sent", "yellow"), "none": ("-", "")}


def mail_line(report: BatchReport) -> str:
    """One line: how many rows' confirmation mails went out, and why the others did not."""
    words = {"sent": "sent", "failed": "NOT sent (SMTP error)",
             "no-smtp": "not sent (no SMTP server known for the target: give --smtp-host)",
             "unchanged": "not needed (nothing copied or failed)", "off": "off",
             "no-recipients": "not sent (no recipient addresses)", "interrupted": "not sent (interrupted)",
             "none": "not sent (the row did not run)"}
    counts: dict[str, int] = {}
    for r in report.rows:
        counts[r.mail] = counts.get(r.mail, 0) + 1
    parts = [f"{counts[k]} {w}" for k, w in words.items() if counts.get(k)]
    return f"confirmation mails: {', '.join(parts)}"


def print_batch_summary(report: BatchReport) -> None:
    from rich.console import Console

    from ..ui import out

    if not out.is_terminal:  # a log or a pipe: long lines beat addresses wrapped inside cells
        out = Console(highlight=False, width=max(out.width, 200), soft_wrap=True)
    out.print(summary_table(report))
    for r in report.rows:
        if r.error is not None:
            hint = f" (hint: {r.error.hint})" if r.error.hint else ""
            out.print(f"line {r.line}: {r.source} -> {r.target}: {r.status}: {r.error.message}{hint}",
                      markup=False, highlight=False, soft_wrap=True)
        elif r.report is not None and r.report.totals.failed:
            out.print(f"line {r.line}: {r.source} -> {r.target}: {r.report.totals.failed} messages failed "
                      "(see the JSON report)", markup=False, highlight=False, soft_wrap=True)
        fit = r.report.fit if r.report is not None else None
        if fit is not None and fit.outcome == "too_big":  # a row that does not fit says so in its error
            named = ", ".join(f"{m.folder} uid {m.uid} ({_human_bytes(m.size)})" for m in fit.too_big[:5])
            more = f" and {len(fit.too_big) - 5} more" if len(fit.too_big) > 5 else ""
            out.print(f"line {r.line}: {fit.text}: {named}{more}", markup=False, highlight=False, soft_wrap=True)
        note = r.report.notification if r.report is not None else None
        if note and r.mail in ("failed", "no-smtp", "no-recipients", "interrupted"):  # the mail did not go out
            out.print(f"line {r.line}: {note}", markup=False, highlight=False, soft_wrap=True)
    if not report.dry_run and report.rows:
        out.print(mail_line(report), markup=False, highlight=False, soft_wrap=True)
    t = report.totals
    parts = [f"{t.ok} ok"] + [f"{n} {what}" for n, what in ((t.partial, "partial"), (t.failed, "failed"),
                                                             (t.interrupted, "interrupted"), (t.waiting, "waiting"))
                              if n]
    verdict = {"ok": "[green]all rows done[/]", "dry-run": "[cyan]dry run[/]",
               "partial": "[yellow]done, some rows did not complete[/]",
               "interrupted": "[red]interrupted: run the same command again to resume[/]",
               "waiting": "[yellow]waiting for a daily budget: run the same command again after the time "
                          "shown[/]"}[report.status]
    out.print(f"batch: {', '.join(parts)} of {t.rows} rows; {verdict} (exit {report.exit_code})")


def has_stored_signin(provider: str, email: str) -> bool:
    """For ``read_batch``: is there a stored OAuth sign-in (``mailmigrate auth``) for this account?"""
    try:
        from .. import providers
        from ..oauth import stored_token_provider  # type: ignore[attr-defined]
    except ImportError:
        return False
    try:
        return stored_token_provider(providers.get(provider), email) is not None
    except MigrateError:
        return False
