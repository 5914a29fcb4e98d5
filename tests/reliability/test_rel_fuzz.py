"""Bad input everywhere (hypothesis): the CSV reader, folder-name mapping, modified UTF-7, the
Message-ID normalisation and the dedupe fingerprint. Each input yields a result or a clear error
(a ``UsageError`` with a message), never a crash; keys are stable under what servers change."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.csvbatch import COLUMNS, OPTIONAL_COLUMNS, BatchRow, CsvInvalid, read_batch
from migrate.dedupe.keys import key_of_raw, message_key, normalize_message_id
from migrate.errors import UsageError
from migrate.folders import decode_mutf7, encode_mutf7, plan_folders
from migrate.models import SPECIAL_USES, FolderInfo, Namespace
from tests.reliability import kit


def fuzz_settings(n: int):
    return settings(max_examples=n * (10 if kit.LONG else 1), deadline=None, database=None,
                    derandomize=not kit.LONG,  # CI: the same inputs every run; --long: new ones
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


KEY = re.compile(r"[mf]:[0-9a-f]{40}")
_SCRATCH = Path(tempfile.mkdtemp(prefix="mm-rel-fuzz-"))
atexit.register(shutil.rmtree, _SCRATCH, True)
(_SCRATCH / "pw.txt").write_text("a-password\n")
(_SCRATCH / "empty.txt").write_text("")


@pytest.fixture
def counter(tally):
    n = [0]
    yield n
    tally.fuzz += n[0]


# --------------------------------------------------------------------------- CSV


def _read(data: bytes, name: str) -> list[BatchRow] | UsageError:
    path = _SCRATCH / name
    path.write_bytes(data)
    try:
        rows = read_batch(path)
    except UsageError as exc:  # CsvInvalid is one: every problem listed
        assert exc.message and exc.hint, exc
        if isinstance(exc, CsvInvalid):
            assert exc.problems and all(re.match(r"line \d+", line) for line in exc.lines()), exc.lines()
        return exc
    assert isinstance(rows, list) and len(rows) <= 25
    for r in rows:
        assert isinstance(r, BatchRow) and "@" in r.source.email and "@" in r.target.email
        assert 0 < r.source.port < 65536 and r.source.security in ("ssl", "starttls", "none")
    return rows


@fuzz_settings(200)
@given(data=st.binary(max_size=3000))
def test_csv_random_bytes(data, counter):
    counter[0] += 1
    _read(data, "random.csv")


CELLS = st.one_of(
    st.sampled_from(["", " ", "alice@example.com", "bob@example.net", "not-an-address", "a@b", "x@[1.2.3.4]",
                     "imap", "gmail", "outlook", "gmx", "nonsuch", "imap.example.com", "127.0.0.1", "::1",
                     "-bad-.host", "993", "143", "0", "70000", "-1", "ssl", "starttls", "none", "SSL", "tls",
                     "env:MMREL_FUZZ_SET", "env:MMREL_FUZZ_UNSET", "env:", "file:", f"file:{_SCRATCH}/pw.txt",
                     f"file:{_SCRATCH}/empty.txt", "file:/nonexistent/x", f"file:{_SCRATCH}", "literal-pw",
                     "a;b@example.com", "x@example.com;y@example.com", "x@example.com, y@example.com", "#comment",
                     '"', '""', "\ufeff", "\x00", "é@ß.de", "用户@例子.广告"]),
    st.text(max_size=30),
)
NAMES = st.lists(st.one_of(st.sampled_from(COLUMNS + OPTIONAL_COLUMNS), st.text(max_size=12)), max_size=20)


@st.composite
def csv_texts(draw) -> bytes:
    sep = draw(st.sampled_from([",", ";", "\t"]))
    header = list(COLUMNS) if draw(st.booleans()) else draw(NAMES)
    if draw(st.booleans()):
        header += draw(st.lists(st.sampled_from(OPTIONAL_COLUMNS), max_size=2))
    width = len(header)
    rows = draw(st.lists(st.lists(CELLS, min_size=max(width - 2, 0), max_size=width + 2), max_size=30))

    def cell(c: str) -> str:
        if draw(st.booleans()) or any(x in c for x in (sep, '"', "\n", "\r")):
            return '"' + c.replace('"', '""') + '"'
        return c

    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [sep.join(header)] + [sep.join(cell(c) for c in r) for r in rows]
    text = eol.join(lines) + draw(st.sampled_from(["", eol]))
    prefix = draw(st.sampled_from(["", "\ufeff", "# a comment\n", "\n\n"]))
    return (prefix + text).encode("utf-8", "surrogatepass")


@fuzz_settings(300)
@given(data=csv_texts())
def test_csv_structured(data, counter, monkeypatch):
    monkeypatch.setenv("MMREL_FUZZ_SET", "x")
    counter[0] += 1
    _read(data, "structured.csv")


# --------------------------------------------------------------------------- folder names

PARTS = st.one_of(
    st.sampled_from(["INBOX", "inbox", "Inbox", "Sent", "Sent Items", "Gesendet", "Drafts", "Entwürfe", "Trash",
                     "Deleted Items", "Junk", "Spam", "Archive", "All Mail", "Starred", "Important", "[Gmail]",
                     "a.b", "a/b", "~x", ".hidden", " ", "", "&", "Q&A", "&-", "日本語", "📬", "x" * 60,
                     "Work", "work", "WORK"]),
    st.text(max_size=8),
)
NAMESPACES = st.sampled_from([Namespace("", "/"), Namespace("", "."), Namespace("INBOX.", "."),
                              Namespace("INBOX/", "/"), Namespace("", None)])


@st.composite
def trees(draw) -> tuple[Namespace, list[FolderInfo]]:
    ns = draw(NAMESPACES)
    d = ns.delimiter
    paths = draw(st.lists(st.lists(PARTS, min_size=1, max_size=4), max_size=25))
    names: dict[str, None] = {}
    if draw(st.booleans()):
        names["INBOX"] = None
    for parts in paths:
        if d is None:
            parts = parts[:1]
        if any(not p or (d and d in p) for p in parts):
            continue  # servers list no empty level ("a//b", "Sent/")
        name = ns.prefix + (d or "").join(parts)
        if name.upper() == "INBOX":
            name = "INBOX"
        names.setdefault(name, None)
    folders = []
    for name in names:
        flags = frozenset(draw(st.lists(st.sampled_from(["\\Noselect", "\\HasChildren", "\\HasNoChildren",
                                                           "\\NonExistent", "\\Marked"] + list(SPECIAL_USES)),
                                        max_size=3)))
        special = draw(st.one_of(st.none(), st.sampled_from(SPECIAL_USES)))
        folders.append(FolderInfo(name, d, flags, special))
    return ns, folders


def _collision(name: str, ns: Namespace) -> str:
    d = ns.delimiter or "/"
    head, sep, rest = name.partition(d)
    return (head.upper() if head.upper() == "INBOX" else head) + sep + rest


@fuzz_settings(400)
@given(src=trees(), dst=trees(), gmail=st.sampled_from([None, True, False]), sanitize=st.booleans(),
       include=st.lists(st.sampled_from(["*", "Work*", "\\Sent", "\\Trash/*", "INBOX*", "[!x]*"]), max_size=2),
       exclude=st.lists(st.sampled_from(["Spam", "\\Junk", "*/Deep", "a?b", "[Gmail]*"]), max_size=2),
       overrides=st.dictionaries(PARTS, st.sampled_from(["Archive", "INBOX", "Old", "INBOX.Old", "Old/Sent"]),
                                 max_size=2))
def test_folder_plan_never_collides(src, dst, gmail, sanitize, include, exclude, overrides, counter):
    counter[0] += 1
    (sns, sfolders), (tns, tfolders) = src, dst
    plan = plan_folders(sns, sfolders, tns, tfolders, include=include, exclude=exclude, map_folder=overrides,
                        gmail=gmail, sanitize=sanitize)
    # Every source folder is planned exactly once.
    assert sorted(m.source for m in plan.mappings) == sorted(f.name for f in sfolders)
    targets = [m.target for m in plan.mappings if m.target is not None]
    # No two source folders map to one target name (INBOX compared case-insensitively).
    keys = [_collision(t, tns) for t in targets]
    assert len(keys) == len(set(keys)), sorted(t for t in targets if keys.count(_collision(t, tns)) > 1)
    for m in plan.mappings:
        if m.target is None:
            continue
        assert m.target, m
        assert decode_mutf7(encode_mutf7(m.target)) == m.target
        if m.source.upper() == "INBOX" and m.reason == "inbox":
            assert m.target == "INBOX", m
        if m.reason in ("folder", "special-new") and not overrides:
            # Translated names live under the target's personal prefix and never as INBOX.INBOX...
            d = tns.delimiter or "/"
            assert m.target == "INBOX" or m.target.startswith(tns.prefix) or (
                tns.prefix.upper().startswith("INBOX") and m.target.upper().startswith("INBOX")), m
            parts = m.target.split(d)
            assert not (len(parts) > 2 and parts[0].upper() == "INBOX" and parts[1].upper() == "INBOX"), m


@fuzz_settings(500)
@given(name=st.text(max_size=40))
def test_mutf7_round_trip(name, counter):
    counter[0] += 1
    enc = encode_mutf7(name)
    assert isinstance(enc, bytes) and all(0x20 <= b < 0x7F for b in enc), enc
    assert decode_mutf7(enc) == name


@fuzz_settings(300)
@given(data=st.binary(max_size=60))
def test_mutf7_decode_random_bytes(data, counter):
    counter[0] += 1
    assert isinstance(decode_mutf7(data), str)


# --------------------------------------------------------------------------- Message-ID and keys


@fuzz_settings(400)
@given(value=st.one_of(st.none(), st.binary(max_size=200),
                       st.text(max_size=60).map(lambda t: f"<{t}>".encode("utf-8", "surrogatepass"))))
def test_message_id_normalisation(value, counter):
    counter[0] += 1
    out = normalize_message_id(value)
    assert out is None or (isinstance(out, str) and out and not re.search(r"\s", out)), out


@fuzz_settings(400)
@given(header=st.binary(max_size=2000), text=st.one_of(st.none(), st.binary(max_size=2000)),
       raw=st.binary(max_size=3000))
def test_keys_of_random_bytes(header, text, raw, counter):
    counter[0] += 2
    assert KEY.fullmatch(message_key(header, text))
    assert KEY.fullmatch(key_of_raw(raw))


VALUE = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=120)


@st.composite
def messages(draw) -> tuple[list[tuple[str, str]], bytes]:
    fields = []
    if draw(st.booleans()):
        fields.append(("Message-ID", "<" + draw(st.text("abcdef0123456789.@-_", min_size=1, max_size=40)) + ">"))
    for name in ("Date", "From", "To", "Cc", "Subject"):
        if draw(st.booleans()):
            fields.append((name, draw(VALUE)))
    extra = draw(st.lists(st.tuples(st.sampled_from(["X-Mailer", "Received", "X-Spam"]), VALUE), max_size=3))
    fields[draw(st.integers(0, len(fields))):0] = extra
    body = draw(st.binary(max_size=5000)).replace(b"\r", b"")
    return fields, body


def _build(fields, body: bytes, *, fold_at: set[int] = frozenset(), eol: bytes = b"\r\n") -> bytes:
    head = []
    for i, (name, value) in enumerate(fields):
        v = value.encode()
        if i in fold_at and b" " in v.strip():
            # Fold at a space (RFC 5322 folding: a line break before white space).
            k = v.index(b" ", len(v) - len(v.lstrip()))
            v = v[:k] + eol + v[k:]
        head.append(name.encode() + b": " + v)
    return eol.join(head) + eol + eol + body.replace(b"\n", eol)


@fuzz_settings(400)
@given(msg=messages(), fold=st.sets(st.integers(0, 10)))
def test_key_stable_under_line_endings_folding_and_nul(msg, fold, counter):
    counter[0] += 1
    fields, body = msg
    base = key_of_raw(_build(fields, body))
    assert KEY.fullmatch(base)
    variants = {
        "LF": _build(fields, body, eol=b"\n"),
        "refolded": _build(fields, body, fold_at=fold),
        "refolded LF": _build(fields, body, fold_at=fold, eol=b"\n"),
        "NUL as 0x80": _build(fields, body.replace(b"\x00", b"\x80")),
    }
    for what, raw in variants.items():
        assert key_of_raw(raw) == base, what
