"""Folder names against real Dovecot: names a target refuses, and a mapping that never moves.

* A name the target refuses is retried under ever safer names (sanitized, strict characters, plain
  ASCII); a folder no name works for fails alone: its messages are counted failed, every other
  folder is copied, the job ends "partial" (exit 1), never "interrupted".
* A folder's target is decided once (journal table ``folder_map``) and reused by every re-run:
  no ``Archive`` -> ``ARCHIVE`` jump, no ``_backup (2)``, ``(3)``... on each run.
"""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from migrate.api import ImportRequest, run_import
from migrate.sides import SideOptions
from tests.support.imap_proxy import ImapAnswerProxy
from tests.support.mailbox import append, count, folders, import_job, msg, side

pytestmark = pytest.mark.dovecot

# On the wire a name is quoted (a '"' in it is sent as '\"') and modified UTF-7 ('&' is '&-',
# non-ASCII is '&...-'): this refuses every name with a quote, a backslash or anything non-ASCII.
UNSAFE_CREATE = rb'^CREATE "(?:[^"\\]|\\.)*(?:\\["\\]|&)'


def _names(user) -> set[str]:
    return set(folders(user))


# --- (2) names the target refuses ----------------------------------------------------------------


def test_refused_names_fall_back_to_ever_safer_names(dovecot, new_user, tmp_path):
    """A strict target refuses '"', '\\' and anything non-ASCII (emoji included), and so refuses the
    first fallback too: the folders still arrive, under plain-ASCII names, children following."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    append(src, "INBOX", msg(1))
    append(src, 'Projekt "Q1"', msg(2))
    append(src, "R&D 🚀 Müller", msg(3))
    append(src, "R&D 🚀 Müller/Sub", msg(4))
    append(src, "Plain", msg(5))
    with ImapAnswerProxy("127.0.0.1", srv.port, watch=rb"^CREATE ") as proxy:
        proxy.answer(UNSAFE_CREATE, every=True, reply=b"NO [CANNOT] Invalid mailbox name")
        r = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port})
        again = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port})
        assert len(proxy.answered()) >= 3  # names as they are, then first fallbacks, were refused
    assert (r.status, r.exit_code) == ("ok", 0), r.error
    assert r.totals.copied == 5 and r.totals.failed == 0
    got = {f.source: f.target for f in r.folders}
    assert got['Projekt "Q1"'] == "Projekt _Q1_"
    assert got["R&D 🚀 Müller"] == "R_D Muller"
    assert got["R&D 🚀 Müller/Sub"] == "R_D Muller/Sub"  # follows its parent's new name
    for target in ("Projekt _Q1_", "R_D Muller", "R_D Muller/Sub", "Plain", "INBOX"):
        assert count(dst, target) == 1, target
    wanted = {x["wanted"]: x["target"] for x in r.renamed_folders}
    assert wanted['Projekt "Q1"'] == "Projekt _Q1_" and wanted["R&D 🚀 Müller"] == "R_D Muller"
    # a re-run reuses those names: nothing new, nothing copied
    assert (again.status, again.totals.copied) == ("ok", 0), again.error
    assert {f.source: f.target for f in again.folders} == got
    assert not any("(2)" in n for n in _names(dst))


def test_a_folder_no_name_works_for_fails_alone(dovecot, new_user, tmp_path):
    """Every CREATE of one folder is refused, whatever the name: that folder's messages are
    counted failed with the server's answer, the others are copied, the job is "partial"."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    append(src, "INBOX", msg(1))
    for i in range(3):
        append(src, "Bad Folder", msg(10 + i))
    append(src, "Good", msg(20))
    append(src, "Good/Child", msg(21))
    with ImapAnswerProxy("127.0.0.1", srv.port, watch=rb"^CREATE ") as proxy:
        proxy.answer(rb'^CREATE "?Bad', every=True, reply=b"NO [NOPERM] Folder Bad is not allowed here")
        r = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port}, report_path=tmp_path / "r.json")
        assert len(proxy.answered()) >= 2  # more than one name was tried
    assert (r.status, r.exit_code) == ("partial", 1), r.error
    assert r.error is None
    bad = next(f for f in r.folders if f.source == "Bad Folder")
    assert bad.target is None and bad.failed == 3 and bad.copied == 0
    assert "Folder Bad is not allowed here" in (bad.note or "")
    assert any(x.folder == "Bad Folder" and "not allowed here" in x.reason for x in r.failures())
    assert r.totals.copied == 3 and r.totals.failed == 3
    for target in ("INBOX", "Good", "Good/Child"):
        assert count(dst, target) == 1, target
    assert not any(n.startswith("Bad") for n in _names(dst))
    assert (tmp_path / "r.json").exists()


# --- (3) the mapping does not move between runs ------------------------------------------------------


