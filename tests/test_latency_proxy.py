"""tests/support/latency_proxy.py against a real TCP echo server on 127.0.0.1: the delay it adds,
that bytes arrive whole and in order, and that connections are delayed side by side, not in turn."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.latency_proxy import LatencyProxy

DELAY = 0.020  # one way: ~40 ms round trip


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo():
    srv = _EchoServer(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def proxy(echo):
    with LatencyProxy("127.0.0.1", echo, delay=DELAY) as p:
        yield p


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _round_trips(port: int, n: int) -> float:
    """Open a connection, do n one-line round trips, return the time they took."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        for i in range(n):
            line = f"ping {i}\n".encode()
            s.sendall(line)
            assert _recv_exactly(s, len(line)) == line
        return time.monotonic() - t0


def test_round_trip_takes_twice_the_delay(proxy):
    per_trip = _round_trips(proxy.port, 5) / 5
    assert 2 * DELAY <= per_trip < 0.120, f"{per_trip * 1000:.1f} ms per round trip"


def test_without_the_proxy_the_echo_is_fast(echo):
    # The check above measures the proxy, not a slow echo server.
    assert _round_trips(echo, 5) / 5 < DELAY


def test_bytes_arrive_whole_and_in_order(proxy):
    payload = bytes(range(256)) * 4096  # 1 MiB, many chunks each way
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(_recv_exactly(s, len(payload))))
        reader.start()
        s.sendall(payload)
        reader.join(30)
    assert got and got[0] == payload


def test_half_close_passes_the_last_answer(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        assert _recv_exactly(s, 10) == b"last words"
        assert s.recv(10) == b""  # then the server's end arrives too


def test_connections_are_delayed_side_by_side(proxy):
    alone = _round_trips(proxy.port, 10)
    with ThreadPoolExecutor(4) as pool:
        t0 = time.monotonic()
        each = list(pool.map(lambda _i: _round_trips(proxy.port, 10), range(4)))
        together = time.monotonic() - t0
    assert all(e >= 10 * 2 * DELAY for e in each)
    # In turn, four would take ~4x one; side by side about the same as one.
    assert together < 2 * alone, f"4 connections: {together:.2f}s, one: {alone:.2f}s"
    assert proxy.connections == 5


def test_a_refused_upstream_closes_the_client():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead_port = free.getsockname()[1]  # nothing listens there once closed
    with LatencyProxy("127.0.0.1", dead_port, delay=DELAY) as p, \
            socket.create_connection(("127.0.0.1", p.port), timeout=10) as s, \
            contextlib.suppress(ConnectionResetError):  # a close or a reset: both say "refused"
        assert s.recv(10) == b""
