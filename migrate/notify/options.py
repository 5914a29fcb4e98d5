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
    # always: after every run; changes: only when a run copied, restored or failed something, or
    # stopped with an error, or is the job's first run (a cron re-run with nothing new stays
    # quiet); never.
    when: str = "changes"

    def __post_init__(self) -> None:
        self.when = check_when(self.when)


NOTIFY_WHEN = ("always", "changes", "never")


def check_when(value: str | None) -> str:
    norm = (value or "changes").strip().lower()
    if norm not in NOTIFY_WHEN:
        from ..errors import UsageError

        raise UsageError(f"--notify-when {value!r} is not one of {', '.join(NOTIFY_WHEN)}",
                         hint="always: after every run; changes (default): only when something was copied or "
                              "failed, or on the first run; never")
    return norm


# The outcome lines ``notify_job``/``deliver`` return (they end up in ``JobReport.notification``).
SENT = "confirmation mail: sent to "
NOT_SENT = "confirmation mail: NOT sent"
NO_SMTP = "confirmation mail: not sent (no SMTP server known for the target: give --smtp-host)"
OFF = "confirmation mail: off (--no-notify)"
OFF_NEVER = "confirmation mail: off (--notify-when never)"
UNCHANGED = ("confirmation mail: not needed (nothing copied or failed since the last run; "
             "--notify-when always sends one anyway)")
NO_RECIPIENTS = "confirmation mail: no recipient addresses"
INTERRUPTED = "confirmation mail: not sent (the batch was interrupted)"


def mail_state(note: str | None) -> str:
    """One word for a ``JobReport.notification`` line: sent | failed | no-smtp | unchanged | off |
    no-recipients | interrupted | none (no mail was attempted)."""
    if not note:
        return "none"
    for prefix, state in ((SENT, "sent"), (NOT_SENT, "failed"), (NO_SMTP, "no-smtp"), (UNCHANGED, "unchanged"),
                          (OFF, "off"), (OFF_NEVER, "off"), (NO_RECIPIENTS, "no-recipients"),
                          (INTERRUPTED, "interrupted")):
        if note.startswith(prefix):
            return state
    return "failed" if "NOT sent" in note else "none"