def test_reruns_keep_the_archive_mapping(dovecot, new_user, tmp_path):
    """The target has no SPECIAL-USE: run 1 creates Archive (for the source's \\Archive) and
    ARCHIVE (a plain folder). Runs 2 and 3 must not map Archive onto ARCHIVE, nor create
    'ARCHIVE (2)': same folders, every message where run 1 put it, nothing copied."""
    src = new_user(dovecot("slash"))
    dst = new_user(dovecot("nospecial"))
    append(src, "INBOX", msg(1))
    append(src, "Archive", msg(2))
    append(src, "ARCHIVE", msg(3))
    append(src, "ARCHIVE", msg(4))
    first = import_job(src, dst, tmp_path)
    assert (first.status, first.totals.copied) == ("ok", 4), first.error
    after_first = _names(dst)
    placed = {f.source: f.target for f in first.folders}
    assert (placed["Archive"], placed["ARCHIVE"]) == ("Archive", "ARCHIVE")
    for run in (2, 3):
        r = import_job(src, dst, tmp_path)
        assert (r.status, r.totals.copied, r.totals.failed) == ("ok", 0, 0), (run, r.error)
        assert {f.source: f.target for f in r.folders} == placed, run
        assert _names(dst) == after_first, run
    assert (count(dst, "Archive"), count(dst, "ARCHIVE"), count(dst, "INBOX")) == (1, 2, 1)


def test_reruns_keep_a_renamed_folder(dovecot, new_user, tmp_path):
    """Dovecot refuses a leading '~': '~backup' becomes '_backup' once, and stays '_backup'
    (not '_backup (2)', '(3)'...) on every re-run; its child follows it."""
    from migrate.local.maildir import MaildirEndpoint
    from migrate.models import AppendItem

    src_dir = tmp_path / "src"
    ep = MaildirEndpoint(src_dir, create=True)
    for i, name in enumerate(("~backup", "~backup/old", "Notes")):
        ep.create_folder(name)
        ep.append(name, [AppendItem(msg(i), (), None)])
    dst = new_user(dovecot("slash"))
    req = ImportRequest(source=SideOptions("source", maildir=src_dir, interactive=False),
                        target=side("target", dst), journal=tmp_path / "j.sqlite", progress=False)
    first = run_import(req)
    assert (first.status, first.totals.copied) == ("ok", 3), first.error
    placed = {f.source: f.target for f in first.folders}
    assert placed["~backup"] == "_backup" and placed["~backup/old"] == "_backup/old"
    after_first = _names(dst)
    for run in (2, 3):
        r = run_import(req)
        assert (r.status, r.totals.copied) == ("ok", 0), (run, r.error)
        assert {f.source: f.target for f in r.folders} == placed, run
        assert _names(dst) == after_first, run
    assert (count(dst, "_backup"), count(dst, "_backup/old"), count(dst, "Notes")) == (1, 1, 1)
    db = sqlite3.connect(tmp_path / "j.sqlite")
    rows = dict(db.execute("SELECT source_folder, target_folder FROM folder_map"))
    db.close()
    assert rows["~backup"] == "_backup" and rows["~backup/old"] == "_backup/old"
    # Without its journal (deleted, or another --journal) a run finds '_backup' again too.
    lost = run_import(dataclasses.replace(req, journal=tmp_path / "new.sqlite"))
    assert (lost.status, lost.totals.copied) == ("ok", 0), lost.error
    assert {f.source: f.target for f in lost.folders} == placed and _names(dst) == after_first


def test_dry_run_reads_the_recorded_mapping_and_writes_nothing(dovecot, new_user, tmp_path):
    from migrate.local.maildir import MaildirEndpoint
    from migrate.models import AppendItem

    src_dir = tmp_path / "src"
    ep = MaildirEndpoint(src_dir, create=True)
    ep.create_folder("~backup")
    ep.append("~backup", [AppendItem(msg(1), (), None)])
    dst = new_user(dovecot("slash"))
    req = ImportRequest(source=SideOptions("source", maildir=src_dir, interactive=False),
                        target=side("target", dst), journal=tmp_path / "j.sqlite", progress=False)
    assert {f.source: f.target for f in run_import(req).folders}["~backup"] == "_backup"
    # A settled copy of that journal (the run's own file may still be checkpointed by its last
    # connection closing): the dry run reads it, and must leave it byte for byte as it was.
    journal = tmp_path / "copy.sqlite"
    a, b = sqlite3.connect(tmp_path / "j.sqlite"), sqlite3.connect(journal)
    a.backup(b)
    a.close()
    b.close()
    files = sorted(p.name for p in tmp_path.glob("copy.sqlite*"))
    before = journal.read_bytes(), _names(dst)
    dry = run_import(dataclasses.replace(req, journal=journal, dry_run=True))
    assert dry.status == "dry-run"
    assert {f.source: f.target for f in dry.folders}["~backup"] == "_backup"  # as recorded
    assert (journal.read_bytes(), _names(dst)) == before
    assert sorted(p.name for p in tmp_path.glob("copy.sqlite*")) == files  # no -wal/-shm either


# --- CREATE-SPECIAL-USE (RFC 6154) ----------------------------------------------------------------


