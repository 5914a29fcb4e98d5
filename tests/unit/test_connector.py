"""Connector: the endpoint factory that can open its first endpoint ahead of time."""

from __future__ import annotations

import threading

import pytest

from migrate.errors import ConnectFailed
from migrate.sides import Connector


class _Ep:
    def __init__(self, n: int) -> None:
        self.n, self.closed = n, False

    def close(self) -> None:
        self.closed = True


def _counting(fail_first: bool = False):  # type: ignore[no-untyped-def]
    opened: list[_Ep] = []
    threads: list[str] = []

    def open_endpoint() -> _Ep:
        threads.append(threading.current_thread().name)
        if fail_first and not opened:
            opened.append(_Ep(-1))
            raise ConnectFailed("127.0.0.1:1: connection refused")
        ep = _Ep(len(opened))
        opened.append(ep)
        return ep
    return open_endpoint, opened, threads


def test_warm_opens_in_a_thread_and_the_first_call_takes_it() -> None:
    fn, opened, threads = _counting()
    c = Connector(fn)  # type: ignore[arg-type]
    c.warm()
    c.warm()  # idempotent
    first = c()
    assert first is opened[0] and threads == ["connect-ahead"]
    second = c()  # later calls open new endpoints, in the caller's thread
    assert second is opened[1] and second is not first and threads[1] != "connect-ahead"
    assert len(opened) == 2


def test_without_warm_every_call_opens() -> None:
    fn, opened, threads = _counting()
    c = Connector(fn)  # type: ignore[arg-type]
    assert c() is opened[0] and c() is opened[1]
    assert "connect-ahead" not in threads


def test_an_error_while_warming_is_raised_by_the_first_call_then_it_retries() -> None:
    fn, opened, _ = _counting(fail_first=True)
    c = Connector(fn)  # type: ignore[arg-type]
    c.warm()
    with pytest.raises(ConnectFailed, match="refused"):
        c()
    assert c() is opened[1]


def test_discard_closes_an_endpoint_nobody_took() -> None:
    fn, opened, _ = _counting()
    c = Connector(fn)  # type: ignore[arg-type]
    c.warm()
    c.discard()
    assert opened[0].closed
    assert c() is opened[1] and not opened[1].closed  # nothing left over: a new one is opened
    c.discard()  # nothing warmed: a no-op
    assert not opened[1].closed
