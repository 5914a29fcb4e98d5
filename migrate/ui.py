"""Rendering only: progress while a job runs, the summary table after. The engine never prints.

rich renders for a terminal. Where output goes to a file or a pipe (cron, scripts, logs), the job
summary is plain text instead: full folder names, never cut to a terminal's width, and no rich
import, which costs a re-run with nothing to copy about 0.04 s, a sixth of its time.
"""

from __future__ import annotations

import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from .engine.progress import Progress
from .report import JobReport

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def __getattr__(name: str) -> Any:
    """``err`` and ``out``: rich consoles, created (and rich imported) on first use."""
    if name in ("err", "out"):
        return _console(name == "err")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def progress_line(snap: dict[str, object]) -> Text:
    from rich.text import Text

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
def live(render: Callable[[], Any], enabled: bool) -> Iterator[None]:
    """Redraw ``render()`` on stderr four times a second while the block runs; nothing (and no
    rich import) when disabled or when stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield
        return
    from rich.live import Live

    stop = threading.Event()
    with Live(render(), console=_console(True), refresh_per_second=4, transient=True) as screen:
        def loop() -> None:
            while not stop.wait(0.25):
                screen.update(render())
        th = threading.Thread(target=loop, daemon=True)
        th.start()
        try:
            yield
        finally:
            stop.set()
            th.join()


def live_progress(progress: Progress, enabled: bool) -> AbstractContextManager[None]:
    return live(lambda: progress_line(progress.snapshot()), enabled)


def _summary_title(report: JobReport) -> str:
    title = f"{report.source}  →  {report.target}"
    return title + "  (dry run: nothing written)" if report.dry_run else title


def _summary_columns(report: JobReport) -> list[tuple[str, bool]]:
    """(header, right-aligned)"""
    restored = [("restored", True)] if report.totals.restored else []
    return [("source folder", False), ("target folder", False), ("would copy" if report.dry_run else "copied", True),
            ("already present", True), ("failed", True), *restored, ("size", True), ("note", False)]


def _summary_rows(report: JobReport) -> list[list[str]]:
    show = bool(report.totals.restored)  # copied again: gone from the target since an earlier run
    rows = [[f.source, f.target or "-", str(f.copied), str(f.skipped_duplicates), str(f.failed),
             *([str(f.restored)] if show else []), human_bytes(f.bytes), f.note or ""] for f in report.folders]
    t = report.totals
    rows.append(["total", "", str(t.copied), str(t.skipped_duplicates), str(t.failed),
                 *([str(t.restored)] if show else []), human_bytes(t.bytes), f"{report.duration_s:.1f}s"])
    return rows


def _summary_notes(report: JobReport) -> list[str]:
    t, lines = report.totals, []
    if t.restored:
        lines.append(f"restored: {t.restored} messages had gone from the target since an earlier run"
                     " and were copied again")
    for f in report.folders:
        if f.stored_differently:
            lines.append(f"stored differently: {f.stored_differently} copies in '{f.target}' (the target"
                         " server changed them on arrival; their size differs from the source)")
    return lines


def summary_text(report: JobReport) -> str:
    """The summary as plain text (logs, pipes, cron mail)."""
    return "\n".join([_summary_title(report), *plain_table(_summary_columns(report), _summary_rows(report)),
                      *_summary_notes(report)])


def summary_table(report: JobReport) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=_summary_title(report), title_justify="left")
    for header, right in _summary_columns(report):
        table.add_column(header, justify="right" if right else "left", overflow="fold" if header == "note" else "ellipsis")
    rows = _summary_rows(report)
    for row in rows[:-1]:
        table.add_row(*row[:4], Text(row[4], style="red" if row[4] != "0" else ""), *row[5:])
    total = rows[-1]
    table.add_row(Text("total", style="bold"), "", Text(total[2], style="bold"), total[3],
                  Text(total[4], style="bold red" if total[4] != "0" else "bold"), *total[5:])
    return table


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1
               for ch in text)


def plain_table(columns: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of text aligned in columns two spaces apart; nothing is cut (for logs and pipes)."""
    widths = [max([_width(h)] + [_width(r[i]) for r in rows]) for i, (h, _) in enumerate(columns)]
    lines = []
    for cells in ([h for h, _ in columns], *rows):
        parts = [(" " * (w - _width(c)) + c) if right else (c + " " * (w - _width(c)))
                 for c, w, (_, right) in zip(cells, widths, columns, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return lines


_STATUS = {"ok": ("done", "green"), "partial": ("done, some messages failed", "yellow"),
           "dry-run": ("dry run", "cyan"), "interrupted": ("interrupted", "red"), "failed": ("failed", "red")}


def print_summary(report: JobReport) -> None:
    lines = [f"renamed: '{r['wanted']}' -> '{r['target']}' ({r['reason']})" for r in report.renamed_folders]
    if sys.stdout.isatty():
        lines = _summary_notes(report) + lines
    failures = report.failures()
    for f in failures[:50]:
        subj = f" subject={f.subject!r}" if f.subject else ""
        lines.append(f"failed: {f.folder} uid {f.uid}{subj}: {f.reason}")
    if len(failures) > 50:
        lines.append(f"... and {len(failures) - 50} more failures (see the JSON report)")
    word, color = _STATUS.get(report.status, (report.status, ""))
    status = f"status: {{}} (exit {report.exit_code})"
    error = None
    if report.error:  # one line, never wrapped: scripts grep it
        error = f"error: {report.error.message}" + (f" (hint: {report.error.hint})" if report.error.hint else "")
    if sys.stdout.isatty():
        out = _console(False)
        out.print(summary_table(report))
        for line in lines:
            out.print(line, markup=False, soft_wrap=True)
        out.print(status.format(f"[{color}]{word}[/]" if color else word))
        if report.notification:
            out.print(report.notification, markup=False, soft_wrap=True)
    else:
        text = [summary_text(report), *lines, status.format(word)]
        if report.notification:
            text.append(report.notification)
        sys.stdout.write("\n".join(text) + "\n")
        sys.stdout.flush()
    if error:
        if sys.stderr.isatty():
            _console(True).print(error, markup=False, soft_wrap=True)
        else:
            sys.stderr.write(error + "\n")
