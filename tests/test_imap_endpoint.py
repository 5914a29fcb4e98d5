"""ImapEndpoint against real Dovecot (never a mocked server): TLS modes, login failures,
folder names, byte-exact APPEND/FETCH, flags, INTERNALDATE, MULTIAPPEND, quota, CONDSTORE."""

from __future__ import annotations

import dataclasses
import socket
from datetime import UTC, datetime, timedelta, timezone

import pytest

from migrate.accounts import ImapAccount, Secret
from migrate.errors import (
    AuthFailed,
    ConnectFailed,
    ConnectionLost,
    FolderRefused,
    MessageTooBig,
    OverQuota,
    Throttled,
    TlsFailed,
)
from migrate.imap import ImapEndpoint, classify, connect
from migrate.models import AppendItem
from tests.support.imap_proxy import ImapAnswerProxy
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

MSG = (b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
       b"Message-ID: <ep-1@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n")


def account(user, *, security: str = "none", ca: bool = True, password: str | None = None,
            port: int | None = None, **kw) -> ImapAccount:
    srv = user.server
    if port is None:
        port = srv.ssl_port if security == "ssl" else srv.port
    return ImapAccount(email=user.name, host=srv.host, port=port, security=security,  # type: ignore[arg-type]
                       password=Secret(password or user.password), ca_file=srv.ca_file if ca else None,
                       timeout=kw.pop("timeout", 20.0), **kw)


def msg(n: int, extra: bytes = b"") -> bytes:
    return (b"Subject: m%d\r\nMessage-ID: <m%d@example.org>\r\n" % (n, n)) + extra + b"\r\nbody %d\r\n" % n


@pytest.fixture
def ep(dovecot, new_user):
    e = connect(account(new_user(dovecot("slash"))))
    yield e
    e.close()


# --- connecting ---------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["ssl", "starttls", "none"])
def test_connect_each_security(dovecot, new_user, security):
    with connect(account(new_user(dovecot("slash")), security=security)) as e:
        caps = e.capabilities()
        assert caps.uidplus and caps.multiappend and caps.literal_plus and caps.condstore and caps.special_use
        assert caps.append_limit is None
        assert caps.permanent_flags is not None and "\\*" in caps.permanent_flags
        assert e.label.endswith(f"@127.0.0.1:{e.account.port}")


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_certificate_refused_without_ca(dovecot, new_user, security):
    user = new_user(dovecot("slash"))
    with pytest.raises(TlsFailed) as info:
        connect(account(user, security=security, ca=False))
    assert "certificate" in info.value.message and "--insecure" in (info.value.hint or "")
    # --insecure is the explicit way around it.
    with connect(account(user, security=security, ca=False, insecure=True)) as e:
        assert e.list_folders()


def test_starttls_not_offered_is_refused(dovecot, new_user):
    user = new_user(dovecot("slash", starttls=False))
    with pytest.raises(TlsFailed, match="does not offer STARTTLS"):
        connect(account(user, security="starttls"))


def test_wrong_password(dovecot, new_user):
    user = new_user(dovecot("slash"))
    wrong = "Wr0ng-Pa55word-xyz"
    with pytest.raises(AuthFailed) as info:
        connect(account(user, password=wrong))
    err = info.value
    assert "app password" in (err.hint or "")
    for text in (str(err), err.one_line(), repr(err)):
        assert wrong not in text and user.password not in text


def test_unreachable(dovecot):
    with pytest.raises(ConnectFailed, match="cannot resolve") as info:
        connect(ImapAccount(email="x", host="no-such-host.invalid", port=993, password=Secret("pw123"),
                            timeout=5))
    assert info.value.hint == "check the host and port"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectFailed, match="refused"):
        connect(ImapAccount(email="x", host="127.0.0.1", port=port, security="none",
                            password=Secret("pw123"), timeout=5))


