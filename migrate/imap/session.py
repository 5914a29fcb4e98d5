"""``ImapEndpoint``: the ``Endpoint`` protocol over one imapclient connection.

One instance = one connection, used by one thread. Every call into imapclient goes through
``_run`` so that each failure is classified once (``classify``) and a lost connection is
never reused.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, TypeVar

from imapclient import IMAPClient
from imapclient import exceptions as imap_exc

from ..accounts import ImapAccount, Secret
from ..dedupe.keys import split_raw
from ..endpoint import statuses_one_by_one
from ..errors import AuthFailed, ConnectionLost, FolderRefused, MigrateError, OverQuota, Throttled
from ..models import (
    NON_COPYABLE_FLAGS,
    SPECIAL_USES,
    AppendItem,
    AppendResult,
    Capabilities,
    FolderInfo,
    FolderStatus,
    MessageMeta,
    Namespace,
    Quota,
    RawMessage,
)
from . import classify, wire
from .append import append_items

T = TypeVar("T")

META_BATCH = 500  # UIDs per metadata FETCH: one ~100 KB answer, few round trips
BODY_BATCH = 50  # messages per body FETCH; the engine sizes its uid lists for memory
TEXT_HEAD = 4096  # bytes of body text fetched for messages without Message-ID
HEADER_FIELDS = "MESSAGE-ID DATE FROM TO CC SUBJECT"
_MESSAGE_ID = re.compile(rb"(?im)^message-id[ \t]*:")
HEAD_PROBE = 65536  # bytes of a message without Message-ID read to find where its text starts
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_SPECIAL = {s.lower(): s for s in SPECIAL_USES}


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _flags(raw: Sequence[bytes | str]) -> tuple[str, ...]:
    return _flag_tuple(tuple(raw))


@lru_cache(maxsize=1024)
def _flag_tuple(raw: tuple[bytes | str, ...]) -> tuple[str, ...]:
    # Cached: most messages carry one of a few flag sets, and a scan keeps a whole folder's
    # flags; one shared tuple per set instead of one per message.
    return tuple(f for f in (_s(x) for x in raw) if f not in NON_COPYABLE_FLAGS)


def _date(value: object) -> datetime | None:
    """imapclient's aware datetime, re-zoned with a stdlib ``timezone`` (same instant)."""
    if not isinstance(value, datetime):
        return None
    offset = value.utcoffset()
    return value.replace(tzinfo=timezone(offset)) if offset is not None else value


def _int(value: object) -> int | None:
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    return int(value) if isinstance(value, int | bytes | str) else None


