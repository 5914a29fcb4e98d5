"""Folder names of a Maildir target: written as Dovecot writes them (modified UTF-7), so a real
Dovecot serving the written Maildir opens every folder; raw UTF-8 directories written by
earlier versions are still read and used."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient.imap_utf7 import decode as utf7_decode
from imapclient.imap_utf7 import encode as utf7_encode

from migrate.api import ImportRequest, run_import
from migrate.local import MaildirEndpoint
from migrate.local._maildir_layout import decode_folder, encode_folder, legacy_folder_dir
from migrate.models import AppendItem
from tests.support.mailbox import msg, side, snapshot

# Folder names (with "/" as the hierarchy) that need modified UTF-7, and plain ones.
NAMES = ["Entwürfe-Test", "日本語/子", "R&D", "Q&A/R&D", "Éléments envoyés", "emoji 📬", "Archive/2023"]
FLAGS = [(), (b"\\Seen",), (b"\\Seen", b"\\Flagged", b"$Label1"), (b"\\Answered",)]


# --- the codec ------------------------------------------------------------------------------


def test_dovecot_directory_names() -> None:
    assert encode_folder("Entwürfe-Test") == ".Entw&APw-rfe-Test"
    assert encode_folder("日本語/子") == ".&ZeVnLIqe-.&W1A-"
    assert encode_folder("R&D") == ".R&-D"
    assert encode_folder("Archive/2023") == ".Archive.2023"
    assert encode_folder("INBOX") == "" and encode_folder("inbox/Sub") == ".INBOX.Sub"
    # the raw UTF-8 form earlier versions wrote is still understood, and named
    assert decode_folder(".Entwürfe-Test") == "Entwürfe-Test"
    assert decode_folder(".R&D") == "R&D"
    assert legacy_folder_dir("Entwürfe-Test") == ".Entwürfe-Test"
    assert legacy_folder_dir("Archive/2023") is None  # ASCII without '&': one form only
    assert decode_folder(".Entw&APw-rfe-Test") == "Entwürfe-Test"


_part = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
    lambda s: "/" not in s and s.upper() != "INBOX")


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_part, min_size=1, max_size=3))
def test_round_trip_agrees_with_imap_modified_utf7(parts: list[str]) -> None:
    name = "/".join(parts)
    rel = encode_folder(name)
    assert decode_folder(rel) == name
    assert rel.isascii()  # what Dovecot expects in a Maildir++ directory name
    for part, enc in zip(parts, rel[1:].split("."), strict=True):
        # the same bytes an IMAP server puts on the wire (imapclient as the reference)
        unescaped = enc.replace("\\2e", ".").replace("\\5c", "\\")
        assert unescaped == utf7_encode(part).decode("ascii")
        assert utf7_decode(unescaped.encode()) == part
    old = legacy_folder_dir(name)
    if old is not None:
        assert decode_folder(old) == name


# --- an existing raw-UTF-8 target keeps working -------------------------------------------------


def test_legacy_utf8_directory_is_read_and_used(tmp_path: Path) -> None:
    root = tmp_path / "md"
    MaildirEndpoint(root, create=True)
    legacy = root / ".Entwürfe-Test"  # as an earlier version wrote it
    for sub in ("cur", "new", "tmp"):
        (legacy / sub).mkdir(parents=True)
    (legacy / "maildirfolder").touch()
    (legacy / "cur" / "1600000000.M1P1Q1.host:2,S").write_bytes(msg(1))
    ep = MaildirEndpoint(root)
    assert "Entwürfe-Test" in {f.name for f in ep.list_folders()}
    assert ep.status("Entwürfe-Test").exists == 1
    ep.create_folder("Entwürfe-Test")  # exists already: no second directory
    ep.append("Entwürfe-Test", [AppendItem(body=msg(2), flags=(), internaldate=None)])
    assert ep.status("Entwürfe-Test").exists == 2
    assert len(list((legacy / "cur").iterdir())) == 2
    assert not (root / ".Entw&APw-rfe-Test").exists()
    # a new folder gets Dovecot's name
    ep.create_folder("Gelöscht")
    assert (root / ".Gel&APY-scht").is_dir() and not (root / ".Gelöscht").exists()


# --- a real Dovecot serves the written Maildir ----------------------------------------------


def _seed(user) -> dict[str, int]:
    counts: dict[str, int] = {}
    with user.client() as c:
        for name in NAMES:
            if not c.folder_exists(name):
                c.create_folder(name)
        for i, name in enumerate(["INBOX", *NAMES] * 2):
            c.append(name, msg(500 + i, subject=f"Grüße {i} — {name}"), flags=FLAGS[i % 4],
                     msg_time=datetime(2015 + i % 8, 1 + i % 12, 2, 3, 4, 5, tzinfo=UTC))
            counts[name] = counts.get(name, 0) + 1
    return counts


def _serve_with_dovecot(maildir: Path, server, user) -> None:
    """Put the written Maildir where ``server`` keeps ``user``'s mail (its Maildir++)."""
    home = server.home(user.name)
    dest = home / "Maildir"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(maildir, dest, symlinks=False)
    for root, dirs, files in os.walk(home):
        for n in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(n, server.uid, server.gid)


