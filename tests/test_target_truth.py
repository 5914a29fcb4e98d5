"""The target is the truth, the journal only a cache (real Dovecot on both sides).

A re-run checks what the target holds now: messages deleted there, an emptied or recreated folder
are copied again (``restored``), never reported as present unseen. One message or one folder
that fails never ends the job; a message that kills the connection every time it is sent fails
alone, in bounded time.
"""

from __future__ import annotations

import pytest

from tests.support.imap_proxy import ImapAnswerProxy
from tests.support.mailbox import append, count, import_job, msg, snapshot
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot


def _seed(src) -> None:
    twin = msg(1)
    append(src, "INBOX", twin)
    append(src, "INBOX", twin)  # byte-identical twins: the target must hold both
    for i in range(2, 7):
        append(src, "INBOX", msg(i))
    for i in range(10, 13):
        append(src, "Work", msg(i))


def _expunge(user, folder: str, which) -> int:
    """Delete messages on the target behind the engine's back; returns how many."""
    with user.client() as c:
        c.select_folder(folder)
        uids = which(sorted(c.search("ALL")))
        c.delete_messages(uids)
        c.expunge()
        return len(uids)


def _folder(report, name):
    return next(f for f in report.folders if f.source == name)


@pytest.mark.parametrize("which", [
    pytest.param(lambda uids: uids[:1] + uids[3:5], id="some"),
    pytest.param(lambda uids: uids[1:2], id="one-twin"),
    pytest.param(lambda uids: uids, id="emptied"),
])
def test_messages_deleted_on_the_target_are_restored(dovecot, new_user, tmp_path, which):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src)
    first = import_job(src, dst, tmp_path)
    assert (first.exit_code, first.totals.copied) == (0, 10)

    gone = _expunge(dst, "INBOX", which)
    again = import_job(src, dst, tmp_path)  # same journal: it still says "copied" for all 10
    assert again.exit_code == 0, again.error
    inbox = _folder(again, "INBOX")
    assert (inbox.restored, inbox.copied) == (gone, 0)
    assert inbox.skipped_duplicates == 7 - gone  # only what was seen on the target
    assert again.totals.restored == gone
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    assert _folder(again, "Work").restored == 0

    third = import_job(src, dst, tmp_path)
    assert (third.totals.copied, third.totals.restored) == (0, 0)
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_recreated_target_folder_new_uidvalidity(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src)
    import_job(src, dst, tmp_path)
    with dst.client() as c:
        before = c.folder_status("Work", ["UIDVALIDITY"])[b"UIDVALIDITY"]
        c.delete_folder("Work")
        c.create_folder("Work")  # empty, with a new UIDVALIDITY
        assert c.folder_status("Work", ["UIDVALIDITY"])[b"UIDVALIDITY"] != before
    r = import_job(src, dst, tmp_path)
    assert r.exit_code == 0, r.error
    assert _folder(r, "Work").restored == 3
    assert snapshot(dst, "Work") == snapshot(src, "Work")
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_deleted_folder_is_created_and_refilled(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src)
    import_job(src, dst, tmp_path)
    with dst.client() as c:
        c.delete_folder("Work")
    r = import_job(src, dst, tmp_path)
    assert _folder(r, "Work").restored == 3
    assert snapshot(dst, "Work") == snapshot(src, "Work")


def test_message_present_before_the_import_and_deleted_later(dovecot, new_user, tmp_path):
    """A message the first run found on the target (a duplicate, not our copy) is restored too."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(4):
        append(src, "INBOX", msg(i))
    append(dst, "INBOX", msg(0))
    first = import_job(src, dst, tmp_path)
    assert (first.totals.copied, first.totals.skipped_duplicates) == (3, 1)
    _expunge(dst, "INBOX", lambda uids: uids[:1])  # the one that was there before us
    r = import_job(src, dst, tmp_path)
    assert (r.totals.restored, r.totals.copied) == (1, 0)
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_target_change_defeats_the_fast_path_source_flag_change_too(dovecot, new_user, tmp_path):
    """Source flags changed (the CONDSTORE fast path) and the target lost a message: restored."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(5):
        append(src, "INBOX", msg(i))
    import_job(src, dst, tmp_path)
    with src.client() as c:
        c.select_folder("INBOX")
        c.add_flags(c.search("ALL")[:1], [b"\\Flagged"])
    _expunge(dst, "INBOX", lambda uids: uids[-1:])
    r = import_job(src, dst, tmp_path)
    assert r.totals.restored == 1
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_restored_shows_in_the_summary(dovecot, new_user, tmp_path):
    from migrate.ui import summary_text

    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    _seed(src)
    import_job(src, dst, tmp_path)
    _expunge(dst, "Work", lambda uids: uids[:2])
    r = import_job(src, dst, tmp_path)
    text = summary_text(r)
    assert "restored" in text
    work = next(line for line in text.splitlines() if line.startswith("Work"))
    assert " 2 " in f" {work} "
    from migrate.notify.compose import compose_job_mail

    for lang, word in (("en", "copied again"), ("de", "erneut kopiert")):
        mail = compose_job_mail(r, lang=lang, sender="mm@example.test", recipients=["a@example.test"])
        assert word in mail.get_body(("plain",)).get_content()


