"""The core promises against real Dovecot servers: nothing lost, nothing doubled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.mailbox import append, count, folders, import_job, msg, snapshot

pytestmark = pytest.mark.dovecot

LAYOUTS = [("slash", "dot"), ("dot", "inbox"), ("inbox", "slash"), ("slash", "inbox")]


def _seed_tree(u, sep: str, prefix: str) -> dict[str, int]:
    """A small tree: nested, empty, non-ASCII folders, flags, keywords and dates."""
    p = prefix
    layout = {
        "INBOX": 5,
        f"{p}Archive{sep}2023": 3,
        f"{p}Archive{sep}2024{sep}Q1": 2,
        f"{p}Entwürfe-Test": 2,
        f"{p}日本語": 1,
        f"{p}R&D 🚀": 1,
        f"{p}Empty": 0,
    }
    n = 0
    for folder, k in layout.items():
        if k == 0:
            with u.client() as c:
                c.create_folder(folder)
        for _ in range(k):
            n += 1
            flags = [(), (b"\\Seen",), (b"\\Seen", b"\\Flagged", b"$Forwarded"), (b"\\Answered", b"Custom_1"),
                     (b"\\Draft", b"\\Deleted")][n % 5]
            append(u, folder, msg(n), flags=flags, date=datetime(2000 + n, 1 + n % 12, 2, 3, 4, 5, tzinfo=UTC))
    return layout


def _target_name(src_name: str, src, dst) -> str:
    if src_name == "INBOX":
        return "INBOX"
    parts = src_name[len(src.prefix):].split(src.separator)
    return dst.prefix + dst.separator.join(parts)


@pytest.mark.parametrize(("src_flavor", "dst_flavor"), LAYOUTS)
def test_copy_tree_between_layouts(dovecot, new_user, tmp_path, src_flavor, dst_flavor):
    s, d = dovecot(src_flavor), dovecot(dst_flavor)
    src, dst = new_user(s), new_user(d)
    layout = _seed_tree(src, s.separator, s.prefix)

    report = import_job(src, dst, tmp_path)
    assert report.exit_code == 0, report.error
    assert report.totals.copied == sum(layout.values())
    tfolders = folders(dst)
    for name in layout:
        tname = _target_name(name, s, d)
        assert tname in tfolders, (tname, sorted(tfolders))
        assert snapshot(dst, tname) == snapshot(src, name), name
    assert not any("INBOX.INBOX" in f for f in tfolders)
    # Parent of a nested folder exists (as a folder or \Noselect parent).
    assert _target_name(f"{s.prefix}Archive{s.separator}2024", s, d) in tfolders

    again = import_job(src, dst, tmp_path)
    assert again.exit_code == 0
    assert again.totals.copied == 0
    assert again.totals.skipped_duplicates == sum(layout.values())
    for name in layout:
        assert snapshot(dst, _target_name(name, s, d)) == snapshot(src, name)


def test_dedupe_rules(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    twin = msg(1)
    append(src, "INBOX", twin)
    append(src, "INBOX", twin)  # byte-identical twins: both arrive
    append(src, "INBOX", msg(2, mid="<shared@x>", body="first variant"))
    append(src, "INBOX", msg(3, mid="<shared@x>", subject="other", body="second variant"))
    append(src, "INBOX", msg(4, mid="<same@x>", subject="s", body="A"))
    append(src, "INBOX", msg(4, mid="<same@x>", subject="s", body="B"))  # same ID, date, from, subject
    for i in range(4):  # no Message-ID, same headers, different text: never collapsed
        append(src, "INBOX", msg(9, mid=None, subject="draft", body=f"draft text {i}"))
    append(src, "Other", msg(1))  # same message in a second folder arrives there too

    r = import_job(src, dst, tmp_path)
    assert r.exit_code == 0
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    assert count(dst, "INBOX") == 10
    assert snapshot(dst, "Other") == snapshot(src, "Other")

    # A new twin appears on the source: exactly one more copy.
    append(src, "INBOX", twin)
    r2 = import_job(src, dst, tmp_path)
    assert r2.totals.copied == 1
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_preexisting_target_messages_not_copied_again(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(5):
        append(src, "INBOX", msg(i))
    append(dst, "INBOX", msg(0))  # already there before the first run (no journal knows it)
    append(dst, "INBOX", msg(1))
    r = import_job(src, dst, tmp_path)
    assert (r.totals.copied, r.totals.skipped_duplicates) == (3, 2)
    assert count(dst, "INBOX") == 5
    # A fresh journal (lost state): the ledger is rebuilt from the target, nothing doubles.
    r2 = import_job(src, dst, tmp_path, journal=tmp_path / "other.sqlite")
    assert r2.totals.copied == 0
    assert count(dst, "INBOX") == 5


def test_flag_changes_are_synced_on_rerun(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(4):
        append(src, "INBOX", msg(i))
    import_job(src, dst, tmp_path)
    with src.client() as c:
        c.select_folder("INBOX")
        uids = c.search("ALL")
        c.add_flags(uids[:2], [b"\\Seen", b"$Forwarded"])
        c.add_flags(uids[3:], [b"\\Deleted"])  # marked deleted on the source: kept, never expunged
    r = import_job(src, dst, tmp_path)
    assert r.totals.copied == 0
    assert r.totals.flags_updated == 3
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_deleted_flag_kept_and_source_untouched(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    append(src, "INBOX", msg(1), flags=[b"\\Deleted"])
    append(src, "INBOX", msg(2))
    before = snapshot(src, "INBOX")
    import_job(src, dst, tmp_path)
    assert snapshot(src, "INBOX") == before  # nothing set \Seen, nothing expunged
    assert snapshot(dst, "INBOX") == before


def test_dry_run_writes_nothing(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(3):
        append(src, "Projects", msg(i))
    before = folders(dst)
    r = import_job(src, dst, tmp_path, dry_run=True, report_path=tmp_path / "r.json")
    assert r.status == "dry-run"
    proj = next(f for f in r.folders if f.source == "Projects")
    assert (proj.target, proj.copied) == ("Projects", 3)
    assert folders(dst) == before
    assert not (tmp_path / "journal.sqlite").exists()
    assert not (tmp_path / "r.json").exists()


def test_include_exclude_and_map_folder(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    append(src, "Trash", msg(1))
    append(src, "Keep", msg(2))
    append(src, "Old Stuff", msg(3))
    r = import_job(src, dst, tmp_path, exclude=["Trash"], map_folder={"Old Stuff": "Archive/Old"})
    assert r.exit_code == 0
    assert count(dst, "Trash") == 0
    assert count(dst, "Keep") == 1
    assert count(dst, "Archive/Old") == 1


def test_special_folders_map_onto_target_special_folders(dovecot, new_user, tmp_path):
    s, d = dovecot("slash"), dovecot("dot")
    src, dst = new_user(s), new_user(d)
    append(src, "Sent", msg(1))
    append(src, "Trash", msg(2))
    append(src, "Junk", msg(3))
    import_job(src, dst, tmp_path)
    names = folders(dst)
    assert count(dst, "Sent Items") == 1 and "Sent" not in names
    assert count(dst, "Deleted Items") == 1 and "Trash" not in names
    assert count(dst, "Junk E-mail") == 1 and "Junk" not in names


def test_localized_special_names_without_special_use(dovecot, new_user, tmp_path):
    s, d = dovecot("nospecial"), dovecot("slash")
    src, dst = new_user(s), new_user(d)
    append(src, "Gesendet", msg(1))
    append(src, "Papierkorb", msg(2))
    import_job(src, dst, tmp_path)
    names = folders(dst)
    assert count(dst, "Sent") == 1 and "Gesendet" not in names
    assert count(dst, "Trash") == 1 and "Papierkorb" not in names


def test_target_separator_inside_a_name_part(dovecot, new_user, tmp_path):
    s, d = dovecot("slash"), dovecot("dot")
    src, dst = new_user(s), new_user(d)
    # One level named "v1.2" on a '/' server: on a '.' target it must not become two levels.
    append(src, "Releases/v1.2", msg(1))
    r = import_job(src, dst, tmp_path)
    assert r.exit_code == 0
    assert count(dst, "Releases.v1_2") == 1
    assert "Releases.v1" not in folders(dst)


def test_tilde_folder_renamed(dovecot, new_user, tmp_path):
    from migrate.local.maildir import MaildirEndpoint
    from migrate.models import AppendItem
    src_dir = tmp_path / "src"
    ep = MaildirEndpoint(src_dir, create=True)
    ep.create_folder("~backup")
    ep.append("~backup", [AppendItem(msg(1), (), None)])
    dst = new_user(dovecot("slash"))
    from migrate.api import ImportRequest, run_import
    from migrate.sides import SideOptions
    from tests.support.mailbox import side
    r = run_import(ImportRequest(source=SideOptions("source", maildir=src_dir, interactive=False),
                                 target=side("target", dst), journal=tmp_path / "j.sqlite", progress=False))
    assert r.exit_code == 0, r.error
    assert r.renamed_folders and r.renamed_folders[0]["wanted"] == "~backup"
    assert count(dst, r.renamed_folders[0]["target"]) == 1


def test_source_folder_cap_is_reported(dovecot, new_user, tmp_path):
    """Yahoo shows at most 10,000 messages per folder: a folder at the cap says so, with the fix."""
    import dataclasses

    from migrate.api import ImportRequest, spec_for
    from migrate.engine.job import Job
    from migrate.sides import build_side
    from tests.support.mailbox import side

    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(3):
        append(src, "Big", msg(i))
    append(src, "Small", msg(9))
    req = ImportRequest(source=side("source", src), target=side("target", dst), journal=tmp_path / "j.sqlite",
                        progress=False)
    spec = dataclasses.replace(spec_for(req, build_side(req.source), build_side(req.target)),
                               source_folder_cap=3, source_export_host="export.example.test")
    r = Job(spec).run()
    notes = {f.source: f.note or "" for f in r.folders}
    assert "--source-host export.example.test" in notes["Big"]
    assert "at most" not in notes["Small"]
    assert r.totals.copied == 4
