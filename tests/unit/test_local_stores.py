"""Local stores behind the Endpoint interface: Maildir++ (read/write) and mbox (read-only)."""

from __future__ import annotations

import importlib.util
import mailbox
import multiprocessing
import shutil
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migrate.accounts import LocalStore
from migrate.dedupe.keys import key_of, key_of_raw
from migrate.errors import FolderRefused, MessageError, UsageError
from migrate.local import MaildirEndpoint, MboxEndpoint, open_local
from migrate.local.maildir import decode_folder, encode_folder
from migrate.models import AppendItem

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "demo"

BODIES = [
    b"From: a@example.org\r\nSubject: crlf\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n",
    b"From: a@example.org\nSubject: bare lf\n\nbody\n",
    b"Subject: nul\r\n\r\nbefore\x00after\r\n",
    "Subject: Grüße\r\nFrom: Jörg <j@example.org>\r\n\r\n8-bit äöü\r\n".encode(),
    b"Subject: no final newline\r\n\r\nlast line",
    b"",
]


def item(body: bytes, flags: tuple[str, ...] = (), date: datetime | None = None) -> AppendItem:
    return AppendItem(body=body, flags=flags, internaldate=date)


def msg(n: int) -> bytes:
    return b"Message-ID: <%d@example.org>\r\nSubject: number %d\r\n\r\nbody %d\r\n" % (n, n, n)


# --- Maildir --------------------------------------------------------------------------------


def test_append_then_fetch_is_exact(tmp_path: Path) -> None:
    ep = MaildirEndpoint(tmp_path / "md", create=True)
    flag_sets = [("\\Seen",), ("\\Answered", "\\Flagged", "$Forwarded"), ("$MDNSent", "Custom_1"),
                 ("\\Draft", "\\Deleted"), (), ("\\Seen", "\\Recent")]
    dates = [datetime(1990, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC),
             datetime(2001, 1, 1, 12, 0, tzinfo=UTC) + timedelta(microseconds=123456),
             datetime(1965, 6, 1, tzinfo=UTC), datetime(2020, 2, 29, 12, 0, 0), None]
    items = [item(b, f, d) for b, f, d in zip(BODIES, flag_sets, dates, strict=True)]
    results = ep.append("INBOX", items)
    assert [r.ok for r in results] == [True] * len(BODIES)
    assert [r.uid for r in results] == list(range(1, len(BODIES) + 1))
    uidvalidity = ep.status("INBOX").uidvalidity
    assert {r.uidvalidity for r in results} == {uidvalidity}

    got = {m.uid: m for m in ep.fetch_messages("INBOX", [r.uid for r in results if r.uid] + [999])}
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    for uid, it in zip(range(1, 7), items, strict=True):
        assert got[uid].body == it.body
        assert set(got[uid].flags) == set(it.flags) - {"\\Recent"}
        if it.internaldate is not None:
            want = it.internaldate if it.internaldate.tzinfo else it.internaldate.replace(tzinfo=UTC)
            assert got[uid].internaldate == want
            assert got[uid].internaldate.tzinfo is not None
    metas = list(ep.fetch_meta("INBOX"))
    assert [m.uid for m in metas] == [1, 2, 3, 4, 5, 6]
    assert [m.size for m in metas] == [len(b) for b in BODIES]
    assert metas[1].flags == ("\\Answered", "\\Flagged", "$Forwarded")
    st = ep.status("INBOX")
    assert (st.exists, st.uidnext) == (6, 7)


