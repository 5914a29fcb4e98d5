"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it receives."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    sender: str
    rcpts: list[str]
    data: bytes

    @property
    def message(self):
        return message_from_bytes(self.data, policy=default)


@dataclass
class _Handler:
    mails: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        self.mails.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


class SmtpServer:
    """``SmtpServer(user, password)`` requires AUTH with those credentials; without, accepts all."""

    def __init__(self, user: str | None = None, password: str | None = None, port: int | None = None):
        self.handler = _Handler()
        self.port = port or free_port()
        self.user, self.password = user, password

        def auth(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
                and auth_data.password.decode() == password
            return AuthResult(success=ok)

        kw = {"authenticator": auth, "auth_required": True, "auth_require_tls": False} if user else {}
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kw)

    @property
    def mails(self) -> list[Received]:
        return self.handler.mails

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