@pytest.mark.parametrize("mech", ["XOAUTH2", "OAUTHBEARER"])
def test_oauth_refreshes_a_rejected_token_once(dovecot, new_user, mech):
    srv = dovecot("oauth")
    user = new_user(srv)
    good = f"good-token-{user.name}"
    srv.oauth_tokens[good] = user.name
    tokens = iter([f"stale-token-{user.name}", good])
    calls = []

    def provider() -> Secret:
        calls.append(1)
        return Secret(next(tokens))

    acc = ImapAccount(email=user.name, host=srv.host, port=srv.port, security="none",
                      oauth_token=provider, oauth_mechanism=mech, timeout=20)
    with connect(acc) as e:
        assert e.status("INBOX").exists == 0
    assert len(calls) == 2

    bad = f"always-bad-{user.name}"
    acc = ImapAccount(email=user.name, host=srv.host, port=srv.port, security="none",
                      oauth_token=lambda: Secret(bad), oauth_mechanism=mech, timeout=20)
    with pytest.raises(AuthFailed) as info:
        connect(acc)
    assert bad not in info.value.one_line()


def test_connection_lost_mid_fetch_and_endpoint_retired(dovecot, new_user):
    user = new_user(dovecot("slash"))
    user.save("INBOX", MSG)
    with FaultProxy("127.0.0.1", user.server.port).start() as proxy:
        e = connect(account(user, port=proxy.port))
        proxy.cut_when(b"BODY.PEEK[]", "upstream")
        with pytest.raises(ConnectionLost):
            list(e.fetch_messages("INBOX", [1]))
        with pytest.raises(ConnectionLost, match="open a new endpoint"):
            e.status("INBOX")
        e.close()


def test_read_timeout_is_connection_lost(dovecot, new_user):
    user = new_user(dovecot("slash"))
    with FaultProxy("127.0.0.1", user.server.port).start() as proxy:
        e = connect(account(user, port=proxy.port, timeout=0.5))
        proxy.stall(2.0)
        with pytest.raises(ConnectionLost, match="timeout"):
            e.status("INBOX")
        e.close()


# --- folders ------------------------------------------------------------------------------

NAMES = ["Entwürfe", "日本語", "a&b", "Emoji 😀 box", "Quote \"q\" back\\slash"]


@pytest.mark.parametrize("flavor", ["slash", "dot", "inbox"])
def test_folders_unicode_and_separators(dovecot, new_user, flavor):
    srv = dovecot(flavor)
    user = new_user(srv)
    with connect(account(user)) as e:
        ns = e.namespace()
        assert (ns.prefix, ns.delimiter) == (srv.prefix, srv.separator)
        wanted = [srv.prefix + n for n in NAMES] + [f"{srv.prefix}Parent{srv.separator}Kind{srv.separator}日本"]
        for name in wanted:
            e.create_folder(name)
        e.create_folder(wanted[0])  # exists already: fine
        listed = {f.name: f for f in e.list_folders()}
        for name in wanted:
            assert name in listed and listed[name].delimiter == srv.separator and listed[name].selectable
        assert f"{srv.prefix}Parent{srv.separator}Kind" in listed  # parents always listed
        specials = {f.special_use for f in listed.values()}
        assert {"\\Sent", "\\Drafts", "\\Trash", "\\Junk"} <= specials
        # Stored under the decoded names (doveadm shows them as UTF-8).
        assert set(wanted) <= set(srv.list_folders(user.name))
        # and usable: append + status through the encoded name
        res = e.append(wanted[3], [AppendItem(MSG, (), None)])
        assert res[0].ok and e.status(wanted[3]).exists == 1


def test_create_and_select_refusals(ep):
    with pytest.raises(FolderRefused, match="Begins with '~'"):
        ep.create_folder("~bad")
    with pytest.raises(FolderRefused, match="doesn't exist"):
        ep.status("No such folder")


# --- bytes, flags, dates ------------------------------------------------------------------

