"""The real-server harness itself: every flavor, TLS, OAuth, quota and the fault proxy."""

from __future__ import annotations

import imaplib
import socket
import ssl
import time

import imapclient
import pytest
from imapclient.exceptions import IMAPClientError, LoginError

from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

MSG = (
    b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
    b"Message-ID: <harness-1@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n"
)


def _listing(client) -> dict[str, tuple[bytes, set[bytes]]]:
    return {name: (sep, set(flags)) for flags, sep, name in client.list_folders()}


EXPECTED = {
    "slash": (
        "/",
        {
            "Sent": b"\\Sent",
            "Drafts": b"\\Drafts",
            "Trash": b"\\Trash",
            "Junk": b"\\Junk",
            "Archive": b"\\Archive",
        },
    ),
    "dot": (
        ".",
        {
            "Sent Items": b"\\Sent",
            "Drafts": b"\\Drafts",
            "Deleted Items": b"\\Trash",
            "Junk E-mail": b"\\Junk",
            "Archive": b"\\Archive",
        },
    ),
    "inbox": (
        ".",
        {
            "INBOX.Sent": b"\\Sent",
            "INBOX.Drafts": b"\\Drafts",
            "INBOX.Trash": b"\\Trash",
            "INBOX.Junk": b"\\Junk",
        },
    ),
    "nospecial": ("/", {"Gesendet": None, "Entwürfe": None, "Papierkorb": None, "Spam": None}),
}
SPECIAL_USE = {
    b"\\Sent",
    b"\\Drafts",
    b"\\Trash",
    b"\\Junk",
    b"\\Archive",
    b"\\All",
    b"\\Flagged",
    b"\\Important",
}


@pytest.mark.parametrize("flavor", list(EXPECTED))
def test_flavor_listing(dovecot, new_user, flavor):
    server = dovecot(flavor)
    sep, folders = EXPECTED[flavor]
    assert server.separator == sep
    assert server.prefix == ("INBOX." if flavor == "inbox" else "")
    user = new_user(server)
    with user.client() as c:
        listing = _listing(c)
        assert "INBOX" in listing
        for name, use in folders.items():
            assert name in listing, (name, list(listing))
            assert listing[name][0] == sep.encode()
            if use:
                assert use in listing[name][1]
        if flavor == "nospecial":
            assert not any(flags & SPECIAL_USE for _, flags in listing.values())
        ns = c.namespace()
        assert ns.personal[0] == (server.prefix, sep)
        # Folders created over IMAP land where the tree says they should.
        sub = f"{server.prefix}Projects{sep}2024"
        c.create_folder(sub)
        assert sub in _listing(c)


def test_save_and_admin_helpers(dovecot, mail_user):
    server = mail_user.server
    uid1 = mail_user.save("INBOX", MSG)
    uid2 = mail_user.save("New/Folder", MSG, flags=["\\Seen", "$Label1"])
    assert (uid1, uid2) == (1, 1)
    assert "New/Folder" in server.list_folders(mail_user.name)
    with mail_user.client() as c:
        c.select_folder("New/Folder", readonly=True)
        data = c.fetch([uid2], ["FLAGS", "BODY.PEEK[]"])[uid2]
        assert {b"\\Seen", b"$Label1"} <= set(data[b"FLAGS"])
        assert data[b"BODY[]"] == MSG
    server.set_flags(mail_user.name, "New/Folder", ["\\Seen"], uids="1", mode="remove")
    assert server.message_count(mail_user.name, "INBOX") == 1


def test_tls_ports_and_starttls(dovecot, mail_user):
    server = mail_user.server
    with mail_user.client(tls=True) as c:  # implicit TLS, verified against the session CA
        assert c.folder_exists("INBOX")
    c = imapclient.IMAPClient(server.host, port=server.port, ssl=False, timeout=10)
    assert b"STARTTLS" in c.capabilities()
    c.starttls(ssl_context=server.ssl_context())
    c.login(mail_user.name, mail_user.password)
    c.logout()
    # Without the test CA the certificate must not verify (no accidental trust of the system store).
    with pytest.raises(ssl.SSLError):
        imapclient.IMAPClient(
            server.host, port=server.ssl_port, ssl=True, ssl_context=ssl.create_default_context(), timeout=10
        )


