"""The real Cyrus IMAP 3.6 harness, and probes of what Cyrus refuses or alters on APPEND/CREATE.

Each probe asserts what Cyrus 3.6.1 (Debian 12) was seen to do, with its exact answer, so a change
of server version or configuration shows up here first. tests/servers/README.md sums them up.
"""

from __future__ import annotations

import imaplib
import os
import re
import socket
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from imapclient import imap_utf7
from imapclient.exceptions import LoginError

from tests.servers.cyrus import CyrusError, CyrusServer, available

pytestmark = pytest.mark.cyrus

HEAD = (
    b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
    b"Message-ID: <cyrus-probe@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
)
MSG = HEAD + b"Subject: hello\r\n\r\nbody\r\n"
FLAVORS = ("dot", "slash")


def append(client, folder: str, data: bytes, flags=(), date=None) -> tuple[str, str]:
    """One APPEND with `data` as an unchanged literal -> (status, text of the tagged answer).
    A BAD answer comes back as ("BAD", text) instead of an exception."""
    msg: dict = {"msg": data, "flags": list(flags)}
    if date is not None:
        msg["date"] = date
    try:
        typ, resp = client.multiappend(folder, [msg])
    except imaplib.IMAP4.error as e:
        m = re.match(r"APPEND command error: BAD \[b'(.*)'\]$", str(e))
        assert m, str(e)
        return "BAD", m.group(1)
    return typ, b" ".join(resp).decode()


def create(client, name: str | bytes) -> tuple[str, str]:
    """CREATE with the name quoted as is (str: encoded to modified UTF-7 first; bytes: raw)."""
    raw = imap_utf7.encode(name) if isinstance(name, str) else name
    quoted = b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    typ, data = client._imap._simple_command("CREATE", quoted)
    return typ, b" ".join(data).decode()


def fetch_back(client, folder: str, uid: int) -> dict:
    client.select_folder(folder, readonly=True)
    try:
        return client.fetch([uid], ["BODY.PEEK[]", "BINARY.PEEK[]", "FLAGS", "INTERNALDATE"])[uid]
    finally:
        client.unselect_folder()


def uid_of(text: str) -> int:
    m = re.search(r"\[APPENDUID \d+ (\d+)\]", text)
    assert m, text
    return int(m.group(1))


def stored(client, data: bytes, folder: str = "INBOX", **kw) -> tuple[str, dict | None]:
    """APPEND -> (status, what FETCH gives back on OK else None)."""
    typ, text = append(client, folder, data, **kw)
    return typ, fetch_back(client, folder, uid_of(text)) if typ == "OK" else None


@pytest.fixture
def dot_user(cyrus, new_user):
    return new_user(cyrus("dot"))


# --------------------------------------------------------------------------- the harness


@pytest.mark.parametrize("flavor", FLAVORS)
def test_flavor_starts_user_logs_in_separator(cyrus, new_user, flavor):
    server = cyrus(flavor)
    assert server.running and server.host == "127.0.0.1" and server.port
    sep = "." if flavor == "dot" else "/"
    assert server.separator == sep and server.prefix == ""
    user = new_user(server)
    with user.client() as c:
        assert c.list_folders() == [((b"\\HasNoChildren",), sep.encode(), "INBOX")]
        personal, other, shared = c.namespace()
        assert personal == (("", sep),)
        assert other == ((f"Other Users{sep}", sep),) and shared == ((f"Shared Folders{sep}", sep),)
    # The admin sees the user's INBOX under its internal name.
    with server.admin_client() as a:
        assert [n for _f, _s, n in a.list_folders(pattern=server.mailbox(user.name))] == [
            f"user{sep}{user.name}"
        ]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_wrong_password_and_unknown_user_refused(cyrus, new_user, flavor):
    server = cyrus(flavor)
    user = new_user(server)
    t0 = time.monotonic()
    for name, pw in ((user.name, user.password + "x"), (user.name, ""), ("nobody_here", "pw")):
        with pytest.raises(LoginError, match="Login failed: authentication failure"):
            server.client(name, pw)
    assert time.monotonic() - t0 < 3  # failedloginpause: 0 (Cyrus waits 3 s by default)
    with user.client() as c:  # a good login still works after the bad ones
        assert c.noop()


