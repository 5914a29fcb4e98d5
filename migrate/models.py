"""Typed value objects shared by every layer.

Nothing here talks to a server: endpoints (``migrate.imap``, ``migrate.local``) produce and
consume these, and the engine reasons only in these terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Security = Literal["ssl", "starttls", "none"]

# RFC 6154 special-use attributes we map between servers (\All, \Flagged and \Important are
# views on Gmail-like servers; the engine treats them specially).
SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged", "\\Important")

# Flags a server sets by itself; never copied.
NON_COPYABLE_FLAGS = frozenset({"\\Recent"})


@dataclass(frozen=True)
class FolderInfo:
    """One folder as listed by an endpoint.

    ``name`` is the full decoded (Unicode) name exactly as the server lists it, prefix and
    separators included (``INBOX.Sent``, ``Archive/2023``). ``delimiter`` is the hierarchy
    separator the server reported for it (None for a flat server).
    """

    name: str
    delimiter: str | None
    flags: frozenset[str] = frozenset()
    special_use: str | None = None

    @property
    def selectable(self) -> bool:
        lowered = {f.lower() for f in self.flags}
        return "\\noselect" not in lowered and "\\nonexistent" not in lowered


@dataclass(frozen=True)
class Namespace:
    """The personal namespace of an account: prefix (``""`` or ``INBOX.``) and separator."""

    prefix: str
    delimiter: str | None


@dataclass(frozen=True)
class FolderStatus:
    """What a folder looks like right now (from SELECT/EXAMINE or STATUS)."""

    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None = None


@dataclass(frozen=True, slots=True)  # one per message of a folder being scanned: keep it small
class MessageMeta:
    """Cheap facts about one message: enough to plan and dedupe without its body.

    ``header`` holds the raw bytes of the identifying header fields (Message-ID, Date, From,
    To, Cc, Subject) as the server returned them; ``text_head`` is the start of the body text,
    fetched only where a message has no Message-ID (see ``migrate.dedupe.keys``).
    """

    uid: int
    size: int
    flags: tuple[str, ...]
    internaldate: datetime | None
    header: bytes = b""
    text_head: bytes | None = None
    modseq: int | None = None


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A whole message as fetched: exact bytes plus what APPEND needs to recreate it."""

    uid: int
    body: bytes
    flags: tuple[str, ...]
    internaldate: datetime | None


@dataclass(frozen=True)
class AppendItem:
    body: bytes
    flags: tuple[str, ...]
    internaldate: datetime | None


@dataclass(frozen=True)
class AppendResult:
    """Outcome of one APPEND. ``uid`` is the target UID when the server said (APPENDUID)."""

    ok: bool
    uid: int | None = None
    uidvalidity: int | None = None
    error: str | None = None  # the server's answer, when refused


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint can do, as far as the engine cares."""

    uidplus: bool = False
    multiappend: bool = False
    literal_plus: bool = False
    condstore: bool = False
    special_use: bool = False
    append_limit: int | None = None  # bytes; None = no limit announced
    # Flags the target can store permanently; None = unknown/any. "\\*" means keywords allowed.
    permanent_flags: frozenset[str] | None = None
    raw: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Quota:
    """The target's quota (GETQUOTAROOT, RFC 9208): usage and limit of storage (bytes) and of
    messages; None where the server sets no such limit."""

    storage_used: int | None = None
    storage_limit: int | None = None
    messages_used: int | None = None
    messages_limit: int | None = None
    root: str = ""

    @property
    def free_bytes(self) -> int | None:
        if self.storage_limit is None:
            return None
        return max(0, self.storage_limit - (self.storage_used or 0))

    @property
    def free_messages(self) -> int | None:
        if self.messages_limit is None:
            return None
        return max(0, self.messages_limit - (self.messages_used or 0))