BIG_HEADER = b"X-Long: " + b"a" * 200_000 + b"\r\n"
TWENTY_MB = b"Subject: big\r\n\r\n" + (b"0123456789abcdef" * 63 + b"xyz\r\n") * 20_500


@pytest.mark.parametrize(("label", "sent", "expected"), [
    ("bare-lf", b"Subject: lf\nMessage-ID: <lf@x>\n\nline1\nline2\n", b"Subject: lf\r\nMessage-ID: <lf@x>\r\n\r\nline1\r\nline2\r\n"),
    ("lone-cr", b"Subject: cr\r\n\r\nab\rcd\r\n", None),  # kept: proves no client-side rewriting
    ("8bit-header", "Subject: Grüße 日本\r\nFrom: Jörg <j@x>\r\n\r\nbody\r\n".encode(), None),
    ("8bit-latin1", b"Subject: caf\xe9\r\n\r\nna\xefve\r\n", None),
    # Dovecot hands a stored NUL back as 0x80 in BODY[]; the endpoint restores it from BINARY[].
    ("nul", b"Subject: nul\r\n\r\na\x00b\r\n", None),
    ("200k-header", b"Subject: long\r\n" + BIG_HEADER + b"\r\nbody\r\n", None),
    ("20mb", TWENTY_MB, None),
])
def test_exact_bytes_round_trip(ep, label, sent, expected):
    [res] = ep.append("INBOX", [AppendItem(sent, (), None)])
    assert res.ok and res.uid
    [got] = list(ep.fetch_messages("INBOX", [res.uid]))
    assert got.body == (expected if expected is not None else sent)
    [meta] = list(ep.fetch_meta("INBOX", [res.uid]))
    assert meta.size == len(got.body)


def test_flags_keywords_and_internaldate(ep):
    when = datetime(2019, 6, 30, 23, 59, 58, tzinfo=timezone(timedelta(hours=-7)))
    flags = ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "$Forwarded", "$Junk", "custom_kw", "\\Recent")
    res = ep.append("INBOX", [AppendItem(msg(1), flags, when), AppendItem(msg(2), (), None)])
    got = {m.uid: m for m in ep.fetch_messages("INBOX", [r.uid for r in res])}
    first, second = got[res[0].uid], got[res[1].uid]
    assert set(first.flags) == set(flags) - {"\\Recent"}
    assert first.internaldate == when and first.internaldate.utcoffset() is not None
    assert second.flags == ()
    assert abs(second.internaldate - datetime.now(UTC)) < timedelta(minutes=5)  # None = server time
    ep.set_flags("INBOX", res[0].uid, ["$Label1", "\\Seen", "\\Recent"])
    [meta] = list(ep.fetch_meta("INBOX", [res[0].uid]))
    assert set(meta.flags) == {"$Label1", "\\Seen"}


def test_invalid_keyword_is_dropped_not_fatal(ep):
    res = ep.append("INBOX", [AppendItem(msg(1), ("\\Seen", "bad(kw", "ok_kw"), None)])
    assert res[0].ok
    assert ep.last_dropped_flags == [(0, ("bad(kw",))]
    [meta] = list(ep.fetch_meta("INBOX", [res[0].uid]))
    assert set(meta.flags) == {"\\Seen", "ok_kw"}


def test_fetch_is_read_only(ep):
    res = ep.append("INBOX", [AppendItem(msg(i), (), None) for i in range(3)])
    uids = [r.uid for r in res]
    assert [m.uid for m in ep.fetch_meta("INBOX")] == uids
    assert len(list(ep.fetch_messages("INBOX", uids))) == 3
    ep.close()
    again = connect(ep.account)
    assert all("\\Seen" not in m.flags for m in again.fetch_meta("INBOX"))
    again.close()


