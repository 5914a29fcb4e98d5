"""The write gate (migrate/gate.py) and the local stores behind it: a closed gate refuses and
records every kind of write, a source's sealed gate raises, a source Maildir keeps its UIDs in the
journal and nothing beside it."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest

from migrate.api import ImportRequest, run_import
from migrate.gate import KINDS, GatedEndpoint, SourceWrite, WriteGate, job_gate
from migrate.local import MaildirEndpoint
from migrate.local._maildir_index import UidBook
from migrate.models import AppendItem, AppendResult
from migrate.notify.options import NotifyOptions
from migrate.sides import SideOptions, build_side


def msg(n: int) -> bytes:
    return b"Message-ID: <%d@example.org>\r\nSubject: number %d\r\n\r\nbody %d\r\n" % (n, n, n)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for p in [root, *sorted(root.rglob("*"))] if root.exists() else []:
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
        out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    return out


def plain_maildir(path: Path, names: list[str]) -> Path:
    """A Maildir another program wrote: message files only, no uid list of ours."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (path / "cur" / name).write_bytes(msg(i))
    return path


# --- the gate -------------------------------------------------------------------------------------


def test_closed_gate_refuses_and_records_every_kind_of_write() -> None:
    gate = WriteGate(open=False)
    assert [gate.allow(kind, f"thing {i}") for i, kind in enumerate(KINDS)] == [False] * len(KINDS)
    assert [(s.kind, s.what) for s in gate.skipped] == [(k, f"thing {i}") for i, k in enumerate(KINDS)]
    assert set(KINDS) == {"create-folder", "append", "set-flags", "journal", "report", "mail", "file"}

    open_gate = WriteGate()
    assert all(open_gate.allow(kind, "x") for kind in KINDS) and open_gate.skipped == []


def test_a_source_gate_raises_for_every_kind_of_write() -> None:
    gate = WriteGate.for_source("maildir:/srv/old")
    assert gate.sealed and not gate.open
    for kind in KINDS:
        with pytest.raises(SourceWrite, match="maildir:/srv/old"):
            gate.allow(kind, "x")
    assert WriteGate(open=True, source="imap:x").open is False  # a source is never open


def test_gated_endpoint_passes_reads_and_gates_writes() -> None:
    calls: list[str] = []

    class Fake:
        label = "fake"

        def status(self, folder: str) -> str:
            calls.append(f"status {folder}")
            return "st"

        def create_folder(self, name: str) -> None:
            calls.append(f"create {name}")

        def append(self, folder: str, items: list[AppendItem]) -> list[AppendResult]:
            calls.append(f"append {folder}")
            return [AppendResult(ok=True, uid=1)]

        def set_flags(self, folder: str, uid: int, flags: list[str]) -> None:
            calls.append(f"flags {folder}")

    closed = WriteGate(open=False)
    ep = GatedEndpoint(Fake(), closed)
    assert ep.status("A") == "st" and ep.label == "fake"
    ep.create_folder("A")
    assert [r.ok for r in ep.append("A", [AppendItem(msg(1), (), None)])] == [False]
    ep.set_flags("A", 1, ["\\Seen"])
    assert calls == ["status A"]
    assert [s.kind for s in closed.skipped] == ["create-folder", "append", "set-flags"]

    ep = GatedEndpoint(Fake(), WriteGate())
    ep.create_folder("B")
    assert ep.append("B", [AppendItem(msg(1), (), None)])[0].ok
    ep.set_flags("B", 1, [])
    assert calls[1:] == ["create B", "append B", "flags B"]

    ep = GatedEndpoint(Fake(), WriteGate.for_source("fake"))
    for write in (lambda: ep.create_folder("C"), lambda: ep.append("C", []), lambda: ep.set_flags("C", 1, [])):
        with pytest.raises(SourceWrite):
            write()
    assert calls[4:] == []


