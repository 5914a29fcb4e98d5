"""What an import's view says about its progress and failures, and its Server-Sent Events.

Nothing here counts anything: a running job's figures are the engine's own
(``migrate.engine.progress.Progress.snapshot()``), a finished job's are the last snapshot the
runner stored with its report. The totals are final once copying starts, so the percentage is
only given from then on and never goes down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .db import BUDGET_WAITING, FINAL

MAX_FAILURES = 500  # a view lists at most this many failed messages (``failures_truncated``: the rest)
SSE_INTERVAL_S = 0.5  # at most ~2 progress events a second
SSE_KEEPALIVE_S = 15.0


def progress_of(state: str, snapshot: dict[str, Any] | None, totals: dict[str, int] | None = None
                ) -> dict[str, Any]:
    """``{"phase", "messages_done", "messages_total", "bytes_done", "bytes_total", "percent",
    "eta_s", "eta_text", "current_folder"}`` of a job in ``state``, from the engine's snapshot (live, or the
    one stored when the job ended; None: the job never got that far). ``totals``: the view's
    totals, what a finished job without a snapshot (an earlier version's) shows."""
    if state in FINAL and snapshot is None and totals:
        snapshot = {"done_messages": totals["copied"] + totals.get("restored", 0) + totals["skipped_duplicates"]
                    + totals["failed"],
                    "total_messages": totals["source_messages"], "bytes_done": totals["bytes"]}
    if state in FINAL:
        phase = "finished"
    elif state == "running" and snapshot is not None:
        phase = str(snapshot.get("phase") or "planning")
    elif state == "running":
        phase = "planning"  # claimed, the job is being started
    elif state == BUDGET_WAITING:
        phase = "waiting"  # stopped at a daily budget: its counts so far stay shown
    else:
        phase = "queued"  # queued, or waiting for a sign-in
    snap = snapshot or {}
    copying = phase == "copying" or (phase == "finished" and snap.get("phase") == "copying")
    counted = phase in ("scanning", "copying") or (phase in ("finished", "waiting") and bool(snap))
    current = (snap.get("current") or []) if phase not in ("queued", "finished") else []
    pct = snap.get("percent") if copying else None
    if phase == "finished" and state == "done":
        pct = 100  # every message is decided (a job with nothing to copy never started copying)
    return {
        "phase": phase,
        "messages_done": int(snap.get("done_messages") or 0),
        "messages_total": int(snap["total_messages"]) if counted and "total_messages" in snap else None,
        "bytes_done": int(snap.get("bytes_done") or 0),
        "bytes_total": int(snap["total_bytes"]) if copying and "total_bytes" in snap else None,
        "percent": float(pct) if pct is not None else None,
        "eta_s": snap.get("eta_s") if phase == "copying" else None,
        # the engine's sentence when a daily budget makes the job long: "about 2 days: Gmail allows ..."
        "eta_text": snap.get("eta_text") if phase == "copying" else None,
        "current_folder": current[0] if current else None,
    }


def failures_of(report: dict[str, Any] | None) -> tuple[list[dict[str, Any]], int]:
    """Every failed message of a (JSON) report, at most ``MAX_FAILURES``, and how many more."""
    out: list[dict[str, Any]] = []
    total = 0
    for folder in (report or {}).get("folders", []):
        for f in folder.get("failures") or []:
            total += 1
            if len(out) < MAX_FAILURES:
                out.append({"folder": f.get("folder"), "uid": f.get("uid"), "subject": f.get("subject"),
                            "reason": f.get("reason")})
    return out, total - len(out)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def view_events(view_of: Callable[[], dict[str, Any] | None], *, interval_s: float = SSE_INTERVAL_S,
                      keepalive_s: float = SSE_KEEPALIVE_S,
                      clock: Callable[[], float] = time.monotonic) -> AsyncIterator[str]:
    """The Server-Sent Events of one import: ``progress`` with its view whenever the view changed
    (looked at every ``interval_s``), a ``: keep-alive`` comment after ``keepalive_s`` of silence,
    then ``end`` with the final view, and the stream ends. ``view_of`` must be quick (it runs on
    the event loop); None means the import is gone. A client that goes away cancels the
    generator at its next ``await`` (the server does that), so nothing lingers."""
    last: str | None = None
    quiet_since = clock()
    while True:
        view = view_of()
        if view is None:
            return
        if view["state"] in FINAL:
            yield _event("end", view)
            return
        text = json.dumps(view, sort_keys=True)
        if text != last:
            last, quiet_since = text, clock()
            yield _event("progress", view)
        elif clock() - quiet_since >= keepalive_s:
            quiet_since = clock()
            yield ": keep-alive\n\n"
        await asyncio.sleep(interval_s)


_FIT_KEYS = ("outcome", "text", "to_copy_bytes", "to_copy_messages", "free_bytes", "largest", "finish", "forced")
TOO_BIG_SHOWN = 50


def fit_of(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fit check of a (JSON) report as the view shows it, None before the job got there:
    ``{"outcome", "text", "to_copy_bytes", "to_copy_messages", "free_bytes", "largest",
    "finish", "forced", "too_big": [{"folder", "uid", "size", "subject"}]}``."""
    fit = (report or {}).get("fit")
    if not fit:
        return None
    out = {k: fit.get(k) for k in _FIT_KEYS}
    out["too_big"] = [{k: m.get(k) for k in ("folder", "uid", "size", "subject")}
                      for m in (fit.get("too_big") or [])[:TOO_BIG_SHOWN]]
    return out