def test_no_starttls_server_refuses_upgrade(dovecot, new_user):
    server = dovecot("slash", starttls=False)
    assert server.ssl_port is None
    user = new_user(server)
    c = imapclient.IMAPClient(server.host, port=server.port, ssl=False, timeout=10)
    assert b"STARTTLS" not in c.capabilities()
    with pytest.raises(IMAPClientError):  # the client must not silently carry on in plaintext
        c.starttls(ssl_context=server.ssl_context())
    c.shutdown()
    with user.client() as c2:
        assert c2.folder_exists("INBOX")


def test_wrong_password_is_fast(mail_user):
    t0 = time.monotonic()
    for _ in range(3):
        with pytest.raises(LoginError):
            mail_user.server.client(mail_user.name, "wrong")
    with mail_user.client():
        pass
    # Penalty disabled: no growing delay, only Dovecot 2.3's fixed ~0.5 s failure flush timer.
    assert time.monotonic() - t0 < 2.5


def test_gmail_labels(dovecot, new_user):
    server = dovecot("gmail")
    user = new_user(server)
    uids = server.save_labels(user.name, ["INBOX", "Work"], MSG, flags=["\\Flagged"])
    assert set(uids) == {"INBOX", "Work"}
    server.save(user.name, "[Gmail]/Sent Mail", MSG.replace(b"harness-1", b"harness-2"))
    with user.client() as c:
        listing = _listing(c)
        assert b"\\Noselect" in listing["[Gmail]"][1]
        for name, use in {
            "[Gmail]/All Mail": b"\\All",
            "[Gmail]/Sent Mail": b"\\Sent",
            "[Gmail]/Drafts": b"\\Drafts",
            "[Gmail]/Spam": b"\\Junk",
            "[Gmail]/Trash": b"\\Trash",
            "[Gmail]/Starred": b"\\Flagged",
            "[Gmail]/Important": b"\\Important",
        }.items():
            assert use in listing[name][1], name
            assert listing[name][0] == b"/"

        def message_ids(folder):
            c.select_folder(folder, readonly=True)
            got = c.fetch(c.search(), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            return sorted(v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].strip() for v in got.values())

        one, two = b"Message-ID: <harness-1@example.org>", b"Message-ID: <harness-2@example.org>"
        assert message_ids("INBOX") == [one]
        assert message_ids("Work") == [one]
        assert message_ids("[Gmail]/All Mail") == [one, two]  # once, though filed under 2 labels
        assert message_ids("[Gmail]/Starred") == [one]
        assert message_ids("[Gmail]/Sent Mail") == [two]
        assert message_ids("[Gmail]/Spam") == []
        # Labels are real folders: a migrator can create them like on Gmail.
        c.create_folder("Projects/2024")
        c.append("Projects/2024", MSG.replace(b"harness-1", b"harness-3"))
        assert len(message_ids("[Gmail]/All Mail")) == 3


def test_quota_overquota(dovecot, new_user):
    server = dovecot("quota", quota_kb=1024)
    user = new_user(server)
    small = MSG + b"x" * 1000 + b"\r\n"
    big = MSG + (b"y" * 998 + b"\r\n") * 1200  # ~1.2 MB > 1 MB quota
    with user.client() as c:
        c.append("INBOX", small)
        with pytest.raises(IMAPClientError, match="OVERQUOTA"):
            c.append("INBOX", big)
        root, *_ = c.get_quota_root("INBOX")
        assert root.quota_roots
    q = server.quota_get(user.name)
    assert q["STORAGE"]["limit"] == 1024
    assert 0 < q["STORAGE"]["value"] < 1024


def test_big_append(mail_user):
    big = MSG + (b"z" * 998 + b"\r\n") * 30_000  # 30 MB literal
    with mail_user.client() as c:
        c.append("INBOX", big)
        c.select_folder("INBOX", readonly=True)
        assert c.fetch(c.search(), ["RFC822.SIZE"]).popitem()[1][b"RFC822.SIZE"] == len(big)


def test_oauth(dovecot, new_user):
    server = dovecot("oauth")
    user = new_user(server)
    token = "tok-" + user.name
    server.oauth_tokens[token] = user.name
    for login in ("oauth2_login", "oauthbearer_login"):
        c = imapclient.IMAPClient(
            server.host, port=server.ssl_port, ssl=True, ssl_context=server.ssl_context(), timeout=10
        )
        getattr(c, login)(user.name, token)
        assert c.folder_exists("INBOX")
        c.logout()
    with user.client():  # password logins still work
        pass
    del server.oauth_tokens[token]  # revoked at run time
    c = imapclient.IMAPClient(server.host, port=server.port, ssl=False, timeout=10)
    with pytest.raises(LoginError):
        c.oauth2_login(user.name, token)
    c.shutdown()
    # A valid token for someone else must not log in as this user.
    server.oauth_tokens["other"] = "someone-else"
    c = imapclient.IMAPClient(server.host, port=server.port, ssl=False, timeout=10)
    with pytest.raises(LoginError):
        c.oauth2_login(user.name, "other")
    c.shutdown()


