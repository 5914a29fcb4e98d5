"""Sliding-window counters for sign-in attempts (per address, per client)."""

from __future__ import annotations

import threading
import time
from collections import deque


class RateLimiter:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, *keys: str) -> float | None:
        """Count one attempt under every key; None if allowed, else seconds until one is."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key in keys:
                q = self._hits.setdefault(key, deque())
                while q and q[0] <= now - self.window_s:
                    q.popleft()
                if len(q) >= self.limit:
                    wait = max(wait, q[0] + self.window_s - now)
            if wait > 0:
                return wait
            for key in keys:
                self._hits[key].append(now)
            if len(self._hits) > 10_000:  # forget idle keys
                for key in [k for k, q in self._hits.items() if not q or q[-1] <= now - self.window_s]:
                    del self._hits[key]
        return None
