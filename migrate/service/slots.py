"""Caps that hold across every worker on every host: at most ``cap`` holders of a name at once.

Slot ``i`` of a name is a session-level PostgreSQL advisory lock (``pg_try_advisory_lock``) on a
key hashed from the name and ``i``. What an import holds (its provider's import slot, its share of
each account's connections) sits on one connection of its own, kept for as long as the import
runs: a worker that dies (SIGKILL, lost host) ends its session and PostgreSQL frees its slots,
so no cap is ever held by the dead and no table needs cleaning. Nothing waits for a slot here:
the caller decides (a queue worker puts the import back in the queue for a little later).
"""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING

from ..store.pg_locks import lock_key, pool_for

if TYPE_CHECKING:
    import psycopg


def slot_key(name: str, index: int) -> int:
    """The advisory lock key of slot ``index`` of ``name`` (never one of a journal's locks)."""
    return lock_key("_slots", name, str(index))


class Holding:
    """The slots one import holds, on one connection of the lock pool; ``release`` frees them all."""

    def __init__(self, url: str) -> None:
        self._pool = pool_for(url)  # the engine's lock connections (``migrate.store.pg_locks``)
        self._conn: psycopg.Connection | None = self._pool.get()[0]  # DatabaseLost: nothing held
        self._pool.retain()
        self.held: dict[str, int] = {}  # name -> slots held

    def take(self, name: str, cap: int, want: int = 1) -> int:
        """Up to ``want`` of the ``cap`` slots of ``name``; how many were free (0: none)."""
        assert self._conn is not None
        got = 0
        order = list(range(cap))
        random.shuffle(order)  # holders spread over the slots: fewer failed tries each
        for i in order:
            if got == want:
                break
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (slot_key(name, i),)).fetchone()
            got += bool(row is not None and row[0])
        if got:
            self.held[name] = self.held.get(name, 0) + got
        return got

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute("SELECT pg_advisory_unlock_all()")
        except Exception:  # noqa: BLE001 - a broken connection: closing it frees its locks too
            with contextlib.suppress(Exception):
                conn.close()
        else:
            self._pool.put(conn)
        self._pool.release()


class Slots:
    """Where an import's slots are taken: the database at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def holding(self) -> Holding:
        return Holding(self.url)

    def close(self) -> None:
        """Nothing of its own: the lock pool closes its idle connections when its last user leaves."""
