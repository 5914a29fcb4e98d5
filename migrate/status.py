"""``mailmigrate status``: what jobs did and what is left, read from their journals.

* ``status``: one line per job (id, source -> target, state, copied / present / failed, started,
  duration, last error);
* ``status JOB`` (an id or its first characters): that job in detail: runs, folders, failures;
  ``--failures``: every failed message with its reason;
* ``--json``: the same, machine-readable (``{"jobs": [...]}``);
* ``--follow``: live progress until the job ends, redrawn in place on a terminal, one line per
  change otherwise.

On a terminal the output is rich (colours, a table); to a file or a pipe it is plain text: no box
drawing, columns two spaces apart, nothing ever cut to a width.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import UsageError
from .journal import JobGuard, Journal, state_home
from .store import JobRow
from .ui import human_duration, out, plain_table, progress_line, progress_text

FOLLOW_POLL_S = 0.5
FAILURES_SHOWN = 10  # in ``status JOB``; ``--failures`` lists them all

_STATE_STYLE = {"running": "cyan", "ok": "green", "partial": "yellow", "failed": "red", "interrupted": "red",
                "dry-run": "cyan", "waiting": "yellow"}
_KILLED = {"reference": "stopped", "message": "the job's process ended before the job finished",
           "hint": "run the same command again: the job resumes"}


def _journals(path: Path | None) -> list[Path]:
    if path is not None:
        if not path.exists():
            raise UsageError(f"journal {path} does not exist", hint="check --journal PATH")
        return [path]
    return sorted((state_home() / "journals").glob("*.sqlite"))


def _load(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _when(iso: str | None) -> str:
    t = _time(iso)
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "-"


# --- what a job did, from its journal ----------------------------------------------------------


def job_info(path: Path, j: Journal, row: JobRow, *, detail: bool = False) -> dict[str, Any]:
    """One job as ``status --json`` shows it; ``detail``: with its folders and failures."""
    jid = row.job_id
    runs = j.runs(jid)
    last = runs[0] if runs else None
    running = JobGuard.is_running(path, jid)
    report = _load(last.report) if last is not None else None
    if report is None and last is None:
        report = _load(row.last_report)
    counts = j.counts(jid)
    copied = sum(c.get("copied", 0) for c in counts.values())
    present = sum(c.get("duplicate", 0) for c in counts.values())
    failed = sum(c.get("failed", 0) for c in counts.values())
    if report is not None:  # a folder that failed as a whole has no message rows
        failed = max(failed, int((report.get("totals") or {}).get("failed", 0)))
    state = row.state
    error: dict[str, Any] | None = report.get("error") if report else None
    if running:
        state, error = "running", None
    elif state == "running":  # killed (kill -9, a reboot): the run never finished
        state, error = "interrupted", dict(_KILLED)
    started = _time(last.started_at) if last is not None else None
    finished = _time(last.finished_at) if last is not None else None
    end = finished or (datetime.now(UTC) if running else None)
    progress = _load(last.progress) if last is not None and running else None
    last_error = None
    if error:
        last_error = str(error.get("message", ""))
    elif progress and progress.get("last_event"):
        last_error = str(progress["last_event"])
    elif failed and report is not None:
        fails = [f for fo in report.get("folders", ()) for f in fo.get("failures", ())]
        if fails:
            f = fails[0]
            where = f"{f.get('folder')}" + (f" uid {f['uid']}" if f.get("uid") is not None else "")
            last_error = f"{where}: {f.get('reason')}" + (f" (+{len(fails) - 1} more)" if len(fails) > 1 else "")
    info: dict[str, Any] = {
        "job_id": jid, "journal": str(path), "source": row.source, "target": row.target,
        "source_email": row.source_email, "target_email": row.target_email, "state": state, "running": running,
        "started_at": last.started_at if last is not None else None,
        "finished_at": last.finished_at if last is not None else None,
        "duration_s": round((end - started).total_seconds(), 1) if started and end else None,
        "runs": len(runs), "copied": copied, "present": present, "failed": failed,
        "error": error, "last_error": last_error, "progress": progress, "command": row.command,
        # a daily budget used up: when the job may go on; and the last fit check, in words
        "resume_at": report.get("resume_at") if report and state == "waiting" else None,
        "fit": (report.get("fit") or {}).get("text") if report else None,
    }
    if detail:
        info["folders"] = _folders(j, jid, counts, report)
        info["failures"] = _failures(j, jid, report)
    return info


def _folders(j: Journal, jid: str, counts: dict[str, dict[str, int]],
             report: dict[str, Any] | None) -> list[dict[str, Any]]:
    records = {f.source_folder: f for f in j.folders(jid)}
    planned = {str(f.get("source")): f for f in (report or {}).get("folders", ())}
    out_: list[dict[str, Any]] = []
    for name in [*planned, *(n for n in records if n not in planned)]:
        rec, fr, c = records.get(name), planned.get(name, {}), counts.get(name, {})
        target = rec.target_folder if rec is not None and rec.target_folder else fr.get("target")
        state = "complete" if rec is not None and rec.complete else "not complete" if target else "skipped"
        out_.append({"source": name, "target": target, "copied": c.get("copied", 0),
                     "present": c.get("duplicate", 0), "failed": max(c.get("failed", 0), int(fr.get("failed", 0))),
                     "state": state, "note": fr.get("note")})
    return out_


def _failures(j: Journal, jid: str, report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every message that is failed now (the journal), named as the last report named it; then
    the folders that failed as a whole in the last run."""
    named = {(str(f.get("folder")), f.get("uid")): f
             for fo in (report or {}).get("folders", ()) for f in fo.get("failures", ())}
    out_: list[dict[str, Any]] = []
    for rec in j.folders(jid):
        if rec.uidvalidity is None:
            continue
        for uid, m in sorted(j.messages(jid, rec.source_folder, rec.uidvalidity).items()):
            if m.state != "failed":
                continue
            f = named.get((rec.source_folder, uid), {})
            out_.append({"folder": rec.source_folder, "uid": uid, "subject": f.get("subject"),
                         "message_id": f.get("message_id"), "size": m.size or f.get("size"),
                         "reason": m.reason or f.get("reason") or "failed"})
    for (folder, uid), f in named.items():
        if uid is None:
            out_.append({"folder": folder, "uid": None, "subject": None, "message_id": None, "size": None,
                         "reason": f.get("reason")})
    return out_


