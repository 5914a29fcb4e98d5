"""Hostile mail against real Dovecot: it arrives exactly, or is reported with the server's reason.

1. The whole real-world corpus (/work/shared/corpus/real, ~440 files) copied slash -> dot.
2. Generated hostile cases (NUL, bare LF, lone CR, 8-bit headers, a 200 KB header line, 30-level
   MIME nesting, a 20 MB message, edge INTERNALDATEs, every flag, deep and non-ASCII folders)
   copied slash -> inbox (``INBOX.`` prefix, ``.`` separator) and from there inbox -> slash.
3. A message the target refuses (an empty one from a local Maildir): the run completes, the
   failure carries the server's answer, a re-run copies nothing again and still reports it.

"Exact" means ``snapshot()``: the multiset of (BODY[] bytes, flags, INTERNALDATE instant) as the
servers return them. Seeding sends every message as one raw literal (imapclient ``multiappend``
with a single message, which bypasses imaplib's LF -> CRLF rewriting), so the source holds
whatever Dovecot made of the exact bytes.
"""

from __future__ import annotations

import base64
import random
import time
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path

import pytest

from migrate.api import ImportRequest, run_import
from migrate.sides import SideOptions
from tests.support.mailbox import CORPUS, count, folders, import_job, side, snapshot

pytestmark = pytest.mark.dovecot

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted")
KEYWORDS = ("$Forwarded", "$MDNSent", "$Junk", "NonJunk", "Custom_Keyword")
# Flag sets handed out round-robin to the corpus messages.
CORPUS_FLAGS: list[tuple[str, ...]] = [
    (), ("\\Seen",), ("\\Seen", "\\Answered"), ("\\Flagged", "$Forwarded"), ("\\Draft",),
    ("\\Deleted", "\\Seen"), ("$Junk",), ("NonJunk", "\\Seen", "Custom_Keyword"), ("$MDNSent", "\\Answered"),
]


# --------------------------------------------------------------------------- helpers

def _raw_seed(user, plan: dict[str, list[dict]]) -> list[tuple[str, str, object]]:
    """APPEND every item ({"msg", "flags", "date", "name"}) as one exact literal over ONE
    connection. Returns what Dovecot refused: [(folder, name, answer)]."""
    refused = []
    with user.client() as c:
        for folder, items in plan.items():
            if folder.upper() != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            for it in items:
                one = {k: it[k] for k in ("msg", "flags", "date") if k in it}
                try:
                    typ, data = c.multiappend(folder, [one])
                except Exception as exc:  # imapclient raises on a tagged NO/BAD in some versions
                    typ, data = "EXC", exc
                if typ != "OK":
                    refused.append((folder, it.get("name", "?"), data))
    return refused


def _folder_report(report, source: str):
    hits = [f for f in report.folders if f.source == source]
    assert len(hits) == 1, (source, [(f.source, f.target) for f in report.folders])
    return hits[0]


def _check_report(report, expected: dict[str, tuple[str, int]]) -> None:
    """expected: source folder -> (target folder, messages copied)."""
    assert report.exit_code == 0, (report.status, report.error, report.failures())
    for src_name, (dst_name, n) in expected.items():
        fr = _folder_report(report, src_name)
        assert (fr.target, fr.copied, fr.failed, fr.failures) == (dst_name, n, 0, []), src_name
    total = sum(n for _, n in expected.values())
    assert (report.totals.copied, report.totals.failed) == (total, 0)


def _check_rerun(report, expected: dict[str, tuple[str, int]]) -> None:
    assert report.exit_code == 0, (report.status, report.error, report.failures())
    assert (report.totals.copied, report.totals.failed) == (0, 0)
    for src_name, (dst_name, _n) in expected.items():
        fr = _folder_report(report, src_name)
        assert (fr.target, fr.copied, fr.failed) == (dst_name, 0, 0), src_name


def _ts(dt: datetime) -> int:
    return int(dt.timestamp())


# --------------------------------------------------------------------------- 1. the real corpus

def _corpus_folder(rel: Path) -> str:
    top = rel.parts[0]
    if top == "spamassassin":
        return "INBOX"
    if top == "notmuch":
        group = rel.name.split("__", 1)[0]
        return f"notmuch/{group}" if group in ("lkml", "duplicate") else "notmuch"
    return top


