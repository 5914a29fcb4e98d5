"""What the user asked for the confirmation mail (kept apart from the sending code, which pulls
in ``email`` and ``smtplib``: a run imports that only when it actually sends)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NotifyOptions:
    enabled: bool = True
    lang: str = "en"
    extra: list[str] = field(default_factory=list)
    sender: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str | None = None
    smtp_user: str | None = None
    smtp_password: str | None = None  # literal, env:NAME or file:PATH
    ca_file: str | None = None
    insecure: bool = False
