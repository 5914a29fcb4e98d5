"""Rendering only: progress while a job runs, the summary table after. The engine never prints.

rich renders for a terminal. Where output goes to a file or a pipe (cron, scripts, logs), the job
summary is plain text instead: full folder names, never cut to a terminal's width, and no rich
import, which costs a re-run with nothing to copy about 0.04 s, a sixth of its time.
"""

from __future__ import annotations

import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from .engine.eta import human_bytes
from .engine.progress import Progress
from .report import JobReport

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    # A log or a pipe has no width: a notice stays one line there (rich would wrap it at 80 columns).
    console.soft_wrap = not console.is_terminal
    return console


def __getattr__(name: str) -> Any:
    """``err`` and ``out``: rich consoles, created (and rich imported) on first use."""
    if name in ("err", "out"):
        return _console(name == "err")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def human_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _num(snap: Mapping[str, object], key: str) -> float:
    v = snap.get(key)
    return float(v) if isinstance(v, int | float) else 0.0


def progress_parts(snap: Mapping[str, object]) -> list[tuple[str, str]]:
    """The progress of a job as (text, rich style) pieces, from a ``Progress.snapshot()`` (also an
    older one, read back from a journal): planning, then "scanning folders: 7/13", then copying
    with the percentage and the ETA from bytes, and the folders being copied."""
    phase = snap.get("phase", "copying")
    total, done = int(_num(snap, "total_messages")), int(_num(snap, "done_messages"))
    if phase == "planning":
        return [("planning: listing and creating folders", "bold")]
    if phase == "scanning":
        parts = [(f"scanning folders: {int(_num(snap, 'folders_scanned'))}/{int(_num(snap, 'folders_to_scan'))}",
                  "bold")]
        if total:
            parts.append((f"{total} messages", ""))
        return parts
    pct = snap.get("percent")
    if not isinstance(pct, int):
        pct = min(100, 100 * done // total) if total else 100
    parts = [(f"{pct}%", "bold"), (f"messages {done}/{total}", "")]
    if "total_bytes" in snap:
        parts.append((f"{human_bytes(_num(snap, 'bytes_done'))} of {human_bytes(_num(snap, 'total_bytes'))}", ""))
    else:
        parts.append((human_bytes(_num(snap, "bytes")), ""))
    if snap.get("rate_bytes_s"):
        parts.append((f"{human_bytes(_num(snap, 'rate_bytes_s'))}/s", ""))
    eta = snap.get("eta_s")
    if snap.get("eta_text"):  # a daily budget decides: "about 2 days: Gmail allows 2.5 GB a day; ..."
        parts.append((f"ETA {snap['eta_text']}", "bold"))
    else:
        parts.append((f"ETA {human_duration(eta)}" if isinstance(eta, int | float) else "ETA -", "bold"))
    if snap.get("failed"):
        parts.append((f"failed {snap['failed']}", "red"))
    if snap.get("retries"):
        parts.append((f"retries {snap['retries']}", "yellow"))
    parts.append((f"folders {int(_num(snap, 'folders_done'))}/{int(_num(snap, 'folders_total'))}", ""))
    current = [str(c) for c in snap.get("current") or ()]  # type: ignore[attr-defined]
    if current:
        more = f" +{len(current) - 3}" if len(current) > 3 else ""
        parts.append((f"copying {', '.join(current[:3])}{more}", "cyan"))
    return parts


def progress_text(snap: Mapping[str, object]) -> str:
    """One plain line (logs, pipes): the progress, then the last event (a retry...)."""
    text = "  ".join(t for t, _ in progress_parts(snap))
    return text + f"  ({snap['last_event']})" if snap.get("last_event") else text


def progress_line(snap: Mapping[str, object]) -> Text:
    """The progress for a terminal: styled, the last event on a second, dim line."""
    from rich.text import Text

    t = Text()
    for i, (text, style) in enumerate(progress_parts(snap)):
        t.append(("  " if i else "") + text, style=style)
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


def endpoint_name(label: str, email: str | None) -> str:
    """``alice@gmx.net (imap.gmx.net:993)``: the address, then where it is (host:port, or the path of
    a Maildir or mbox). ``label`` is a side's label (``login@host:port``, ``maildir:PATH``)."""
    kind, sep, path = label.partition(":")
    where = path if sep and kind in ("maildir", "mbox") else label.rpartition("@")[2]
    return f"{email} ({where})" if email else where


def _summary_title(report: JobReport) -> str:
    title = f"{endpoint_name(report.source, report.source_email)} → {endpoint_name(report.target, report.target_email)}"
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
    """The summary as plain text (logs, pipes, cron mail); no table when nothing was planned."""
    table = plain_table(_summary_columns(report), _summary_rows(report)) if report.folders else []
    return "\n".join([_summary_title(report), *table, *_summary_notes(report)])


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
           "dry-run": ("dry run", "cyan"), "interrupted": ("interrupted", "red"), "failed": ("failed", "red"),
           "waiting": ("waiting for a daily budget", "yellow")}


def fit_shown(report: JobReport) -> list[str]:
    """The fit check's lines where they tell something: always in a dry run, else when the job
    does not simply fit (too big messages, does not fit) or a daily budget makes it long."""
    fit = report.fit
    if fit is None or not (report.dry_run or fit.outcome != "fits" or fit.finish):
        return []
    from .engine.fit import fit_lines
    return fit_lines(fit)


def print_summary(report: JobReport) -> None:
    lines = fit_shown(report)
    lines += [f"renamed: '{r['wanted']}' -> '{r['target']}' ({r['reason']})" for r in report.renamed_folders]
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
        kind = "waiting" if report.status == "waiting" else "error"  # a budget used up is no error
        error = f"{kind}: {report.error.message}" + (f" (hint: {report.error.hint})" if report.error.hint else "")
    if sys.stdout.isatty():
        out = _console(False)
        if report.folders:
            out.print(summary_table(report))
        else:  # stopped before anything was planned (login refused, ...): no empty table
            out.print(_summary_title(report), markup=False, soft_wrap=True)
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
