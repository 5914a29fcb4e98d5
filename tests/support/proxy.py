"""A fault-injecting TCP proxy on 127.0.0.1 for network-failure tests against real servers.

It forwards raw bytes (so it works for plain IMAP, STARTTLS and implicit TLS alike) and can cut a
connection after N bytes or when a byte pattern shows up, or stall forwarding for a while.

    proxy = FaultProxy("127.0.0.1", server.port).start()
    proxy.cut_when(b"APPEND", "upstream")   # next APPEND command never reaches the server
    ...
    proxy.stop()

"upstream" = client -> server, "downstream" = server -> client. Every rule fires once, on the
first connection that meets it, then disarms itself.
"""

from __future__ import annotations

import re
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass

DIRECTIONS = ("upstream", "downstream")
_LOGOUT = re.compile(rb"^\S+ LOGOUT\r?$", re.IGNORECASE | re.MULTILINE)


def _check_dir(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    return direction


@dataclass
class _Rule:
    direction: str
    n_bytes: int | None = None  # cut_after
    pattern: bytes | None = None  # cut_when
    offset: int = 0  # cut_when: cut point relative to the pattern's first byte
    rst: bool = False
    # cut_after counts from the moment it was armed: connection id -> byte position at arming.
    start_pos: dict | None = None
    only_conn: int | None = None  # set when a pattern's cut point spilled past one read
    every: bool = False  # cut_when(every=True): stays armed, cuts every connection that sends it


class _Conn:
    def __init__(self, cid: int, client: socket.socket, upstream: socket.socket):
        self.id = cid
        self.socks = {"upstream": client, "downstream": upstream}  # socket we READ for a direction
        self.pos = {"upstream": 0, "downstream": 0}  # bytes forwarded so far per direction
        self.tail = {"upstream": b"", "downstream": b""}  # overlap for patterns across reads
        self.closed = False
        self.logged_out = False  # the client sent LOGOUT: it is done with this connection

    def close(self, rst: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for s in self.socks.values():
            try:
                if rst:  # RST instead of FIN, like a dropped NAT entry / crashed peer
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class FaultProxy:
    """Threaded TCP forwarder with fault injection. Bounded: at most `max_connections` at once."""

    def __init__(self, target_host: str, target_port: int, *, max_connections: int = 32, chunk: int = 65536,
                 group: ProxyGroup | None = None):
        self.target = (target_host, target_port)
        self.group = group  # proxies whose "in use at once" is also counted together
        if group is not None:
            group.proxies.append(self)
        self.max_connections = max_connections
        self.chunk = chunk
        self.port: int | None = None
        self.connections = 0  # accepted so far
        self.cuts = 0  # connections cut by a rule (or cut_now)
        self.bytes = {"upstream": 0, "downstream": 0}
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._stall_until = 0.0
        self._released = threading.Event()  # cleared by hold(): nothing is forwarded until release()
        self._released.set()
        # Most connections in use at once (accepted, not closed, no LOGOUT sent). Exact, not
        # sampled: a client opens its next connection only after its LOGOUT was answered, and that
        # answer passed through here after the LOGOUT did.
        self.peak_connections = 0
        self._hold_on: tuple[bytes, str] | None = None
        self._conns: dict[int, _Conn] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None

    # ---- lifecycle
    def start(self) -> FaultProxy:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        ls.settimeout(0.1)  # so the accept loop sees stop()
        self._listener = ls
        self.port = ls.getsockname()[1]
        self._stopping.clear()
        t = threading.Thread(target=self._accept_loop, name=f"faultproxy-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener:
            self._listener.close()
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            c.close()
        for t in self._threads:
            t.join(5)
        self._threads.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- controls
    def cut_after(self, n_bytes: int, direction: str = "upstream", *, rst: bool = False) -> None:
        """Forward exactly n_bytes more in `direction` on a connection, then close both sockets."""
        with self._lock:
            start = {cid: c.pos[_check_dir(direction)] for cid, c in self._conns.items()}
            self._rules.append(_Rule(direction, n_bytes=n_bytes, rst=rst, start_pos=start))

    def cut_when(
        self, pattern: bytes, direction: str = "upstream", *, offset: int = 0, rst: bool = False,
        every: bool = False,
    ) -> None:
        """Cut when `pattern` passes in `direction`. Bytes before pattern start + offset are
        forwarded: offset=0 -> the peer never sees the pattern; offset=len(pattern)+k -> the
        pattern and k more bytes get through (e.g. cut in the middle of an APPEND literal).
        every=True (offset 0 only): the rule never disarms, like a middlebox that always cuts."""
        if not pattern:
            raise ValueError("empty pattern")
        if every and offset:
            raise ValueError("every=True cuts at the pattern (offset 0)")
        with self._lock:
            self._rules.append(_Rule(_check_dir(direction), pattern=pattern, offset=offset, rst=rst, every=every))

    def hold(self) -> None:
        """Forward nothing (both directions, all connections) until ``release()``."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def hold_when(self, pattern: bytes, direction: str = "upstream") -> None:
        """``hold()`` right after forwarding the first read that contains ``pattern`` (e.g. an
        APPEND: the client then waits for an answer that comes only after ``release()``)."""
        with self._lock:
            self._hold_on = (pattern, _check_dir(direction))

    def stall(self, seconds: float) -> None:
        """Stop forwarding (both directions, all connections) for `seconds` from now."""
        with self._lock:
            self._stall_until = time.monotonic() + seconds

    def cut_now(self, *, rst: bool = False) -> int:
        """Cut every open connection now; returns how many were cut."""
        with self._lock:
            conns = [c for c in self._conns.values() if not c.closed]
            self.cuts += len(conns)
        for c in conns:
            c.close(rst)
        return len(conns)

    def reset(self) -> None:
        """Disarm all rules, end any stall and zero the counters (open connections stay)."""
        with self._lock:
            self._rules.clear()
            self._stall_until = 0.0
            self.peak_connections = 0
            self.connections = 0
            self.cuts = 0
            self.bytes = {"upstream": 0, "downstream": 0}

    @property
    def armed(self) -> int:
        return len(self._rules)

    @property
    def holding(self) -> bool:
        """Forwarding nothing now (``hold()``, or a ``hold_when`` that fired) until ``release()``."""
        return not self._released.is_set()

    @property
    def in_use(self) -> int:
        """Connections in use now (accepted, not closed, no LOGOUT sent)."""
        with self._lock:
            return sum(not c.closed and not c.logged_out for c in self._conns.values())

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(not c.closed for c in self._conns.values())

    # ---- internals
    def _accept_loop(self) -> None:
        cid = 0
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                busy = sum(not c.closed for c in self._conns.values())
            if busy >= self.max_connections:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()  # target down: the client sees a closed connection
                continue
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cid += 1
            conn = _Conn(cid, client, upstream)
            with self._lock:
                self.connections += 1
                self._conns[cid] = conn
                active = sum(not c.closed and not c.logged_out for c in self._conns.values())
                self.peak_connections = max(self.peak_connections, active)
                # Finished connection threads are dropped so the list stays bounded.
                self._threads = [t for t in self._threads if t.is_alive()]
            if self.group is not None:
                self.group.note()
            t = threading.Thread(
                target=self._pump, args=(conn,), name=f"faultproxy-{self.port}-{cid}", daemon=True
            )
            self._threads.append(t)
            t.start()

    def _pump(self, conn: _Conn) -> None:
        peer = {"upstream": conn.socks["downstream"], "downstream": conn.socks["upstream"]}
        sel = selectors.DefaultSelector()
        for d, s in conn.socks.items():
            sel.register(s, selectors.EVENT_READ, d)
        try:
            while not conn.closed and not self._stopping.is_set():
                wait = self._stall_until - time.monotonic()
                if wait > 0:  # stalled: don't read, so TCP backpressure builds like on a dead link
                    time.sleep(min(wait, 0.05))
                    continue
                if not self._released.wait(0.05):  # held
                    continue
                for key, _ in sel.select(0.05):
                    d = key.data
                    try:
                        data = key.fileobj.recv(self.chunk)
                    except OSError:
                        data = b""
                    if not data:
                        return  # one side closed: close both, like a transparent middlebox
                    if d == "upstream" and _LOGOUT.search(data):
                        with self._lock:
                            conn.logged_out = True
                    send, cut_rule = self._apply_rules(conn, d, data)
                    if send:
                        try:
                            peer[d].sendall(send)
                        except OSError:
                            return
                        with self._lock:
                            conn.pos[d] += len(send)
                            self.bytes[d] += len(send)
                            if self._hold_on and self._hold_on[1] == d and self._hold_on[0] in send:
                                self._hold_on = None
                                self._released.clear()
                    if cut_rule is not None:
                        with self._lock:
                            self.cuts += 1
                        conn.close(cut_rule.rst)
                        return
        finally:
            sel.close()
            conn.close()
            with self._lock:
                self._conns.pop(conn.id, None)

    def _apply_rules(self, conn: _Conn, d: str, data: bytes) -> tuple[bytes, _Rule | None]:
        """Return (bytes to forward, rule that cuts after them or None)."""
        with self._lock:
            best: tuple[int, _Rule] | None = None  # (bytes of `data` to forward, rule)
            tail = conn.tail[d]
            for rule in self._rules:
                if rule.direction != d or rule.only_conn not in (None, conn.id):
                    continue
                if rule.n_bytes is not None:
                    done = conn.pos[d] - rule.start_pos.get(conn.id, 0)
                    k = max(rule.n_bytes - done, 0)
                    if k <= len(data):
                        cand = k
                    else:
                        continue
                else:
                    buf = tail + data
                    # Only matches that end in the new bytes (older ones were already forwarded).
                    i = buf.find(rule.pattern, max(0, len(tail) - len(rule.pattern) + 1))
                    if i < 0:
                        continue
                    cand = i - len(tail) + rule.offset
                    if cand > len(data):
                        # Cut point lies beyond this read: turn it into a byte count rule.
                        rule.n_bytes = cand
                        rule.pattern = None
                        rule.start_pos = {conn.id: conn.pos[d]}
                        rule.only_conn = conn.id
                        continue
                    cand = max(cand, 0)  # pattern began in an earlier read: cut right away
                if best is None or cand < best[0]:
                    best = (cand, rule)
            if self._rules:
                keep = max((len(r.pattern) - 1 for r in self._rules if r.pattern), default=0)
                conn.tail[d] = (tail + data)[-keep:] if keep else b""
            if best is None:
                return data, None
            if not best[1].every:
                self._rules.remove(best[1])
            return data[: best[0]], best[1]


class ProxyGroup:
    """Several proxies (one per account, say) counted together: ``peak_busy`` is the most of them
    that had a connection in use at the same time (exact for the same reason as
    ``peak_connections``: counted at each accept, after the new connection is registered)."""

    def __init__(self) -> None:
        self.proxies: list[FaultProxy] = []
        self.peak_busy = 0
        self._lock = threading.Lock()

    def note(self) -> None:
        busy = sum(p.in_use > 0 for p in list(self.proxies))
        with self._lock:
            self.peak_busy = max(self.peak_busy, busy)