def test_restart_keeps_data_and_ports(new_user):
    # Own instance: restarting the shared one would disturb parallel tests.
    from tests.dovecot.harness import DovecotServer

    with DovecotServer("slash") as server:
        user = new_user(server)
        user.save("INBOX", MSG)
        port, ssl_port = server.port, server.ssl_port
        server.restart()
        assert (server.port, server.ssl_port) == (port, ssl_port)
        with user.client() as c:
            assert c.select_folder("INBOX")[b"EXISTS"] == 1
        server.kill()  # crash-stop: instant, ports closed at once
        with pytest.raises(OSError):
            socket.create_connection((server.host, port), timeout=1).close()


# --------------------------------------------------------------------------- fault proxy


def test_proxy_forwards_plain_and_tls(mail_user):
    server = mail_user.server
    with FaultProxy(server.host, server.port) as plain, FaultProxy(server.host, server.ssl_port) as tls:
        c = imapclient.IMAPClient("127.0.0.1", port=plain.port, ssl=False, timeout=10)
        c.login(mail_user.name, mail_user.password)
        assert c.folder_exists("INBOX")
        c.logout()
        c = imapclient.IMAPClient(
            "127.0.0.1", port=tls.port, ssl=True, ssl_context=server.ssl_context(), timeout=10
        )
        c.login(mail_user.name, mail_user.password)
        c.logout()
        assert (plain.connections, tls.connections, plain.cuts) == (1, 1, 0)


@pytest.mark.parametrize("offset", [0, 5000], ids=["before-command", "mid-literal"])
def test_proxy_cut_when_append_never_reaches_server(mail_user, offset):
    server = mail_user.server
    big = MSG + b"x" * 20_000 + b"\r\n"  # offset 5000: the cut lands inside the literal, a later read
    with FaultProxy(server.host, server.port) as proxy:
        c = imapclient.IMAPClient("127.0.0.1", port=proxy.port, ssl=False, timeout=5)
        c.login(mail_user.name, mail_user.password)
        proxy.cut_when(b"APPEND", "upstream", offset=offset)
        with pytest.raises((OSError, imaplib.IMAP4.abort, IMAPClientError)):
            c.append("INBOX", big)
        assert proxy.cuts == 1 and proxy.armed == 0
        assert proxy.bytes["upstream"] >= offset  # exactly up to the cut point got through
    assert server.message_count(mail_user.name, "INBOX") == 0


def test_proxy_cut_after_ok_lost_but_committed(mail_user):
    # The classic duplicate source: server committed the APPEND, the client never saw OK.
    server = mail_user.server
    with FaultProxy(server.host, server.port) as proxy:
        c = imapclient.IMAPClient("127.0.0.1", port=proxy.port, ssl=False, timeout=5)
        c.login(mail_user.name, mail_user.password)
        proxy.cut_when(b"[APPENDUID", "downstream")
        with pytest.raises((OSError, imaplib.IMAP4.abort, IMAPClientError)):
            c.append("INBOX", MSG)
    assert server.message_count(mail_user.name, "INBOX") == 1


def test_proxy_cut_after_bytes_and_stall(mail_user):
    server = mail_user.server
    with FaultProxy(server.host, server.port) as proxy:
        proxy.cut_after(10, "downstream")  # the greeting is cut after 10 bytes
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        got = b""
        while chunk := s.recv(100):
            got += chunk
        s.close()
        assert len(got) == 10 and got.startswith(b"* OK")
        assert proxy.cuts == 1
        # Later connections are untouched; a stall delays but does not break them.
        c = imapclient.IMAPClient("127.0.0.1", port=proxy.port, ssl=False, timeout=5)
        c.login(mail_user.name, mail_user.password)
        proxy.stall(0.5)
        t0 = time.monotonic()
        c.noop()
        assert time.monotonic() - t0 >= 0.4
        c.logout()
        assert proxy.connections == 2
        proxy.reset()
        assert (proxy.connections, proxy.cuts) == (0, 0)
