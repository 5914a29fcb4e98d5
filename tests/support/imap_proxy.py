"""An IMAP-aware fault proxy on 127.0.0.1: forwards a plain-text IMAP session byte for byte, but
answers chosen tagged commands itself, the way a provider answers when it throttles.

    proxy = ImapAnswerProxy("127.0.0.1", server.port).start()
    proxy.answer(rb"UID FETCH .*BODY\\.PEEK\\[\\]", nth=2,
                 reply=b"NO Request is throttled. Suggested Backoff Time: 1500 milliseconds")
    proxy.answer(rb"^APPEND ", nth=3, bye=b"Connection is closed. 13")   # * BYE, then hang up
    ...
    proxy.events  # (monotonic time, connection id, "answered"|"forwarded", command line head)

A rule matches the command line after the tag (regex, bytes). ``nth`` counts matching commands
over all connections; the rule fires once (``every=True``: on every match from the nth on).
A command the proxy answers never reaches the server: its literals (LITERAL+ or synchronizing) are swallowed, so nothing half-sent is stored. The
client is never pipelining (imaplib waits for each tagged answer), so an injected line can't land
in the middle of a server response.

``when(selection, command)`` narrows a rule by connection state: ``selection`` is the last
SELECT/EXAMINE/CLOSE/UNSELECT command line (after the tag) the proxy forwarded on that
connection, None before any (``proxy.selection``: connection id -> that line):

    proxy.answer(rb"^APPEND ", every=True, reply=b"NO Current box is selected READ-ONLY",
                 when=lambda sel, cmd: sel is not None and sel.upper().startswith(b"EXAMINE "))
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_LITERAL = re.compile(rb"\{(\d+)(\+?)\}$")
_SELECTION = re.compile(rb"^(SELECT|EXAMINE|CLOSE|UNSELECT)\b", re.IGNORECASE)


@dataclass
class _Rule:
    pattern: re.Pattern[bytes]
    nth: int
    reply: bytes | None  # "NO ..." (without tag)
    bye: bytes | None  # "* BYE <bye>" then close
    when: Callable[[bytes | None, bytes], bool] | None = None  # (connection's selection, command)
    every: bool = False
    seen: int = 0
    fired: bool = False


class ImapAnswerProxy:
    def __init__(self, host: str, port: int, *, watch: bytes = rb"^(UID FETCH|APPEND|FETCH) ") -> None:
        self.target = (host, port)
        self.watch = re.compile(watch, re.IGNORECASE)
        self.port: int | None = None
        self.connections = 0
        self.events: list[tuple[float, int, str, bytes]] = []
        self.selection: dict[int, bytes] = {}  # connection id -> last selection command forwarded
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # --- control
    def answer(self, pattern: bytes, *, nth: int = 1, reply: bytes | None = None, bye: bytes | None = None,
               when: Callable[[bytes | None, bytes], bool] | None = None, every: bool = False) -> None:
        if (reply is None) == (bye is None):
            raise ValueError("give exactly one of reply= or bye=")
        with self._lock:
            self._rules.append(_Rule(re.compile(pattern, re.IGNORECASE), nth, reply, bye, when, every))

    @property
    def fired(self) -> int:
        with self._lock:
            return sum(r.fired for r in self._rules)

    def answered(self) -> list[tuple[float, int, str, bytes]]:
        return [e for e in self.events if e[2] == "answered"]

    def first_after(self, t: float, pattern: bytes) -> float | None:
        """Time of the first forwarded command matching ``pattern`` after time ``t``."""
        rx = re.compile(pattern, re.IGNORECASE)
        times = [e[0] for e in self.events if e[2] == "forwarded" and e[0] > t and rx.search(e[3])]
        return min(times) if times else None

    # --- lifecycle
    def start(self) -> ImapAnswerProxy:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        ls.settimeout(0.1)
        self._listener = ls
        self.port = ls.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"imapproxy-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener:
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            _close(s)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> ImapAnswerProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                cid = self.connections
                self._socks += [client, upstream]
            send_lock = threading.Lock()
            for target, args in ((self._downstream, (client, upstream, send_lock)),
                                 (self._upstream, (cid, client, upstream, send_lock))):
                t = threading.Thread(target=target, args=args, daemon=True)
                t.start()
                self._threads.append(t)

    def _downstream(self, client: socket.socket, upstream: socket.socket, send_lock: threading.Lock) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                with send_lock:
                    client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def _match(self, command: bytes, cid: int = 0) -> _Rule | None:
        with self._lock:
            hit = None
            selection = self.selection.get(cid)
            for r in self._rules:
                if (r.fired and not r.every) or not r.pattern.search(command):
                    continue
                if r.when is not None and not r.when(selection, command):
                    continue
                r.seen += 1
                if (r.seen == r.nth or (r.every and r.seen > r.nth)) and hit is None:
                    r.fired = True
                    hit = r
            return hit

    def _upstream(self, cid: int, client: socket.socket, upstream: socket.socket,
                  send_lock: threading.Lock) -> None:
        buf = b""
        literal = 0  # bytes of a literal still to pass (or swallow)
        in_command = False  # the next line continues a command (after a literal)
        answering: tuple[bytes, _Rule] | None = None  # (tag, rule) of the command we swallow

        def finish(tag: bytes, rule: _Rule) -> bool:
            """Answer the swallowed command; False when the connection ends (BYE)."""
            with send_lock:
                if rule.bye is not None:
                    client.sendall(b"* BYE " + rule.bye + b"\r\n")
                    return False
                client.sendall(tag + b" " + (rule.reply or b"NO") + b"\r\n")
            return True

        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                out = b""
                while buf:
                    if literal:
                        part, buf = buf[:literal], buf[literal:]
                        literal -= len(part)
                        if answering is None:
                            out += part
                        continue
                    end = buf.find(b"\r\n")
                    if end < 0:
                        break
                    line, buf = buf[:end + 2], buf[end + 2:]
                    body = line[:-2]
                    m = _LITERAL.search(body)
                    if not in_command:
                        tag, _, command = body.partition(b" ")
                        rule = self._match(command, cid)
                        if rule is None and _SELECTION.match(command):
                            with self._lock:
                                self.selection[cid] = command
                        if self.watch.search(command):
                            self.events.append((time.monotonic(), cid, "answered" if rule else "forwarded",
                                                command[:120]))
                        if rule is not None:
                            answering = (tag, rule)
                    if answering is None:
                        out += line
                    if m and (m.group(2) or answering is None):
                        literal = int(m.group(1))  # LITERAL+, or a forwarded synchronizing one
                        in_command = True
                        continue
                    in_command = False
                    if answering is not None:
                        # Command over (or stopped at a synchronizing literal the client now
                        # never sends, because it gets the tagged answer instead of "+").
                        tag, rule = answering
                        answering = None
                        if out:
                            upstream.sendall(out)
                            out = b""
                        if not finish(tag, rule):
                            return
                if out:
                    upstream.sendall(out)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