def test_job_gate_follows_the_target_side_and_dry_run(tmp_path: Path) -> None:
    class Spec:
        def __init__(self, factory: object, dry_run: bool) -> None:
            self.dst_factory, self.dry_run = factory, dry_run

    closed = WriteGate(open=False)
    side = build_side(SideOptions("target", maildir=tmp_path / "t", interactive=False), closed)
    assert side.gate is closed and job_gate(Spec(side.factory, True)) is closed
    assert job_gate(Spec(lambda: None, True)).open is False  # a factory without a gate
    assert job_gate(Spec(lambda: None, False)).open is True
    assert job_gate(Spec(side.factory, False)).open is True  # never trust a gate that disagrees


# --- Maildir behind a closed gate -----------------------------------------------------------------


def test_closed_gate_maildir_target_is_not_created_and_reads_as_empty(tmp_path: Path) -> None:
    gate = WriteGate(open=False)
    path = tmp_path / "out" / "Maildir"
    ep = MaildirEndpoint(path, create=True, gate=gate)
    assert [f.name for f in ep.list_folders()] == ["INBOX"]
    assert ep.status("INBOX").exists == 0 and list(ep.fetch_meta("INBOX")) == []
    ep.create_folder("Sent")
    assert [r.ok for r in ep.append("INBOX", [AppendItem(msg(1), (), None)])] == [False]
    ep.set_flags("INBOX", 1, ["\\Seen"])
    ep.close()
    assert not (tmp_path / "out").exists()
    assert [s.kind for s in gate.skipped if s.kind != "file"] == ["create-folder", "create-folder", "append",
                                                                   "set-flags"]


def test_closed_gate_existing_maildir_numbers_new_files_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "md"
    MaildirEndpoint(path, create=True).append("INBOX", [AppendItem(msg(1), (), None)])
    (path / "new" / "2000000000.other.host").write_bytes(msg(2))  # delivered by someone else
    before = tree(path)
    gate = WriteGate(open=False)
    ep = MaildirEndpoint(path, create=True, gate=gate)
    assert [m.uid for m in ep.fetch_meta("INBOX")] == [1, 2]
    assert tree(path) == before  # no uid list line, no lock file
    assert [s.kind for s in gate.skipped] == ["file"]


# --- a source Maildir -----------------------------------------------------------------------------


def source(path: Path, journal: Path | None, job: WriteGate | None = None) -> MaildirEndpoint:
    book = UidBook(str(path.resolve()), job or WriteGate(), journal)
    return MaildirEndpoint(path, gate=WriteGate.for_source(f"maildir:{path}"), uid_book=book)


def test_source_maildir_is_never_written_and_keeps_its_uids_in_the_journal(tmp_path: Path) -> None:
    path = plain_maildir(tmp_path / "src", ["1000000003.c.host:2,S", "1000000001.a.host:2,", "1000000002.b.host"])
    journal = tmp_path / "state" / "j.sqlite"
    before = tree(path)

    ep = source(path, journal)
    st = ep.status("INBOX")
    assert (st.exists, st.uidnext) == (3, 4)
    assert [m.body for m in ep.fetch_messages("INBOX", [1, 2, 3])] == [msg(1), msg(2), msg(0)]
    for write in (lambda: ep.create_folder("X"), lambda: ep.append("INBOX", [AppendItem(msg(9), (), None)]),
                  lambda: ep.set_flags("INBOX", 1, ["\\Seen"])):
        with pytest.raises(SourceWrite):
            write()
    ep.close()
    assert tree(path) == before
    with sqlite3.connect(journal) as c:
        rows = c.execute("SELECT folder, filename_base, uid FROM maildir_uids ORDER BY uid").fetchall()
    assert rows == [("INBOX", "1000000001.a.host", 1), ("INBOX", "1000000002.b.host", 2),
                    ("INBOX", "1000000003.c.host", 3)]

    # A new run: the same UIDs; a new file gets the next; a gone file's UID is never reused.
    (path / "cur" / "1000000000.z.host:2,S").write_bytes(msg(7))  # sorts first, numbered last
    (path / "cur" / "1000000002.b.host").unlink()
    before = tree(path)
    again = source(path, journal)
    assert again.status("INBOX").uidvalidity == st.uidvalidity
    assert [(m.uid, m.body) for m in again.fetch_messages("INBOX", range(1, 10))] == \
        [(1, msg(1)), (3, msg(0)), (4, msg(7))]
    again.close()
    assert tree(path) == before


