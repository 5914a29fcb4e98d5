"""Connection set-up and the few commands imapclient does not send the way we need.

Everything here that reaches into imapclient internals (``_raw_command``, ``_literal``,
``_imap``) is confined to this module so that an imapclient upgrade breaks one file.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from imapclient import IMAPClient
from imapclient import exceptions as imap_exc
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.imapclient import join_message_ids, seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response, parse_response

from ..accounts import ImapAccount, tls_context
from ..errors import AuthFailed, ConnectionLost, MigrateError, TlsFailed
from . import classify

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)


# --- connecting -------------------------------------------------------------------------


def open_client(account: ImapAccount) -> IMAPClient:
    """Connect (TLS per ``account.security``) and log in; raise classified errors only."""
    where = f"{account.host}:{account.port}"
    ctx = tls_context(account.ca_file, account.insecure) if account.security != "none" else None
    address = account.host
    if account.address_guard is not None:
        address = account.address_guard(account.host, account.port)  # raises a MigrateError
        if ctx is not None and address != account.host:
            _keep_server_name(ctx, account.host)
    try:
        client = IMAPClient(address, port=account.port, ssl=account.security == "ssl",
                            ssl_context=ctx, timeout=account.timeout)
    except Exception as exc:
        raise classify.connect_error(exc, where) from exc
    _no_delay(client)
    try:
        if account.security == "starttls":
            if not client.has_capability("STARTTLS"):
                # Never fall back to plain text: the password would cross the wire unencrypted.
                raise TlsFailed(f"{where} does not offer STARTTLS",
                                hint="use security ssl (usually port 993), or none only on a trusted network")
            client.starttls(ctx)
        login(client, account)
    except BaseException as exc:
        drop(client)
        if isinstance(exc, MigrateError):
            raise
        if isinstance(exc, Exception):
            raise classify.connect_error(exc, where) from None
        raise
    client.normalise_times = False  # keep INTERNALDATE's zone: aware datetimes
    # imapclient sets imaplib's debug level to 5, which makes imaplib format every response
    # (a repr of each message body) even with logging off: a third of our CPU and most of our
    # memory. Nothing reads it.
    client._imap.debug = 0
    return client


def _keep_server_name(ctx: ssl.SSLContext, server_name: str) -> None:
    """Connecting to a checked address: TLS (SNI and the certificate check) still uses the
    server's name, for implicit TLS and STARTTLS alike (both wrap with the address as name)."""
    wrap = ctx.wrap_socket

    def wrap_named(sock: socket.socket, *args: object, **kwargs: object) -> ssl.SSLSocket:
        kwargs["server_hostname"] = server_name
        return wrap(sock, *args, **kwargs)  # type: ignore[arg-type]

    ctx.wrap_socket = wrap_named  # type: ignore[method-assign]


def login(client: IMAPClient, account: ImapAccount) -> None:
    """Password LOGIN or OAuth (XOAUTH2/OAUTHBEARER, with one token refresh on rejection)."""
    who = account.label
    if account.oauth_token is not None:
        mech = account.oauth_mechanism.upper()
        for attempt in (1, 2):
            token = account.oauth_token().get()  # a fresh token on the second attempt
            try:
                if mech == "OAUTHBEARER":
                    client.oauthbearer_login(account.login, token)
                else:
                    client.oauth2_login(account.login, token, mech=mech)
                return
            except imap_exc.LoginError as exc:
                _raise_if_dropped(exc, who)
                text = classify.text_of(exc)
                found = classify.transient(text, f"login {who}")
                if found is not None or attempt == 2:
                    raise (found or classify.login_refusal(text, who, oauth=True)) from None
        return
    if account.password is None:
        raise AuthFailed(f"login {who}: no password or OAuth token given",
                         hint="pass a password (or env:NAME / file:PATH) or configure OAuth")
    try:
        client.login(account.login, account.password.get())
    except imap_exc.LoginError as exc:
        _raise_if_dropped(exc, who)
        raise classify.login_refusal(classify.text_of(exc), who, oauth=False) from None


def _raise_if_dropped(exc: BaseException, who: str) -> None:
    """imapclient turns *any* error during login into LoginError, a dropped connection or a
    timeout included: those are not a wrong password, they are worth a retry."""
    cause = exc.__context__ or exc.__cause__
    if cause is not None and classify.is_connection_loss(cause):
        raise ConnectionLost(f"login {who}: the connection was lost ({type(cause).__name__})",
                             hint="network trouble: the job retries") from None


