"""A TCP proxy on 127.0.0.1 that adds a fixed one-way delay, like a server far away.

Every chunk read in either direction is stamped with the time it may leave (read time + delay)
and sent then, in order, so a chunk's delay does not add up behind the previous one's: with
``delay=0.020`` a request/answer round trip takes about 40 ms however many connections are open.

    with LatencyProxy("127.0.0.1", server.port, delay=0.020) as proxy:
        connect("127.0.0.1", proxy.port)   # ~40 ms round trip to the server

It is one asyncio loop (timers, no thread per connection) in a child process of its own: the
proxy of a benchmark must not take the CPU or the GIL of what it measures (a first version with
four threads per connection, inside the benchmark's process, cost more CPU than the workers it
served on a 2-core machine). No bandwidth limit: only latency. An end of stream (FIN) is delayed
like data and passed on as a half-close, so a client that shuts down its side still gets the
server's last answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                done: asyncio.Event) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` s after it was read (timers fire in
    the order they were set: deadlines never go down, so bytes keep their order)."""
    loop = asyncio.get_running_loop()

    def send(data: bytes) -> None:
        if not writer.is_closing():
            writer.write(data)

    def end() -> None:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        done.set()

    try:
        while data := await reader.read(CHUNK):
            loop.call_at(loop.time() + delay, send, data)
    except (ConnectionError, OSError):
        pass
    loop.call_at(loop.time() + delay, end)


async def _link(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, target: tuple[str, int],
                delay: float, accepted) -> None:  # noqa: ANN001 - a multiprocessing Value
    with accepted.get_lock():
        accepted.value += 1
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()  # target down: the client sees a closed connection
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up, down = asyncio.Event(), asyncio.Event()
    await asyncio.gather(_pipe(client_r, server_w, delay, up), _pipe(server_r, client_w, delay, down))
    await up.wait()
    await down.wait()
    for w in (client_w, server_w):
        with contextlib.suppress(Exception):
            w.close()


def _serve(listener: socket.socket, target: tuple[str, int], delay: float, accepted,  # noqa: ANN001
           priority: int) -> None:
    if priority:
        os.nice(-priority)  # a network does not wait for a CPU: see LatencyProxy
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _link(r, w, target, delay, accepted), sock=listener)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class LatencyProxy:
    """``start()``: listening on ``port`` (127.0.0.1) in a child process; ``stop()`` ends it."""

    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.020, priority: int = 0):
        self.target = (target_host, target_port)
        self.delay = delay
        # > 0 (root only): the proxy runs that much nicer than everything else, so that on a busy
        # machine its chunks still leave on time: it stands for a network, which takes no CPU of ours.
        self.priority = priority
        self.port: int | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._ctx = multiprocessing.get_context("fork")
        self._accepted = self._ctx.Value("i", 0)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return int(self._accepted.value)

    def start(self) -> LatencyProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        # fork: the child gets the listening socket as it is (bound before start() returns, so a
        # client may connect at once).
        self._proc = self._ctx.Process(target=_serve, args=(listener, self.target, self.delay, self._accepted, self.priority),
                                       daemon=True,
                                 name=f"latency-proxy-{self.port}")
        self._proc.start()
        listener.close()  # the child's copy serves
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._proc = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
