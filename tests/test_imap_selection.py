"""Which mailbox a connection has selected, against real Dovecot (behind an IMAP-aware proxy
where Dovecot itself is lenient).

1. APPEND never runs on a connection that has a mailbox EXAMINEd: some servers refuse it
   ("NO Current box is selected READ-ONLY"); the ledger's reconcile EXAMINEs and FETCHes the
   target folder on the very connection that then APPENDs to it. STORE never runs there either.
2. A NUL byte is restored (BINARY.PEEK[]) from the folder being read: neither the lazy
   capability probe (which SELECTs INBOX) nor the caller using the connection between two
   yielded messages may make that UID FETCH address another mailbox.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest

from migrate.accounts import ImapAccount, Secret
from migrate.imap import ImapEndpoint
from migrate.models import AppendItem
from tests.support.imap_proxy import ImapAnswerProxy
from tests.support.mailbox import import_job, msg, snapshot

pytestmark = pytest.mark.dovecot

READ_ONLY = b"NO Current box is selected READ-ONLY"


def _mailbox(line: bytes) -> bytes:
    """The mailbox argument of ``SELECT x`` / ``EXAMINE x`` / ``APPEND x ...`` (quoted or atom)."""
    rest = line.split(b" ", 1)[1] if b" " in line else b""
    quoted = re.match(rb'"((?:[^"\\]|\\.)*)"', rest)
    name = re.sub(rb"\\(.)", rb"\1", quoted.group(1)) if quoted else rest.split(b" ", 1)[0]
    return b"INBOX" if name.upper() == b"INBOX" else name


def _examined(selection: bytes | None) -> bytes | None:
    if selection is None or not selection.upper().startswith(b"EXAMINE "):
        return None
    return _mailbox(selection)


def _strict_proxy(port: int) -> ImapAnswerProxy:
    """A server that refuses APPEND to the mailbox the connection has EXAMINEd, and any STORE
    under an EXAMINE (the latter Dovecot refuses as well). Not started yet."""
    proxy = ImapAnswerProxy("127.0.0.1", port,
                            watch=rb"^(SELECT|EXAMINE|CLOSE|UNSELECT|APPEND|UID FETCH|UID STORE)\b")
    proxy.answer(rb"^APPEND ", every=True, reply=READ_ONLY,
                 when=lambda sel, cmd: _examined(sel) is not None and _examined(sel) == _mailbox(cmd))
    proxy.answer(rb"^UID STORE ", every=True, reply=READ_ONLY, when=lambda sel, _cmd: _examined(sel) is not None)
    return proxy


def _bulk_seed(user, folder: str, bodies: list[bytes]) -> None:
    with user.client() as c:
        for i in range(0, len(bodies), 100):
            typ, data = c.multiappend(folder, [{"msg": b, "flags": (b"\\Seen",) if (i + k) % 2 else (),
                                                "date": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=i + k)}
                                               for k, b in enumerate(bodies[i:i + 100])])
            assert typ == "OK", data


def _appends_after_examine(events: list[tuple[float, int, str, bytes]], folder: bytes) -> int:
    """APPENDs to ``folder`` sent on a connection whose last SELECT/EXAMINE was ``EXAMINE folder``
    (an UNSELECT/CLOSE in between or not): where a read of the target was followed by a write."""
    n = 0
    examined: dict[int, bytes | None] = {}
    for _t, cid, _kind, cmd in events:
        word = cmd.upper()
        if word.startswith((b"SELECT ", b"EXAMINE ")):
            examined[cid] = _mailbox(cmd) if word.startswith(b"EXAMINE ") else None
        elif word.startswith(b"APPEND ") and _mailbox(cmd) == folder and examined.get(cid) == folder:
            n += 1
    return n


def test_append_after_reconcile_examine_is_not_refused(dovecot, new_user, tmp_path):
    """INBOX bigger than one chunk (500 messages): each chunk's reconcile EXAMINEs INBOX on the
    target connection (the first also FETCHes the 4 messages already there), then that same
    connection APPENDs to INBOX (INBOX's PERMANENTFLAGS are known by then: no SELECT between)."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _bulk_seed(src, "INBOX", [msg(i) for i in range(520)])
    _bulk_seed(dst, "INBOX", [msg(i) for i in range(4)])  # already there: not copied again
    proxy = _strict_proxy(srv.port).start()
    try:
        r = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port}, connections=1)
        assert r.exit_code == 0, (r.status, r.error, r.failures()[:3])
        assert (r.totals.copied, r.totals.skipped_duplicates, r.totals.failed) == (516, 4, 0), r.failures()[:3]
        assert proxy.answered() == []
        assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
        # The scenario happened (APPENDs after an EXAMINE of INBOX on their connection) and the
        # endpoint left the read-only selection first: the proxy refused nothing.
        assert _appends_after_examine(proxy.events, b"INBOX") > 0, [e[3][:40] for e in proxy.events]
        assert any(e[3].upper().startswith((b"UNSELECT", b"CLOSE")) for e in proxy.events)

        # Flag changes synced on a re-run: STORE on the target, never under an EXAMINE.
        with src.client() as c:
            c.select_folder("INBOX")
            c.add_flags(c.search("ALL")[-3:], [b"\\Flagged"])
        again = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port}, connections=1)
        assert again.exit_code == 0, (again.status, again.error, again.failures()[:3])
        assert (again.totals.copied, again.totals.failed, again.totals.flags_updated) == (0, 0, 3)
        assert any(e[3].upper().startswith(b"UID STORE") for e in proxy.events)
        assert proxy.answered() == []
        assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    finally:
        proxy.stop()


