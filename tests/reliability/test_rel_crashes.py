"""Crashes: the CLI import is SIGKILLed at 20 points spread over one real run, re-run after each
kill; the last run finishes and the target equals the source exactly, with no extra copy.

The kill points, in order (each on a fresh run that resumes the previous ones):
* phase kills, fired by a tapping proxy the moment a command is on the wire: while listing the
  source folders, while creating target folders (before and just after a CREATE reached the
  server), while reading the source's message list, just before the first body fetch;
* timed kills at varied delays after the run's first APPEND went out (whatever it was doing:
  fetching, appending, committing the journal);
* ``MAILMIGRATE_FAULT=after-append:N``: right after the Nth appended message came back from the
  server and BEFORE its journal commit (the APPEND happened, the journal does not know it).
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.reliability.kit import (
    FOLDERS,
    TapProxy,
    assert_untouched,
    compare,
    digest,
    identity,
    kill,
    later,
    popen_cli,
    run_cli,
    seed,
    side_args,
)
from tests.support.mailbox import append, count, msg

pytestmark = pytest.mark.dovecot

# (pattern, direction, side, nth, delay): kill when the nth pattern passes (delay 0: before the
# bytes are forwarded; > 0: a moment after, so the server did act on them).
PHASE_KILLS = [
    (b" LIST ", "upstream", "source", 1, 0.0),  # listing the source folders
    (b" CREATE ", "upstream", "target", 2, 0.0),  # creating target folders: one done
    (b" CREATE ", "upstream", "target", 1, 0.01),  # just after a CREATE reached the server
    (b" UID FETCH ", "upstream", "source", 1, 0.0),  # reading the source's message list
    (b"BODY.PEEK[]", "upstream", "source", 1, 0.0),  # the first body fetch of the run
]
# Seconds after the run's first APPEND. A whole run of the CI chain takes ~0.5 s (TCP_NODELAY):
# every kill must land inside it, so none is later than a third of that.
TIMED_KILLS = [0.0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15]
APPEND_KILLS = [1, 2, 5, 3, 8, 4, 6, 2]  # after-append:N


def test_twenty_kill_points_then_exact(dovecot, new_user, tmp_path, tally, home, long_mode):
    # CI: one chain of 20 kills. --long: more chains, other mailboxes, batch sizes and connections.
    chains = [(1, 800, 3, 2)] + ([(2, 200, 1, 1), (3, 600, 5, 3), (4, 300, 2, 3)] if long_mode else [])
    for rnd, n, batch, connections in chains:
        _kill_chain(dovecot, new_user, tmp_path / f"chain{rnd}", tally, rnd=rnd, n=n, batch=batch,
                    connections=connections)


def _kill_chain(dovecot, new_user, tmp_path, tally, *, rnd: int, n: int, batch: int, connections: int) -> None:
    tmp_path.mkdir()
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    counts = seed(src, n, rnd=rnd)
    total = sum(counts.values())
    before = digest(src)
    journal = tmp_path / "j.sqlite"
    with TapProxy("127.0.0.1", srv.port) as sp, TapProxy("127.0.0.1", srv.port) as tp:
        args = ["import", *side_args("source", src, port=sp.port), *side_args("target", dst, port=tp.port),
                "--journal", str(journal), "-q", "--no-notify", "--connections", str(connections),
                "--batch-size", str(batch), "--retries", "3"]
        proxies = {"source": sp, "target": tp}
        kills = 0
        stored = []

        def one_run(arm, env=None) -> None:
            nonlocal kills
            p = popen_cli(*args, env=env)
            arm(p)
            out, err = p.communicate(timeout=120)
            sp.clear_taps()
            tp.clear_taps()
            assert p.returncode == -signal.SIGKILL, (kills, p.returncode, out[-2000:], err[-2000:])
            kills += 1
            stored.append(total_messages(dst))

        for pattern, direction, where, nth, delay in PHASE_KILLS:
            def arm(p, pattern=pattern, direction=direction, where=where, nth=nth, delay=delay):
                if delay:
                    proxies[where].on(pattern, direction, lambda *_: later(delay, lambda: kill(p)), nth=nth)
                else:
                    proxies[where].on(pattern, direction, lambda *_: kill(p), nth=nth)
            one_run(arm)
        for delay in TIMED_KILLS:
            one_run(lambda p, delay=delay: tp.on(b" APPEND ", "upstream",
                                                 lambda *_: later(delay, lambda: kill(p))))
        for k in APPEND_KILLS:
            one_run(lambda p: None, env={"MAILMIGRATE_FAULT": f"after-append:{k}"})
        tally.kills += kills
        tally.runs += kills
        assert kills == 20

        # Spread over the run: nothing copied at the first kill, part of it at the last. And never,
        # not even between two kills, a message more on the target than in the source.
        print("stored after each kill:", stored, "of", total)
        assert stored[0] == 0, stored
        assert 0 < stored[-1] < total, stored
        assert stored == sorted(stored) and max(stored) <= total, stored

        final = run_cli(*args, "--report", str(tmp_path / "final.json"))
        tally.runs += 1
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    compare(tally, src, dst, identity(FOLDERS))
    # One more run copies nothing and counts every message as already there (without the
    # proxies: another job id for the same two accounts, same journal and target ledger).
    rerun = run_cli("import", *side_args("source", src), *side_args("target", dst), "--journal", str(journal),
                    "-q", "--no-notify", "--report", str(tmp_path / "rerun.json"))
    tally.runs += 1
    assert rerun.returncode == 0, rerun.stderr
    rep = json.loads((tmp_path / "rerun.json").read_text())
    assert (rep["totals"]["copied"], rep["totals"]["failed"]) == (0, 0), rep["totals"]
    assert rep["totals"]["skipped_duplicates"] == total
    assert_untouched(tally, src, before)


def total_messages(user) -> int:
    with user.client() as c:
        return sum(c.folder_status(name, [b"MESSAGES"])[b"MESSAGES"] for flags, _d, name in c.list_folders()
                   if not any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags))


def test_kill_then_source_uidvalidity_changes(dovecot, new_user, tmp_path, tally, home):
    """Killed in the middle of a folder; then that source folder is recreated (new UIDVALIDITY,
    new UIDs, same messages) and gets a new message: the re-run copies exactly what is missing
    and nothing twice."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 40, folders=("Projects",), rnd=2)  # + 2 twins in INBOX; Projects (largest) goes first
    journal = tmp_path / "j.sqlite"
    args = ["import", *side_args("source", src), *side_args("target", dst), "--journal", str(journal),
            "-q", "--no-notify", "--connections", "1", "--batch-size", "4"]
    r = run_cli(*args, env={"MAILMIGRATE_FAULT": "after-append:12"})
    tally.runs += 1
    assert r.returncode == -signal.SIGKILL, r.stderr
    tally.kills += 1
    partial = count(dst, "Projects")
    assert 12 <= partial < 40, partial
    with src.client() as c:
        old = c.folder_status("Projects", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        c.rename_folder("Projects", "Projects-old")
        c.create_folder("Projects")
        c.select_folder("Projects-old")
        c.copy(c.search("ALL"), "Projects")
        c.close_folder()
        c.delete_folder("Projects-old")
        assert c.folder_status("Projects", [b"UIDVALIDITY"])[b"UIDVALIDITY"] != old
    tally.fault("uidvalidity-change")
    append(src, "Projects", msg(5001, subject="new after the folder was recreated"))
    before = digest(src)
    r = run_cli(*args, "--report", str(tmp_path / "r.json"))
    tally.runs += 1
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["totals"]["copied"] == 43 - partial, (rep["totals"], partial)
    proj = next(f for f in rep["folders"] if f["source"] == "Projects")
    assert "UIDVALIDITY" in (proj["note"] or ""), proj
    compare(tally, src, dst, identity(("INBOX", "Projects")))
    assert_untouched(tally, src, before)


def test_kill_after_append_with_two_messages_sharing_a_key(dovecot, new_user, tmp_path, tally, home):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    head = (b"Message-ID: <same-key@rel.test>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n"
            b"From: Alice <alice@example.test>\r\nSubject: meeting notes\r\n")
    direct = head + b"To: bob@example.test\r\n\r\nThe notes.\r\n"
    via_list = (head + b"To: team@lists.example.test\r\nList-Id: <team.lists.example.test>\r\n\r\nThe notes.\r\n"
                b"--\r\nteam mailing list\r\n")
    from datetime import UTC, datetime
    with src.client() as c:
        c.append("INBOX", direct, flags=[b"\\Seen"], msg_time=datetime(2024, 1, 2, 10, 0, 5, tzinfo=UTC))
        c.append("INBOX", via_list, flags=[b"$Forwarded"], msg_time=datetime(2024, 1, 2, 10, 3, 0, tzinfo=UTC))
    before = digest(src)
    args = ["import", *side_args("source", src), *side_args("target", dst), "--journal", str(tmp_path / "j.sqlite"),
            "-q", "--no-notify", "--batch-size", "1", "--connections", "1"]
    r = run_cli(*args, env={"MAILMIGRATE_FAULT": "after-append:1"})
    tally.runs += 1
    assert r.returncode == -signal.SIGKILL, r.stderr
    tally.kills += 1
    assert count(dst, "INBOX") == 1  # the first APPEND happened, its journal commit did not
    r = run_cli(*args)
    tally.runs += 1
    assert r.returncode == 0, r.stderr
    assert_untouched(tally, src, before)
    compare(tally, src, dst, [("INBOX", "INBOX")])


def test_kill_while_syncing_flags(dovecot, new_user, tmp_path, tally, home):
    """Copied once; then flags change on the source (migrate early, sync at cut-over) and the
    flag-sync run is killed in the middle of its STOREs: the next run leaves every flag exact."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 60, folders=("INBOX", "Projects"), rnd=41)
    journal = tmp_path / "j.sqlite"
    with TapProxy("127.0.0.1", srv.port) as tp:
        args = ["import", *side_args("source", src), *side_args("target", dst, port=tp.port),
                "--journal", str(journal), "-q", "--no-notify", "--connections", "1"]
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        with src.client() as c:
            for folder in ("INBOX", "Projects"):
                c.select_folder(folder)
                uids = c.search("ALL")
                c.add_flags(uids[::2], [b"\\Flagged", b"$Checked"])
                c.remove_flags(uids[1::3], [b"\\Seen"])
                c.unselect_folder()  # not CLOSE: that would expunge the \Deleted ones
        before = digest(src)
        p = popen_cli(*args)
        tp.on(b" STORE ", "upstream", lambda *_: kill(p), nth=12)
        p.communicate(timeout=120)
        assert p.returncode == -signal.SIGKILL
        tally.kills += 1
        r = run_cli(*args, "--report", str(tmp_path / "r.json"))
        tally.runs += 3
        assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["totals"]["copied"] == 0 and rep["totals"]["flags_updated"] > 0, rep["totals"]
    compare(tally, src, dst, identity(("INBOX", "Projects")))
    assert_untouched(tally, src, before)


def test_kill_then_target_folder_recreated(dovecot, new_user, tmp_path, tally, home):
    """Killed mid-folder; then the admin recreates that TARGET folder with what it held (new
    UIDVALIDITY and UIDs there): the re-run recognises the copies by content, copies the rest once."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    seed(src, 40, folders=("Projects",), rnd=42)
    before = digest(src)
    args = ["import", *side_args("source", src), *side_args("target", dst), "--journal", str(tmp_path / "j.sqlite"),
            "-q", "--no-notify", "--connections", "1", "--batch-size", "4"]
    r = run_cli(*args, env={"MAILMIGRATE_FAULT": "after-append:12"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    tally.kills += 1
    with dst.client() as c:
        old = c.folder_status("Projects", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        c.rename_folder("Projects", "Projects-old")
        c.create_folder("Projects")
        c.select_folder("Projects-old", readonly=True)
        c.copy(c.search("ALL"), "Projects")
        c.unselect_folder()
        c.delete_folder("Projects-old")
        assert c.folder_status("Projects", [b"UIDVALIDITY"])[b"UIDVALIDITY"] != old
    tally.fault("uidvalidity-change")
    r = run_cli(*args)
    tally.runs += 2
    assert r.returncode == 0, r.stderr
    compare(tally, src, dst, identity(("INBOX", "Projects")))
    assert_untouched(tally, src, before)
