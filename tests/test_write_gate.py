"""One gate for every write (migrate/gate.py): a dry run writes nothing anywhere, and a source is
never written to, dry run or not.

Everything runs the real command line (a subprocess) against real files and a real Dovecot.
"Nothing written" is checked with a recursive snapshot (names, types, sizes, modes, mtimes and
content hashes, the folders' own mtimes included, so even a file created and removed again shows):
the tests run as root, for whom ``chmod a-w`` proves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mailbox import ROOT, cli, cli_args, count

SAMPLE = ROOT / "samples" / "demo"
SAMPLE_MESSAGES = 40
NEW_MESSAGE = b"Message-ID: <brand-new@example.test>\r\nSubject: arrived after the first run\r\n\r\nhello\r\n"


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything under ``root`` (and ``root`` itself): type, mode, size, mtime, content hash."""
    out: dict[str, tuple[object, ...]] = {}
    paths = [root, *sorted(root.rglob("*"))] if root.exists() else []
    for p in paths:
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
        size = st.st_size if stat.S_ISREG(st.st_mode) else None  # a folder's size is the file system's
        out[str(p.relative_to(root))] = (st.st_mode, size, st.st_mtime_ns, digest)
    return out


def changes(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]]) -> list[str]:
    return sorted(f"{'new' if k not in before else 'gone' if k not in after else 'changed'}: {k}"
                  for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def source_maildir(tmp_path: Path, kind: str) -> Path:
    """A copy of the bundled sample. "plain": without our uid lists, like any Maildir another
    program wrote (Dovecot, getmail, ...), with one message delivered to new/."""
    src = tmp_path / "source"
    shutil.copytree(SAMPLE, src)
    if kind == "plain":
        for p in src.rglob("mailmigrate-uidlist"):
            p.unlink()
        (src / "new").mkdir(exist_ok=True)
        (src / "new" / "1700000000.M1P1Q1.elsewhere").write_bytes(NEW_MESSAGE)
    return src


def mm(*args: str, home: Path) -> subprocess.CompletedProcess:
    r = cli(*args, "-q", env={"MAILMIGRATE_HOME": str(home), "MAILMIGRATE_DEBUG": ""}, timeout=120)
    text = r.stdout + r.stderr
    assert "Traceback" not in text and "internal error" not in text, text
    return r


def journal_uids(journal: Path) -> dict[tuple[str, int], tuple[int, str]]:
    """(source folder, uid) -> (uidvalidity, key) of every message the job copied or found."""
    with sqlite3.connect(journal) as c:
        rows = c.execute("SELECT source_folder, uid, uidvalidity, key FROM messages").fetchall()
    return {(f, uid): (uv, key) for f, uid, uv, key in rows}


# --- a dry run writes nothing anywhere -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sample", "plain"])
def test_dry_run_into_a_maildir_writes_nothing(tmp_path, kind):
    src = source_maildir(tmp_path, kind)
    home, target = tmp_path / "home", tmp_path / "out" / "Maildir"
    journal, report = tmp_path / "state" / "j.sqlite", tmp_path / "r.json"
    before = tree(tmp_path)
    r = mm("import", "--source-maildir", str(src), "--target-maildir", str(target), "--journal", str(journal),
           "--report", str(report), "--dry-run", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert changes(before, tree(tmp_path)) == []  # no target, journal, report, state, uid list, lock
    assert "nothing written" in r.stdout and "status: dry run (exit 0)" in r.stdout
    # Piped: one plain line per folder, "source  target  would-copy  ...".
    would = {m[1]: int(m[3]) for m in re.finditer(r"^(\S+) {2,}(\S+) {2,}(\d+) ", r.stdout, re.M)
             if m[1] != "total"}

    # What it printed is what a real run then does.
    r = mm("import", "--source-maildir", str(src), "--target-maildir", str(target), "--journal", str(journal),
           "--report", str(report), "--no-notify", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    copied = {f["source"]: f["copied"] for f in json.loads(report.read_text())["folders"] if f["target"]}
    assert would == copied and sum(copied.values()) == SAMPLE_MESSAGES + (kind == "plain")
    report.unlink()

    # A target that exists, with a message another program delivered (no UID yet): still nothing.
    (target / "new").mkdir(exist_ok=True)
    (target / "new" / "1700000001.M2P2Q2.elsewhere").write_bytes(NEW_MESSAGE.replace(b"brand", b"other"))
    before = tree(tmp_path)
    r = mm("import", "--source-maildir", str(src), "--target-maildir", str(target), "--journal", str(journal),
           "--report", str(report), "--dry-run", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert changes(before, tree(tmp_path)) == []
    assert "total" in r.stdout and "status: dry run (exit 0)" in r.stdout


# --- a source is never written to ---------------------------------------------------------------


@pytest.mark.dovecot
@pytest.mark.parametrize("kind", ["sample", "plain"])
def test_maildir_source_is_never_written_and_its_uids_are_stable(mail_user, tmp_path, kind):
    src = source_maildir(tmp_path, kind)
    home, journal = tmp_path / "home", tmp_path / "state" / "j.sqlite"
    n = SAMPLE_MESSAGES + (kind == "plain")

    def run() -> dict:
        report = tmp_path / "r.json"
        r = mm("import", "--source-maildir", str(src), *cli_args("target", mail_user), "--journal", str(journal),
               "--report", str(report), "--no-notify", home=home)
        assert r.returncode == 0, r.stdout + r.stderr
        return json.loads(report.read_text())

    before = tree(src)
    assert run()["totals"]["copied"] == n
    assert changes(before, tree(src)) == []
    first = journal_uids(journal)
    assert len(first) == n

    again = run()  # a re-run: the same UIDs, nothing copied
    assert again["totals"]["copied"] == 0 and again["totals"]["skipped_duplicates"] == n
    assert changes(before, tree(src)) == []
    assert journal_uids(journal) == first

    new = src / "cur" / "1900000000.M3P3Q3.later:2,S"
    new.write_bytes(NEW_MESSAGE.replace(b"brand-new", b"later"))
    before = tree(src)
    third = run()  # only the new message is copied; the others keep their UIDs
    assert third["totals"]["copied"] == 1
    assert [f["source"] for f in third["folders"] if f["copied"]] == ["INBOX"]
    assert changes(before, tree(src)) == []
    now = journal_uids(journal)
    assert {k: v for k, v in now.items() if k in first} == first and len(now) == n + 1
    (added,) = now.keys() - first.keys()
    assert added == ("INBOX", max(uid for f, uid in first if f == "INBOX") + 1)
    assert count(mail_user, "INBOX") == 16 + (kind == "plain") + 1


def _mbox(messages: list[bytes]) -> bytes:
    return b"".join(b"From someone@example.test Mon Jan  1 10:00:00 2024\n" + m.replace(b"\r\n", b"\n") + b"\n"
                    for m in messages)


@pytest.mark.dovecot
def test_mbox_source_is_never_written(mail_user, tmp_path):
    src = tmp_path / "mail"
    src.mkdir()
    (src / "Inbox").write_bytes(_mbox([NEW_MESSAGE.replace(b"brand-new", b"a%d" % i) for i in range(3)]))
    (src / "Lists").write_bytes(_mbox([NEW_MESSAGE.replace(b"brand-new", b"b%d" % i) for i in range(2)]))
    home, journal = tmp_path / "home", tmp_path / "state" / "j.sqlite"
    everything = tree(tmp_path)

    r = mm("import", "--source-mbox", str(src), "--target-maildir", str(tmp_path / "out"), "--journal",
           str(journal), "--report", str(tmp_path / "r.json"), "--dry-run", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert changes(everything, tree(tmp_path)) == []

    before = tree(src)
    for copied in (5, 0):
        r = mm("import", "--source-mbox", str(src), *cli_args("target", mail_user), "--journal", str(journal),
               "--report", str(tmp_path / "r.json"), "--no-notify", home=home)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads((tmp_path / "r.json").read_text())["totals"]["copied"] == copied
        assert changes(before, tree(src)) == []
    assert count(mail_user, "INBOX") == 3 and count(mail_user, "Lists") == 2


# --- the demo -------------------------------------------------------------------------------------


def test_demo_leaves_the_checkout_clean(tmp_path):
    """``scripts/demo.sh`` (its last line, in a copy of this checkout): ``git status`` stays clean,
    even after the sample mailbox got a message it has no UID for yet."""
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in os.fsdecode(files).split("\0"):
        if name and (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.test", *args], cwd=repo,
                              capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "checkout")
    home = tmp_path / "home"

    def demo() -> str:
        r = subprocess.run([sys.executable, "cli.py", "demo", "--target-maildir", "demo-output/Maildir"], cwd=repo,
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MAILMIGRATE_HOME": str(home)})
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    assert "status: done" in demo()
    assert git("status", "--porcelain") == ""
    second = demo()
    assert git("status", "--porcelain") == ""
    assert json.loads((repo / "demo-output" / "report.json").read_text())["totals"]["copied"] == 0, second

    (repo / "samples" / "demo" / "cur" / "1900000000.M4P4Q4.added:2,S").write_bytes(NEW_MESSAGE)
    git("add", "-A")
    git("commit", "-qm", "a message for the sample")
    demo()
    assert git("status", "--porcelain") == ""
    assert json.loads((repo / "demo-output" / "report.json").read_text())["totals"]["copied"] == 1
    assert not home.exists()
