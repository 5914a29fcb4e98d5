"""Thread-safe counters the engine updates and the UI reads (the engine never prints)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class FolderProgress:
    source: str
    target: str | None
    total: int = 0  # source messages in the folder
    done: int = 0  # decided (copied, duplicate or failed)
    state: str = "pending"  # pending | scanning | copying | done | failed | skipped


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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_folder(self, source: str, target: str | None) -> None:
        with self._lock:
            self.folders[source] = FolderProgress(source, target)

    def folder_total(self, source: str, total: int) -> None:
        with self._lock:
            fp = self.folders[source]
            self.total_messages += total - fp.total
            fp.total = total

    def folder_state(self, source: str, state: str) -> None:
        with self._lock:
            self.folders[source].state = state

    def count(self, source: str, *, copied: int = 0, duplicates: int = 0, failed: int = 0,
              nbytes: int = 0) -> None:
        with self._lock:
            n = copied + duplicates + failed
            self.copied += copied
            self.duplicates += duplicates
            self.failed += failed
            self.bytes += nbytes
            self.done_messages += n
            self.folders[source].done += n

    def event(self, text: str) -> None:
        with self._lock:
            self.last_event = text

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            elapsed = max(time.monotonic() - self.started, 1e-6)
            rate = self.done_messages / elapsed
            left = max(self.total_messages - self.done_messages, 0)
            return {
                "elapsed_s": round(elapsed, 1),
                "copied": self.copied,
                "duplicates": self.duplicates,
                "failed": self.failed,
                "bytes": self.bytes,
                "total_messages": self.total_messages,
                "done_messages": self.done_messages,
                "rate_msgs_s": round(rate, 1),
                "eta_s": round(left / rate, 0) if rate > 0 and left else None,
                "folders_done": sum(1 for f in self.folders.values() if f.state in ("done", "skipped")),
                "folders_total": len(self.folders),
                "retries": self.retries,
                "last_event": self.last_event,
            }
