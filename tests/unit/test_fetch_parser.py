"""The fast FETCH parser gives what imapclient's parser gives, or declines (then imapclient's runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient.response_parser import parse_fetch_response

from migrate.imap import wire


def _imapclient(data):  # type: ignore[no-untyped-def]
    return {k: dict(v) for k, v in parse_fetch_response(data, False, True).items()}


def _same(data) -> dict:  # type: ignore[no-untyped-def,type-arg]
    ours = wire.parse_fetch(data)
    assert ours == _imapclient(data)
    return ours


HEAD = b"Message-ID: <a@x>\r\nSubject: hi\r\n\r\n"


def test_metadata_answer_with_a_literal() -> None:
    data = [(b'1 (UID 7 RFC822.SIZE 8123 FLAGS (\\Seen $Label1) INTERNALDATE "01-Jan-2023 00:41:05 +0000" '
             b'MODSEQ (4) BODY[HEADER.FIELDS (MESSAGE-ID DATE FROM TO CC SUBJECT)] {%d}' % len(HEAD), HEAD), b")",
            b'2 (UID 9 RFC822.SIZE 10 FLAGS () INTERNALDATE " 5-Mar-1999 23:59:59 -0730" MODSEQ (12) '
            b'BODY[HEADER.FIELDS (MESSAGE-ID DATE FROM TO CC SUBJECT)] "")']
    got = _same(data)
    assert got[7][b"FLAGS"] == (b"\\Seen", b"$Label1") and got[7][b"MODSEQ"] == (4,)
    assert got[7][b"BODY[HEADER.FIELDS (MESSAGE-ID DATE FROM TO CC SUBJECT)]"] == HEAD
    assert got[9][b"INTERNALDATE"] == datetime(1999, 3, 5, 23, 59, 59,
                                               tzinfo=timezone(-timedelta(hours=7, minutes=30)))
    assert got[9][b"INTERNALDATE"].utcoffset() == -timedelta(hours=7, minutes=30)


def test_body_answer_keeps_the_literal_byte_exact() -> None:
    body = b"From: a\r\n\r\nbare\nLF, lone\rCR, NUL \x00, 8-bit \xff ) ( { } \" \\\r\n"
    data = [(b'3 (UID 11 FLAGS (\\Answered) INTERNALDATE "31-Dec-2038 12:00:00 +1400" BODY[] {%d}' % len(body),
             body), b")"]
    got = _same(data)
    assert got[11][b"BODY[]"] is body  # the very bytes object imaplib read: no copy, no change


def test_two_literals_nil_and_quoted_escapes() -> None:
    data = [(b"4 (UID 12 BODY[HEADER.FIELDS (SUBJECT)] {4}", b"x\r\n\r"),
            (b" BODY[TEXT]<0> {3}", b"abc"), b' X-THING "a \\"q\\" \\\\ b" BODY[1] NIL)']
    got = _same(data)
    assert got[12][b"BODY[TEXT]<0>"] == b"abc" and got[12][b"BODY[1]"] is None
    assert got[12][b"X-THING"] == b'a "q" \\ b'


def test_unsolicited_flag_updates_are_not_answers() -> None:
    data = [b"5 (FLAGS (\\Deleted))", b"6 (UID 20 FLAGS (\\Seen))"]
    assert wire.parse_fetch(data) == {20: {b"SEQ": 6, b"FLAGS": (b"\\Seen",)}}


@pytest.mark.parametrize("data", [
    [b'1 (UID 1 BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" 1 1))'],  # nested lists
    [b'1 (UID 1 INTERNALDATE "yesterday")'],  # a date we do not read
    [b"1 (UID 1 FLAGS (\\Seen)"],  # unclosed
    [b"1 UID 1"],
])
def test_declines_what_it_does_not_know(data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((wire._Unparsed, StopIteration)):
        wire.parse_fetch(data)


def test_reads_a_literal8() -> None:
    """Cyrus answers BODY[] of a message stored from a literal8 (NUL inside) with ``~{n}``."""
    got = wire.parse_fetch([(b"1 (UID 7 BODY[] ~{4}", b"a\x00b\n"), b")"])
    assert got[7][b"BODY[]"] == b"a\x00b\n"


_FLAG = st.sampled_from([b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Draft", b"\\Deleted", b"$Forwarded",
                         b"$Label1", b"Junk", b"NonJunk", b"custom_kw", b"a.b-c+d", b"\\Recent"])


@settings(max_examples=300, deadline=None)
@given(uid=st.integers(1, 2**32 - 1), size=st.integers(0, 2**31), flags=st.lists(_FLAG, max_size=6),
       when=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)),
       offset=st.integers(-12 * 60, 14 * 60), head=st.binary(max_size=300), modseq=st.integers(1, 2**40),
       order=st.permutations(range(5)))
def test_matches_imapclient_on_generated_answers(uid, size, flags, when, offset, head, modseq, order) -> None:  # type: ignore[no-untyped-def]
    zone = timezone(timedelta(minutes=offset))
    date = when.replace(tzinfo=zone).strftime("%d-%b-%Y %H:%M:%S %z").encode()
    parts = [b"UID %d" % uid, b"RFC822.SIZE %d" % size, b"FLAGS (" + b" ".join(flags) + b")",
             b'INTERNALDATE "' + date + b'"', b"MODSEQ (%d)" % modseq]
    text = b"9 (" + b" ".join(parts[i] for i in order)
    data = [(text + b" BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}" % len(head), head), b")"]
    got = _same(data)
    assert got[uid][b"INTERNALDATE"].astimezone(UTC) == when.replace(tzinfo=zone).astimezone(UTC).replace(
        microsecond=0)
