"""Dovecot <-> Cyrus IMAP with a hostile mailbox: nothing lost silently, nothing doubled.

Two makes of server, both roles, both separators. Cyrus is strict (it refuses bare LF and NUL,
changes 8-bit header bytes, refuses some names): every message ends copied exactly, stored
differently (counted in the report), or failed with the server's answer; never lost silently.
A re-run copies nothing, and neither does a re-run with the journal deleted.
"""

from __future__ import annotations

import pytest

from tests.support import hostile
from tests.support.mailbox import import_job

pytestmark = [pytest.mark.dovecot, pytest.mark.cyrus]

DIRECTIONS = [
    pytest.param(("dovecot", "slash"), ("cyrus", "dot"), id="dovecot-slash->cyrus-dot"),
    pytest.param(("dovecot", "dot"), ("cyrus", "slash"), id="dovecot-dot->cyrus-slash"),
    pytest.param(("cyrus", "dot"), ("dovecot", "slash"), id="cyrus-dot->dovecot-slash"),
    pytest.param(("cyrus", "slash"), ("dovecot", "dot"), id="cyrus-slash->dovecot-dot"),
]


@pytest.mark.parametrize(("src_kind", "dst_kind"), DIRECTIONS)
def test_hostile_mailbox_between_makes(request, new_user, tmp_path, src_kind, dst_kind):
    def server(kind):
        make, flavor = kind
        return request.getfixturevalue(make)(flavor)

    src, dst = new_user(server(src_kind)), new_user(server(dst_kind))
    seeded = hostile.seed(src, hostile.mailbox(260, corpus=90, seed=3))
    assert seeded.messages >= 200, seeded.refused[:5]
    before = hostile.account(src)

    r = import_job(src, dst, tmp_path, connections=3)
    assert r.status in ("ok", "partial"), (r.status, r.error)
    assert r.exit_code == (1 if r.totals.failed else 0)
    verdict = hostile.judge(before, hostile.account(dst), r)
    assert verdict.source == seeded.messages
    assert verdict.lost == 0, verdict.lost_examples
    assert verdict.failed == r.totals.failed  # every failure is a message we could not place
    assert all(x.reason for x in r.failures())
    assert verdict.exact + verdict.flags_differ + verdict.stored_differently + verdict.failed == verdict.source
    # The report counts copies whose size the target shows differently; a server may also change
    # bytes in place (Cyrus: 8-bit header bytes become X), which only reading them back shows.
    assert r.totals.stored_differently <= verdict.stored_differently
    if dst_kind[0] == "cyrus":
        # NUL and bare LF, refused in a plain literal, are stored exactly from a literal8; a
        # header with no line end is refused either way: it fails, with Cyrus' answer.
        assert r.totals.failed > 0
        assert {x.reason.rsplit(": ", 1)[-1] for x in r.failures()} == {"Message contains invalid header"}
        nul = {m.body for rows in before.values() for m in rows if b"Subject: nul " in m.body}
        stored = {m.body for rows in hostile.account(dst).values() for m in rows}
        assert nul and nul <= stored
    assert hostile.account(src) == before  # the source is never changed

    again = import_job(src, dst, tmp_path, connections=3)
    assert (again.totals.copied, again.totals.restored) == (0, 0)
    assert again.totals.failed == r.totals.failed  # the same refusals, said again

    (tmp_path / "journal.sqlite").unlink()
    fresh = import_job(src, dst, tmp_path, connections=3)
    assert (fresh.totals.copied, fresh.totals.restored) == (0, 0), [
        (f.source, f.copied) for f in fresh.folders if f.copied]
    after = hostile.judge(before, hostile.account(dst), fresh)
    assert after.lost == 0 and after.exact == verdict.exact