def cut(client: IMAPClient) -> None:
    """Shut the socket down without closing it (safe from another thread: a read blocked on it
    returns at once; the thread that owns the client then drops it)."""
    with contextlib.suppress(Exception):  # already closed: nothing to cut
        client.socket().shutdown(socket.SHUT_RDWR)


def drop(client: IMAPClient) -> None:
    """Close the socket without LOGOUT."""
    with contextlib.suppress(Exception):  # already closed: nothing left to release
        client.shutdown()


# --- commands imapclient sends differently --------------------------------------------


def folder_arg(client: IMAPClient, name: str) -> bytes:
    """Modified UTF-7, quoted, as bytes for ``_raw_command``."""
    arg = client._normalise_folder(name)
    return arg if isinstance(arg, bytes) else arg.encode("ascii")


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(flags).encode("utf-8") + b")"


# Atom characters (RFC 3501): printable ASCII except atom-specials. A flag outside this would
# make the server answer BAD in the middle of our command (see raw_append).
_FLAG = re.compile(r"\\?[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")

# Literals up to this size go non-synchronizing (LITERAL+): waiting for "+" drains the pipe for
# every large message (measured: 44% of APPEND time with a 1 MB threshold). Everything before a
# literal is validated (quoted folder, valid_flag flags, formatted date), so the server has no
# reason to refuse the command before reading it. Bigger literals wait for the "+", so that a
# refusal (too big, over quota) arrives before we send them and message text is never read as
# commands by a server that stopped parsing ours.
NONSYNC_MAX = 16 * 1024 * 1024


def _no_delay(client: IMAPClient) -> None:
    """Switch Nagle's algorithm off: a small command written after a literal otherwise waits for
    the server's delayed ACK (about 40 ms an APPEND against Cyrus; imports into it ran 3x slower)."""
    with contextlib.suppress(OSError, AttributeError):  # an SSLSocket sets it on its own fd
        client._imap.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def valid_flag(flag: str) -> bool:
    return _FLAG.fullmatch(flag) is not None and flag != "\\*"


def raw_append(client: IMAPClient, folder: str,
               items: Sequence[tuple[bytes, Sequence[str], datetime | None]], *, binary: bool = False) -> tuple[bool, bytes]:
    """APPEND (one item) or MULTIAPPEND (several), each body sent byte-exact as a literal.

    imapclient's ``append`` goes through ``imaplib.IMAP4.append``, which rewrites every bare LF
    and CR to CRLF, so the command is written here with imaplib's primitives. Flags must already
    be ``valid_flag``. ``binary`` sends literal8 (``~{n}``, RFC 3516): a server that refuses NUL or
    bare LF in a plain literal (Cyrus) stores them from one. Returns (ok, server text); a BAD
    answer raises ``imaplib.IMAP4.error``.
    """
    imap = client._imap
    caps = client.capabilities()
    nonsync_max = NONSYNC_MAX if b"LITERAL+" in caps else 4096 if b"LITERAL-" in caps else -1
    if binary:
        nonsync_max = -1  # rare, and a refusal must come before the bytes
    mark = b" ~{" if binary else b" {"
    tag: bytes = imap._new_tag()
    line = tag + b" APPEND " + folder_arg(client, folder)
    for body, flags, date in items:
        if flags:
            line += b" " + flag_list(flags)
        if date is not None:
            line += b' "' + datetime_to_INTERNALDATE(date).encode("ascii") + b'"'
        if len(body) <= nonsync_max:
            imap.send(line + mark + b"%d+}\r\n" % len(body))
        else:
            imap.send(line + mark + b"%d}\r\n" % len(body))
            while imap._get_response() is not None:  # None = the "+" continuation
                if imap.tagged_commands.get(tag):
                    break  # refused before the literal: the command is over
            if imap.tagged_commands.get(tag):
                break
        imap.send(body)
        line = b""
    else:
        imap.send(b"\r\n")
    typ, data = imap._command_complete("APPEND", tag)
    text = b" ".join(d for d in data if isinstance(d, bytes))
    return typ == "OK", text


def parse_appenduid(text: bytes) -> tuple[int | None, list[int]]:
    """``[APPENDUID 38505 3955:3957]`` -> (38505, [3955, 3956, 3957])."""
    m = _APPENDUID.search(text)
    if m is None:
        return None, []
    uids: list[int] = []
    for part in m.group(2).split(b","):
        lo, _, hi = part.partition(b":")
        a, b = int(lo), int(hi or lo)
        uids.extend(range(min(a, b), max(a, b) + 1))
    return int(m.group(1)), uids


