"""Flags sent to the target: \\Recent never, keywords the target cannot store dropped and counted."""

from __future__ import annotations

from pathlib import Path

from migrate.engine.folder_sync import FolderSync, SyncSettings


class _Target:
    def __init__(self, perm):
        self.perm = perm

    def permanent_flags(self, folder):
        return self.perm


def _sync(perm, flag_filter=None) -> FolderSync:
    s = SyncSettings(job_id="j", journal_path=Path("/nonexistent/j.sqlite"), flag_filter=flag_filter)
    fs = FolderSync.__new__(FolderSync)  # only the flag logic: no journal, no connection
    fs.s, fs.dst, fs.target = s, _Target(perm), "INBOX"
    fs._perm, fs._perm_known = None, False
    return fs


FLAGS = ("\\Seen", "\\Recent", "\\Deleted", "$Forwarded", "Custom_1")


def test_keywords_allowed_when_target_says_backslash_star():
    out, dropped = _sync(frozenset({"\\Seen", "\\Deleted", "\\*"}))._target_flags(FLAGS)
    assert out == ("\\Seen", "\\Deleted", "$Forwarded", "Custom_1") and dropped == 0


def test_keywords_the_target_cannot_store_are_dropped_and_counted():
    perm = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Forwarded"})
    out, dropped = _sync(perm)._target_flags(FLAGS)
    assert out == ("\\Seen", "\\Deleted", "$Forwarded")
    assert dropped == 1  # Custom_1; \\Recent is never copied and not counted


def test_unknown_permanent_flags_keep_everything_but_recent():
    out, dropped = _sync(None)._target_flags(FLAGS)
    assert "\\Recent" not in out and len(out) == 4 and dropped == 0


def test_provider_filter_applies_first():
    out, _ = _sync(None, flag_filter=lambda f: tuple(x for x in f if x != "$Forwarded"))._target_flags(FLAGS)
    assert "$Forwarded" not in out
