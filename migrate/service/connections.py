"""How many connections per side an import gets: its servers' caps, shared by the imports that
run at once.

A preset's ``max_connections`` is what we allow ourselves on one server. ``mailmigrate batch``
divides it among the rows that may run at once (``csvbatch.runner.plan_connections``); the
service does the same when an import starts, among the imports that may run with it (running
ones plus queued ones, at most ``--jobs``): a lone import gets the whole cap, a full queue gives
each its part. An import never waits for another's connections (one long import must not hold up
everybody else's), so while the mix changes the sum on a server can pass its cap by the shares
of imports that started alone; ``peak`` records what really happened."""

from __future__ import annotations

import threading

from ..sides import Side

ServerKey = tuple[str, int]


def servers_of(*sides: Side) -> dict[ServerKey, tuple[int, int]]:
    """``{server: (cap, sides on it)}`` for the sides that connect to a capped server."""
    out: dict[ServerKey, tuple[int, int]] = {}
    for side in sides:
        conn, cap = side.connection, side.connection_cap
        if conn is None or not cap:
            continue
        key = (conn.host.lower(), conn.port)
        prev_cap, count = out.get(key, (cap, 0))
        out[key] = (min(prev_cap, cap), count + 1)
    return out


def share(servers: dict[ServerKey, tuple[int, int]], *, wanted: int, contenders: int) -> int:
    """Connections per side: ``wanted``, at most each server's cap split among ``contenders``."""
    n = wanted
    for cap, sides in servers.values():
        n = min(n, cap // (sides * max(1, contenders)))
    return max(1, n)


class ConnectionShares:
    """Connections in use per server by the running imports (for ``peak``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[ServerKey, int] = {}
        self._peak: dict[ServerKey, int] = {}

    def take(self, servers: dict[ServerKey, tuple[int, int]], *, wanted: int,
             contenders: int) -> tuple[int, dict[ServerKey, int]]:
        """This import's connections per side, and what it holds (to ``give_back``)."""
        n = share(servers, wanted=wanted, contenders=contenders)
        held = {key: n * sides for key, (_cap, sides) in servers.items()}
        with self._lock:
            for key, k in held.items():
                self._used[key] = self._used.get(key, 0) + k
                self._peak[key] = max(self._peak.get(key, 0), self._used[key])
        return n, held

    def give_back(self, held: dict[ServerKey, int]) -> None:
        with self._lock:
            for key, k in held.items():
                self._used[key] -= k

    def peak(self) -> dict[ServerKey, int]:
        with self._lock:
            return dict(self._peak)