def test_tls_refused_clearly(cyrus, new_user):
    user = new_user(cyrus("dot"))
    with pytest.raises(CyrusError, match="plain IMAP only"):
        user.client(tls=True)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_nested_folders(cyrus, new_user, flavor):
    server = cyrus(flavor)
    user = new_user(server)
    s = server.separator
    server.create_folder(user.name, f"Projects{s}2024{s}Q1")  # parents are implied
    server.create_folder(user.name, f"Projects{s}2024{s}Q1")  # existing: fine
    server.create_folder(user.name, f"INBOX{s}Sub")
    assert server.list_folders(user.name) == [
        "INBOX",
        f"INBOX{s}Sub",
        "Projects",
        f"Projects{s}2024",
        f"Projects{s}2024{s}Q1",
    ]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_save_round_trip_byte_exact(cyrus, new_user, flavor):
    server = cyrus(flavor)
    user = new_user(server)
    folder = f"Archive{server.separator}2023"
    uid1 = user.save("INBOX", MSG, flags=["\\Seen", "$Forwarded"])
    uid2 = user.save(folder, MSG.replace(b"hello", b"second"))  # folder made on TRYCREATE
    assert (uid1, uid2) == (1, 1)
    assert user.save(folder, MSG) == 2
    assert server.message_count(user.name, "INBOX") == 1
    assert server.message_count(user.name, folder) == 2
    with user.client() as c:
        c.select_folder("INBOX", readonly=True)
        got = c.fetch([uid1], ["BODY.PEEK[]", "FLAGS"])[uid1]
    assert got[b"BODY[]"] == MSG
    assert set(got[b"FLAGS"]) - {b"\\Recent"} == {b"\\Seen", b"$Forwarded"}


def test_save_reports_the_refusal(dot_user):
    with pytest.raises(CyrusError, match=r"APPEND INBOX: NO Message contains bare newlines"):
        dot_user.save("INBOX", b"Subject: x\n\nbody\n")


def test_lifecycle_own_instance_restart_kill_close():
    """An instance of its own (not the session one): start time, data kept over restart and crash,
    nothing left after close."""
    reason = available()
    if reason and os.environ.get("MM_REQUIRE_CYRUS") == "1":
        pytest.fail(f"real Cyrus required (MM_REQUIRE_CYRUS=1) but unusable: {reason}", pytrace=False)
    if reason:
        pytest.skip(f"real Cyrus unavailable: {reason}")
    t0 = time.monotonic()
    server = CyrusServer("slash")
    server.add_user("early", "pw-early")  # before the first start: INBOX made at start
    server.start()
    started = time.monotonic() - t0
    root, port = server.root, server.port
    try:
        assert started < 5, started  # 0.1-0.4 s here
        assert server.list_folders("early") == ["INBOX"]
        assert oct(root.stat().st_mode & 0o777) == "0o755"
        server.add_user("life", "pw-life")
        server.save("life", "INBOX", MSG)
        server.restart()
        assert server.port == port and server.message_count("life", "INBOX") == 1
        pid = server._proc.pid
        server.kill()
        assert not server.running
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # master and every imapd gone
        server.start()
        assert server.message_count("life", "INBOX") == 1
        if server._syslog:  # Cyrus' syslog captured (private /dev): its lines are in log_tail
            assert "User logged in" in server.log_tail(50)
    finally:
        server.close()
    assert not server.running and not root.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


# --------------------------------------------------------------------------- probes: APPEND


def test_capabilities(cyrus):
    server = cyrus("dot")
    wanted = {
        "IMAP4REV1",
        "LITERAL+",
        "UIDPLUS",
        "MULTIAPPEND",
        "CONDSTORE",
        "QRESYNC",
        "LIST-STATUS",
        "LIST-EXTENDED",
        "SPECIAL-USE",
        "CREATE-SPECIAL-USE",
        "BINARY",
        "CATENATE",
        "MOVE",
        "NAMESPACE",
        "ID",
        "IDLE",
        "UNSELECT",
        "ENABLE",
        "ESEARCH",
        "QUOTA",
        "METADATA",
        "COMPRESS=DEFLATE",
        "APPENDLIMIT=4294967295",  # advertised, i.e. 4 GiB - 1
    }
    import imapclient

    pre = imapclient.IMAPClient(server.host, port=server.port, ssl=False)
    try:
        before = {c.decode() for c in pre.capabilities()}
    finally:
        pre.shutdown()
    with server.admin_client() as c:
        after = {x.decode() for x in c.capabilities()}
    assert wanted <= before and wanted <= after
    assert {"AUTH=PLAIN", "AUTH=LOGIN", "SASL-IR"} <= before
    assert "LOGINDISABLED" in after and "AUTH=PLAIN" not in after
    assert not {"UTF8=ACCEPT", "STARTTLS", "LITERAL-"} & (before | after)


