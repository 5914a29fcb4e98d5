"""``mailmigrate status``: what jobs did and what is left, read from their journals."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.table import Table

from .errors import UsageError
from .journal import JobGuard, Journal, state_home
from .ui import human_bytes, out, progress_line


def _journals(path: Path | None) -> list[Path]:
    if path is not None:
        if not path.exists():
            raise UsageError(f"journal {path} does not exist", hint="check --journal PATH")
        return [path]
    return sorted((state_home() / "journals").glob("*.sqlite"))


def _job_table(journal_path: Path, j: Journal, job_filter: str | None) -> tuple[Table, list[dict[str, object]]]:
    table = Table(title=str(journal_path), title_justify="left")
    for c in ("job", "source", "target", "state", "running", "copied", "present", "failed", "progress", "updated"):
        # the job id is what ``status JOB`` takes: never truncate it, even on a narrow or piped output
        table.add_column(c, no_wrap=c == "job", min_width=12 if c == "job" else None)
    shown = []
    for job in j.jobs():
        jid = str(job["job_id"])
        if job_filter and not jid.startswith(job_filter):
            continue
        counts = j.counts(jid)
        copied = sum(c.get("copied", 0) for c in counts.values())
        dup = sum(c.get("duplicate", 0) for c in counts.values())
        failed = sum(c.get("failed", 0) for c in counts.values())
        runs = j.runs(jid)
        prog = ""
        if runs and runs[0].get("progress"):
            snap = json.loads(str(runs[0]["progress"]))
            prog = (f"{snap['done_messages']}/{snap['total_messages']} msgs, {snap['rate_msgs_s']}/s, "
                    f"{human_bytes(float(snap['bytes']))}")
            if snap.get("eta_s"):
                prog += f", ETA {int(snap['eta_s'])}s"
        running = JobGuard.is_running(journal_path, jid)
        table.add_row(jid, str(job["source"]), str(job["target"]), str(job["state"]), "yes" if running else "no",
                      str(copied), str(dup), str(failed), prog, str(job["updated_at"])[:19])
        shown.append(job)
    return table, shown


def show_status(journal_path: Path | None, job: str | None, *, follow: bool = False) -> int:
    paths = _journals(journal_path)
    if not paths:
        out.print("no journals found")
        return 0
    if follow:
        return _follow(paths, job)
    found = False
    for p in paths:
        j = Journal(p)
        try:
            table, shown = _job_table(p, j, job)
            if shown:
                found = True
                out.print(table)
                for jb in shown:
                    _folder_details(j, str(jb["job_id"]))
        finally:
            j.close()
    if job and not found:
        raise UsageError(f"no job '{job}' in the journal(s)", hint="run 'mailmigrate status' to list jobs")
    return 0


def _folder_details(j: Journal, job_id: str) -> None:
    folders = j.folders(job_id)
    if not folders:
        return
    counts = j.counts(job_id)
    table = Table(title=f"job {job_id}: folders", title_justify="left")
    for c in ("source folder", "target folder", "copied", "present", "failed", "state"):
        table.add_column(c)
    for f in folders:
        c = counts.get(f.source_folder, {})
        left = "complete" if f.complete else "in progress / left to do"
        table.add_row(f.source_folder, f.target_folder or "-", str(c.get("copied", 0)), str(c.get("duplicate", 0)),
                      str(c.get("failed", 0)), left)
    out.print(table)


def _follow(paths: list[Path], job: str | None) -> int:
    """Poll the journal's progress rows until the job is no longer running."""
    while True:
        active = False
        for p in paths:
            j = Journal(p)
            try:
                for jb in j.jobs():
                    jid = str(jb["job_id"])
                    if job and not jid.startswith(job):
                        continue
                    runs = j.runs(jid)
                    running = JobGuard.is_running(p, jid)
                    active = active or running
                    if runs and runs[0].get("progress"):
                        line = progress_line(json.loads(str(runs[0]["progress"])))
                        out.print(f"[bold]{jid}[/] {'running' if running else jb['state']}: ", end="")
                        out.print(line)
            finally:
                j.close()
        if not active:
            return 0
        time.sleep(1.0)
