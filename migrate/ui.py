"""Rendering only: progress while a job runs, the summary table after. The engine never prints."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .engine.progress import Progress
from .report import JobReport

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def progress_line(snap: dict[str, object]) -> Text:
    eta = snap.get("eta_s")
    eta_s = f"{int(eta) // 60}m{int(eta) % 60:02d}s" if isinstance(eta, (int, float)) else "-"
    t = Text()
    t.append(f"folders {snap['folders_done']}/{snap['folders_total']}  ", style="bold")
    t.append(f"messages {snap['done_messages']}/{snap['total_messages']}  ")
    t.append(f"copied {snap['copied']}  ", style="green")
    t.append(f"present {snap['duplicates']}  ")
    if snap["failed"]:
        t.append(f"failed {snap['failed']}  ", style="red")
    t.append(f"{human_bytes(float(snap['bytes']))}  {snap['rate_msgs_s']} msg/s  ETA {eta_s}")  # type: ignore[arg-type]
    if snap.get("retries"):
        t.append(f"  retries {snap['retries']}", style="yellow")
    if snap.get("last_event"):
        t.append(f"\n  {snap['last_event']}", style="dim")
    return t


@contextmanager
def live_progress(progress: Progress, enabled: bool) -> Iterator[None]:
    if not enabled or not err.is_terminal:
        yield
        return
    stop = threading.Event()
    with Live(progress_line(progress.snapshot()), console=err, refresh_per_second=4, transient=True) as live:
        def loop() -> None:
            while not stop.wait(0.25):
                live.update(progress_line(progress.snapshot()))
        th = threading.Thread(target=loop, daemon=True)
        th.start()
        try:
            yield
        finally:
            stop.set()
            th.join()


def summary_table(report: JobReport) -> Table:
    title = f"{report.source}  →  {report.target}"
    if report.dry_run:
        title += "  (dry run: nothing written)"
    table = Table(title=title, title_justify="left")
    table.add_column("source folder")
    table.add_column("target folder")
    table.add_column("would copy" if report.dry_run else "copied", justify="right")
    table.add_column("already present", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("size", justify="right")
    table.add_column("note", overflow="fold")
    for f in report.folders:
        table.add_row(f.source, f.target or "-", str(f.copied), str(f.skipped_duplicates),
                      Text(str(f.failed), style="red" if f.failed else ""), human_bytes(f.bytes), f.note or "")
    t = report.totals
    table.add_row(Text("total", style="bold"), "", Text(str(t.copied), style="bold"), str(t.skipped_duplicates),
                  Text(str(t.failed), style="bold red" if t.failed else "bold"), human_bytes(t.bytes),
                  f"{report.duration_s:.1f}s")
    return table


def print_summary(report: JobReport) -> None:
    out.print(summary_table(report))
    for r in report.renamed_folders:
        out.print(f"renamed: '{r['wanted']}' -> '{r['target']}' ({r['reason']})")
    failures = report.failures()
    for f in failures[:50]:
        subj = f" subject={f.subject!r}" if f.subject else ""
        out.print(f"failed: {f.folder} uid {f.uid}{subj}: {f.reason}", markup=False, soft_wrap=True)
    if len(failures) > 50:
        out.print(f"... and {len(failures) - 50} more failures (see the JSON report)")
    status = {"ok": "[green]done[/]", "partial": "[yellow]done, some messages failed[/]",
              "dry-run": "[cyan]dry run[/]", "interrupted": "[red]interrupted[/]", "failed": "[red]failed[/]"}
    out.print(f"status: {status.get(report.status, report.status)} (exit {report.exit_code})")
    if report.notification:
        out.print(report.notification, markup=False, soft_wrap=True)
    if report.error:
        err.print(f"error: {report.error.message}" + (f" (hint: {report.error.hint})" if report.error.hint else ""),
                  markup=False, soft_wrap=True)  # one line, never wrapped: scripts grep it
