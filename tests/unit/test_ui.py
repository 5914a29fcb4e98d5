"""The job summary as plain text (output not to a terminal): nothing cut, columns aligned."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest

from migrate import ui
from migrate.report import ErrorInfo, Failure, FolderReport, JobReport


def _report() -> JobReport:
    long = "Archive/" + "Projects-" * 12 + "final"
    r = JobReport(job_id="j", source="a@x:993", target="b@y:993", source_email="a@example.org",
                  target_email="b@example.org", started_at=datetime(2026, 1, 1, tzinfo=UTC),
                  status="partial", exit_code=1, notification="confirmation mail: off (--no-notify)",
                  error=ErrorInfo(reference="x", message="one message refused", hint="see the report"),
                  folders=[FolderReport(source="INBOX", target="INBOX", copied=12, skipped_duplicates=3, bytes=2_500_000),
                           FolderReport(source="日本語", target="日本語", copied=1),
                           FolderReport(source=long, target=long, failed=1,
                                        failures=[Failure(folder=long, uid=9, subject="big", reason="NO too big")])])
    r.compute_totals()
    return r


def test_plain_table_aligns_wide_characters_and_never_cuts() -> None:
    lines = ui.plain_table([("name", False), ("n", True)], [["日本語", "1"], ["abcdefgh", "22"]])
    assert lines == ["name       n", "日本語     1", "abcdefgh  22"]


def test_summary_to_a_pipe_is_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    r = _report()
    ui.print_summary(r)
    text = out.getvalue()
    assert "│" not in text and "[" not in text  # no box drawing, no markup
    lines = text.splitlines()
    assert lines[0] == "a@example.org (x:993) → b@example.org (y:993)"
    long = r.folders[2].source
    row = next(ln for ln in lines if ln.startswith(long))
    assert row.split() == [long, long, "0", "0", "1", "0", "B"]  # the whole name, never "Archive/Pro…"
    assert any(ln.split()[:5] == ["total", "13", "3", "1", "2.5"] for ln in lines)
    assert f"failed: {long} uid 9 subject='big': NO too big" in lines
    assert "status: done, some messages failed (exit 1)" in lines
    assert lines[-1] == "confirmation mail: off (--no-notify)"
    assert err.getvalue() == "error: one message refused (hint: see the report)\n"
    # columns line up on screen (a CJK character takes two cells): "copied" ends at one column
    col = lines[1].index("copied") + len("copied")

    for ln in lines[2:5]:  # the three folder rows
        copied = re.match(r"(.+?) {2,}(.+?) {2,}(\d+)", ln)
        assert copied is not None and ui._width(copied.group(0)) == col, (ln, lines[1])


def test_endpoint_names() -> None:
    assert ui.endpoint_name("alice@gmx.net@imap.gmx.net:993", "alice@gmx.net") == "alice@gmx.net (imap.gmx.net:993)"
    assert ui.endpoint_name("alice@mail.example.com:143", "alice@example.com") == \
        "alice@example.com (mail.example.com:143)"  # the login differs from the address
    assert ui.endpoint_name("maildir:/srv/mail/bob", None) == "/srv/mail/bob"
    assert ui.endpoint_name("mbox:/tmp/x.mbox", "bob@example.com") == "bob@example.com (/tmp/x.mbox)"


def test_no_table_when_nothing_was_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    r = JobReport(job_id="j", source="a@x:993", target="b@y:993", source_email="a@example.org",
                  target_email="b@example.org", started_at=datetime(2026, 1, 1, tzinfo=UTC), status="failed",
                  exit_code=3, error=ErrorInfo(reference="login-failed", message="login refused", hint="check"))
    r.compute_totals()
    ui.print_summary(r)
    assert out.getvalue().splitlines() == ["a@example.org (x:993) → b@example.org (y:993)", "status: failed (exit 3)"]
    assert err.getvalue() == "error: login refused (hint: check)\n"


def test_console_notices_not_wrapped_off_a_terminal() -> None:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, highlight=False)
    console.soft_wrap = not console.is_terminal  # as ui._console does
    console.print("warning: " + "word " * 40)
    assert len(buf.getvalue().splitlines()) == 1
    ui._console.cache_clear()
    assert ui._console(True).soft_wrap is True  # pytest captures stderr: not a terminal