def _corpus_plan() -> dict[str, list[dict]]:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "SOURCES.md")
    plan: dict[str, list[dict]] = {}
    base = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    for i, p in enumerate(files):
        zone = timezone(timedelta(hours=(i % 27) - 12, minutes=30 * (i % 2)))
        date = (base + timedelta(days=17 * i, seconds=3607 * i)).astimezone(zone)
        plan.setdefault(_corpus_folder(p.relative_to(CORPUS)), []).append(
            {"name": str(p.relative_to(CORPUS)), "msg": p.read_bytes(), "flags": CORPUS_FLAGS[i % len(CORPUS_FLAGS)],
             "date": date})
    return plan


def test_real_corpus_arrives_exactly(dovecot, new_user, tmp_path):
    s, d = dovecot("slash"), dovecot("dot")
    src, dst = new_user(s), new_user(d)
    plan = _corpus_plan()
    n_files = sum(len(v) for v in plan.values())
    assert n_files >= 400, f"corpus missing? only {n_files} files under {CORPUS}"
    assert len(plan["notmuch/duplicate"]) == 9

    refused = _raw_seed(src, plan)
    assert refused == [], f"the SOURCE Dovecot refused {len(refused)} corpus files: {refused}"
    for folder, items in plan.items():
        assert count(src, folder) == len(items), folder

    # '/' source -> '.' target: nested names change separator, nothing else.
    expected = {f: (f.replace("/", "."), len(items)) for f, items in plan.items()}
    report = import_job(src, dst, tmp_path)
    _check_report(report, expected)
    assert report.totals.copied == n_files

    dup_target = None
    for sf, (tf, n) in expected.items():
        want = snapshot(src, sf)
        assert sum(want.values()) == n, sf
        got = snapshot(dst, tf)
        # Compare cheaply first so a failure names the missing/extra messages, not 11 MB of bytes.
        missing = want - got
        extra = got - want
        assert not missing and not extra, (sf, tf, [m[0][:200] for m in missing], [m[0][:200] for m in extra])
        if sf == "notmuch/duplicate":
            dup_target = got

    # notmuch duplicate__msg-*: shared Message-IDs, different content -> every variant arrived.
    assert dup_target is not None and sum(dup_target.values()) == 9
    bodies = [m[0] for m in dup_target.elements()]
    assert len(set(bodies)) == 9
    mids = Counter(_message_id(b) for b in bodies)
    assert max(mids.values()) >= 2, mids  # really shared IDs, so dedupe by Message-ID alone would lose mail

    again = import_job(src, dst, tmp_path)
    _check_rerun(again, expected)
    for tf, n in expected.values():
        assert count(dst, tf) == n, tf


def _message_id(body: bytes) -> bytes | None:
    head = body.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip()
    return None


# --------------------------------------------------------------------------- 2. generated cases

def _m(subject: str, body: bytes = b"body\r\n", *, mid: str | None = "auto", extra: bytes = b"",
       sep: bytes = b"\r\n") -> bytes:
    h = []
    if mid == "auto":
        mid = f"<{zlib.crc32(subject.encode()):08x}.{len(body)}@hostile.test>"
    if mid:
        h.append(b"Message-ID: " + mid.encode())
    h += [b"From: Alice <alice@example.test>", b"To: bob@example.test",
          b"Date: Tue, 2 Jan 2024 10:00:00 +0000", b"Subject: " + subject.encode()]
    return sep.join(h) + sep + extra + sep + body


def _nested_mime(depth: int) -> bytes:
    part = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nthe leaf at depth %d\r\n" % depth
    for level in range(depth, 0, -1):
        b = b"lvl-%02d-boundary" % level
        part = (b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"\r\n\r\n"
                b"preamble " + b"%d" % level + b"\r\n--" + b + b"\r\n" + part + b"\r\n--" + b + b"--\r\n")
    head = (b"Message-ID: <nested30@hostile.test>\r\nFrom: a@example.test\r\nSubject: 30 levels\r\n"
            b"MIME-Version: 1.0\r\n")
    return head + part


@cache
def _big_message() -> bytes:
    """~20 MB: a base64 attachment of 15 MB of seeded pseudo-random bytes (deterministic)."""
    data = random.Random(20).randbytes(15 * 1024 * 1024)
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"Message-ID: <big20mb@hostile.test>\r\nFrom: a@example.test\r\nTo: b@example.test\r\n"
            b"Subject: 20 MB\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BIG\"\r\n\r\n"
            b"--BIG\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            b"--BIG\r\nContent-Type: application/octet-stream; name=\"blob.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"blob.bin\"\r\n\r\n"
            + b64 + b"--BIG--\r\n")


