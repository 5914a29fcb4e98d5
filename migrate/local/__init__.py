"""Local mailboxes behind the Endpoint interface: Maildir++ (read/write) and mbox (read-only)."""

from __future__ import annotations

from ..accounts import LocalStore
from ..errors import UsageError
from .maildir import MaildirEndpoint
from .mbox import MboxEndpoint

__all__ = ["MaildirEndpoint", "MboxEndpoint", "open_local"]


def open_local(store: LocalStore, *, create: bool = False) -> MaildirEndpoint | MboxEndpoint:
    """Open a ``LocalStore``; ``create`` makes a missing Maildir (an mbox is never created)."""
    if store.kind == "maildir":
        return MaildirEndpoint(store.path, create=create)
    if store.kind == "mbox":
        if create:
            raise UsageError(f"mbox is read-only: {store.path} cannot be a target",
                             hint="use a Maildir or IMAP account as the target")
        return MboxEndpoint(store.path)
    raise UsageError(f"unknown local store kind {store.kind!r}", hint="use 'maildir' or 'mbox'")