def test_fetch_meta_keys_match_dedupe(tmp_path: Path) -> None:
    ep = MaildirEndpoint(tmp_path / "md", create=True)
    folded = (b"Received: x\r\nSubject: a long\r\n folded subject\r\nX-Other: 1\r\nMessage-ID:\r\n <f@x>\r\n"
              b"Date: Mon, 1 Jan 2001 00:00:00 +0000\r\nFrom: a@x\r\n\r\nbody\r\n")
    no_id = b"From: a@x\nTo: b@x\nCc: c@x\nSubject: s\n\n" + b"0123456789" * 1000
    ep.append("INBOX", [item(folded), item(no_id), item(BODIES[1]), item(b"Subject: no body")])
    metas = list(ep.fetch_meta("INBOX"))
    assert metas[0].header == (b"Subject: a long\r\n folded subject\r\nMessage-ID:\r\n <f@x>\r\n"
                               b"Date: Mon, 1 Jan 2001 00:00:00 +0000\r\nFrom: a@x\r\n")
    assert metas[0].text_head is None
    assert metas[1].header == b"From: a@x\nTo: b@x\nCc: c@x\nSubject: s\n"
    assert metas[1].text_head == (b"0123456789" * 1000)[:4096]
    assert metas[3].text_head == b""
    for meta, body in zip(metas, [folded, no_id, BODIES[1], b"Subject: no body"], strict=True):
        assert key_of(meta) == key_of_raw(body)
    bare = list(ep.fetch_meta("INBOX", [2], with_keys=False))[0]
    assert (bare.header, bare.text_head) == (b"", None)


def test_uids_stable_across_reopen_and_external_files(tmp_path: Path) -> None:
    path = tmp_path / "md"
    ep = MaildirEndpoint(path, create=True)
    ep.create_folder("Work")
    ep.append("Work", [item(msg(i)) for i in range(5)])
    before = [(m.uid, m.body) for m in ep.fetch_messages("Work", range(1, 10))]
    status = ep.status("Work")
    ep.close()

    # files delivered by someone else (e.g. an MDA) get the next UIDs in sorted order
    (path / ".Work" / "new" / "2000000000.B.host").write_bytes(msg(101))
    (path / ".Work" / "cur" / "1000000000.A.host:2,S").write_bytes(msg(100))
    ep2 = MaildirEndpoint(path)
    assert [(m.uid, m.body) for m in ep2.fetch_messages("Work", range(1, 6))] == before
    st2 = ep2.status("Work")
    assert (st2.uidvalidity, st2.exists, st2.uidnext) == (status.uidvalidity, 7, 8)
    assert [(m.uid, m.body) for m in ep2.fetch_messages("Work", [6, 7])] == [(6, msg(100)), (7, msg(101))]
    assert list(ep2.fetch_meta("Work", [6]))[0].flags == ("\\Seen",)

    # an expunged message's UID is never reused
    next(p for p in (path / ".Work" / "cur").iterdir() if p.name.startswith("1000000000")).unlink()
    ep3 = MaildirEndpoint(path)
    assert ep3.status("Work").exists == 6
    assert ep3.append("Work", [item(msg(7))])[0].uid == 8
    assert [m.uid for m in ep3.fetch_meta("Work")] == [1, 2, 3, 4, 5, 7, 8]


def test_set_flags_renames_and_keeps_uid(tmp_path: Path) -> None:
    ep = MaildirEndpoint(tmp_path / "md", create=True)
    [r] = ep.append("INBOX", [item(msg(1), ("\\Seen", "$Forwarded"))])
    assert r.uid is not None
    ep.set_flags("INBOX", r.uid, ["\\Flagged", "\\Answered", "Custom_1", "\\Recent"])
    [m] = ep.fetch_messages("INBOX", [r.uid])
    assert m.body == msg(1)
    assert m.flags == ("\\Answered", "\\Flagged", "Custom_1")
    assert MaildirEndpoint(tmp_path / "md").status("INBOX").exists == 1
    ep.set_flags("INBOX", r.uid, [])
    assert list(ep.fetch_meta("INBOX"))[0].flags == ()
    with pytest.raises(MessageError):
        ep.set_flags("INBOX", 42, ["\\Seen"])
    # a letter we do not map (P = passed) survives a flag change
    cur = tmp_path / "md" / "cur"
    [f] = list(cur.iterdir())
    f.rename(cur / (f.name + "P"))
    ep2 = MaildirEndpoint(tmp_path / "md")
    ep2.set_flags("INBOX", r.uid, ["\\Seen"])
    assert [p.name.split(":2,")[1] for p in cur.iterdir()] == ["PS"]