D1970 = datetime(1970, 1, 2, 0, 0, 0, tzinfo=UTC)
D1999 = datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=1)))
D2038 = datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC)
DEFAULT_DATE = datetime(2020, 6, 15, 12, 0, 0, tzinfo=timezone(timedelta(hours=-7)))

DEEP = "/".join(f"L{i}" for i in range(1, 9))  # 8 levels
UNICODE_FOLDERS = ["Entwürfe", "Éléments envoyés", "日本語/子", "emoji 📬", "a&b", "Q&A/R&D"]


def _generated_plan() -> dict[str, list[dict]]:
    """Slash-server names -> items. Every item has a name so failures say which case broke."""
    twin = _m("byte-identical twin", b"same bytes\r\n", mid="<twin@hostile.test>")
    inbox = [
        ("no Message-ID 1", _m("no id", b"draft text one\r\n", mid=None)),
        ("no Message-ID 2", _m("no id", b"draft text two\r\n", mid=None)),
        ("shared id A", _m("shared", b"first variant\r\n", mid="<shared@hostile.test>")),
        ("shared id B", _m("shared", b"second variant, other body\r\n", mid="<shared@hostile.test>")),
        ("twin 1", twin),
        ("twin 2", twin),
        ("NUL byte", _m("nul", b"before\x00after\r\n")),
        ("bare LF", _m("bare lf", b"line one\nline two\n", sep=b"\n")),
        ("lone CR", _m("lone cr", b"left\rright\r\n")),
        ("raw UTF-8 header", _m("Grüße aus 東京 📬", b"utf8\r\n", extra="X-Name: Jürgen Müller\r\n".encode())),
        ("raw Latin-1 header", _m("latin1", b"latin1 body\r\n", extra=b"X-Latin1: caf\xe9 cr\xe8me br\xfbl\xe9e\r\n"
                                  b"Comments: Fran\xe7ois \xbfqu\xe9?\r\n")),
        ("200 KB header line", _m("long header", b"short body\r\n", extra=b"X-Long: " + b"x" * 200_000 + b"\r\n")),
        ("30-level MIME", _nested_mime(30)),
    ]
    plan: dict[str, list[dict]] = {"INBOX": [
        {"name": n, "msg": b, "flags": CORPUS_FLAGS[i % len(CORPUS_FLAGS)], "date": DEFAULT_DATE + timedelta(hours=i)}
        for i, (n, b) in enumerate(inbox)]}
    for it in plan["INBOX"]:
        if it["name"].startswith("twin"):  # twins: same bytes, same flags, same INTERNALDATE
            it.update(flags=("\\Seen",), date=DEFAULT_DATE)
    plan["Dates"] = [{"name": f"date {d.isoformat()}", "msg": _m(f"date {d.isoformat()}"), "flags": (), "date": d}
                     for d in (D1970, D1999, D2038)]
    flag_sets = [(f,) for f in SYSTEM_FLAGS + KEYWORDS] + [SYSTEM_FLAGS + KEYWORDS, ()]
    plan["Flags"] = [{"name": f"flags {fs}", "msg": _m(f"flags {' '.join(fs) or 'none'}"), "flags": fs,
                      "date": DEFAULT_DATE} for fs in flag_sets]
    plan["L1/L2/L3/L4"] = [{"name": "level 4", "msg": _m("level 4"), "flags": ("\\Seen",), "date": DEFAULT_DATE}]
    plan[DEEP] = [{"name": "level 8", "msg": _m("level 8"), "flags": ("\\Flagged",), "date": DEFAULT_DATE}]
    for i, name in enumerate(UNICODE_FOLDERS):
        plan[name] = [{"name": f"in {name}", "msg": _m(f"in {name}", f"folder {name}\r\n".encode()),
                       "flags": CORPUS_FLAGS[i % len(CORPUS_FLAGS)], "date": DEFAULT_DATE}]
    plan["Big"] = [{"name": "20 MB", "msg": _big_message(), "flags": ("\\Seen",), "date": DEFAULT_DATE}]
    return plan


def _to_inbox_layout(name: str) -> str:
    return "INBOX" if name == "INBOX" else "INBOX." + name.replace("/", ".")