def test_special_folder_is_created_with_its_use_where_the_server_offers_it(dovecot, new_user, tmp_path):
    """A special folder the target lacks is created with ``CREATE name (USE (\\Archive))`` on a
    server that advertises CREATE-SPECIAL-USE, and lists with that attribute; elsewhere a plain
    CREATE is sent (RFC 6154: never the USE option to a server that did not offer it)."""
    src = new_user(dovecot("slash"))
    dst = new_user(dovecot("nospecial"))
    append(src, "Archive", msg(1))
    with dst.client() as c:
        offers = b"CREATE-SPECIAL-USE" in c.capabilities()
    with ImapAnswerProxy("127.0.0.1", dst.server.port, watch=rb"^CREATE ") as proxy:
        r = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port})
        creates = [e[3] for e in proxy.events if e[3].upper().startswith(b"CREATE ")]
    assert r.exit_code == 0, r.error
    assert count(dst, "Archive") == 1
    archive = [c for c in creates if c.startswith(b'CREATE "Archive"') or c.startswith(b"CREATE Archive")]
    assert archive, creates
    if offers:
        assert b"(USE (\\Archive))" in archive[0]
        assert "\\Archive" in folders(dst)["Archive"]
    else:
        assert b"USE" not in archive[0].upper()


def test_create_special_use_command_and_its_fallback(dovecot, new_user):
    """The RFC 6154 command as sent to a real server: Dovecot 2.3 parses it (OK), though it
    advertises no CREATE-SPECIAL-USE and keeps no attribute, so the capability is granted on the
    client side here. A server that refuses the USE option gets a plain CREATE."""
    from migrate.imap import connect
    from tests.test_imap_endpoint import account

    user = new_user(dovecot("nospecial"))
    with ImapAnswerProxy("127.0.0.1", user.server.port, watch=rb"^CREATE ") as proxy:
        proxy.answer(rb'^CREATE "Refused" \(USE', every=True, reply=b"NO [USEATTR] \\Archive not supported")
        with connect(account(user, port=proxy.port)) as e:
            e.create_special_folder("Plain", "\\Archive")  # not offered: plain CREATE
            caps = e.capabilities()
            e._caps = dataclasses.replace(caps, raw=caps.raw | {"CREATE-SPECIAL-USE"})
            e.create_special_folder("Kept", "\\Archive")
            e.create_special_folder("Refused", "\\Archive")
        creates = [(kind, line) for _t, _c, kind, line in proxy.events]
    assert creates == [("forwarded", b'CREATE "Plain"'), ("forwarded", b'CREATE "Kept" (USE (\\Archive))'),
                       ("answered", b'CREATE "Refused" (USE (\\Archive))'), ("forwarded", b'CREATE "Refused"')]
    assert {"Plain", "Kept", "Refused"} <= _names(user)


# --- against real Cyrus 3.6: it advertises CREATE-SPECIAL-USE and refuses '"' in names ----------------


@pytest.mark.cyrus
def test_archive_created_on_a_create_special_use_server_carries_its_attribute(dovecot, cyrus, new_user, tmp_path):
    src = new_user(dovecot("slash"))
    dst = new_user(cyrus("slash"))
    with dst.client() as c:
        assert b"CREATE-SPECIAL-USE" in c.capabilities()
    append(src, "INBOX", msg(1))
    append(src, "Archive", msg(2))
    first = import_job(src, dst, tmp_path)
    assert (first.status, first.totals.copied) == ("ok", 2), first.error
    assert {f.source: f.target for f in first.folders}["Archive"] == "Archive"
    assert "\\Archive" in folders(dst)["Archive"]
    after_first = _names(dst)
    for run in (2, 3):
        r = import_job(src, dst, tmp_path, journal=tmp_path / f"other-{run}.sqlite")  # found by its attribute
        assert (r.status, r.totals.copied) == ("ok", 0), (run, r.error)
        assert _names(dst) == after_first
    assert count(dst, "Archive") == 1


@pytest.mark.cyrus
def test_a_name_cyrus_refuses_arrives_under_a_safer_name(dovecot, cyrus, new_user, tmp_path):
    src = new_user(dovecot("slash"))
    dst = new_user(cyrus("slash"))
    append(src, 'Projekt "Q1"', msg(1))
    append(src, 'Projekt "Q1"/Sub', msg(2))
    r = import_job(src, dst, tmp_path)
    assert (r.status, r.exit_code) == ("ok", 0), r.error
    got = {f.source: f.target for f in r.folders}
    assert (got['Projekt "Q1"'], got['Projekt "Q1"/Sub']) == ("Projekt _Q1_", "Projekt _Q1_/Sub")
    assert (count(dst, "Projekt _Q1_"), count(dst, "Projekt _Q1_/Sub")) == (1, 1)
    again = import_job(src, dst, tmp_path)
    assert (again.status, again.totals.copied) == ("ok", 0) and {f.source: f.target for f in again.folders} == got