def test_many_keywords_and_invalid_keyword(tmp_path: Path) -> None:
    ep = MaildirEndpoint(tmp_path / "md", create=True)
    kws = tuple(f"kw{i}" for i in range(30)) + ("$Forwarded", "$MDNSent", "$Junk")
    res = ep.append("INBOX", [item(msg(1), kws), item(msg(2), ("bad keyword",)), item(msg(3), ("kw29", "\\Seen"))])
    assert [r.ok for r in res] == [True, False, True]
    assert "keyword" in (res[1].error or "")
    fresh = MaildirEndpoint(tmp_path / "md")
    metas = list(fresh.fetch_meta("INBOX"))
    assert set(metas[0].flags) == set(kws)
    assert set(metas[1].flags) == {"\\Seen", "kw29"}
    assert len((tmp_path / "md" / "dovecot-keywords").read_text().splitlines()) == 26


def _append_worker(path: str, worker: int, n: int) -> list[int]:
    ep = MaildirEndpoint(Path(path))
    uids: list[int] = []
    for start in range(0, n, 5):
        res = ep.append("Shared", [item(b"X-Worker: %d\r\nX-N: %d\r\n\r\nbody\r\n" % (worker, i))
                                   for i in range(start, start + 5)])
        uids += [r.uid for r in res if r.ok and r.uid is not None]
    return uids


def test_concurrent_append_from_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "md"
    MaildirEndpoint(path, create=True).create_folder("Shared")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_append_worker, [(str(path), 1, 60), (str(path), 2, 60)])
    all_uids = results[0] + results[1]
    assert len(all_uids) == 120 and len(set(all_uids)) == 120
    ep = MaildirEndpoint(path)
    assert ep.status("Shared").exists == 120
    bodies = {m.uid: m.body for m in ep.fetch_messages("Shared", all_uids)}
    assert sorted(bodies) == sorted(all_uids)
    assert {b for b in bodies.values()} == {b"X-Worker: %d\r\nX-N: %d\r\n\r\nbody\r\n" % (w, i)
                                            for w in (1, 2) for i in range(60)}
    assert list((path / ".Shared" / "tmp").iterdir()) == []


def test_crash_leftovers_are_ignored_or_repaired(tmp_path: Path) -> None:
    path = tmp_path / "md"
    ep = MaildirEndpoint(path, create=True)
    ep.append("INBOX", [item(msg(1)), item(msg(2))])
    (path / "tmp" / "1700000000.crashed.host").write_bytes(b"Subject: half written")
    uidlist = path / "mailmigrate-uidlist"
    with open(uidlist, "ab") as f:
        f.write(b"3 17000")  # torn last line
    ep2 = MaildirEndpoint(path)
    st = ep2.status("INBOX")
    assert (st.exists, st.uidnext) == (2, 3)
    assert ep2.append("INBOX", [item(msg(3))])[0].uid == 3
    assert uidlist.read_bytes().endswith(b"\n") and b"17000" not in uidlist.read_bytes()
    assert [m.body for m in MaildirEndpoint(path).fetch_messages("INBOX", [1, 2, 3])] == [msg(1), msg(2), msg(3)]


def test_folder_names_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "md"
    ep = MaildirEndpoint(path, create=True)
    names = ["Archive/2023", "v1.2/notes.txt", "Entwürfe", "日本語/子", "back\\slash", "INBOX/Sub", "Sent", "Trash"]
    for n in names:
        ep.create_folder(n)
    ep.create_folder("Sent")  # exists: no error
    ep.create_folder("inbox")
    assert (path / ".v1\\2e2.notes\\2etxt").is_dir()
    assert (path / ".back\\5cslash").is_dir()
    assert (path / ".Entw&APw-rfe").is_dir()  # modified UTF-7, as Dovecot names it
    listed = {f.name: f for f in MaildirEndpoint(path).list_folders()}
    assert set(listed) == set(names) | {"INBOX", "Archive", "v1.2", "日本語"}
    assert all(f.delimiter == "/" for f in listed.values())
    assert not listed["Archive"].selectable and "\\HasChildren" in listed["Archive"].flags
    assert listed["INBOX"].selectable and "\\HasChildren" in listed["INBOX"].flags
    assert listed["Sent"].special_use == "\\Sent" and listed["Trash"].special_use == "\\Trash"
    assert listed["Archive"].special_use is None
    for n in names:
        assert decode_folder(encode_folder(n)) == n
        ep.append(n, [item(msg(1))])
        assert ep.status(n).exists == 1
    assert ep.status("inbox").exists == 0 and encode_folder("Inbox") == ""
    for bad in ["A//B", "", "/x", "x/", "a\nb"]:
        with pytest.raises(FolderRefused):
            ep.create_folder(bad)
    with pytest.raises(FolderRefused):
        ep.status("Archive")  # \Noselect parent
    with pytest.raises(FolderRefused):
        ep.append("Nope", [item(msg(1))])
    (path / ".inbox").mkdir()  # not a canonical name: ignored, not listed twice
    (path / ".inbox" / "cur").mkdir()
    assert sum(f.name.upper() == "INBOX" for f in ep.list_folders()) == 1