class ImapEndpoint:
    """An IMAP mailbox. Connects lazily on first use (``connect()`` connects eagerly)."""

    def __init__(self, account: ImapAccount) -> None:
        self.account = account
        self.label = account.label
        self._client: IMAPClient | None = None
        self._lost = False
        self._caps: Capabilities | None = None
        self._selected: str | None = None
        self._writable = False
        self._permanent: dict[str, frozenset[str] | None] = {}
        self._namespace: Namespace | None = None
        #: per ``append`` call: (index in items, keywords dropped because the server refused them)
        self.last_dropped_flags: list[tuple[int, tuple[str, ...]]] = []

    # --- connection -------------------------------------------------------------------

    def open(self) -> ImapEndpoint:
        if self._client is None:
            if self._lost:
                raise ConnectionLost(f"{self.label}: connection was lost; open a new endpoint")
            try:
                self._client = wire.open_client(_per_login(self.account))
            except AuthFailed as exc:
                raise classify.refine_login_failure(exc, self.account.provider, email=self.account.email,
                                                    oauth=self.account.oauth_token is not None) from None
            self._read_capabilities()
        return self

    def _c(self) -> IMAPClient:
        self.open()
        assert self._client is not None
        return self._client

    def _run(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call imapclient; classify failures and retire the connection if it broke."""
        try:
            return fn(*args, **kwargs)
        except MigrateError as exc:
            if isinstance(exc, ConnectionLost):
                self._retire()
            raise
        except (imap_exc.IMAPClientError, OSError, EOFError) as exc:
            err = classify.command_error(exc, f"{self.label}: {what}")
            if not isinstance(err, Throttled | OverQuota | AuthFailed):
                err = classify.provider_throttle(self.account.provider, classify.text_of(exc),
                                                 f"{self.label}: {what}") or err
            if isinstance(err, ConnectionLost) or classify.is_connection_loss(exc):
                self._retire()
            raise err from exc

    def _retire(self) -> None:
        client, self._client, self._lost = self._client, None, True
        self._selected = None
        if client is not None:
            wire.drop(client)

    def abort(self) -> None:
        client = self._client
        if client is not None:
            wire.cut(client)  # the owning thread's blocked read returns; it retires the client

    def close(self) -> None:
        client, self._client = self._client, None
        self._selected = None
        if client is not None:
            try:
                client.logout()
            except Exception:  # closing a dead or half-closed connection: nothing to report
                wire.drop(client)

    def __enter__(self) -> ImapEndpoint:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- capabilities and namespace ---------------------------------------------------

    def _read_capabilities(self) -> None:
        c = self._client
        assert c is not None
        raw = frozenset(_s(x).upper() for x in self._run("CAPABILITY", c.capabilities))
        limit = next((int(x.split("=", 1)[1]) for x in raw
                      if x.startswith("APPENDLIMIT=") and x.split("=", 1)[1].isdigit()), None)
        self._caps = Capabilities(
            uidplus="UIDPLUS" in raw, multiappend="MULTIAPPEND" in raw, literal_plus="LITERAL+" in raw,
            condstore="CONDSTORE" in raw or "QRESYNC" in raw, special_use="SPECIAL-USE" in raw,
            append_limit=limit, permanent_flags=None, raw=raw)
        if self._caps.condstore and "ENABLE" in raw:
            # Makes SELECT/EXAMINE report HIGHESTMODSEQ and FETCH report MODSEQ (RFC 7162).
            self._run("ENABLE CONDSTORE", c.enable, "CONDSTORE")

    def capabilities(self) -> Capabilities:
        """Server capabilities; ``permanent_flags`` are INBOX's (SELECTed once, lazily).

        The selection in place before that probe (a folder being read) is restored after it:
        asking for capabilities never changes which mailbox later UID commands address."""
        self._c()
        assert self._caps is not None
        if self._caps.permanent_flags is None and "INBOX" not in self._permanent:
            before, writable = self._selected, self._writable
            try:
                pf = self.permanent_flags("INBOX")
            except FolderRefused:  # an odd server without a selectable INBOX: flags unknown
                self._permanent["INBOX"] = pf = None
            self._caps = replace(self._caps, permanent_flags=pf)
            self._restore_selection(before, writable)
        return self._caps

    def _restore_selection(self, folder: str | None, writable: bool) -> None:
        if self._selected == folder and self._writable == writable:
            return
        if folder is None:
            self._unselect()
            return
        with contextlib.suppress(FolderRefused):  # gone meanwhile: left unselected; the next read reports it
            self._select(folder, writable=writable, fresh=True)

    def permanent_flags(self, folder: str) -> frozenset[str] | None:
        """PERMANENTFLAGS of ``folder``; None if the server did not say.

        EXAMINE always answers ``PERMANENTFLAGS ()`` (read-only), so this SELECTs read-write;
        the only side effect is that ``\\Recent`` is cleared, which we never copy.
        """
        if folder not in self._permanent:
            self._select(folder, writable=True)
        return self._permanent.get(folder)

    def namespace(self) -> Namespace:
        if self._namespace is None:
            c = self._c()
            ns = None
            if c.has_capability("NAMESPACE"):
                personal = self._run("NAMESPACE", c.namespace).personal
                if personal:
                    prefix, delim = personal[0]
                    ns = Namespace(prefix=_s(prefix), delimiter=_s(delim) if delim else None)
            if ns is None:
                rows = self._run('LIST "" ""', c.list_folders, "", "")
                delim = rows[0][1] if rows else None
                ns = Namespace(prefix="", delimiter=_s(delim) if delim else None)
            self._namespace = ns
        return self._namespace

    def quota(self) -> Quota | None:
        """INBOX's quota (GETQUOTAROOT, RFC 9208): the tightest root's storage (in bytes) and
        message limits; None when the server has no QUOTA or will not say. Read only."""
        c = self._c()
        assert self._caps is not None
        if "QUOTA" not in self._caps.raw:
            return None
        try:
            # Not ``_try``: its classifier reads any answer naming "quota" as "over quota".
            _roots, rows = self._run("GETQUOTAROOT INBOX", _plain_errors, c.get_quota_root, "INBOX")
        except _Refused:
            return None
        return _tightest_quota(rows)

    # --- folders ----------------------------------------------------------------------

    def list_folders(self) -> list[FolderInfo]:
        c = self._c()
        assert self._caps is not None
        if self._caps.special_use and "LIST-EXTENDED" in self._caps.raw:
            rows = self._run("LIST", wire.list_with_special_use, c)
        else:
            rows = self._run("LIST", c.list_folders)
        out: dict[str, FolderInfo] = {}
        for raw_flags, raw_delim, name in rows:
            flags = frozenset(_s(f) for f in raw_flags)
            special = next((_SPECIAL[f.lower()] for f in flags if f.lower() in _SPECIAL), None)
            delim = _s(raw_delim) if raw_delim else None
            out[name] = FolderInfo(name=name, delimiter=delim, flags=flags, special_use=special)
        # A server may list "a/b/c" without "a/b"; callers need the whole tree.
        for info in list(out.values()):
            if not info.delimiter:
                continue
            parts = info.name.split(info.delimiter)
            for i in range(1, len(parts)):
                parent = info.delimiter.join(parts[:i])
                if parent and parent not in out:
                    out[parent] = FolderInfo(parent, info.delimiter, frozenset({"\\Noselect"}))
        return sorted(out.values(), key=lambda f: f.name)

    def _try(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | str:
        """Run a command; return the server's refusal text on NO/BAD instead of raising.

        Transport failures and throttling/quota answers still raise (classified)."""
        try:
            return self._run(what, _plain_errors, fn, *args, **kwargs)
        except _Refused as exc:
            text = exc.text
            found = (classify.transient(text, f"{self.label}: {what}")
                     or classify.provider_throttle(self.account.provider, text, f"{self.label}: {what}"))
            if found is not None:
                raise found from None
            return text

    def create_folder(self, name: str) -> None:
        self._c()
        refused = self._try(f"CREATE {name!r}", self._c().create_folder, name)
        if isinstance(refused, str) and not classify.already_exists(refused):
            ns = self.namespace()
            parent = name.rsplit(ns.delimiter, 1)[0] if ns.delimiter and ns.delimiter in name else ""
            if not parent or parent + (ns.delimiter or "") == ns.prefix:
                raise classify.folder_refusal(refused, name)
            # Some servers do not create missing parents themselves (RFC 3501 only says SHOULD).
            self.create_folder(parent)
            refused = self._try(f"CREATE {name!r}", self._c().create_folder, name)
            if isinstance(refused, str) and not classify.already_exists(refused):
                raise classify.folder_refusal(refused, name)
        # Subscription is cosmetic (some servers refuse it): a refusal is ignored.
        self._try(f"SUBSCRIBE {name!r}", self._c().subscribe_folder, name)

    def create_special_folder(self, name: str, special_use: str) -> None:
        """``create_folder`` for a special folder (``\\Archive``...): ``CREATE name (USE (\\Archive))``
        (RFC 6154) where the server advertises CREATE-SPECIAL-USE, so that the folder is marked
        and found again by its attribute; a plain CREATE elsewhere, or if that one is refused."""
        c = self._c()
        assert self._caps is not None
        if "CREATE-SPECIAL-USE" in self._caps.raw:
            refused = self._try(f"CREATE {name!r} (USE ({special_use}))", wire.create_with_use, c, name, special_use)
            if not isinstance(refused, str) or classify.already_exists(refused):
                self._try(f"SUBSCRIBE {name!r}", self._c().subscribe_folder, name)
                return
        self.create_folder(name)

    def _select(self, folder: str, *, writable: bool, fresh: bool = False) -> dict[bytes, Any]:
        """EXAMINE (read-only) or SELECT; reuses the current selection when it is enough."""
        if not fresh and self._selected == folder and (self._writable or not writable):
            return {}
        c = self._c()
        self._selected = None
        resp = self._try(f"SELECT {folder!r}", c.select_folder, folder, readonly=not writable)
        if isinstance(resp, str) and classify.already_exists(resp):
            # Dovecot creates ``auto`` folders on first access; in a fresh account a parallel
            # session can lose that race and hear "[ALREADYEXISTS]" for a folder that now exists.
            resp = self._try(f"SELECT {folder!r}", c.select_folder, folder, readonly=not writable)
        if isinstance(resp, str):
            raise classify.select_refusal(resp, folder)
        # SELECT opens read-write unless the server says READ-ONLY (RFC 3501 6.3.1).
        self._selected, self._writable = folder, writable and b"READ-ONLY" not in resp
        if writable:
            pf = resp.get(b"PERMANENTFLAGS")
            self._permanent[folder] = frozenset(_s(f) for f in pf) if pf is not None else None
        return resp

    def _unselect(self) -> None:
        """Leave the selected mailbox without expunging anything: UNSELECT (RFC 3691) where
        offered, else CLOSE, which expunges only a read-write selection, so such a selection is
        first turned into an EXAMINE."""
        folder = self._selected
        if folder is None:
            return
        c = self._c()
        assert self._caps is not None
        if "UNSELECT" in self._caps.raw:
            self._selected = None
            if not isinstance(self._try("UNSELECT", wire.unselect, c), str):
                return
            self._selected = folder  # refused: still selected
        if self._writable:
            self._select(folder, writable=False, fresh=True)
        self._selected = None
        refused = self._try("CLOSE", c.close_folder)
        if isinstance(refused, str):
            raise classify.select_refusal(refused, folder)

    def status(self, folder: str) -> FolderStatus:
        resp = self._select(folder, writable=False, fresh=True)
        return FolderStatus(uidvalidity=int(resp[b"UIDVALIDITY"]), uidnext=int(resp.get(b"UIDNEXT", 0)),
                            exists=int(resp.get(b"EXISTS", 0)), highestmodseq=_int(resp.get(b"HIGHESTMODSEQ")))

    def statuses(self, folders: Sequence[str]) -> dict[str, FolderStatus]:
        """Several folders' status: one LIST-STATUS command (RFC 5819) where the server offers it,
        else an EXAMINE each. A folder that is gone or refused is left out."""
        c = self._c()
        assert self._caps is not None
        out: dict[str, FolderStatus] = {}
        if "LIST-STATUS" in self._caps.raw and folders:
            items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"] + (["HIGHESTMODSEQ"] if self._caps.condstore else [])
            listed = self._run("LIST-STATUS", wire.list_status, c, items)
            for name in folders:
                st = listed.get(name)
                if st is not None and b"UIDVALIDITY" in st:
                    out[name] = FolderStatus(uidvalidity=st[b"UIDVALIDITY"], uidnext=st.get(b"UIDNEXT", 0),
                                             exists=st.get(b"MESSAGES", 0), highestmodseq=st.get(b"HIGHESTMODSEQ"))
        # What LIST-STATUS did not report (or all of them), the classic way.
        out.update(statuses_one_by_one(self, [name for name in folders if name not in out]))
        return out

    # --- reading ----------------------------------------------------------------------

    def _uids(self, folder: str, uids: Sequence[int] | None, changed_since: int | None) -> list[int]:
        if uids is not None:
            return sorted(set(uids))
        c = self._c()
        if changed_since is not None and self._condstore():
            # Only UIDs whose MODSEQ > changed_since; keeps a resume scan cheap.
            return sorted(self._run("UID SEARCH MODSEQ", c.search, ["MODSEQ", str(changed_since + 1)]))
        return sorted(self._run("UID SEARCH ALL", c.search, "ALL"))

    def _condstore(self) -> bool:
        self._c()
        return bool(self._caps and self._caps.condstore)

    def fetch_meta(self, folder: str, uids: Sequence[int] | None = None, *,
                   changed_since: int | None = None, with_keys: bool = True) -> Iterator[MessageMeta]:
        self._select(folder, writable=False)
        c = self._c()
        wanted = self._uids(folder, uids, changed_since)
        items = ["UID", "RFC822.SIZE", "FLAGS", "INTERNALDATE"]
        if with_keys:
            items.append(f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]")
        modifiers = None
        if self._condstore():
            items.append("MODSEQ")
            if changed_since is not None:
                modifiers = [f"CHANGEDSINCE {changed_since}"]
        for start in range(0, len(wanted), META_BATCH):
            batch = wanted[start:start + META_BATCH]
            self._select(folder, writable=False)  # the caller may have used us between batches
            got = self._run(f"UID FETCH meta {folder!r}", wire.uid_fetch, c, batch, items, modifiers)
            heads: dict[int, bytes] = {}
            if with_keys:
                no_id = [u for u in sorted(got) if not _MESSAGE_ID.search(
                    wire.fetch_key(got[u], b"BODY[HEADER.FIELDS") or b"")]
                if no_id:
                    heads = self._text_heads(folder, no_id)
            for uid in sorted(got):
                d = got[uid]
                yield MessageMeta(
                    uid=uid, size=int(d.get(b"RFC822.SIZE", 0)), flags=_flags(d.get(b"FLAGS", ())),
                    internaldate=_date(d.get(b"INTERNALDATE")),
                    header=(wire.fetch_key(d, b"BODY[HEADER.FIELDS") or b"") if with_keys else b"",
                    text_head=heads.get(uid) if uid in heads else None, modseq=_int(d.get(b"MODSEQ")))

    def _text_heads(self, folder: str, uids: list[int]) -> dict[int, bytes]:
        """The start of the text of messages without Message-ID (their dedupe fingerprint).

        Read as the start of the whole message and split at the first blank line here, the way
        ``keys.split_raw`` does for a local store: servers disagree on ``BODY[TEXT]`` of a
        malformed message (Cyrus answers "" for some MIME it cannot parse), but not on its bytes.
        Only a header longer than the probe falls back to the server's ``BODY[TEXT]``."""
        c = self._c()
        got = self._run(f"UID FETCH start {folder!r}", wire.uid_fetch, c, uids, [f"BODY.PEEK[]<0.{HEAD_PROBE}>"])
        heads: dict[int, bytes] = {}
        long_header: list[int] = []
        for uid, d in got.items():
            start = wire.fetch_key(d, b"BODY[]") or b""
            if len(start) < HEAD_PROBE or _BLANK_LINE.search(start):
                heads[uid] = split_raw(start)[1]
            else:
                long_header.append(uid)
        if long_header:
            text = self._run(f"UID FETCH text {folder!r}", wire.uid_fetch, c, long_header,
                             [f"BODY.PEEK[TEXT]<0.{TEXT_HEAD}>"])
            heads.update((u, wire.fetch_key(d, b"BODY[TEXT]") or b"") for u, d in text.items())
        return heads

    def fetch_messages(self, folder: str, uids: Sequence[int]) -> Iterator[RawMessage]:
        c = self._c()
        wanted = sorted(set(uids))
        for start in range(0, len(wanted), BODY_BATCH):
            batch = wanted[start:start + BODY_BATCH]
            self._select(folder, writable=False)
            got = self._run(f"UID FETCH body {folder!r}", wire.uid_fetch, c, batch,
                            ["UID", "FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
            for uid in sorted(got):
                d = got[uid]
                body = d.get(b"BODY[]")
                if not isinstance(body, bytes):
                    continue  # expunged meanwhile: the server sent only flags
                if b"\x80" in body and self._caps is not None and "BINARY" in self._caps.raw:
                    body = self._nul_restored(folder, uid, body)
                yield RawMessage(uid=uid, body=body, flags=_flags(d.get(b"FLAGS", ())),
                                 internaldate=_date(d.get(b"INTERNALDATE")))

    def _nul_restored(self, folder: str, uid: int, body: bytes) -> bytes:
        """Dovecot hands a stored NUL back as 0x80 in ``BODY[]``; only ``BINARY[]`` has the real
        byte. Take the BINARY form only when it differs from BODY[] exactly at such bytes (so a
        server that would decode a transfer encoding here can never change the message).

        The caller may have used this connection between two yielded messages: the UID is
        fetched from ``folder``, re-selected if another mailbox is selected now."""
        self._select(folder, writable=False)
        c = self._c()
        typ, data = self._run(f"UID FETCH binary uid {uid}", wire.uid_fetch_binary, c, uid)
        if typ != "OK":
            return body
        own_uid = re.compile(rb"\bUID %d\b" % uid)
        binary = next((part[1] for part in data if isinstance(part, tuple) and len(part) == 2
                       and isinstance(part[1], bytes) and isinstance(part[0], bytes)
                       and own_uid.search(part[0])), None)
        if binary is None or len(binary) != len(body):
            return body
        if all(a == b or (a == 0x80 and b == 0) for a, b in zip(body, binary, strict=True)):
            return binary
        return body

    # --- writing ----------------------------------------------------------------------

    def append(self, folder: str, items: Sequence[AppendItem]) -> list[AppendResult]:
        self.last_dropped_flags = []
        if self._selected is not None and not self._writable:
            # Some servers refuse APPEND while the connection has a mailbox EXAMINEd
            # ("NO Current box is selected READ-ONLY"), e.g. the target folder after a scan.
            self._unselect()
        return append_items(self, folder, items)

    def set_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        self._select(folder, writable=True)
        if not self._writable:  # never STORE on a read-only selection
            raise FolderRefused(f"{self.label}: folder {folder!r} opens read-only; flags not stored")
        c = self._c()
        keep = [f for f in flags if f not in NON_COPYABLE_FLAGS]
        self._run(f"UID STORE {uid} in {folder!r}", c.set_flags, [uid], keep, silent=True)


def _tightest_quota(rows: Sequence[Any]) -> Quota | None:
    """The quota root with the least room left (STORAGE counts units of 1024 octets)."""
    by_root: dict[str, dict[str, tuple[int, int]]] = {}
    for q in rows:
        try:
            by_root.setdefault(str(q.quota_root), {})[str(q.resource).upper()] = (int(q.usage), int(q.limit))
        except (TypeError, ValueError):
            continue
    quotas = []
    for root, res in by_root.items():
        storage, messages = res.get("STORAGE"), res.get("MESSAGE")
        quotas.append(Quota(storage_used=storage[0] * 1024 if storage else None,
                            storage_limit=storage[1] * 1024 if storage else None,
                            messages_used=messages[0] if messages else None,
                            messages_limit=messages[1] if messages else None, root=root))
    if not quotas:
        return None
    return min(quotas, key=lambda q: (q.free_bytes is None, q.free_bytes or 0))


class _Refused(MigrateError):
    """A NO/BAD answer, as opposed to a broken connection; never leaves this module."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _plain_errors(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except imap_exc.IMAPClientError as exc:
        if classify.is_connection_loss(exc):
            raise
        raise _Refused(classify.text_of(exc)) from exc


def _per_login(account: ImapAccount) -> ImapAccount:
    """The login asks the token provider once, and again only after the server rejected that
    token: tell a provider that can do more than re-read (``after_rejection``, e.g. a stored
    sign-in that then refreshes instead of handing out its cached token)."""
    provider = account.oauth_token
    if provider is None or not hasattr(provider, "after_rejection"):
        return account
    calls = 0

    def token() -> Secret:
        nonlocal calls
        calls += 1
        return provider.after_rejection() if calls > 1 else provider()  # type: ignore[attr-defined]

    return replace(account, oauth_token=token)


def connect(account: ImapAccount) -> ImapEndpoint:
    """Connect, log in and read capabilities; raises only ``migrate.errors`` types."""
    return ImapEndpoint(account).open()
