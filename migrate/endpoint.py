"""The one small interface every mailbox store implements (IMAP server, Maildir, mbox).

Folder names passed in and out are full decoded Unicode names *as the endpoint lists them*
(prefix and the endpoint's own separator included). Encoding to modified UTF-7, quoting and
literals are the endpoint's business.

Errors: implementations raise only ``migrate.errors`` types:
``AuthFailed``/``ConnectFailed``/``OverQuota`` (fatal), ``ConnectionLost``/``Throttled``/
``TokenExpired`` (retryable: the caller reconnects), ``MessageError`` (one message), and
``FolderRefused``. A connection that raised ``ConnectionLost`` is unusable; the caller opens a
new one with the same factory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from .errors import FolderRefused, MessageError
from .models import (
    AppendItem,
    AppendResult,
    Capabilities,
    FolderInfo,
    FolderStatus,
    MessageMeta,
    Namespace,
    RawMessage,
)


class Endpoint(Protocol):
    #: human-readable identity for reports, never containing a secret (e.g. "alice@127.0.0.1:1143")
    label: str

    def capabilities(self) -> Capabilities: ...

    def namespace(self) -> Namespace: ...

    def list_folders(self) -> list[FolderInfo]:
        """Every folder, including empty ones and ``\\Noselect`` parents."""
        ...

    def create_folder(self, name: str) -> None:
        """Create ``name`` (and missing parents); no error if it exists. Raises FolderRefused."""
        ...

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY, UIDNEXT, message count (and HIGHESTMODSEQ) without changing anything."""
        ...

    def statuses(self, folders: Sequence[str]) -> dict[str, FolderStatus]:
        """``status`` of several folders at once; a folder that is gone or refused is left out."""
        ...

    def fetch_meta(self, folder: str, uids: Sequence[int] | None = None, *,
                   changed_since: int | None = None, with_keys: bool = True) -> Iterator[MessageMeta]:
        """Metadata for ``uids`` (None = all) in UID order, read-only (never sets ``\\Seen``).

        With ``with_keys`` the identifying headers (and, for messages without Message-ID, the
        start of the text) are included so that dedupe keys can be computed. With
        ``changed_since`` only messages whose MODSEQ is greater are returned (CONDSTORE).
        """
        ...

    def fetch_messages(self, folder: str, uids: Sequence[int]) -> Iterator[RawMessage]:
        """Exact bytes, flags and INTERNALDATE of ``uids``, read-only (BODY.PEEK[]).

        A UID that no longer exists is simply not yielded.
        """
        ...

    def append(self, folder: str, items: Sequence[AppendItem]) -> list[AppendResult]:
        """Append in order; one result per item. A refused item does not stop the others."""
        ...

    def set_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        """Replace the flags of one message (``\\Recent`` never included)."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Cut the connection now, from any thread: a command blocked on a server that stopped
        answering fails at once as a lost connection (a cancelled job must not wait out its
        timeouts). Nothing for endpoints without a connection."""
        ...


def statuses_one_by_one(endpoint: Endpoint, folders: Sequence[str]) -> dict[str, FolderStatus]:
    """``Endpoint.statuses`` for stores with no bulk command: ``status`` of each folder."""
    out: dict[str, FolderStatus] = {}
    for name in folders:
        try:
            out[name] = endpoint.status(name)
        except (MessageError, FolderRefused):
            continue
    return out