def test_read_only_maildir_is_still_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "md"
    (path / "cur").mkdir(parents=True)
    for i in (3, 1, 2):
        (path / "cur" / f"100000000{i}.x.host:2,S").write_bytes(msg(i))

    def no_lock(_d: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("migrate.local.maildir.folder_lock", no_lock)
    ep = MaildirEndpoint(path)
    st = ep.status("INBOX")
    assert (st.exists, st.uidnext) == (3, 4) and st.uidvalidity > 0
    assert [m.body for m in ep.fetch_messages("INBOX", [1, 2, 3])] == [msg(1), msg(2), msg(3)]
    assert MaildirEndpoint(path).status("INBOX") == st  # same numbering from a fresh object
    assert not (path / "mailmigrate-uidlist").exists()


def test_not_a_maildir(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        MaildirEndpoint(tmp_path)
    with pytest.raises(UsageError):
        MaildirEndpoint(tmp_path / "missing")
    ep = open_local(LocalStore(kind="maildir", path=tmp_path / "new"), create=True)
    assert ep.capabilities().uidplus and ep.capabilities().multiappend and not ep.capabilities().condstore
    assert ep.namespace().delimiter == "/"


# --- mbox -----------------------------------------------------------------------------------

MBOX_MSGS = [
    # mboxrd: the stored >From / >>From lines are unquoted by one level
    b"From: a@x\nSubject: one\nStatus: RO\nX-Status: AF\nX-Keywords: $Forwarded Custom_1\n\n"
    b"From here on the line is not a separator\nFrom the desk of Bob, Jan 5\n>From quoted\n>>From twice\nend\n",
    b"From: b@x\r\nSubject: two\r\nMessage-ID: <2@x>\r\n\r\nnul \x00 byte and 8-bit \xe4\xf6\r\n",
    b"Subject: three, no trailing newline\n\nlast line",
]


def mbox_bytes() -> bytes:
    return (b"From alice@example.org Mon Jan  1 10:00:00 1990\n" + MBOX_MSGS[0]
            .replace(b"\n>From quoted", b"\n>>From quoted").replace(b"\n>>From twice", b"\n>>>From twice") + b"\n"
            + b"From MAILER-DAEMON Tue Feb 29 12:30:45 2000 +0100\n" + MBOX_MSGS[1] + b"\n"
            + b"From bob@example.org  Wed Dec 31 23:59:59 2031\n" + MBOX_MSGS[2])


def test_mbox_quoting_nul_and_missing_final_newline(tmp_path: Path) -> None:
    f = tmp_path / "mail.mbox"
    f.write_bytes(mbox_bytes())
    ep = MboxEndpoint(f)
    assert [x.name for x in ep.list_folders()] == ["INBOX"]
    st = ep.status("INBOX")
    assert (st.exists, st.uidnext) == (3, 4)
    got = list(ep.fetch_messages("INBOX", [3, 1, 2, 7]))
    assert [m.body for m in got] == MBOX_MSGS
    assert [m.internaldate for m in got] == [datetime(1990, 1, 1, 10, tzinfo=UTC),
                                             datetime(2000, 2, 29, 11, 30, 45, tzinfo=UTC),
                                             datetime(2031, 12, 31, 23, 59, 59, tzinfo=UTC)]
    assert got[0].flags == ("\\Answered", "\\Flagged", "\\Seen", "$Forwarded", "Custom_1")
    metas = list(ep.fetch_meta("INBOX"))
    assert [m.size for m in metas] == [len(b) for b in MBOX_MSGS]
    assert [m.flags for m in metas] == [m.flags for m in got]
    for meta, body in zip(metas, MBOX_MSGS, strict=True):
        assert key_of(meta) == key_of_raw(body)
    assert metas[1].text_head is None and metas[2].text_head == b"last line"
    assert MboxEndpoint(f).status("INBOX").uidvalidity == st.uidvalidity
    with pytest.raises(UsageError, match="read-only"):
        ep.append("INBOX", [item(msg(1))])
    with pytest.raises(UsageError, match="read-only"):
        ep.create_folder("X")
    with pytest.raises(UsageError, match="read-only"):
        ep.set_flags("INBOX", 1, [])
    with pytest.raises(FolderRefused):
        ep.status("Other")


def test_mbox_matches_stdlib_writer(tmp_path: Path) -> None:
    path = tmp_path / "std.mbox"
    box = mailbox.mbox(str(path))
    bodies = [msg(i) for i in range(5)] + [b"Subject: lf\n\nline\n\n\nwith blank lines at the end\n\n"]
    for b in bodies:
        box.add(b)
    box.flush()
    box.close()
    std = mailbox.mbox(str(path))
    expected = [std.get_bytes(k) for k in sorted(std.iterkeys())]
    assert expected == bodies
    ep = MboxEndpoint(path)
    assert [m.body for m in ep.fetch_messages("INBOX", range(1, 7))] == expected


def test_mbox_directory_tree(tmp_path: Path) -> None:
    root = tmp_path / "tb"
    (root / "Archives.sbd" / "2023.sbd").mkdir(parents=True)
    (root / "Local" / "Sub").mkdir(parents=True)
    one = b"From x Mon Jan  1 00:00:00 2001\nSubject: s\n\nb\n"
    for rel in ["Inbox", "Sent", "Archives", "Archives.sbd/2023", "Archives.sbd/2023.sbd/Q1", "Local/Sub/Deep"]:
        (root / rel).write_bytes(one)
    (root / "Trash").write_bytes(b"")  # empty folder
    (root / "Inbox.msf").write_bytes(b"// <!-- <mdb:mork:z v=\"1.4\"/> -->")
    (root / "popstate.dat").write_bytes(b"# POP3 State File")
    (root / ".hidden").write_bytes(one)
    ep = open_local(LocalStore(kind="mbox", path=root))
    listed = {f.name: f for f in ep.list_folders()}
    assert list(listed) == ["INBOX", "Archives", "Archives/2023", "Archives/2023/Q1", "Local", "Local/Sub",
                            "Local/Sub/Deep", "Sent", "Trash"]
    assert listed["Archives"].selectable and listed["Archives"].special_use == "\\Archive"
    assert not listed["Local"].selectable and not listed["Local/Sub"].selectable
    assert listed["Sent"].special_use == "\\Sent"
    assert ep.status("Archives/2023/Q1").exists == 1 and ep.status("Trash").exists == 0
    assert [m.body for m in ep.fetch_messages("Local/Sub/Deep", [1])] == [b"Subject: s\n\nb\n"]
    with pytest.raises(FolderRefused):
        ep.status("Local")
    with pytest.raises(UsageError):
        open_local(LocalStore(kind="mbox", path=root), create=True)
    with pytest.raises(UsageError):
        MboxEndpoint(root / "popstate.dat")


def test_big_mbox_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.mbox"
    filler = b"lorem ipsum dolor sit amet " * 150 + b"\n"
    with open(path, "wb") as f:
        for i in range(2000):
            f.write(b"From sender@example.org Sat Mar  2 10:%02d:00 2024\n" % (i % 60))
            f.write(msg(i) + b">From a quoted line\n" + filler + b"\n")
    size = path.stat().st_size
    assert size > 8_000_000
    ep = MboxEndpoint(path)
    tracemalloc.start()
    try:
        st = ep.status("INBOX")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert st.exists == 2000
    assert peak < size // 8  # offsets only, never the whole file
    want = {1: 0, 1000: 999, 2000: 1999}
    for m in ep.fetch_messages("INBOX", list(want)):
        assert m.body == msg(want[m.uid]) + b"From a quoted line\n" + filler
    metas = list(ep.fetch_meta("INBOX", [2000, 5]))
    assert [m.uid for m in metas] == [5, 2000]
    assert metas[1].header == b"Message-ID: <1999@example.org>\r\nSubject: number 1999\r\n"
    assert metas[1].size == len(msg(1999)) + len(b"From a quoted line\n") + len(filler)
    # a changed file is re-indexed with a new UIDVALIDITY
    with open(path, "ab") as f:
        f.write(b"From x Sat Mar  2 10:00:00 2024\n" + msg(2000))
    st2 = ep.status("INBOX")
    assert st2.exists == 2001 and st2.uidvalidity != st.uidvalidity


# --- bundled sample -------------------------------------------------------------------------

SAMPLE_COUNTS = {"INBOX": 16, "Sent": 6, "Drafts": 3, "Archive/2023": 6, "Archive/2024": 6,
                 "Entwürfe-Test": 3, "Projects/Empty": 0}


def _load_make_sample():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "scripts" / "make_sample.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_mailbox_loads(tmp_path: Path) -> None:
    copy = tmp_path / "demo"
    shutil.copytree(SAMPLE, copy)  # never write into the committed sample
    for empty in [d for d in copy.rglob("*") if d.is_dir() and not any(d.iterdir())]:
        empty.rmdir()  # as in a git checkout, which keeps no empty directories
    ep = MaildirEndpoint(copy)
    listed = {f.name: f for f in ep.list_folders()}
    assert set(listed) == set(SAMPLE_COUNTS) | {"Archive", "Projects"}
    assert not listed["Archive"].selectable and not listed["Projects"].selectable
    assert listed["Sent"].special_use == "\\Sent" and listed["Drafts"].special_use == "\\Drafts"
    assert {n: ep.status(n).exists for n in SAMPLE_COUNTS} == SAMPLE_COUNTS
    assert ep.status("INBOX").uidvalidity == 1600000001
    inbox = list(ep.fetch_messages("INBOX", range(1, 17)))
    bodies = [m.body for m in inbox]
    assert sum(b"\nMessage-ID:" not in b for b in bodies) == 1
    assert sum(b"<shared-id@example.net>" in b for b in bodies) == 2
    assert len(bodies) - len(set(bodies)) == 1  # the byte-identical twins
    assert sum(b"\r\n" not in b for b in bodies) == 1  # bare LF
    assert any("Grüße aus Köln".encode() in b for b in bodies)
    assert max(len(b) for b in bodies) > 50_000
    flags = {f for m in inbox for f in m.flags}
    assert {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "$Forwarded", "$MDNSent", "Custom_1"} <= flags
    total = sum(f.stat().st_size for f in SAMPLE.rglob("*") if f.is_file())
    assert total < 500_000
    assert ep.append("Projects/Empty", [item(msg(1))])[0].uid == 1  # tmp/ and cur/ come back


def test_sample_generator_is_deterministic_and_current(tmp_path: Path) -> None:
    counts = _load_make_sample().build_sample(tmp_path / "demo")
    assert counts == SAMPLE_COUNTS

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert tree(tmp_path / "demo") == tree(SAMPLE)
    # the freshly generated copy carries the intended INTERNALDATEs
    ep = MaildirEndpoint(tmp_path / "demo")
    dates = [m.internaldate for n in SAMPLE_COUNTS for m in ep.fetch_meta(n, with_keys=False)]
    assert min(d for d in dates if d) == datetime(1990, 3, 14, 9, 30, tzinfo=UTC)
    assert max(d for d in dates if d) == datetime(2030, 1, 1, 9, 30, tzinfo=UTC)