def _endpoint(user, port: int | None = None, *, unselect: bool = True) -> ImapEndpoint:
    srv = user.server
    ep = ImapEndpoint(ImapAccount(email=user.name, host=srv.host, port=port or srv.port, security="none",
                                  password=Secret(user.password), timeout=20.0)).open()
    assert ep._caps is not None and "UNSELECT" in ep._caps.raw
    if not unselect:  # a server without RFC 3691: CLOSE instead
        ep._caps = dataclasses.replace(ep._caps, raw=ep._caps.raw - {"UNSELECT"})
    return ep


@pytest.mark.parametrize("unselect", [True, False], ids=["unselect", "close"])
def test_endpoint_leaves_examined_folder_before_append_and_expunges_nothing(dovecot, new_user, unselect):
    user = new_user(dovecot("slash"))
    with user.client() as c:
        c.append("INBOX", msg(1), flags=[b"\\Deleted"])  # a CLOSE of a read-write box would expunge it
    with _strict_proxy(user.server.port) as proxy:
        ep = _endpoint(user, proxy.port, unselect=unselect)
        try:
            assert ep.status("INBOX").exists == 1  # EXAMINE
            assert [m.uid for m in ep.fetch_meta("INBOX")] == [1]
            res = ep.append("INBOX", [AppendItem(msg(2), ("\\Seen",), None)] * 2)  # one MULTIAPPEND
            assert [r.ok for r in res] == [True, True], res
            assert ep.status("INBOX").exists == 3
            ep.set_flags("INBOX", 1, ["\\Deleted", "\\Flagged"])  # STORE: SELECTs read-write first
            # the capability probe (SELECT INBOX) with nothing selected: left unselected again,
            # the read-write selection turned into an EXAMINE before a CLOSE
            ep.close()
            ep = _endpoint(user, proxy.port, unselect=unselect)
            caps = ep.capabilities()
            assert caps.permanent_flags is not None and "\\*" in caps.permanent_flags
            assert proxy.selection[proxy.connections] == (b"UNSELECT" if unselect else b"CLOSE")
        finally:
            ep.close()
        assert proxy.answered() == []
    with user.client() as c:
        c.select_folder("INBOX", readonly=True)
        flags = c.get_flags(c.search("ALL"))
    assert sorted(flags) == [1, 2, 3] and set(flags[1]) == {b"\\Deleted", b"\\Flagged"}, flags