def list_with_special_use(client: IMAPClient) -> list[tuple[tuple[bytes, ...], bytes | None, str]]:
    """``LIST "" "*" RETURN (SPECIAL-USE)``: RFC 6154 servers need not report \\Sent etc.
    on a plain LIST; asking explicitly is the portable way."""
    imap = client._imap
    typ, dat = imap._simple_command("LIST", '""', '"*"', "RETURN (SPECIAL-USE)")
    client._checkok("list", typ, dat)
    typ, dat = imap._untagged_response(typ, dat, "LIST")
    return client._proc_folder_list(dat)


def list_status(client: IMAPClient, items: Sequence[str]) -> dict[str, dict[bytes, int]]:
    """``LIST "" "*" RETURN (STATUS (...))`` (RFC 5819): every folder's status in one command
    instead of one EXAMINE per folder. Folder names decoded like imapclient's own LIST."""
    imap = client._imap
    typ, dat = imap._simple_command("LIST", '""', '"*"', f"RETURN (STATUS ({' '.join(items)}))")
    client._checkok("list", typ, dat)
    imap._untagged_response(typ, dat, "LIST")  # the LIST lines: not needed here
    raw = [x for x in imap.untagged_responses.pop("STATUS", []) if x not in (b"", None)]
    out: dict[str, dict[bytes, int]] = {}
    parsed = parse_response(raw) if raw else ()
    for i in range(0, len(parsed) - 1, 2):
        name, values = parsed[i], parsed[i + 1]
        if isinstance(name, int):
            name = str(name)
        elif client.folder_encode:
            name = decode_utf7(name)
        elif isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        out[name] = {bytes(k).upper(): v for k, v in zip(values[::2], values[1::2], strict=False)
                     if isinstance(v, int)}
    return out


# --- UID FETCH with a fast response parser ----------------------------------------------------
# imapclient's generic parser tokenizes FETCH answers character by character in Python: 46 us a
# message for our metadata FETCH, the largest CPU cost of a whole copy. The answers we ask for
# have a simple shape (numbers, flag lists, a quoted date, one literal), which the tokenizer below
# reads ~8x faster. Anything it does not fully understand goes to imapclient's parser instead.

_FETCH_TOKEN = re.compile(
    rb' *(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|(~?\{\d+\+?\}$)|'
    rb'([^ ()"{}\[\]]+(?:\[[^\]]*\](?:<\d+(?:\.\d+)?>)?)?))')
_INTERNALDATE = re.compile(rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {m: i for i, m in enumerate((b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep",
                                        b"oct", b"nov", b"dec"), 1)}


class _Unparsed(Exception):
    """The fast parser met something it does not handle: use imapclient's."""


@lru_cache(maxsize=64)
def _zone(sign: bytes, hours: int, minutes: int) -> timezone:
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if sign == b"-" else offset)


def parse_internaldate(value: bytes) -> datetime:
    """``"01-Jan-2024 10:00:00 +0100"`` -> an aware datetime (same instant, same offset)."""
    m = _INTERNALDATE.fullmatch(value)
    month = _MONTHS.get(m.group(2).lower()) if m else None
    if m is None or month is None:
        raise _Unparsed(value)
    day, _, year, hh, mi, ss, sign, zh, zm = m.groups()
    return datetime(int(year), month, int(day), int(hh), int(mi), int(ss),
                    tzinfo=_zone(sign, int(zh), int(zm)))


def _tokens(data: Sequence[bytes | tuple[bytes, bytes] | None]) -> Iterator[object]:
    """Tokens of imaplib's untagged FETCH data: b"(" / b")" markers, ints, bytes (atoms, quoted
    strings, literals), None for NIL. Literals arrive from imaplib as (line, literal) pairs."""
    for item in data:
        if item is None or item == b"":
            continue
        if isinstance(item, tuple):
            text, literal = item
        else:
            text, literal = item, None
        pos, end = 0, len(text)
        while pos < end:
            m = _FETCH_TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip():
                    raise _Unparsed(text[pos:pos + 40])
                break
            pos = m.end()
            opened, closed, quoted, marker, atom = m.groups()
            if opened:
                yield b"("
            elif closed:
                yield b")"
            elif quoted is not None:
                if b"\\" in quoted:
                    quoted = re.sub(rb"\\(.)", rb"\1", quoted)
                yield ("q", quoted)
            elif marker:
                if literal is None or pos != end:
                    raise _Unparsed(marker)
                yield ("q", literal)
                literal = None
            elif atom is not None:
                if atom.isdigit():
                    yield int(atom)
                elif atom.upper() == b"NIL":
                    yield None
                else:
                    yield atom
        if literal is not None:
            raise _Unparsed(b"literal without a marker")


