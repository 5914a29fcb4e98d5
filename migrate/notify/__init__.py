"""Confirmation mails: compose them from a ``JobReport`` and send them over SMTP.

``compose.compose_job_mail`` / ``compose.compose_batch_mail`` build the message (text + HTML,
four languages), ``send.send_mail`` delivers it, ``send.recipients_for`` picks the addresses.
"""

from __future__ import annotations

from migrate.errors import ExitCode, MigrateError


class NotifyFailed(MigrateError):
    """The confirmation mail could not be sent. The migration itself is not affected."""

    reference = "notify-failed"
    exit_code = ExitCode.CONNECTION


# Re-exported after NotifyFailed exists: send.py imports it from this package.
from .compose import compose_batch, compose_batch_mail, compose_job_mail  # noqa: E402
from .i18n import LANGS  # noqa: E402
from .send import SmtpSettings, recipients_for, send_mail  # noqa: E402

__all__ = ["LANGS", "NotifyFailed", "SmtpSettings", "compose_batch", "compose_batch_mail", "compose_job_mail",
           "recipients_for", "send_mail"]