def _select(paths: list[Path], job: str | None, *, detail: bool) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    for p in paths:
        j = Journal(p)
        try:
            jobs += [job_info(p, j, row, detail=detail) for row in j.jobs()
                     if not job or row.job_id.startswith(job)]
        finally:
            j.close()
    jobs.sort(key=lambda x: x["started_at"] or "", reverse=True)  # the latest first
    return jobs


# --- rendering ---------------------------------------------------------------------------------


def _counts_text(info: dict[str, Any]) -> str:
    return f"copied {info['copied']}, present {info['present']}, failed {info['failed']}"


def _state_text(info: dict[str, Any]) -> str:
    prog = info.get("progress")
    if info["state"] == "running" and prog and prog.get("phase", "copying") == "copying" and "percent" in prog:
        return f"running {prog['percent']}%"
    return str(info["state"])


_LIST_COLUMNS = [("job", False), ("source -> target", False), ("state", False), ("copied", True),
                 ("present", True), ("failed", True), ("started", False), ("duration", True), ("last error", False)]


def _list_row(info: dict[str, Any]) -> list[str]:
    return [info["job_id"], f"{info['source']} -> {info['target']}", _state_text(info), str(info["copied"]),
            str(info["present"]), str(info["failed"]), _when(info["started_at"]),
            human_duration(info["duration_s"]) if info["duration_s"] is not None else "-",
            info["last_error"] or "-"]