# --- one message or one folder never ends the job ----------------------------------------


POISON = b"X-Poison: 7f3a91"


def test_message_that_drops_the_connection_every_time_fails_alone(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(30):
        append(src, "INBOX", msg(i, extra=POISON + b"\r\n" if i == 17 else b""))
    for i in range(40, 45):
        append(src, "Later", msg(i))
    with FaultProxy("127.0.0.1", srv.port) as proxy:
        # A middlebox that cuts the connection whenever this one message is sent.
        proxy.cut_when(POISON, "upstream", every=True)
        r = import_job(src, dst, tmp_path, dst_kw={"port": proxy.port}, retries=3)
        cuts = proxy.cuts
    assert r.status == "partial" and r.exit_code == 1, (r.status, r.error)
    assert (r.totals.copied, r.totals.failed) == (34, 1)
    (failure,) = r.failures()
    assert "connection was dropped each time" in failure.reason
    assert failure.message_id == "m17@example.test"
    assert cuts == 3  # in its batch, then alone twice: bounded
    assert count(dst, "INBOX") == 29 and count(dst, "Later") == 5

    # A later run (the middlebox gone) copies the one message that failed, nothing else.
    r2 = import_job(src, dst, tmp_path)
    assert (r2.exit_code, r2.totals.copied, r2.totals.failed) == (0, 1, 0)
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_fetch_refused_for_one_message_fails_that_message(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(6):
        append(src, "INBOX", msg(i))
    append(src, "Other", msg(9))
    with ImapAnswerProxy("127.0.0.1", srv.port).start() as proxy:
        # The source refuses to hand out UID 4, in a batch and alone, every time.
        proxy.answer(rb"^UID FETCH \S*\b4\b\S* .*BODY\.PEEK\[\]", every=True,
                     reply=b"NO [SERVERBUG] Internal error reading message 4")
        r = import_job(src, dst, tmp_path, src_kw={"port": proxy.port})
    assert (r.status, r.exit_code) == ("partial", 1), r.error
    assert (r.totals.copied, r.totals.failed) == (6, 1)
    (failure,) = r.failures()
    assert failure.uid == 4 and "Internal error reading message 4" in failure.reason
    assert count(dst, "INBOX") == 5 and count(dst, "Other") == 1


def test_folder_the_source_will_not_open_fails_that_folder(dovecot, new_user, tmp_path):
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    for i in range(3):
        append(src, "Locked", msg(i))
    for i in range(10, 14):
        append(src, "INBOX", msg(i))
    with ImapAnswerProxy("127.0.0.1", srv.port).start() as proxy:
        proxy.answer(rb'^(SELECT|EXAMINE) "?Locked', every=True, reply=b"NO [NOPERM] Permission denied")
        r = import_job(src, dst, tmp_path, src_kw={"port": proxy.port})
    assert (r.status, r.exit_code) == ("partial", 1), r.error
    locked = _folder(r, "Locked")
    assert locked.failed == 3 and "Permission denied" in (locked.note or "")
    assert "Permission denied" in locked.failures[0].reason
    assert count(dst, "INBOX") == 4


# --- copies the target altered ------------------------------------------------------------


def test_copies_stored_differently_are_counted_and_recognised(dovecot, new_user, tmp_path):
    """Dovecot stores a bare LF as CRLF: the copy's size differs from a Maildir source's file.
    The report counts it, and a re-run with the journal deleted recognises every copy."""
    from migrate.api import ImportRequest, run_import
    from migrate.sides import SideOptions
    from tests.support.mailbox import side

    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    bodies = [b"Message-ID: <lf1@x>\nSubject: bare LF\nFrom: a@x\n\nline one\nline two\n",
              b"Subject: no id, bare LF\nFrom: a@x\n\nline\nand more\n",
              *(msg(i) for i in range(3))]
    for i, body in enumerate(bodies):
        (maildir / "cur" / f"{1700000000 + i}.M{i}P1.host:2,S").write_bytes(body)
    dst = new_user(dovecot("slash"))

    def run():
        return run_import(ImportRequest(source=SideOptions("source", maildir=maildir, interactive=False),
                                        target=side("target", dst), journal=tmp_path / "j.sqlite",
                                        progress=False, retry_base=0.05))

    r = run()
    assert r.exit_code == 0, r.error
    assert _folder(r, "INBOX").stored_differently == 2
    assert r.totals.stored_differently == 2
    (tmp_path / "j.sqlite").unlink()
    again = run()
    assert (again.totals.copied, again.totals.skipped_duplicates) == (0, 5)
    assert count(dst, "INBOX") == 5