def test_capability_probe_restores_the_selection(dovecot, new_user):
    user = new_user(dovecot("slash"))
    with user.client() as c:
        c.create_folder("Other")
    with _strict_proxy(user.server.port) as proxy:
        ep = _endpoint(user, proxy.port)
        try:
            ep.status("Other")
            assert ep.capabilities().permanent_flags is not None  # SELECT INBOX, then back
            assert proxy.selection[proxy.connections] == b'EXAMINE "Other"'
            assert any(e[3] == b'SELECT "INBOX"' for e in proxy.events)
        finally:
            ep.close()


# --------------------------------------------------------------------------- 2. NUL bytes

def _nul(i: int) -> bytes:
    return (b"Message-ID: <nul%d@selection.test>\r\nFrom: a@example.test\r\nSubject: nul %d\r\n\r\n"
            b"before\x00after %d\r\n" % (i, i, i))


def _plain(i: int) -> bytes:
    return (b"Message-ID: <plain%d@selection.test>\r\nFrom: b@example.test\r\nSubject: plain %d\r\n\r\n"
            b"nothing special %d\r\n" % (i, i, i))


def _raw_seed(user, folder: str, bodies: list[bytes]) -> None:
    """Each body as one exact literal (imapclient's append would rewrite line ends)."""
    with user.client() as c:
        if folder != "INBOX" and not c.folder_exists(folder):
            c.create_folder(folder)
        for body in bodies:
            typ, data = c.multiappend(folder, [{"msg": body}])
            assert typ == "OK", data


def _binary_bodies(user, folder: str) -> list[bytes]:
    """BINARY.PEEK[] of every message (RFC 3516): the stored bytes, NUL as NUL."""
    with user.client() as c:
        c.select_folder(folder, readonly=True)
        typ, data = c._imap.uid("FETCH", "1:*", "(BINARY.PEEK[])")
    assert typ == "OK", data
    return sorted(part[1] for part in data if isinstance(part, tuple))


def _seed_nul_beside_inbox(user, n: int) -> list[bytes]:
    """``n`` NUL messages in "Other" at UIDs 1..n, different messages at the same UIDs in INBOX."""
    nuls = [_nul(i) for i in range(n)]
    _raw_seed(user, "INBOX", [_plain(i) for i in range(n)])
    _raw_seed(user, "Other", nuls)
    assert _binary_bodies(user, "Other") == sorted(nuls)
    return nuls


def test_nul_restored_from_the_folder_being_read_by_a_fresh_endpoint(dovecot, new_user, tmp_path):
    """The source endpoint is fresh: the lazy INBOX probe for PERMANENTFLAGS has not run yet
    when the first 0x80 body of "Other" is seen."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    nuls = _seed_nul_beside_inbox(src, 1)
    r = import_job(src, dst, tmp_path)
    assert (r.exit_code, r.totals.copied, r.totals.failed) == (0, 2, 0), (r.status, r.error, r.failures())
    assert _binary_bodies(dst, "Other") == nuls  # NUL, not Dovecot's 0x80 of BODY[]
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_nul_restored_when_caller_selects_another_folder_between_messages(dovecot, new_user):
    srv = dovecot("slash")
    user = new_user(srv)
    nuls = _seed_nul_beside_inbox(user, 2)
    ep = _endpoint(user)
    try:
        uids = [m.uid for m in ep.fetch_meta("Other", None, with_keys=False)]
        assert ep.capabilities().permanent_flags is not None  # the INBOX probe is done ...
        assert [m.uid for m in ep.fetch_meta("Other", uids, with_keys=False)] == uids  # ... and reading goes on
        got = []
        for raw in ep.fetch_messages("Other", uids):
            got.append(raw.body)
            assert ep.status("INBOX").exists == 2  # the caller uses the connection meanwhile
        assert got == nuls
    finally:
        ep.close()


def test_connections_send_without_nagle_delay(dovecot, new_user):
    """Small commands after a literal must not wait for the server's delayed ACK (Cyrus: ~40 ms
    an APPEND, imports into it 3x slower): TCP_NODELAY on every IMAP connection."""
    import socket

    from migrate.sides import build_side
    from tests.support.mailbox import side

    ep = build_side(side("target", new_user(dovecot("slash")))).factory()
    try:
        ep.capabilities()
        assert ep._c()._imap.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        ep.close()