def test_source_maildir_adopts_its_own_uid_list_read_only(tmp_path: Path) -> None:
    path = tmp_path / "src"
    writer = MaildirEndpoint(path, create=True)  # a Maildir we once wrote as a target
    writer.append("INBOX", [AppendItem(msg(i), (), None) for i in range(3)])
    uidvalidity = writer.status("INBOX").uidvalidity
    (path / "cur" / "1.new.host:2,").write_bytes(msg(5))  # not in its uid list
    before = tree(path)
    ep = source(path, tmp_path / "j.sqlite")
    assert ep.status("INBOX").uidvalidity == uidvalidity
    assert [(m.uid, m.body) for m in ep.fetch_messages("INBOX", range(1, 10))] == \
        [(1, msg(0)), (2, msg(1)), (3, msg(2)), (4, msg(5))]
    assert tree(path) == before


def test_two_source_connections_agree_on_uids(tmp_path: Path) -> None:
    path = plain_maildir(tmp_path / "src", ["1000000001.a.host:2,"])
    journal = tmp_path / "j.sqlite"
    a, b = source(path, journal), source(path, journal)
    assert a.status("INBOX").uidnext == 2
    (path / "cur" / "1000000002.b.host:2,").write_bytes(msg(1))
    (path / "cur" / "1000000003.c.host:2,").write_bytes(msg(2))
    assert [m.uid for m in b.fetch_meta("INBOX")] == [1, 2, 3]
    assert [(m.uid, m.body) for m in a.fetch_messages("INBOX", [1, 2, 3])] == [(1, msg(0)), (2, msg(1)), (3, msg(2))]


def test_source_in_a_dry_run_numbers_in_memory_and_opens_no_journal(tmp_path: Path) -> None:
    path = plain_maildir(tmp_path / "src", ["1000000002.b.host:2,", "1000000001.a.host:2,"])
    before = tree(tmp_path)
    job = WriteGate(open=False)
    ep = source(path, tmp_path / "state" / "j.sqlite", job)
    assert [(m.uid, m.body) for m in ep.fetch_messages("INBOX", [1, 2])] == [(1, msg(1)), (2, msg(0))]
    assert tree(tmp_path) == before
    assert [s.kind for s in job.skipped] == ["journal"]


# --- a whole dry run ------------------------------------------------------------------------------


def test_dry_run_import_passes_every_write_through_one_closed_gate(tmp_path: Path) -> None:
    src = plain_maildir(tmp_path / "src", ["1000000001.a.host:2,S", "1000000002.b.host:2,"])
    (src / ".Work" / "cur").mkdir(parents=True)
    (src / ".Work" / "maildirfolder").touch()
    (src / ".Work" / "cur" / "1000000003.c.host:2,").write_bytes(msg(3))
    before = tree(tmp_path)
    gate = WriteGate(open=False)
    req = ImportRequest(source=SideOptions("source", maildir=src, interactive=False),
                        target=SideOptions("target", maildir=tmp_path / "out", interactive=False),
                        dry_run=True, journal=tmp_path / "state" / "j.sqlite", report_path=tmp_path / "r.json",
                        progress=False, notify=NotifyOptions(enabled=True))
    report = run_import(req, sides=(build_side(req.source, gate), build_side(req.target, gate)))
    assert report.status == "dry-run" and report.totals.copied == 3
    assert tree(tmp_path) == before
    kinds = [s.kind for s in gate.skipped]
    assert {"journal", "create-folder", "append", "report", "mail"} <= set(kinds)
    assert ("create-folder", "maildir:" + str(tmp_path / "out") + ": Work") in \
        [(s.kind, s.what) for s in gate.skipped]
    with pytest.raises(ValueError):  # sides whose gate says otherwise are a bug, not a dry run
        run_import(req, sides=(build_side(req.source), build_side(req.target)))
