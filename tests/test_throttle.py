"""Providers that say "slow down": each provider's own answer, injected by an IMAP-aware proxy in
front of a real Dovecot, makes the engine back off (for as long as the server asked), reconnect
and finish the import exactly - nothing lost, nothing doubled - with the retries visible."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from migrate.accounts import ImapAccount, Secret
from migrate.api import ImportRequest, run_import
from migrate.engine.progress import Progress
from migrate.errors import AuthFailed, ConnectionLost, MessageError, Throttled
from migrate.imap import classify, connect
from tests.support.imap_proxy import ImapAnswerProxy
from tests.support.mailbox import msg, side, snapshot

pytestmark = pytest.mark.dovecot

BODY_FETCH = rb"^UID FETCH .*BODY\.PEEK\[\]"
APPEND = rb"^APPEND "
FOLDERS = ("INBOX", "Work")

# provider, proxied side, command, nth, reply or None, BYE text or None, seconds the retry must wait
CASES = {
    # Gmail: "[THROTTLED]" names no delay: exponential backoff (retry_base) applies.
    "gmail-throttled-append": ("gmail", "target", APPEND, 2,
                               b"NO [THROTTLED] Account exceeded command or bandwidth limits. (Failure)", None, 0.0),
    # Exchange Online says exactly how long to wait.
    "outlook-backoff-fetch": ("outlook", "source", BODY_FETCH, 2,
                              b"NO Request is throttled. Suggested Backoff Time: 1500 milliseconds", None, 1.5),
    # Exchange hangs up under load.
    "outlook-bye-append": ("outlook", "target", APPEND, 3, None, b"Connection is closed. 13", 0.0),
    # Yahoo's transient backend error (imap-backup #218): no delay given, the engine waits 30 s.
    "yahoo-server-error-fetch": ("yahoo", "source", BODY_FETCH, 1,
                                 b"NO UID FETCH Server error - Please try again later", None, 30.0),
}


def _side(role: str, user, provider: str = "imap", **kw):
    return dataclasses.replace(side(role, user, **kw), provider=provider)


def _seed(user) -> None:
    for i in range(6):
        user.save("INBOX", msg(i), flags=["\\Seen"] if i % 2 else [])
        user.save("Work", msg(100 + i, subject=f"work {i}"), flags=["\\Flagged"])


@pytest.mark.parametrize("case", [pytest.param(k, marks=pytest.mark.slow) if v[6] >= 10 else k
                                  for k, v in CASES.items()])
def test_provider_throttle_answer_backs_off_and_completes_exactly(case, dovecot, new_user, tmp_path):
    provider, where, command, nth, reply, bye, delay = CASES[case]
    src_srv, dst_srv = dovecot("slash"), dovecot("slash")
    src, dst = new_user(src_srv), new_user(dst_srv)
    _seed(src)
    proxied = src if where == "source" else dst
    with ImapAnswerProxy("127.0.0.1", proxied.server.port) as proxy:
        proxy.answer(command, nth=nth, reply=reply, bye=bye)
        kw = {"provider": provider, "port": proxy.port}
        progress = Progress()
        req = ImportRequest(source=_side("source", src, **(kw if where == "source" else {})),
                            target=_side("target", dst, **(kw if where == "target" else {})),
                            journal=tmp_path / "journal.sqlite", progress=False, connections=1,
                            batch_count=2, retry_base=0.2)
        report = run_import(req, progress)
        assert proxy.fired == 1, "the provider's answer was never sent"
        (t0, _cid, _kind, line), = proxy.answered()
        t1 = proxy.first_after(t0, command)
        again = run_import(req)  # a re-run finds everything there

    assert report.exit_code == 0, report.error
    for folder in FOLDERS:
        assert snapshot(dst, folder) == snapshot(src, folder), folder  # nothing lost, nothing doubled
    assert report.totals.copied == 12 and report.totals.failed == 0
    assert t1 is not None, "the throttled command was never retried"
    assert t1 - t0 >= delay, f"retried after {t1 - t0:.2f}s, the server asked for {delay}s"
    assert progress.retries >= 1
    assert ("throttled" if reply else "connection-lost") in progress.last_event
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:  # what `mailmigrate status` shows
        (stored,) = db.execute("SELECT progress FROM runs ORDER BY run_id LIMIT 1").fetchone()
    assert json.loads(stored)["retries"] >= 1
    assert again.exit_code == 0 and again.totals.copied == 0


def test_throttled_at_login_is_backoff_not_a_login_failure(dovecot, new_user):
    """Gmail refuses a login over its connection cap with a text its preset knows: the engine
    must back off (Throttled, the preset's delay), not stop with "login failed"."""
    srv = dovecot("slash")
    user = new_user(srv)
    with ImapAnswerProxy("127.0.0.1", srv.port, watch=rb"^LOGIN ") as proxy:
        proxy.answer(rb"^LOGIN ", reply=b"NO [ALERT] Too many simultaneous connections. (Failure)")
        account = ImapAccount(email=f"{user.name}@gmail.com", username=user.name, host="127.0.0.1",
                              port=proxy.port, security="none", password=Secret(user.password), provider="gmail")
        with pytest.raises(Throttled) as info:
            connect(account)
        assert info.value.delay == 60.0  # gmail.toml throttle_delay
        with connect(account) as ep:  # the next login goes through
            assert ep.status("INBOX").exists == 0


# --- which answers mean "slow down" (no server needed) --------------------------------------


@pytest.mark.parametrize(("provider", "text", "delay"), [
    ("outlook", "Request is throttled. Suggested Backoff Time: 299961 milliseconds", 299.961),
    ("microsoft365", "Request is throttled. Suggested Backoff Time: 1500 milliseconds", 1.5),
    ("gmail", "[THROTTLED] Account exceeded command or bandwidth limits", None),
    ("yahoo", "UID FETCH Server error - Please try again later", 30.0),
])
def test_generic_rules_know_each_providers_text(provider, text, delay):
    err = classify.command_error(Exception(text), "x")
    assert isinstance(err, Throttled) and err.delay == delay


@pytest.mark.parametrize(("provider", "text", "delay"), [
    # Texts only the presets know (Quirks.throttle_patterns), without them a failed command.
    ("gmail", "[ALERT] Account exceeded command or bandwidth limits. (Failure)", 60.0),
    ("gmail", "[ALERT] Too many simultaneous connections. (Failure)", 60.0),
    ("yahoo", "UID FETCH Server error \u2013 Please try again later", 30.0),  # en dash
    ("aol", "UID FETCH Server error \u2013 Please try again later", 30.0),
    ("outlook", "Request is throttled", 30.0),
])
def test_preset_patterns_turn_provider_texts_into_backoff(provider, text, delay):
    assert isinstance(classify.command_error(Exception(text), "x"), MessageError)
    found = classify.provider_throttle(provider, text, "x")
    assert isinstance(found, Throttled) and found.delay == delay
    assert classify.provider_throttle("imap", text, "x") is None  # generic servers: not ours to guess
    assert classify.provider_throttle(None, text, "x") is None


def test_exchange_authenticated_but_not_connected_is_an_auth_failure():
    err = classify.command_error(Exception("NO User is authenticated but not connected."), "SELECT INBOX")
    assert isinstance(err, AuthFailed) and "IMAP may be disabled" in (err.hint or "")
    bye = classify.command_error(ConnectionResetError("reset"), "x")
    assert isinstance(bye, ConnectionLost)