def test_fetch_meta_keys(ep):
    no_id = b"Subject: no id\r\nFrom: x@y\r\nX-Other: skip me\r\n\r\n" + b"T" * 5000 + b"\r\n"
    res = ep.append("INBOX", [AppendItem(MSG, (), None), AppendItem(no_id, (), None)])
    metas = list(ep.fetch_meta("INBOX"))
    assert [m.uid for m in metas] == [r.uid for r in res]
    with_id, without = metas
    assert b"Message-ID: <ep-1@example.org>" in with_id.header and with_id.text_head is None
    assert b"X-Other" not in without.header and b"Subject: no id" in without.header
    assert without.text_head == b"T" * 4096
    assert isinstance(with_id.modseq, int)
    bare = list(ep.fetch_meta("INBOX", with_keys=False))
    assert bare[0].header == b"" and bare[0].size == len(MSG)
    assert list(ep.fetch_messages("INBOX", [999])) == []  # missing UIDs are simply skipped


# --- MULTIAPPEND, refusals, quota -----------------------------------------------------------


def test_multiappend_uids_in_order(ep):
    bodies = [msg(i) for i in range(40)]
    res = ep.append("INBOX", [AppendItem(b, ("\\Seen",), None) for b in bodies])
    assert all(r.ok for r in res)
    uids = [r.uid for r in res]
    assert uids == sorted(uids) and len(set(uids)) == 40
    st = ep.status("INBOX")
    assert {r.uidvalidity for r in res} == {st.uidvalidity} and st.exists == 40
    got = {m.uid: m.body for m in ep.fetch_messages("INBOX", uids)}
    assert [got[u] for u in uids] == bodies


def test_refused_message_costs_only_itself(ep):
    # Dovecot refuses an empty message ("Can't save a zero byte message"): the MULTIAPPEND is
    # refused as a whole, then each message goes alone.
    items = [AppendItem(msg(1), (), None), AppendItem(b"", (), None), AppendItem(msg(3), (), None)]
    res = ep.append("INBOX", items)
    assert [r.ok for r in res] == [True, False, True]
    assert "zero byte" in (res[1].error or "") and res[1].uid is None
    assert ep.status("INBOX").exists == 2
    assert [m.body for m in ep.fetch_messages("INBOX", [res[0].uid, res[2].uid])] == [msg(1), msg(3)]


def test_over_quota(dovecot, new_user):
    srv = dovecot("quota")
    user = new_user(srv)
    srv.add_user(user.name, user.password, quota_kb=100)
    big = b"Subject: big\r\n\r\n" + b"x" * 150_000
    with connect(account(user)) as e:
        assert e.append("INBOX", [AppendItem(msg(1), (), None)])[0].ok
        with pytest.raises(OverQuota) as info:
            e.append("INBOX", [AppendItem(msg(2), (), None), AppendItem(big, (), None)])
        assert "re-run" in (info.value.hint or "") and info.value.partial_results == []
        with pytest.raises(OverQuota):
            e.append("INBOX", [AppendItem(big, (), None)])
        assert e.status("INBOX").exists == 1  # the connection is still usable


# --- CONDSTORE ------------------------------------------------------------------------------


def test_changed_since(ep):
    res = ep.append("INBOX", [AppendItem(msg(i), (), None) for i in range(5)])
    mark = ep.status("INBOX").highestmodseq
    assert mark is not None
    assert list(ep.fetch_meta("INBOX", changed_since=mark)) == []
    ep.set_flags("INBOX", res[1].uid, ["\\Flagged"])
    ep.set_flags("INBOX", res[3].uid, ["\\Seen"])
    changed = list(ep.fetch_meta("INBOX", changed_since=mark))
    assert [m.uid for m in changed] == [res[1].uid, res[3].uid]
    assert all(m.modseq and m.modseq > mark for m in changed)
    subset = list(ep.fetch_meta("INBOX", [r.uid for r in res[:2]], changed_since=mark))
    assert [m.uid for m in subset] == [res[1].uid]
    assert ep.status("INBOX").highestmodseq > mark