def parse_fetch(data: Sequence[bytes | tuple[bytes, bytes] | None]) -> dict[int, dict[bytes, object]]:
    """UID -> {item name (upper case): value}, like imapclient's ``fetch`` (INTERNALDATE as an
    aware datetime, FLAGS and MODSEQ as tuples). Raises ``_Unparsed`` on any other shape."""
    out: dict[int, dict[bytes, object]] = {}
    tokens = _tokens(data)
    for seq in tokens:
        if not isinstance(seq, int) or next(tokens, None) != b"(":
            raise _Unparsed(repr(seq).encode())
        msg: dict[bytes, object] = {b"SEQ": seq}
        while True:
            name = next(tokens, None)
            if name == b")":
                break
            if not isinstance(name, bytes) or name == b"(":
                raise _Unparsed(repr(name).encode())
            value = next(tokens, None)
            if value == b"(":  # a flat list: FLAGS (...), MODSEQ (n)
                items: list[object] = []
                for tok in tokens:
                    if tok == b")":
                        break
                    if tok == b"(" or isinstance(tok, tuple):
                        raise _Unparsed(name)  # nested (BODYSTRUCTURE, ENVELOPE): not ours
                    items.append(tok)
                else:
                    raise _Unparsed(b"unclosed list")
                value = tuple(items)
            elif value == b")":
                raise _Unparsed(name)
            elif isinstance(value, tuple):
                value = value[1]
            key = name.upper()
            if key == b"INTERNALDATE":
                if not isinstance(value, bytes):
                    raise _Unparsed(key)
                value = parse_internaldate(value)
            msg[key] = value
        uid = msg.pop(b"UID", None)  # the key, not an item (as imapclient does)
        if isinstance(uid, int):  # a FETCH without UID is an unsolicited flag update: not asked for
            out.setdefault(uid, {}).update(msg)
    return out


def uid_fetch(client: IMAPClient, uids: Sequence[int], items: Sequence[str],
              modifiers: Sequence[str] | None = None) -> dict[int, dict[bytes, object]]:
    """``IMAPClient.fetch`` (UID mode) with the fast parser; same result for the same answer."""
    if not uids:
        return {}
    imap = client._imap
    args = ["FETCH", join_message_ids(uids), seq_to_parenstr_upper(list(items))]
    if modifiers:
        args.append(seq_to_parenstr_upper(list(modifiers)))
    tag = imap._command("UID", *args)
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    try:
        parsed = parse_fetch(data)
    except (_Unparsed, StopIteration, ValueError):
        parsed = {k: dict(v) for k, v in parse_fetch_response(data, False, True).items()}  # type: ignore[misc]
    wanted = set(uids)
    return {uid: v for uid, v in parsed.items() if uid in wanted}


def fetch_key(data: dict[bytes, object], prefix: bytes) -> bytes | None:
    """The value of the first fetch item whose name starts with ``prefix`` (``BODY[HEADER.FIELDS``)."""
    for key, value in data.items():
        if isinstance(key, bytes) and key.upper().startswith(prefix) and isinstance(value, bytes):
            return value
    return None


# --- commands imapclient does not send the way we need (its private names stay in this module) --


def uid_fetch_binary(client: IMAPClient, uid: int) -> tuple[str, list[object]]:
    """``UID FETCH uid (BINARY.PEEK[])`` through imaplib: imapclient's parser does not read the
    literal8 (``~{n}``) a BINARY answer may use. Returns imaplib's (typ, data)."""
    return client._imap.uid("FETCH", str(uid), "(BINARY.PEEK[])")  # type: ignore[no-any-return]


def create_with_use(client: IMAPClient, name: str, special_use: str) -> None:
    """``CREATE name (USE (<attribute>))`` (RFC 6154); the name encoded and quoted as imapclient does it."""
    typ, data = client._imap._simple_command("CREATE", client._normalise_folder(name), f"(USE ({special_use}))")
    client._checkok("create", typ, data)


def unselect(client: IMAPClient) -> None:
    """UNSELECT (RFC 3691). imapclient's ``unselect_folder`` returns a NO answer's text instead of
    raising it; a refusal must be seen by the caller."""
    typ, data = client._imap._simple_command("UNSELECT")
    if typ != "OK":
        text = data[0].decode("utf-8", "replace") if data and isinstance(data[0], bytes) else str(data[0] if data else typ)
        raise imap_exc.IMAPClientError(f"UNSELECT: {text}")
    client._imap.state = "AUTH"