def test_bare_lf_refused(dot_user):
    with dot_user.client() as c:
        assert append(c, "INBOX", b"From: a@example.org\nSubject: lf\n\nbody\n") == (
            "NO",
            "Message contains bare newlines",
        )
        # One bare LF anywhere is enough, even in a body that is otherwise CRLF.
        assert append(c, "INBOX", HEAD + b"Subject: x\r\n\r\nline1\nline2\r\n") == (
            "NO",
            "Message contains bare newlines",
        )


def test_nul_refused(dot_user):
    with dot_user.client() as c:
        for data in (HEAD + b"Subject: x\r\n\r\nbo\x00dy\r\n", HEAD + b"Subject: n\x00ul\r\n\r\nbody\r\n"):
            assert append(c, "INBOX", data) == ("NO", "Message contains NUL characters")


def test_8bit_header_bytes_become_X(dot_user):
    """munge8bit (default on) applies to APPEND too: each 8-bit header byte is replaced by 'X'
    (same length); 8-bit bytes in the body are kept."""
    utf8 = HEAD + "Subject: Grüße 😀\r\n\r\nbody\r\n".encode()
    latin1 = HEAD + "Subject: Grüße\r\n\r\nbody\r\n".encode("latin-1")
    sender = "From: Jürgen <j@example.org>\r\nSubject: x\r\n\r\nbody\r\n".encode()
    body8 = HEAD + "Subject: b\r\n\r\nGrüße\r\n".encode("latin-1")
    with dot_user.client() as c:
        typ, got = stored(c, utf8)
        assert typ == "OK" and got[b"BODY[]"] == HEAD + b"Subject: GrXXXXe XXXX\r\n\r\nbody\r\n"
        typ, got = stored(c, latin1)
        assert typ == "OK" and got[b"BODY[]"] == HEAD + b"Subject: GrXXe\r\n\r\nbody\r\n"
        typ, got = stored(c, sender)
        assert (
            typ == "OK" and got[b"BODY[]"] == b"From: JXXrgen <j@example.org>\r\nSubject: x\r\n\r\nbody\r\n"
        )
        typ, got = stored(c, body8)
        assert typ == "OK" and got[b"BODY[]"] == body8


def test_8bit_header_reject8bit_and_munge8bit_off(cyrus, new_user):
    data = HEAD + "Subject: Grüße\r\n\r\nbody\r\n".encode()
    strict = new_user(cyrus("dot", extra_config="reject8bit: yes"))
    with strict.client() as c:
        assert append(c, "INBOX", data) == ("NO", "Message contains non-ASCII characters in headers")
    raw = new_user(cyrus("dot", extra_config="munge8bit: no"))
    with raw.client() as c:
        typ, got = stored(c, data)
        assert typ == "OK" and got[b"BODY[]"] == data


def test_lone_cr_and_missing_final_crlf_kept(dot_user):
    with dot_user.client() as c:
        for data in (
            HEAD + b"Subject: cr\r\n\r\nline1\rline2\r\n",
            HEAD + b"Subject: c\rr\r\n\r\nbody\r\n",  # lone CR in a header
            HEAD + b"Subject: no final CRLF\r\n\r\nbody",
        ):
            typ, got = stored(c, data)
            assert typ == "OK" and got[b"BODY[]"] == data and got[b"BINARY[]"] == data


def test_malformed_and_empty_refused(dot_user):
    with dot_user.client() as c:
        # Headers only, the last one without CRLF.
        assert append(c, "INBOX", HEAD + b"Subject: hdr") == ("NO", "Message contains invalid header")
        assert append(c, "INBOX", b"") == ("NO", "Zero-length message literal")


def test_long_lines_and_big_message_kept(dot_user):
    with dot_user.client() as c:
        for data in (
            HEAD + b"Subject: l\r\n\r\n" + b"x" * 1_000_000 + b"\r\n",  # 1 MB body line
            HEAD + b"X-Long: " + b"y" * 1_000_000 + b"\r\nSubject: h\r\n\r\nbody\r\n",  # 1 MB header
            HEAD + b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 10_000,  # 10 MB
        ):
            typ, got = stored(c, data)
            assert typ == "OK" and got[b"BODY[]"] == data