def test_lazy_endpoint_and_permanent_flags(dovecot, new_user):
    e = ImapEndpoint(account(new_user(dovecot("slash"))))
    assert e.permanent_flags("INBOX") is not None and "\\*" in e.permanent_flags("INBOX")
    e.close()


# --- classification of answers Dovecot never gives ------------------------------------------


@pytest.mark.parametrize(("text", "cls", "delay"), [
    ("NO [THROTTLED] slow down", Throttled, None),
    ("NO Request is throttled. Suggested Backoff Time: 1500 milliseconds", Throttled, 1.5),
    ("NO Server error - Please try again later", Throttled, 30.0),
    ("NO [UNAVAILABLE] backend down", Throttled, 10.0),
    ("NO [INUSE] mailbox locked", Throttled, 5.0),
    ("NO [OVERQUOTA] Quota exceeded", OverQuota, None),
])
def test_transient_answers(text, cls, delay):
    err = classify.append_refusal(text, "APPEND")
    assert type(err) is cls
    if cls is Throttled:
        assert err.delay == delay


def test_too_big_answers():
    assert isinstance(classify.append_refusal("NO [TOOBIG] message too large", "APPEND"), MessageTooBig)
    assert isinstance(classify.append_refusal("NO [LIMIT] Mail size is too big", "APPEND"), MessageTooBig)
    assert type(classify.append_refusal("NO [PARSE] bad message", "APPEND")).__name__ == "MessageError"


@pytest.mark.parametrize("list_status", [True, False])
def test_statuses_in_one_command_equal_examine_each(dovecot, new_user, list_status):
    """LIST-STATUS (one command for every folder) gives exactly what EXAMINE gives per folder;
    without it, each folder is examined. A folder that does not exist is left out."""
    srv = dovecot("slash")
    with connect(account(new_user(srv))) as e:
        names = ["INBOX", "Entwürfe-Test", "R&D 🚀", "Parent/Kind/日本"]
        for n in names[1:]:
            e.create_folder(n)
        for i, n in enumerate(names):
            e.append(n, [AppendItem(msg(j), ("\\Seen",), None) for j in range(i + 1)])
        assert "LIST-STATUS" in e.capabilities().raw
        if not list_status:
            e._caps = dataclasses.replace(e._caps, raw=e._caps.raw - {"LIST-STATUS"})
        examined: list[str] = []
        examine = e.status
        e.status = lambda name: examined.append(name) or examine(name)  # type: ignore[method-assign]
        got = e.statuses([*names, "Gone"])
        assert set(got) == set(names)
        # with LIST-STATUS only the folder it did not report is examined (and is gone)
        assert examined == (["Gone"] if list_status else [*names, "Gone"])
        e.status = examine  # type: ignore[method-assign]
        for i, n in enumerate(names):
            want = e.status(n)
            assert got[n] == want and want.exists == i + 1 and want.highestmodseq is not None, n


def test_select_told_already_exists_opens_again(dovecot, new_user):
    """Dovecot 2.3 auto-creates special folders on first access; a parallel session of a fresh
    account can be told "[ALREADYEXISTS]" when it opens one. The folder exists: open it again."""
    user = new_user(dovecot("slash"))
    with ImapAnswerProxy("127.0.0.1", user.server.port, watch=rb"^(SELECT|EXAMINE) ") as proxy:
        proxy.answer(rb'^EXAMINE "?Junk', reply=b"NO [ALREADYEXISTS] Mailbox already exists.")
        with connect(account(user, port=proxy.port)) as e:
            assert e.status("Junk").exists == 0
        assert proxy.fired == 1
    with ImapAnswerProxy("127.0.0.1", user.server.port, watch=rb"^(SELECT|EXAMINE) ") as proxy:
        proxy.answer(rb'^EXAMINE "?Nope', reply=b"NO Mailbox doesn't exist: Nope")
        with connect(account(user, port=proxy.port)) as e, pytest.raises(FolderRefused, match="doesn't exist"):
            e.status("Nope")  # any other refusal still stands
