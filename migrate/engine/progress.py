"""Thread-safe counters the engine updates and the UI reads (the engine never prints).

A job goes through three phases: ``planning`` (folders listed, created, their message counts read
with one LIST-STATUS: ``planned``), ``scanning`` (every folder to copy is read: its messages and
the bytes left to copy, ``scan_phase``) and ``copying`` (``copy_phase``). The totals are final
when copying starts and never move after: the percentage and the ETA (bytes still to copy divided
by the byte rate measured since copying started) hold for the whole copy.
With daily budgets (``budget_windows``) the ETA is the honest finish time of ``migrate.engine.eta``:
the budget windows ahead count too, and ``eta_text`` says which budget makes it long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .eta import Window, finish_time

MIN_RATE_S = 1.0  # seconds of copying before a byte rate (and so an ETA) is given


def byte_rate(nbytes: int, seconds: float) -> float | None:
    """Bytes per second over ``seconds`` of copying; None until there is something to measure."""
    if seconds < MIN_RATE_S or nbytes <= 0:
        return None
    return nbytes / seconds


def eta_seconds(bytes_left: int, rate: float | None) -> float | None:
    """Seconds until the ``bytes_left`` are copied at ``rate`` bytes/s (0 when nothing is left)."""
    if bytes_left <= 0:
        return 0.0
    if not rate:
        return None
    return bytes_left / rate


def percent(done: int, total: int) -> int:
    """Whole percent done, rounded down: 100 only when everything is."""
    if total <= 0:
        return 100
    return min(100, 100 * max(done, 0) // total)


@dataclass
class FolderProgress:
    source: str
    target: str | None
    total: int = 0  # source messages in the folder
    done: int = 0  # decided (copied, duplicate or failed)
    total_bytes: int = 0  # bytes of the messages left to decide when the folder was read
    state: str = "pending"  # pending | scanning | scanned | copying | done | failed | skipped
    bytes_done: int = 0  # of ``total_bytes``: bytes of the messages decided since
    scanned: bool = False  # read in the scan phase (or failed there)


@dataclass
class Progress:
    started: float = field(default_factory=time.monotonic)
    folders: dict[str, FolderProgress] = field(default_factory=dict)
    copied: int = 0
    duplicates: int = 0
    failed: int = 0
    bytes: int = 0
    total_messages: int = 0
    done_messages: int = 0
    retries: int = 0
    last_event: str = ""
    total_bytes: int = 0  # bytes of the messages left to decide, as each folder was read
    # Set by whoever drives the job (``migrate.engine.api``): called after the counters moved, and
    # for each message (uid None: a whole folder) that failed. Called outside the lock.
    on_change: Callable[[Progress], None] | None = field(default=None, repr=False)
    on_failure: Callable[[str, int | None, str], None] | None = field(default=None, repr=False)
    phase: str = "planning"  # planning | scanning | copying (see the module docstring)
    folders_to_scan: int = 0
    copy_started: float | None = None  # ``clock()`` when copying started
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)  # tests pass their own
    # The job's daily budgets as ETA windows (``migrate.engine.budget``): with them the ETA counts the
    # days a budget imposes, and says so (``eta_text``).
    budget_windows: Callable[[], list[Window]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- phases: called by the job --------------------------------------------------------

    def planned(self, totals: Mapping[str, int]) -> None:
        """Messages per source folder from planning (LIST-STATUS): the total before any scan."""
        with self._lock:
            for source, n in totals.items():
                fp = self.folders.get(source)
                if fp is not None and self.copy_started is None:
                    self.total_messages += n - fp.total
                    fp.total = n

    def scan_phase(self, folders: int) -> None:
        """``folders`` folders are read before any is copied."""
        with self._lock:
            self.phase, self.folders_to_scan = "scanning", folders

    def copy_phase(self) -> None:
        """Every folder was read: the totals are final from now on, the byte rate is measured
        from now on."""
        with self._lock:
            self.phase, self.copy_started = "copying", self.clock()

    def add_folder(self, source: str, target: str | None) -> None:
        with self._lock:
            self.folders[source] = FolderProgress(source, target)

    def folder_total(self, source: str, total: int) -> None:
        with self._lock:
            fp = self.folders[source]
            if self.copy_started is not None:
                return  # copying: the denominators never move
            self.total_messages += total - fp.total
            fp.total = total

    def folder_bytes(self, source: str, nbytes: int) -> None:
        """Bytes of what is left to decide in ``source`` (known once the folder was read)."""
        with self._lock:
            fp = self.folders[source]
            if self.copy_started is not None:
                return  # copying: the denominators never move
            self.total_bytes += nbytes - fp.total_bytes
            fp.total_bytes = nbytes

    def folder_state(self, source: str, state: str) -> None:
        with self._lock:
            fp = self.folders[source]
            fp.state = state
            if state == "scanned" or (state == "failed" and self.phase == "scanning"):
                fp.scanned = True
            if state in ("done", "failed"):  # whatever was left in it is decided now
                fp.bytes_done = fp.total_bytes

    def count(self, source: str, *, copied: int = 0, duplicates: int = 0, failed: int = 0,
              nbytes: int = 0, settled_bytes: int = 0) -> None:
        """Messages decided; ``nbytes``: bytes copied, ``settled_bytes``: bytes of the messages
        decided without copying them (found present on the target, failed)."""
        with self._lock:
            n = copied + duplicates + failed
            self.copied += copied
            self.duplicates += duplicates
            self.failed += failed
            self.bytes += nbytes
            self.done_messages += n
            fp = self.folders[source]
            fp.done += n
            fp.bytes_done += nbytes + settled_bytes
        if self.on_change is not None and (n or nbytes):
            self.on_change(self)

    def failed_message(self, source: str, uid: int | None, reason: str, *, count: int = 1,
                       nbytes: int = 0) -> None:
        """``count`` messages of ``source`` failed (``uid``: the one message; None: the folder);
        ``nbytes``: their size."""
        if self.on_failure is not None:
            self.on_failure(source, uid, reason)
        self.count(source, failed=count, settled_bytes=nbytes)

    def event(self, text: str) -> None:
        with self._lock:
            self.last_event = text

    def retried(self, text: str) -> None:
        """One more retry (after a dropped connection, throttling...), and what it was."""
        with self._lock:
            self.retries += 1
            self.last_event = text

    def current_folders(self) -> tuple[str, ...]:
        """Source folders being copied right now."""
        with self._lock:
            return tuple(f.source for f in self.folders.values() if f.state in ("scanning", "copying"))

    def counters(self) -> dict[str, int]:
        """The counters, read together."""
        with self._lock:
            return {"copied": self.copied, "bytes": self.bytes, "total_messages": self.total_messages,
                    "total_bytes": self.total_bytes, "done_messages": self.done_messages,
                    "duplicates": self.duplicates, "failed": self.failed}

    def snapshot(self) -> dict[str, object]:
        """Everything the UI shows, read together (JSON-able: ``status --follow`` reads it back
        from the journal)."""
        with self._lock:
            now = self.clock()
            elapsed = max(now - self.started, 1e-6)
            folders = list(self.folders.values())
            phase = self.phase
            if phase == "planning" and any(f.state in ("scanning", "copying") for f in folders):
                phase = "copying"  # a driver that announces no phases: show what there is
            done = min(self.done_messages, self.total_messages) if self.total_messages else self.done_messages
            bytes_done = min(sum(min(f.bytes_done, f.total_bytes) for f in folders), self.total_bytes)
            copying_s = now - self.copy_started if self.copy_started is not None else elapsed
            rate = byte_rate(self.bytes, copying_s)
            eta = eta_seconds(self.total_bytes - bytes_done, rate) if phase == "copying" else None
            windows = self.budget_windows
            snap: dict[str, object] = {
                "phase": phase,
                "elapsed_s": round(elapsed, 1),
                "copied": self.copied,
                "duplicates": self.duplicates,
                "failed": self.failed,
                "bytes": self.bytes,  # copied
                "total_bytes": self.total_bytes,  # to copy (the messages left to decide)
                "bytes_done": bytes_done,  # of total_bytes: decided
                "total_messages": self.total_messages,
                "done_messages": done,
                "percent": percent(bytes_done, self.total_bytes) if self.total_bytes
                else percent(done, self.total_messages),
                "rate_msgs_s": round(self.done_messages / elapsed, 1),
                "rate_bytes_s": round(rate) if rate is not None else None,
                "eta_s": round(eta) if eta is not None else None,
                "eta_text": None,  # set when a daily budget decides: "about 2 days: Gmail allows ..."
                "folders_scanned": sum(1 for f in folders if f.scanned),
                "folders_to_scan": self.folders_to_scan,
                "folders_done": sum(1 for f in folders if f.state in ("done", "skipped", "failed")),
                "folders_total": len(folders),
                "current": [f.source for f in folders if f.state in ("scanning", "copying")],
                "retries": self.retries,
                "last_event": self.last_event,
            }
        if windows is not None and phase == "copying":  # outside the lock: the budgets have their own
            honest = finish_time(int(snap["total_bytes"]) - bytes_done, rate, windows())  # type: ignore[call-overload]
            if honest.budget_bound and honest.seconds is not None:
                snap["eta_s"], snap["eta_text"] = round(honest.seconds), honest.text
        return snap