def _by_subject(snap: Counter, word: bytes) -> list[tuple]:
    return [m for m in snap.elements() if word in m[0].split(b"\r\n\r\n", 1)[0]]


def test_generated_hostile_cases_both_directions(dovecot, new_user, tmp_path):
    s, i = dovecot("slash"), dovecot("inbox")
    src, mid, back = new_user(s), new_user(i), new_user(s)
    plan = _generated_plan()
    before_seed = time.time()
    refused = _raw_seed(src, plan)
    after_seed = time.time()
    assert refused == [], refused

    # Snapshot the source once (the 20 MB message makes this the expensive part).
    src_snap = {f: snapshot(src, f) for f in plan}
    for f, items in plan.items():
        assert sum(src_snap[f].values()) == len(items), f

    # The hostile traits really are on the source (else the copy would prove nothing).
    inbox = src_snap["INBOX"]
    bodies = [m[0] for m in inbox.elements()]
    assert any(b"before\x80after" in b for b in bodies)  # NUL is served as 0x80 in BODY[] (Dovecot)
    assert any(b"left\rright\r\n" in b for b in bodies)  # a lone CR is kept
    assert any(b"line one\r\nline two\r\n" in b for b in bodies)  # bare LF stored as CRLF
    assert any(b"caf\xe9 cr\xe8me" in b for b in bodies)
    assert any("Jürgen".encode() in b for b in bodies)
    assert any(len(line) > 200_000 for b in bodies for line in b.split(b"\r\n"))
    assert any(b"lvl-30-boundary" in b for b in bodies)
    assert max(inbox.values()) == 2  # the byte-identical twins are two messages
    big = next(iter(src_snap["Big"]))
    assert big[0] == _big_message() and len(big[0]) > 20_000_000
    # INTERNALDATE: Dovecot keeps 1970-01-02 and 1999-12-31 23:59:59 +0100 as sent. 2038-01-19 is in
    # the future, and Dovecot 2.3 replaces a future INTERNALDATE by the time of the APPEND, so the
    # source holds the seeding time there; what must survive the copy is that instant.
    dates = sorted(m[2] for m in src_snap["Dates"].elements())
    assert dates[:2] == [_ts(D1970), _ts(D1999)] == [86400, 946681199]
    assert int(before_seed) - 1 <= dates[2] <= after_seed + 1, (dates, _ts(D2038))
    flags_seen = {fl for m in src_snap["Flags"].elements() for fl in m[1]}
    assert flags_seen == set(SYSTEM_FLAGS + KEYWORDS)

    # ---- slash -> inbox ('INBOX.' prefix, '.' separator)
    expected = {f: (_to_inbox_layout(f), len(items)) for f, items in plan.items()}
    r1 = import_job(src, mid, tmp_path, journal=tmp_path / "j1.sqlite")
    _check_report(r1, expected)
    mid_folders = folders(mid)
    for f, (tf, _n) in expected.items():
        assert tf in mid_folders, (tf, sorted(mid_folders))
        got = snapshot(mid, tf)
        assert got == src_snap[f], (f, tf, _diff(src_snap[f], got))
    # parents of nested folders exist on the target
    for parent in ("INBOX.L1", "INBOX.L1.L2.L3", "INBOX.L1.L2.L3.L4.L5.L6.L7", "INBOX.日本語", "INBOX.Q&A"):
        assert parent in mid_folders, (parent, sorted(mid_folders))
    assert not any(n.startswith("INBOX.INBOX") for n in mid_folders)

    r1b = import_job(src, mid, tmp_path, journal=tmp_path / "j1.sqlite")
    _check_rerun(r1b, expected)

    # ---- inbox -> slash (the copy above is now the source): back to the original names
    back_expected = {_to_inbox_layout(f): (f, len(items)) for f, items in plan.items()}
    r2 = import_job(mid, back, tmp_path, journal=tmp_path / "j2.sqlite")
    _check_report(r2, back_expected)
    for f in plan:
        got = snapshot(back, f)
        assert got == src_snap[f], (f, _diff(src_snap[f], got))

    r2b = import_job(mid, back, tmp_path, journal=tmp_path / "j2.sqlite")
    _check_rerun(r2b, back_expected)
    for f, items in plan.items():
        assert count(back, f) == len(items), f
        assert count(mid, _to_inbox_layout(f)) == len(items), f