def test_internaldate(dot_user):
    with dot_user.client() as c:
        past = datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        typ, got = stored(c, MSG, date=past)
        # Same instant; imapclient gives it back naive in local time, the server answers in its zone.
        assert typ == "OK" and got[b"INTERNALDATE"].astimezone(UTC) == past
        future = datetime(2099, 1, 1, tzinfo=UTC)  # kept (Dovecot replaces it by "now")
        typ, got = stored(c, MSG, date=future)
        assert typ == "OK" and got[b"INTERNALDATE"].astimezone(UTC) == future
        assert append(c, "INBOX", MSG, date=datetime(1965, 1, 1, tzinfo=UTC)) == (
            "BAD",
            "Invalid date-time in Append command",
        )


def test_keywords(dot_user):
    flags = ["$Forwarded", "$MDNSent", "$Junk", "$NotJunk", "$label1", "MyKeyword", "\\Seen", "\\Flagged"]
    with dot_user.client() as c:
        typ, got = stored(c, MSG, flags=flags)
        assert typ == "OK"
        # FETCH FLAGS also shows \Recent (first session to see the message).
        assert set(got[b"FLAGS"]) == {f.encode() for f in flags} | {b"\\Recent"}
        for bad in ("\\Recent", "\\Custom"):
            assert append(c, "INBOX", MSG, flags=[bad]) == ("BAD", "Invalid flag in Append command")


def test_append_to_examined_folder(dot_user):
    with dot_user.client() as c:
        c.create_folder("Sent")
        for folder in ("INBOX", "Sent"):
            c.select_folder(folder, readonly=True)
            typ, text = append(c, folder, MSG)
            assert typ == "OK" and uid_of(text) == 1
            c.unselect_folder()
            assert c.folder_status(folder, ["MESSAGES"])[b"MESSAGES"] == 1


# --------------------------------------------------------------------------- probes: CREATE

INVALID = "Invalid mailbox name"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_folder_names(cyrus, new_user, flavor):
    server = cyrus(flavor)
    user = new_user(server)
    s = server.separator
    with user.client() as c:
        # Refused on both flavors, with the exact answer.
        for name in ('Say "hi"', "100%", "Back\\slash", "Tab\there", "x" * 600):
            assert create(c, name) == ("NO", INVALID), name
        assert create(c, "Raw Grüße".encode()) == ("NO", INVALID)  # raw UTF-8, not modified UTF-7
        assert create(c, b"Bad &Jjo") == ("NO", INVALID)  # broken modified UTF-7
        # Accepted and listed back unchanged.
        kept = ["Emoji 😀", "~tilde", "Entwürfe", "Amp & Co", "  spaces  ", "Star*", "Brackets[x]", "x" * 300]
        for name in kept:
            typ, text = create(c, name)
            assert typ == "OK" and text.startswith("[MAILBOXID ("), (name, text)
        assert create(c, "Emoji 😀") == ("NO", "Mailbox already exists")  # no [ALREADYEXISTS] code
        # The other separator, and '^' (Cyrus' internal stand-in for '.' when the separator is '/').
        if flavor == "dot":
            assert create(c, "a/b") == ("NO", INVALID)
            assert create(c, "caret^x")[0] == "OK"
            kept.append("caret^x")
        else:
            assert create(c, "a.b")[0] == "OK"
            assert create(c, "caret^x") == ("NO", INVALID)
            kept.append("a.b")
        # Altered without a word: empty levels and leading/trailing separators are dropped.
        for name in (f"Trail{s}", f"{s}Lead", f"Dbl{s}{s}Level"):
            assert create(c, name)[0] == "OK"
        listed = {n for _f, _s, n in c.list_folders()}
    assert listed == {"INBOX", *kept, "Trail", "Lead", "Dbl", f"Dbl{s}Level"}


def test_create_special_use(dot_user):
    with dot_user.client() as c:
        typ, data = c._imap._simple_command("CREATE", '"My Sent"', "(USE (\\Sent))")
        assert typ == "OK"
        flags = {n: set(f) for f, _s, n in c.list_folders()}
        assert b"\\Sent" in flags["My Sent"]