@pytest.mark.dovecot
def test_dovecot_opens_every_folder_of_a_written_maildir(dovecot, new_user, tmp_path: Path) -> None:
    src_srv = dovecot("slash")
    src = new_user(src_srv)
    counts = _seed(src)
    target = tmp_path / "Maildir"
    report = run_import(ImportRequest(
        source=side("source", src), target=side_maildir(target), journal=tmp_path / "j.sqlite",
        progress=False, retry_base=0.05))
    assert report.status == "ok", report.error
    assert report.totals.copied == sum(counts.values())
    assert (target / ".Entw&APw-rfe-Test").is_dir()

    # Serve it: a Maildir++ Dovecot ("dot" flavor: maildir:~/Maildir, separator ".").
    srv = dovecot("dot")
    reader = new_user(srv)
    _serve_with_dovecot(target, srv, reader)
    with reader.client() as c:
        listed = {name for _f, _d, name in c.list_folders()}
    for name in ["INBOX", *NAMES]:
        on_dovecot = name.replace("/", ".")
        assert on_dovecot in listed, (name, sorted(listed))
        with reader.client() as c:
            c.select_folder(on_dovecot, readonly=True)  # NO "Mailbox doesn't exist" before the fix
        got, want = snapshot(reader, on_dovecot), snapshot(src, name)
        assert sum(want.values()) == counts[name]
        assert got == want, name


def side_maildir(path: Path):
    from migrate.sides import SideOptions

    return SideOptions("target", maildir=path, email="copy@example.test", interactive=False)


@pytest.mark.dovecot
def test_rerun_into_a_legacy_utf8_maildir_copies_nothing_twice(dovecot, new_user, tmp_path: Path) -> None:
    src = new_user(dovecot("slash"))
    counts = _seed(src)
    target = tmp_path / "Maildir"
    req = dict(source=side("source", src), target=side_maildir(target), journal=tmp_path / "j.sqlite",
               progress=False, retry_base=0.05)
    first = run_import(ImportRequest(**req))
    assert first.status == "ok" and first.totals.copied == sum(counts.values())
    # Turn the target into what an earlier version wrote: raw UTF-8 directory names.
    for name in NAMES:
        old = legacy_folder_dir(name)
        if old is not None:
            (target / encode_folder(name)).rename(target / old)
    assert (target / ".Entwürfe-Test").is_dir() and not (target / ".Entw&APw-rfe-Test").exists()
    again = run_import(ImportRequest(**req))
    assert again.status == "ok", again.error
    assert again.totals.copied == 0 and again.totals.restored == 0
    assert again.totals.skipped_duplicates == sum(counts.values())
    assert not (target / ".Entw&APw-rfe-Test").exists()  # no second folder next to the old one
    dirs = Counter(decode_folder(d.name) for d in target.iterdir() if d.name.startswith("."))
    assert all(dirs[name] == 1 for name in NAMES), dirs  # one directory per folder, the old one
    ep = MaildirEndpoint(target)
    assert set(NAMES) <= {f.name for f in ep.list_folders()}
    assert ep.status("Entwürfe-Test").exists == counts["Entwürfe-Test"]
