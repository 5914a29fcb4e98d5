"""APPEND and MULTIAPPEND for ``ImapEndpoint.append``: exact bytes, UIDs from APPENDUID,
one bad message costing only itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import MessageError, MigrateError, redact
from ..models import NON_COPYABLE_FLAGS, AppendItem, AppendResult
from . import classify, wire

if TYPE_CHECKING:
    from .session import ImapEndpoint

# imapclient builds a MULTIAPPEND in memory: bound each command by bytes and count.
MULTI_MAX_BYTES = 24 * 1024 * 1024
MULTI_MAX_ITEMS = 100

Prepared = tuple[bytes, tuple[str, ...], datetime | None]


def append_items(ep: ImapEndpoint, folder: str, items: Sequence[AppendItem]) -> list[AppendResult]:
    ep.open()
    caps = ep._caps
    assert caps is not None
    prepared: list[Prepared] = []
    for index, item in enumerate(items):
        flags = _clean_flags(ep, folder, item.flags)
        bad = tuple(f for f in flags if not wire.valid_flag(f))
        if bad:
            # Not IMAP atoms: the server would answer BAD mid-command; store the message without them.
            ep.last_dropped_flags.append((index, bad))
            flags = tuple(f for f in flags if f not in bad)
        prepared.append((item.body, flags, item.internaldate))
    results: list[AppendResult] = []
    try:
        for start, chunk in _chunks(prepared):
            if caps.multiappend and len(chunk) > 1:
                multi = _multi(ep, folder, chunk)
                if multi is not None:
                    results.extend(multi)
                    continue
            for offset, one in enumerate(chunk):
                results.append(_single(ep, folder, one, start + offset))
    except MigrateError as exc:
        # OverQuota/Throttled/ConnectionLost stop the batch; say what did get stored before.
        exc.partial_results = list(results)  # type: ignore[attr-defined]
        raise
    return results


def _clean_flags(ep: ImapEndpoint, folder: str, flags: Sequence[str]) -> tuple[str, ...]:
    keep = [f for f in flags if f not in NON_COPYABLE_FLAGS]
    permanent = ep._permanent.get(folder)
    if permanent is not None and "\\*" not in permanent:
        allowed = {p.lower() for p in permanent}
        # The server would refuse or silently drop keywords it cannot store.
        keep = [f for f in keep if f.startswith("\\") or f.lower() in allowed]
    return tuple(keep)


def _chunks(prepared: list[Prepared]) -> list[tuple[int, list[Prepared]]]:
    out: list[tuple[int, list[Prepared]]] = []
    start, size = 0, 0
    current: list[Prepared] = []
    for i, item in enumerate(prepared):
        if current and (size + len(item[0]) > MULTI_MAX_BYTES or len(current) >= MULTI_MAX_ITEMS):
            out.append((start, current))
            start, size, current = i, 0, []
        current.append(item)
        size += len(item[0])
    if current:
        out.append((start, current))
    return out


def _send(ep: ImapEndpoint, folder: str, batch: list[Prepared], *, binary: bool = False) -> tuple[bool, str]:
    what = f"APPEND to {folder!r}"
    res = ep._try(what, wire.raw_append, ep._c(), folder, batch, binary=binary)
    if isinstance(res, str):  # BAD
        return False, res
    ok, text = res
    return ok, classify.text_of(text)


def _multi(ep: ImapEndpoint, folder: str, chunk: list[Prepared]) -> list[AppendResult] | None:
    """One MULTIAPPEND; None when refused as a whole (the caller then appends one by one)."""
    ok, text = _send(ep, folder, chunk)
    if not ok:
        err = classify.append_refusal(text, f"{ep.label}: MULTIAPPEND to {folder!r}")
        if not isinstance(err, MessageError):
            raise err  # over quota or throttled: one by one would fail the same way
        return None
    uidvalidity, uids = wire.parse_appenduid(text.encode())
    if len(uids) != len(chunk):
        uids = []  # no UIDPLUS answer, or one we cannot map item by item
    return [AppendResult(ok=True, uid=uids[i] if uids else None, uidvalidity=uidvalidity)
            for i in range(len(chunk))]


def _needs_binary(body: bytes) -> bool:
    """NUL, or a LF or CR that is not part of a CRLF: what a strict server refuses in a literal."""
    return b"\x00" in body or body.count(b"\n") != body.count(b"\r\n") or body.count(b"\r") != body.count(b"\r\n")


def _single(ep: ImapEndpoint, folder: str, item: Prepared, index: int) -> AppendResult:
    ok, text = _send(ep, folder, [item])
    if not ok and _needs_binary(item[0]) and ep._caps is not None and "BINARY" in ep._caps.raw:
        # Refused as it is (Cyrus: "Message contains NUL characters" / "bare newlines"): the
        # same bytes as a literal8 (RFC 3516) are stored exactly.
        ok_binary, text_binary = _send(ep, folder, [item], binary=True)
        if ok_binary:
            ok, text = ok_binary, text_binary
    if not ok:
        err = classify.append_refusal(text, f"{ep.label}: APPEND to {folder!r}")
        if not isinstance(err, MessageError):
            raise err
        keywords = tuple(f for f in item[1] if not f.startswith("\\"))
        if not (keywords and classify.is_flag_refusal(text)):
            return AppendResult(ok=False, error=redact(text))
        # The server refused a keyword: store the message without keywords rather than not at all.
        system = tuple(f for f in item[1] if f.startswith("\\"))
        ok, text2 = _send(ep, folder, [(item[0], system, item[2])])
        if not ok:
            err = classify.append_refusal(text2, f"{ep.label}: APPEND to {folder!r}")
            if not isinstance(err, MessageError):
                raise err
            return AppendResult(ok=False, error=redact(text2))
        ep.last_dropped_flags.append((index, keywords))
        text = text2
    uidvalidity, uids = wire.parse_appenduid(text.encode())
    return AppendResult(ok=True, uid=uids[0] if len(uids) == 1 else None, uidvalidity=uidvalidity)