def test_altnamespace_off_puts_folders_under_inbox(cyrus, new_user):
    """Cyrus 2 style (Debian's shipped imapd.conf): personal folders only below INBOX."""
    server = cyrus("dot", altnamespace=False)
    assert server.prefix == "INBOX."
    user = new_user(server)
    with user.client() as c:
        assert c.namespace()[0] == (("INBOX.", "."),)
        assert create(c, "Top") == ("NO", "Permission denied")
        assert create(c, "INBOX.Work.Sub")[0] == "OK"
        assert append(c, "Elsewhere", MSG) == ("NO", "Mailbox does not exist")  # no TRYCREATE
        assert append(c, "INBOX.Nope", MSG) == ("NO", "[TRYCREATE] Mailbox does not exist")
    assert server.list_folders(user.name) == ["INBOX", "INBOX.Work", "INBOX.Work.Sub"]
    assert user.save("INBOX.Work.New", MSG) == 1


def test_keyword_limit_per_mailbox(dot_user):
    with dot_user.client() as c:
        c.create_folder("Many")
        typ, _ = append(c, "Many", MSG, flags=[f"kw{i}" for i in range(100)])
        assert typ == "OK"
        assert append(c, "Many", MSG, flags=["kw99"])[0] == "OK"  # a known one: fine
        assert append(c, "Many", MSG, flags=["kw100"]) == ("NO", "Too many user flags in mailbox")


# --------------------------------------------------------------------------- probes: BINARY APPEND


def _raw_session(server, user, commands: list[bytes]) -> list[bytes]:
    """Plain-socket session (imapclient cannot read literal8): each command's full answer."""
    answers = []
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        for i, cmd in enumerate([b"LOGIN %s %s" % (user.name.encode(), user.password.encode()), *commands]):
            tag = b"r%d" % i
            s.sendall(tag + b" " + cmd + b"\r\n")
            out = b""
            while True:
                line = f.readline()
                assert line, out
                out += line
                m = re.search(rb"~?\{(\d+)\+?\}\r\n$", line)
                if m:
                    out += f.read(int(m.group(1)))
                elif line.startswith(tag + b" "):
                    break
            answers.append(out)
    return answers[1:]


def test_binary_append_literal8(dot_user, cyrus):
    """APPEND with a literal8 (~{n}, RFC 3516) stores NUL and bare LF in the body unchanged;
    bare LF in the header is still refused and 8-bit header bytes still become 'X'."""
    server = cyrus("dot")
    nul_lf = HEAD + b"Subject: bin\r\n\r\nbo\x00dy\nbare LF\r\n"
    lf_only = HEAD + b"Subject: bin\r\n\r\nbody\nbare LF"
    cases = [
        (nul_lf, b"OK [APPENDUID"),
        (lf_only, b"OK [APPENDUID"),
        (b"From: a@example.org\nSubject: lf\n\nbody\n", b"NO Message contains bare newlines"),
        (HEAD + "Subject: Grüße\r\n\r\nbody\r\n".encode(), b"OK [APPENDUID"),
    ]
    cmds = [b"APPEND INBOX ~{%d+}\r\n" % len(m) + m for m, _ in cases]
    answers = _raw_session(server, dot_user, cmds)
    for (_m, want), got in zip(cases, answers, strict=True):
        assert got.split(b" ", 1)[1].startswith(want), got
    assert [uid_of(a.decode()) for a in answers if b"APPENDUID" in a] == [1, 2, 3]
    fetched = _raw_session(
        server, dot_user, [b"EXAMINE INBOX", b"UID FETCH 1 (BINARY.PEEK[])", b"UID FETCH 1 (BODY.PEEK[])"]
    )
    assert fetched[1].startswith(b"* 1 FETCH (UID 1 BINARY[] ~{%d}\r\n" % len(nul_lf) + nul_lf + b")")
    # With a NUL inside, even BODY[] comes back as a literal8, which imapclient/imaplib cannot read.
    assert fetched[2].startswith(b"* 1 FETCH (UID 1 BODY[] ~{%d}\r\n" % len(nul_lf) + nul_lf + b")")
    with dot_user.client() as c:
        c.select_folder("INBOX", readonly=True)
        got = c.fetch([1, 2, 3], ["BODY.PEEK[]"])  # the refused APPEND took no UID
    assert got[1][b"BODY[]"] == b"~{%d}" % len(nul_lf)  # what imapclient makes of it
    assert got[2][b"BODY[]"] == lf_only  # bare LF without NUL: an ordinary literal, kept
    assert got[3][b"BODY[]"] == HEAD + b"Subject: GrXXXXe\r\n\r\nbody\r\n"
