"""The service's state in PostgreSQL (``mailmigrate serve``/``worker`` with ``--database URL``).

``PostgresConnection`` runs ``Store``'s SQL (migrate/service/db.py) against the tables of
migration 2 of ``migrate/store/postgres_schema`` (schema ``service``; ``mailmigrate db upgrade``
makes them). What differs from SQLite stays here: ``%s`` placeholders, ``search_path``, a
transaction that locks what its ``SELECT ... FOR UPDATE`` reads, and the connection dropping
(server restarted, backend terminated): it reconnects, reads once more, and reports a failed
change as a one-line ``ServiceDatabaseError``.

SQLite's ``PRAGMA secure_delete`` has no PostgreSQL equivalent: an erased secret is set to NULL
and its old row version stays on disk until VACUUM (autovacuum) reclaims it. It was sealed
(``crypto.SecretBox``), so what lingers is ciphertext.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from ..errors import UsageError
from ..store import postgres_schema
from ..store.postgres import _first_line, _psycopg, _where, connect, connection_lost
from .db import Connection, Result, ServiceDatabaseError

SCHEMA = "service"  # migration 2's schema: the journal's own ``jobs`` table is in ``public``


@functools.lru_cache(maxsize=256)
def _dialect(sql: str) -> str:
    """``Store``'s SQL (``?`` placeholders, no ``%`` anywhere) as psycopg takes it."""
    return sql.replace("?", "%s")


def _is_read(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT"


def check_schema(conn: Any, url: str) -> None:
    """A one-line UsageError when the database has not applied every migration this mailmigrate has."""
    if not postgres_schema.pending(conn):
        return
    have = max(postgres_schema.applied(conn), default=0)
    need = postgres_schema.MIGRATIONS[-1].version
    raise UsageError(f"the database at {_where(url)} is at schema version {have}, this mailmigrate needs {need}: "
                     "run `mailmigrate db upgrade --database URL`")


class PostgresConnection(Connection):
    """One autocommit connection (the caller serialises its use); a transaction is
    PostgreSQL's own, and rows a ``SELECT ... FOR UPDATE`` read stay locked until it ends."""

    for_update = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = _where(url)
        self._psycopg = _psycopg()
        self._in_tx = False
        self._lost = False  # the connection dropped: a new one at the next request
        self._closed = False
        self.conn = connect(url)  # a one-line error for a bad URL, a refused login, no server
        try:
            check_schema(self.conn, url)
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        from psycopg.rows import dict_row

        self.conn.row_factory = dict_row  # type: ignore[assignment]
        self.conn.execute(f"SET search_path TO {SCHEMA}")

    def _reconnect(self) -> None:
        if self._closed:  # closed by its owner: nothing reopens it
            raise ServiceDatabaseError(f"the connection to the service database at {self.where} is closed")
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = connect(self.url)
        self._prepare()
        self._lost = False

    def _failed(self, exc: BaseException) -> ServiceDatabaseError:
        """``exc`` as one line; a lost connection is replaced at the next request."""
        self._lost = self._lost or connection_lost(self.conn, exc)
        if self._lost:
            return ServiceDatabaseError(f"lost the connection to the service database at {self.where}: "
                                        f"{_first_line(exc)}", hint="the next request connects again")
        return ServiceDatabaseError(f"the service database at {self.where} refused a request: {_first_line(exc)}")

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Result:
        retry = not self._in_tx and _is_read(sql)  # a change may have happened before the drop: never twice
        while True:
            if self._lost and not self._in_tx:
                self._reconnect()
            try:
                cur = self.conn.execute(_dialect(sql), args)  # type: ignore[arg-type]  # our own constant SQL
                rows = cur.fetchall() if cur.description is not None else []
                return Result(rows, cur.rowcount)  # type: ignore[arg-type]  # dict_row
            except self._psycopg.Error as exc:
                failure = self._failed(exc)
                if retry and self._lost:
                    retry = False
                    continue
                raise failure from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._lost:
            self._reconnect()
        try:
            with self.conn.transaction():
                self._in_tx = True
                yield
        except self._psycopg.Error as exc:  # BEGIN, COMMIT or the rollback itself failed (connection lost)
            raise self._failed(exc) from None
        finally:
            self._in_tx = False

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self.conn.close()