def _diff(want: Counter, got: Counter) -> dict:
    def short(ms: Counter) -> list:
        return [(m[0][:120] + (b"...(%d bytes)" % len(m[0]) if len(m[0]) > 120 else b""), m[1], m[2], k)
                for m, k in ms.items()]
    return {"missing": short(want - got), "extra": short(got - want)}


# --------------------------------------------------------------------------- 3. a refused message

def test_message_refused_by_target_is_reported_and_not_retried_forever(dovecot, new_user, tmp_path):
    from migrate.local.maildir import MaildirEndpoint
    from migrate.models import AppendItem

    src_dir = tmp_path / "src"
    ep = MaildirEndpoint(src_dir, create=True)
    good = [
        (_m("good one", b"first\r\n", mid="<good1@hostile.test>"), ("\\Seen",), datetime(2011, 3, 4, 5, 6, 7, tzinfo=UTC)),
        (_m("good two", b"second\r\n", mid="<good2@hostile.test>"), ("\\Flagged", "$Forwarded"),
         datetime(2012, 4, 5, 6, 7, 8, tzinfo=UTC)),
        (_m("good three", b"third\r\n", mid=None), (), datetime(2013, 5, 6, 7, 8, 9, tzinfo=UTC)),
    ]
    items = [AppendItem(b, f, d) for b, f, d in good]
    items.insert(1, AppendItem(b"", ("\\Seen",), datetime(2014, 1, 1, tzinfo=UTC)))  # 0 bytes: Dovecot says NO
    results = ep.append("INBOX", items)
    assert all(r.ok for r in results), results
    assert len(list(src_dir.glob("cur/*")) + list(src_dir.glob("new/*"))) == 4

    dst = new_user(dovecot("slash"))

    def run():
        return run_import(ImportRequest(source=SideOptions("source", maildir=src_dir, interactive=False),
                                        target=side("target", dst), journal=tmp_path / "j.sqlite",
                                        progress=False, retry_base=0.05))

    t0 = time.monotonic()
    r = run()
    assert time.monotonic() - t0 < 30  # a permanent refusal is not retried with long back-offs
    assert r.exit_code == 1, (r.status, r.error)  # 1 = done, but some messages failed
    assert r.error is None, r.error
    fr = _folder_report(r, "INBOX")
    assert (fr.target, fr.copied, fr.failed) == ("INBOX", 3, 1)
    assert (r.totals.copied, r.totals.failed) == (3, 1)
    assert len(fr.failures) == 1
    reason = fr.failures[0].reason
    assert reason.strip(), fr.failures
    assert "zero byte" in reason.lower(), reason  # Dovecot: "Can't save a zero byte message"
    want = Counter((b, tuple(sorted(f)), _ts(d)) for b, f, d in good)
    assert snapshot(dst, "INBOX") == want

    r2 = run()
    assert r2.exit_code == 1, (r2.status, r2.error)
    fr2 = _folder_report(r2, "INBOX")
    assert (fr2.copied, fr2.failed) == (0, 1)
    assert (r2.totals.copied, r2.totals.failed) == (0, 1)
    assert fr2.failures and "zero byte" in fr2.failures[0].reason.lower(), fr2.failures
    assert snapshot(dst, "INBOX") == want


# --------------------------------------------------------------------------- 4. NUL under BINARY

def _binary_bodies(user, folder: str) -> list[bytes]:
    """BINARY.PEEK[] of every message (RFC 3516): the stored bytes with NUL as NUL. imapclient
    cannot parse the literal8 answer (~{n}), imaplib's raw uid() can."""
    with user.client() as c:
        c.select_folder(folder, readonly=True)
        typ, data = c._imap.uid("FETCH", "1:*", "(BINARY.PEEK[])")
    assert typ == "OK", data
    return sorted(part[1] for part in data if isinstance(part, tuple))


def test_nul_byte_survives_under_binary_fetch(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    body = _m("nul", b"before\x00after\r\n")
    assert _raw_seed(src, {"INBOX": [{"name": "NUL", "msg": body}]}) == []
    assert _binary_bodies(src, "INBOX") == [body]  # the source really holds the NUL byte
    r = import_job(src, dst, tmp_path)
    assert (r.exit_code, r.totals.copied) == (0, 1), (r.status, r.error)
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")  # BODY[] view: equal either way
    assert _binary_bodies(dst, "INBOX") == [body]  # the stored bytes: NUL, not 0x80
