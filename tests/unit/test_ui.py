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
    r = JobReport(job_id="j", source="a@x:993", target="b@y:993", started_at=datetime(2026, 1, 1, tzinfo=UTC),
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
    assert lines[0] == "a@x:993  →  b@y:993"
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
