"""The migration engine. Drive it through ``migrate.engine.api`` (re-exported here):

    from migrate.engine import JobSpec, events, start

    handle = start(spec, on_event=callback)   # JobHandle: cancel(), state, report, wait(), events()

Modules: ``api`` (start/cancel/follow a job), ``events`` (what a job reports), ``job`` (one run:
orchestration and status), ``planning`` (folder plan and creation), ``pool`` (workers and the
retry policy), ``folder_sync`` (one folder), ``fit`` (will the job fit the target?), ``budget``
(the providers' daily budgets), ``eta`` (the finish time under those budgets), ``progress`` (live
counters), ``quota`` (a full target), ``locks``, ``memory``.

The names below are loaded on first use, so that importing ``migrate.engine.progress`` alone
(the UI does) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import events
    from .api import JobHandle, JobState, run, start
    from .job import JobSpec

__all__ = ["JobHandle", "JobSpec", "JobState", "events", "run", "start"]


_WHERE = {"JobHandle": "api", "JobState": "api", "run": "api", "start": "api", "JobSpec": "job"}


def __getattr__(name: str) -> Any:
    if name == "events":
        return importlib.import_module(f"{__name__}.events")
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
