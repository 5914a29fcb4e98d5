"""A hostile mailbox for cross-server tests and the cross-server benchmark.

The real mail of ``shared/corpus/real`` plus generated edge cases (NUL, bare LF, lone CR, 8-bit
headers, no Message-ID, shared Message-IDs, twins, long header lines, deep MIME, no final CRLF,
odd dates, every flag) spread over folders with awkward names (quotes, emoji, CJK, ``&``, ``~``,
``%``, separators inside a name part, case twins, deep nesting).

Folders are given as tuples of name parts, so each server gets them with its own separator and
prefix. ``seed`` appends exact bytes (one literal per message) and says what the source refused;
``account`` reads a whole account back; ``judge`` sorts every source message into copied exactly,
stored differently (found by dedupe key, bytes changed by the target), failed (in the report),
or lost silently (none of these: must never happen).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from migrate.dedupe.keys import key_of_raw

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "real"

SYSTEM = ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted")
KEYWORDS = ("$Forwarded", "$MDNSent", "$Junk", "NonJunk", "Custom_Keyword")
FLAG_SETS = [(), ("\\Seen",), ("\\Seen", "\\Answered"), ("\\Flagged", "$Forwarded"), ("\\Draft",),
             ("\\Deleted", "\\Seen"), ("$Junk",), ("NonJunk", "\\Seen", "Custom_Keyword"), SYSTEM + KEYWORDS]
BASE_DATE = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))

# 60 folders (INBOX included), as name parts.
FOLDERS: list[tuple[str, ...]] = [
    ("INBOX",), ("Sent",), ("Drafts",), ("Trash",), ("Junk",), ("Archive",), ("ARCHIVE",),
    ("Work",), ("Work", "2023"), ("Work", "2024"), ("Work", "2024", "Q1"), ("Work", "2024", "Q2"),
    ("Entwürfe-Test",), ("Éléments envoyés",), ("日本語",), ("日本語", "子フォルダ"), ("Ελληνικά",),
    ("Русский",), ("emoji 📬",), ("R&D 🚀",), ("a&b",), ("Q&A", "R&D"), ("say \"hi\"",), ("back\\slash",),
    ("100% done",), ("star*",), ("~backup",), ("_underscore",), ("-dash",), (".dotted",), ("trailing.",),
    ("v1.2",), ("Releases", "v1.2"), ("a/b",), ("spaces  inside",), (" lead",), ("Mixed Case",),
    ("mixed case",), ("INBOX-like",), ("Inbox", "child"), ("L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8"),
    ("Long " + "x" * 180,), ("tab\tname",), ("😀😁😂",), ("中文", "文件夹"), ("한국어",), ("עברית",),
    ("العربية",), ("ñandú",), ("Empty",), ("Empty", "Child"), ("Noselect parent", "leaf"), ("#hash",),
    ("@at",), ("[brackets]",), ("{braces}",), ("semi;colon",), ("comma,name",), ("apostrophe's",),
    ("plus+sign",),
]
assert len(FOLDERS) == 60, len(FOLDERS)


@dataclass
class Item:
    name: str
    msg: bytes
    flags: tuple[str, ...] = ()
    date: datetime = BASE_DATE


def _m(subject: bytes, body: bytes = b"body\r\n", *, mid: bytes | None = b"auto", extra: bytes = b"",
       sep: bytes = b"\r\n", tag: int = 0) -> bytes:
    h = []
    if mid == b"auto":
        mid = b"<gen%d.%d@hostile.test>" % (tag, len(body))
    if mid:
        h.append(b"Message-ID: " + mid)
    h += [b"From: Alice <alice@example.test>", b"To: bob@example.test",
          b"Date: Tue, 2 Jan 2024 10:%02d:%02d +0000" % (tag // 60 % 60, tag % 60), b"Subject: " + subject]
    return sep.join(h) + sep + extra + sep + body


def _nested(depth: int, tag: int) -> bytes:
    part = b"Content-Type: text/plain\r\n\r\nleaf %d\r\n" % depth
    for level in range(depth, 0, -1):
        b = b"b%02d-%d" % (level, tag)
        part = (b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"\r\n\r\n--" + b + b"\r\n" + part
                + b"\r\n--" + b + b"--\r\n")
    return b"Message-ID: <nested%d@hostile.test>\r\nSubject: nested\r\nMIME-Version: 1.0\r\n" % tag + part


def edge_cases(tag: int) -> list[Item]:
    """One of each hostile kind; ``tag`` makes the set unique (several sets per mailbox)."""
    twin = _m(b"twin %d" % tag, b"same bytes\r\n", tag=tag)
    return [
        Item("no Message-ID A", _m(b"no id", b"draft one %d\r\n" % tag, mid=None, tag=tag)),
        Item("no Message-ID B", _m(b"no id", b"draft two %d\r\n" % tag, mid=None, tag=tag)),
        Item("shared id 1", _m(b"shared", b"variant one\r\n", mid=b"<shared%d@hostile.test>" % tag, tag=tag)),
        Item("shared id 2", _m(b"shared", b"variant two, longer\r\n", mid=b"<shared%d@hostile.test>" % tag, tag=tag)),
        Item("twin 1", twin, ("\\Seen",)),
        Item("twin 2", twin, ("\\Seen",)),
        Item("NUL byte", _m(b"nul %d" % tag, b"before\x00after\r\n", tag=tag)),
        Item("bare LF", _m(b"bare lf %d" % tag, b"line one\nline two\n", sep=b"\n", tag=tag)),
        Item("lone CR", _m(b"lone cr %d" % tag, b"left\rright\r\n", tag=tag)),
        Item("8-bit UTF-8 header", _m("Grüße aus 東京 📬 %d".encode() % tag, b"utf8\r\n", tag=tag,
                                      extra="X-Name: Jürgen Müller\r\n".encode())),
        Item("8-bit Latin-1 header", _m(b"caf\xe9 %d" % tag, b"latin1\r\n", tag=tag,
                                        extra=b"Comments: Fran\xe7ois\r\n")),
        Item("no Message-ID, 8-bit", _m(b"sans id \xc3\xa9 %d" % tag, b"text\r\n", mid=None, tag=tag)),
        Item("long header line", _m(b"long %d" % tag, b"x\r\n", tag=tag, extra=b"X-Long: " + b"y" * 20_000 + b"\r\n")),
        Item("20-level MIME", _nested(20, tag)),
        Item("no final CRLF", _m(b"no final crlf %d" % tag, b"ends here", tag=tag)),
        Item("header only", _m(b"header only %d" % tag, b"", tag=tag)),
        Item("8-bit body", _m(b"8bit body %d" % tag, "Käse, crème, 日本\r\n".encode(), tag=tag,
                              extra=b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")),
        Item("date 1970", _m(b"d1970 %d" % tag, tag=tag), (), datetime(1970, 1, 2, tzinfo=UTC)),
        Item("date 2038", _m(b"d2038 %d" % tag, tag=tag), (), datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC)),
        Item("every flag", _m(b"flags %d" % tag, tag=tag), SYSTEM + KEYWORDS),
        Item("unterminated header", b"Subject: unterminated %d" % tag),  # Cyrus: "invalid header"
    ]


def _corpus() -> list[Item]:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in (".md", ".txt", ".py"))
    out = []
    for i, p in enumerate(files):
        data = p.read_bytes()
        if not data.strip():
            continue
        out.append(Item(f"corpus {p.relative_to(CORPUS)}", data, FLAG_SETS[i % len(FLAG_SETS)],
                        BASE_DATE + timedelta(minutes=i)))
    return out


def filler(i: int, rnd: random.Random) -> Item:
    body = (b"filler line %d\r\n" % i) * rnd.randint(2, 40)
    return Item(f"filler {i}", _m(b"filler %d" % i, body, tag=100_000 + i), FLAG_SETS[i % len(FLAG_SETS)],
                BASE_DATE + timedelta(hours=i))


def mailbox(total: int = 3000, *, corpus: int | None = None, seed: int = 11) -> dict[tuple[str, ...], list[Item]]:
    """``total`` messages or a little more: the corpus (its first ``corpus`` files), edge-case
    sets, then filler, spread over the 60 folders (two left empty)."""
    rnd = random.Random(seed)
    items = _corpus()[:corpus]
    tag = 0
    while len(items) < total * 0.4:
        items += edge_cases(tag)
        tag += 1
    i = 0
    while len(items) < total:
        items.append(filler(i, rnd))
        i += 1
    plan: dict[tuple[str, ...], list[Item]] = {f: [] for f in FOLDERS}
    empty = {("Empty",), ("Noselect parent",)}
    targets = [f for f in FOLDERS if f not in empty]
    weights = [40 if f == ("INBOX",) else 8 if len(f) == 1 else 3 for f in targets]
    first_set = {id(it) for it in edge_cases_in(items, 0)}
    for item in items:  # the first edge-case set in INBOX, which every server has
        plan[("INBOX",) if id(item) in first_set else rnd.choices(targets, weights)[0]].append(item)
    return _pair_up(plan)  # twins and shared ids stay together in one folder


def edge_cases_in(items: list[Item], tag: int) -> list[Item]:
    names = {it.name for it in edge_cases(tag)}
    wanted = set(edge_cases(tag)[i].msg for i in range(len(names)))
    return [it for it in items if it.name in names and it.msg in wanted]


def _pair_up(plan: dict[tuple[str, ...], list[Item]]) -> dict[tuple[str, ...], list[Item]]:
    home: dict[bytes, tuple[str, ...]] = {}
    out: dict[tuple[str, ...], list[Item]] = {f: [] for f in plan}
    for folder, items in plan.items():
        for it in items:
            if it.name.startswith(("twin", "shared")):
                k = it.msg if it.name.startswith("twin") else it.msg.split(b"\r\n", 1)[0]
                folder = home.setdefault(k, folder)
            out[folder].append(it)
    return out


# --- servers ----------------------------------------------------------------------------------


def layout(client) -> tuple[str, str]:
    """(personal namespace prefix, separator) of a logged-in imapclient."""
    ns = client.namespace()
    prefix, sep = ns.personal[0] if ns.personal else ("", "/")
    return prefix, sep or "/"


def name_for(parts: tuple[str, ...], prefix: str, sep: str) -> str:
    if parts == ("INBOX",):
        return "INBOX"
    return prefix + sep.join(p.replace(sep, "_") for p in parts)


@dataclass
class Seeded:
    folders: dict[str, list[Item]] = field(default_factory=dict)  # server name -> items stored
    refused_folders: dict[str, str] = field(default_factory=dict)  # name -> answer
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (folder, item, answer)

    @property
    def messages(self) -> int:
        return sum(len(v) for v in self.folders.values())


def seed(user, plan: dict[tuple[str, ...], list[Item]]) -> Seeded:
    """Append every item as one exact literal (``multiappend`` of one message: imaplib's
    ``append`` would rewrite line endings). What the server refuses is left out and listed."""
    out = Seeded()
    with user.client() as c:
        prefix, sep = layout(c)
        for parts, items in plan.items():
            name = name_for(parts, prefix, sep)
            if name != "INBOX":
                try:
                    if not c.folder_exists(name):
                        c.create_folder(name)
                except Exception as exc:  # noqa: BLE001 - recorded: the server refuses this name
                    out.refused_folders[name] = str(exc)
                    continue
            stored = out.folders.setdefault(name, [])
            for it in items:
                typ, data = _append(c, name, it)
                if typ != "OK" and b"\n" in it.msg.replace(b"\r\n", b""):
                    # A strict server (Cyrus) refuses bare LF: hold the message as a mail client
                    # would have delivered it there, with CRLF line ends.
                    it = Item(it.name, re.sub(rb"\r?\n", b"\r\n", it.msg), it.flags, it.date)
                    typ, data = _append(c, name, it)
                if typ == "OK":
                    stored.append(it)
                else:
                    out.refused.append((name, it.name, str(data)))
    return out


def _append(c, folder: str, it: Item) -> tuple[str, object]:
    try:
        return c.multiappend(folder, [{"msg": it.msg, "flags": it.flags, "date": it.date}])
    except Exception as exc:  # noqa: BLE001 - the server's refusal, recorded by the caller
        return "NO", exc


@dataclass(frozen=True)
class Stored:
    body: bytes
    flags: tuple[str, ...]
    date: int


def account(user) -> dict[str, list[Stored]]:
    """Every selectable folder of an account: exact bytes (BINARY where the server has it, so a
    NUL reads as NUL), flags without \\Recent, INTERNALDATE as a UTC instant."""
    out: dict[str, list[Stored]] = {}
    with user.client() as c:
        c.normalise_times = False
        binary = b"BINARY" in c.capabilities()
        for flags, _d, name in c.list_folders():
            if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                continue
            c.select_folder(name, readonly=True)
            uids = c.search("ALL")
            rows: list[Stored] = []
            for i in range(0, len(uids), 200):
                for uid, v in c.fetch(uids[i:i + 200], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]).items():
                    body = v.get(b"BODY[]") or b""
                    if body.startswith(b"~{"):  # a literal8 (Cyrus, NUL inside): imapclient can't
                        body = _raw_item(c, uid, "BODY.PEEK[]") or body
                    if binary and b"\x80" in body:  # Dovecot shows a stored NUL as 0x80 in BODY[]
                        body = _binary(c, uid) or body
                    d = v[b"INTERNALDATE"]
                    ts = int((d.astimezone(UTC) if d.tzinfo else d.replace(tzinfo=UTC)).timestamp())
                    fl = tuple(sorted(f.decode() for f in v[b"FLAGS"] if f != b"\\Recent"))
                    rows.append(Stored(body, fl, ts))
            out[name] = rows
    return out


def _binary(c, uid: int) -> bytes | None:
    return _raw_item(c, uid, "BINARY.PEEK[]")


def _raw_item(c, uid: int, item: str) -> bytes | None:
    """One fetch item through imaplib (imapclient's parser does not take a ``~{n}`` literal8)."""
    try:
        typ, data = c._imap.uid("FETCH", str(uid), f"({item})")
    except Exception:  # noqa: BLE001 - e.g. a transfer encoding the server cannot decode
        return None
    if typ != "OK":
        return None
    return next((part[1] for part in data if isinstance(part, tuple) and len(part) == 2), None)


@dataclass
class Verdict:
    source: int = 0
    exact: int = 0  # bytes, flags and INTERNALDATE as on the source
    stored_differently: int = 0  # found by dedupe key, bytes changed by the target
    failed: int = 0  # in the report's failures, with a reason
    lost: int = 0  # none of the above: must be 0
    flags_differ: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    lost_examples: list[str] = field(default_factory=list)


def _reason_class(reason: str) -> str:
    text = reason.split(": ", 1)[-1] if ": " in reason else reason
    return text[:90]


def judge(src: dict[str, list[Stored]], dst: dict[str, list[Stored]], report) -> Verdict:
    """Account every source message of every folder the report maps: exact (bytes, flags,
    INTERNALDATE), same bytes with other flags (a keyword the target cannot store), stored
    differently (same dedupe key, other bytes), failed (counted in the report), else lost."""
    v = Verdict()
    for f in report.folders:
        for x in f.failures:
            v.reasons[_reason_class(x.reason)] += 1
    for f in report.folders:
        rows = src.get(f.source, [])
        v.source += len(rows)
        target = dst.get(f.target, []) if f.target is not None else []
        exact = Counter((r.body, r.flags, r.date) for r in target)
        same_bytes = Counter(r.body for r in target)
        by_key = Counter(key_of_raw(r.body) for r in target)
        rest: list[Stored] = []
        for r in rows:  # exact first, so that a near match never takes an exact one's place
            if exact[(r.body, r.flags, r.date)] > 0:
                exact[(r.body, r.flags, r.date)] -= 1
                same_bytes[r.body] -= 1
                by_key[key_of_raw(r.body)] -= 1
                v.exact += 1
            else:
                rest.append(r)
        fails = f.failed
        for r in rest:
            k = key_of_raw(r.body)
            if same_bytes[r.body] > 0:
                same_bytes[r.body] -= 1
                by_key[k] -= 1
                v.flags_differ += 1
            elif by_key[k] > 0:
                by_key[k] -= 1
                v.stored_differently += 1
            elif fails > 0:
                fails -= 1
                v.failed += 1
            else:
                v.lost += 1
                if len(v.lost_examples) < 10:
                    v.lost_examples.append(f"{f.source}: {r.body[:120]!r}")
    return v
