"""A Gmail-like source (labels are folders, [Gmail]/All Mail is a virtual folder of all of them):
each message arrives once per label folder, never again via All Mail, and archived-only mail
lands in the target's Archive."""

from __future__ import annotations

import pytest

from tests.support.mailbox import folders, import_job, msg

pytestmark = pytest.mark.dovecot


def _ids(user, folder: str) -> list[bytes]:
    with user.client() as c:
        if not c.folder_exists(folder):
            return []
        c.select_folder(folder, readonly=True)
        got = c.fetch(c.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        return sorted(v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].strip().split(b"<")[1].rstrip(b">")
                      for v in got.values())


def test_gmail_labels_become_folders_without_doubling(dovecot, new_user, tmp_path):
    gsrv, tsrv = dovecot("gmail"), dovecot("slash")
    src, dst = new_user(gsrv), new_user(tsrv)
    gsrv.save_labels(src.name, ["INBOX", "Work"], msg(1), flags=["\\Flagged"])  # two labels, starred
    gsrv.save(src.name, "INBOX", msg(6))
    gsrv.save(src.name, "[Gmail]/Sent Mail", msg(2))
    gsrv.save(src.name, "[Gmail]/All Mail", msg(3))  # archived: no label at all
    gsrv.save(src.name, "[Gmail]/Spam", msg(4))
    gsrv.save(src.name, "[Gmail]/Trash", msg(5))
    gsrv.save_labels(src.name, ["Projects/Alpha", "Work"], msg(7))

    r = import_job(src, dst, tmp_path)
    assert r.exit_code == 0, r.error
    names = set(folders(dst))
    assert not any(n.startswith("[Gmail]") for n in names), names
    assert not {"All Mail", "Starred", "Important"} & names
    assert _ids(dst, "INBOX") == [b"m1@example.test", b"m6@example.test"]
    assert _ids(dst, "Work") == [b"m1@example.test", b"m7@example.test"]
    assert _ids(dst, "Projects/Alpha") == [b"m7@example.test"]
    assert _ids(dst, "Sent") == [b"m2@example.test"]
    assert _ids(dst, "Archive") == [b"m3@example.test"]  # only what no label holds
    assert _ids(dst, "Junk") == [b"m4@example.test"]
    assert _ids(dst, "Trash") == [b"m5@example.test"]
    total = sum(len(_ids(dst, f)) for f in names)
    assert total == 9  # 7 messages, m1 and m7 twice (two labels each), nothing via All Mail
    skipped = {f.source: f.note for f in r.folders if f.target is None}
    assert "[Gmail]/Starred" in skipped and "[Gmail]/Important" in skipped

    again = import_job(src, dst, tmp_path)
    assert again.totals.copied == 0
    assert sum(len(_ids(dst, f)) for f in names) == 9


def test_gmail_one_copy_first_label_wins(dovecot, new_user, tmp_path):
    gsrv, tsrv = dovecot("gmail"), dovecot("slash")
    src, dst = new_user(gsrv), new_user(tsrv)
    gsrv.save_labels(src.name, ["INBOX", "Work"], msg(1))
    gsrv.save_labels(src.name, ["Work", "Projects"], msg(2))
    gsrv.save(src.name, "[Gmail]/All Mail", msg(3))
    r = import_job(src, dst, tmp_path, gmail_single_copy=True)
    assert r.exit_code == 0, r.error
    names = set(folders(dst))
    assert _ids(dst, "INBOX") == [b"m1@example.test"]
    assert sorted(_ids(dst, "Work") + _ids(dst, "Projects")) == [b"m2@example.test"]  # once, first label
    assert _ids(dst, "Archive") == [b"m3@example.test"]
    assert sum(len(_ids(dst, f)) for f in names) == 3
    assert import_job(src, dst, tmp_path, gmail_single_copy=True).totals.copied == 0
