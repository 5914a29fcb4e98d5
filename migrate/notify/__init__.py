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


# Re-exported lazily: composing and sending pull in ``email`` and ``smtplib``, which a run that
# sends no mail should not pay for at start-up.
_EXPORTS = {"compose_batch": "compose", "compose_batch_mail": "compose", "compose_job_mail": "compose",
            "LANGS": "i18n", "SmtpSettings": "send", "recipients_for": "send", "send_mail": "send"}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = ["LANGS", "NotifyFailed", "SmtpSettings", "compose_batch", "compose_batch_mail", "compose_job_mail",
           "recipients_for", "send_mail"]
