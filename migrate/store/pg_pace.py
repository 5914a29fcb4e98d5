"""A target mailbox's upload pace held across every worker: Microsoft 365 answers more than its
pace per mailbox with "Request is throttled", whichever process sends the messages.

``Pacer`` (``migrate.engine.pool``) paces the workers of one job in one process; two imports into
one mailbox on two hosts would each keep the pace and together send twice it. ``SharedPacer``
keeps the mailbox's next free moment in the database instead (the journal's ``meta`` table, in the
target's namespace, name ``pace.next_at``, epoch seconds by the database's clock): each batch of
``n`` messages moves it on by ``n / rate`` in one atomic statement and waits until its own turn.
"""

from __future__ import annotations

import time

from .location import PgJournal
from .pg_locks import pool_for

# The batch's start: the later of the stored next moment and now; the stored moment moves on by
# the batch's share. Returns how long the batch must wait (seconds, <= 0: not at all).
_TAKE_TURN = """
INSERT INTO meta AS m (namespace, name, value)
VALUES (%(ns)s, 'pace.next_at', (extract(epoch FROM clock_timestamp()) + %(d)s)::text)
ON CONFLICT (namespace, name) DO UPDATE
SET value = (GREATEST(m.value::float8, extract(epoch FROM clock_timestamp())) + %(d)s)::text
RETURNING value::float8 - %(d)s - extract(epoch FROM clock_timestamp())
"""


class SharedPacer:
    """At most ``rate`` messages per second into the mailbox of ``where`` over all workers."""

    def __init__(self, where: PgJournal, rate: float) -> None:
        self.where = where
        self.rate = rate

    def __call__(self, n: int) -> None:
        pool = pool_for(self.where.url)  # held open by the job's locks while it runs
        conn = pool.get()[0]
        try:
            row = conn.execute(_TAKE_TURN, {"ns": self.where.namespace, "d": n / self.rate}).fetchone()
        except Exception as exc:
            from .postgres import connection_lost

            lost = connection_lost(conn, exc)
            conn.close()
            if lost:
                from .location import DatabaseLost

                raise DatabaseLost.at(self.where.url, exc) from None
            raise
        pool.put(conn)
        delay = float(row[0]) if row is not None else 0.0
        if delay > 0:
            time.sleep(delay)