def _print_lines(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def _print_list(jobs: list[dict[str, Any]]) -> None:
    """One line per job, columns two spaces apart, nothing cut (a narrow terminal wraps a long
    line, a file keeps it whole); on a terminal the header is bold and a job's line has the
    colour of its state."""
    lines = plain_table(_LIST_COLUMNS, [_list_row(i) for i in jobs])
    if not sys.stdout.isatty():
        _print_lines(lines)
        return
    out.print(lines[0], style="bold", markup=False, highlight=False, soft_wrap=True)
    for info, line in zip(jobs, lines[1:], strict=True):
        out.print(line, style=_STATE_STYLE.get(str(info["state"]), ""), markup=False, highlight=False,
                  soft_wrap=True)


def _failure_line(f: dict[str, Any]) -> str:
    where = f"{f['folder']}" + (f"  uid {f['uid']}" if f["uid"] is not None else "  (whole folder)")
    subject = f"  subject {f['subject']!r}" if f.get("subject") else ""
    return f"{where}{subject}: {f['reason']}"


def _detail_lines(info: dict[str, Any], *, all_failures: bool) -> list[str]:
    lines = [f"job       {info['job_id']}",
             f"source    {info['source']}" + (f" ({info['source_email']})" if info["source_email"] else ""),
             f"target    {info['target']}" + (f" ({info['target_email']})" if info["target_email"] else ""),
             f"state     {_state_text(info)}",
             f"messages  {_counts_text(info)}",
             f"last run  started {_when(info['started_at'])}, "
             + (f"finished {_when(info['finished_at'])}, " if info["finished_at"] else "")
             + (f"took {human_duration(info['duration_s'])}" if info["duration_s"] is not None else "")
             + f" ({info['runs']} run{'s' if info['runs'] != 1 else ''})",
             f"journal   {info['journal']}"]
    if info["progress"]:
        lines.append(f"progress  {progress_text(info['progress'])}")
    if info.get("fit"):
        lines.append(f"fit       {info['fit']}")
    if info.get("resume_at"):
        lines.append(f"waiting   {_resume_text(info['resume_at'])}")
    err = info["error"]
    if err:
        lines.append(f"error     {err.get('message')}" + (f" (hint: {err['hint']})" if err.get("hint") else ""))
    if info["command"] and info["state"] != "running":
        lines.append(f"re-run    {info['command']}")
    folders = info.get("folders") or []
    if folders:
        lines += ["", *plain_table(
            [("source folder", False), ("target folder", False), ("copied", True), ("present", True),
             ("failed", True), ("state", False)],
            [[f["source"], f["target"] or "-", str(f["copied"]), str(f["present"]), str(f["failed"]),
              f["state"] + (f" ({f['note']})" if f["note"] else "")] for f in folders])]
    failures = info.get("failures") or []
    if failures:
        shown = failures if all_failures else failures[:FAILURES_SHOWN]
        lines += ["", f"failures ({len(failures)}):", *("  " + _failure_line(f) for f in shown)]
        if len(shown) < len(failures):
            lines.append(f"  ... and {len(failures) - len(shown)} more: mailmigrate status {info['job_id']}"
                         " --failures")
    return lines


def _resume_text(iso: str) -> str:
    """When a waiting job may go on: "going on at 2024-05-02 00:00 UTC (in 5 h 12 min)"."""
    from .engine.eta import duration

    t = _time(iso)
    if t is None:
        return "-"
    left = (t - datetime.now(UTC)).total_seconds()
    if left <= 0:
        return f"may go on since {_when(iso)}: run the same command again (re-run below)"
    return f"going on at {_when(iso)} (in {duration(left)})"


def show_status(journal_path: Path | None, job: str | None, *, follow: bool = False, as_json: bool = False,
                failures: bool = False) -> int:
    if follow and as_json:
        raise UsageError("--follow and --json cannot be combined", hint="poll 'mailmigrate status --json' instead")
    paths = _journals(journal_path)
    if follow:
        return _follow(paths, job)
    jobs = _select(paths, job, detail=bool(job) or failures)
    if job and not jobs:
        raise UsageError(f"no job '{job}' in the journal(s)", hint="run 'mailmigrate status' to list jobs")
    if as_json:
        sys.stdout.write(json.dumps({"jobs": jobs}, indent=2, ensure_ascii=False) + "\n")
        return 0
    if not jobs:
        _print_lines(["no jobs found" if paths else "no journals found"])
        return 0
    if failures:
        lines = [f"{i['job_id']}  {_failure_line(f)}" for i in jobs for f in i["failures"]]
        _print_lines(lines or ["no failed messages"])
        return 0
    if job and len(jobs) == 1:
        _print_lines(_detail_lines(jobs[0], all_failures=False))
        return 0
    _print_list(jobs)
    if job:
        sys.stderr.write(f"{len(jobs)} jobs start with '{job}': give more of the id to see one job\n")
    return 0


# --- --follow ----------------------------------------------------------------------------------


def _follow_state(paths: list[Path], job: str | None, watched: set[str]) -> tuple[list[dict[str, Any]], bool]:
    """The jobs to show (running ones, and the ones this follow saw running) and whether any
    still runs."""
    shown, active = [], False
    for p in paths:
        j = Journal(p)
        try:
            for row in j.jobs():
                if job and not row.job_id.startswith(job):
                    continue
                info = job_info(p, j, row)
                if info["running"]:
                    watched.add(row.job_id)
                    active = True
                if row.job_id in watched or job:
                    shown.append(info)
        finally:
            j.close()
    return shown, active


def _follow_text(info: dict[str, Any]) -> str:
    if info["running"]:
        prog = info["progress"]
        return f"{info['job_id']} running: " + (progress_text(prog) if prog else "starting")
    took = f" in {human_duration(info['duration_s'])}" if info["duration_s"] is not None else ""
    err = f" - {info['last_error']}" if info["last_error"] else ""
    return f"{info['job_id']} {info['state']}: {_counts_text(info)}{took}{err}"


def _follow_render(jobs: list[dict[str, Any]]) -> Any:
    from rich.console import Group
    from rich.text import Text

    lines = []
    for info in jobs:
        t = Text(info["job_id"] + " ", style="bold")
        if info["running"] and info["progress"]:
            t.append_text(progress_line(info["progress"]))
        else:
            t.append(_follow_text(info)[len(info["job_id"]) + 1:], style=_STATE_STYLE.get(str(info["state"]), ""))
        lines.append(t)
    return Group(*lines)


def _follow(paths: list[Path], job: str | None) -> int:
    """Show the progress the running jobs publish in their journal until none runs any more:
    redrawn in place on a terminal; elsewhere a line whenever a job's progress line changes."""
    watched: set[str] = set()
    jobs, active = _follow_state(paths, job, watched)
    if job and not jobs:
        raise UsageError(f"no job '{job}' in the journal(s)", hint="run 'mailmigrate status' to list jobs")
    if not jobs:
        _print_lines(["no job is running"])
        return 0
    if not sys.stdout.isatty():
        printed: dict[str, str] = {}
        while True:
            for info in jobs:
                text = _follow_text(info)
                if printed.get(info["job_id"]) != text:
                    printed[info["job_id"]] = text
                    _print_lines([text])
            if not active:
                return 0
            time.sleep(FOLLOW_POLL_S)
            jobs, active = _follow_state(paths, job, watched)
    from rich.live import Live

    with Live(_follow_render(jobs), console=out, auto_refresh=False, transient=False) as screen:
        while active:
            time.sleep(FOLLOW_POLL_S)
            jobs, active = _follow_state(paths, job, watched)
            screen.update(_follow_render(jobs), refresh=True)
    return 0

