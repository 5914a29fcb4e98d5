"""Dedupe keys survive what target servers change in a message (see migrate.dedupe.keys)."""

from __future__ import annotations

from migrate.dedupe.keys import key_of_raw

UTF8 = "Grüße aus Zürich – 日本".encode()
LATIN1 = "Grüße".encode("latin-1")


def _msg(subject: bytes, sender: bytes = b"Alice <a@x>", mid: bytes | None = b"<k1@x>", text: bytes = b"hello\r\n") -> bytes:
    head = (b"Message-ID: " + mid + b"\r\n" if mid else b"") + b"From: " + sender + b"\r\nSubject: " + subject
    return head + b"\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n" + text


def _bytes_to(data: bytes, repl: bytes) -> bytes:
    return bytes(b for ch in data for b in (repl if ch >= 0x80 else bytes([ch])))


def test_8bit_header_bytes_replaced_per_byte_or_per_character():
    for raw in (UTF8, LATIN1):
        original = key_of_raw(_msg(raw, sender=b"J\xc3\xbcrg <j@x>"))
        assert key_of_raw(_msg(_bytes_to(raw, b"X"), sender=b"JXXrg <j@x>")) == original  # Cyrus
        assert key_of_raw(_msg(_bytes_to(raw, b"?"), sender=b"J??rg <j@x>")) == original
    per_char = UTF8.decode().encode("ascii", "replace")  # one ? per character
    assert key_of_raw(_msg(per_char)) == key_of_raw(_msg(UTF8))


def test_without_message_id_lone_cr_dropped_and_crlf_added_at_the_end():
    body = _msg(b"draft", mid=None, text=b"first\rsecond\r\nthird")
    assert key_of_raw(_msg(b"draft", mid=None, text=b"firstsecond\r\nthird\r\n")) == key_of_raw(body)


def test_different_messages_keep_different_keys():
    assert key_of_raw(_msg(b"one")) != key_of_raw(_msg(b"two"))
    assert key_of_raw(_msg(b"one", mid=b"<a@x>")) != key_of_raw(_msg(b"one", mid=b"<b@x>"))
    assert key_of_raw(_msg(b"d", mid=None, text=b"text A")) != key_of_raw(_msg(b"d", mid=None, text=b"text B"))


def test_journal_with_keys_of_another_recipe_forgets_them(tmp_path):
    from migrate.journal import Journal

    j = Journal(tmp_path / "j.sqlite")
    with j.tx():
        j.conn.execute("INSERT INTO ledger (folder, key, state) VALUES ('INBOX', 'm:old', 'present')")
        j.conn.execute("INSERT INTO messages (job_id, source_folder, uidvalidity, uid, key, state)"
                       " VALUES ('j', 'INBOX', 1, 1, 'm:old', 'copied')")
        j.conn.execute("UPDATE meta SET value='1' WHERE name='key_version'")
    j.close()
    j = Journal(tmp_path / "j.sqlite")
    assert j.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 0
    assert j.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    j.close()
    j = Journal(tmp_path / "j.sqlite")  # the same recipe: kept
    with j.tx():
        j.conn.execute("INSERT INTO ledger (folder, key, state) VALUES ('INBOX', 'm:new', 'present')")
    j.close()
    assert Journal(tmp_path / "j.sqlite").conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 1
