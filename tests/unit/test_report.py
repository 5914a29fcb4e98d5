"""The JSON report is a public contract: field names, order and formats must not drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from migrate.csvbatch.runner import BatchReport, RowReport
from migrate.report import ErrorInfo, Failure, FolderReport, JobReport, load


def _report() -> JobReport:
    r = JobReport(job_id="j1", source="alice@imap.example.com:993", target="bob@127.0.0.1:143",
                  source_email="alice@example.com", target_email="bob@example.com",
                  started_at=datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC),
                  finished_at=datetime(2026, 11, 27, 12, 0, 5, tzinfo=UTC), duration_s=5.123, status="partial",
                  exit_code=1, error=ErrorInfo(reference="x", message="Grüße 日本語"),
                  folders=[FolderReport(source="INBOX", target="INBOX", copied=2, failed=1, bytes=10_000_000_000,
                                        failures=[Failure(folder="INBOX", uid=7, subject="é", reason="NO refused")]),
                           FolderReport(source="~x", target=None, note="refused")],
                  renamed_folders=[{"from": "~x", "to": "_x"}], rerun_command="mailmigrate import ...")
    r.compute_totals()
    return r


def test_json_matches_what_pydantic_writes_for_the_same_report() -> None:
    r = _report()
    ours = r.to_json(indent=2)
    theirs = TypeAdapter(JobReport).dump_json(r, indent=2).decode()
    assert json.loads(ours) == json.loads(theirs)
    assert list(json.loads(ours)) == list(json.loads(theirs))  # same field order
    assert '"started_at": "2026-11-27T12:00:00.123456Z"' in ours
    assert '"finished_at": "2026-11-27T12:00:05Z"' in ours
    assert "Grüße 日本語" in ours  # UTF-8, not \\u escapes
    assert list(json.loads(ours)["folders"][0]["failures"][0]) == ["folder", "uid", "message_id", "subject",
                                                                   "size", "reason"]


def test_report_round_trips_through_disk(tmp_path: Path) -> None:
    r = _report()
    path = tmp_path / "sub" / "report.json"
    r.write_json(path)
    assert path.stat().st_mode & 0o777 == 0o600
    back = JobReport.read_json(path)
    assert back == r
    assert back.started_at.tzinfo is not None


def test_reading_back_validates() -> None:
    data = json.loads(_report().to_json())
    data["status"] = "fine"
    with pytest.raises(ValidationError):
        load(JobReport, data)
    data = json.loads(_report().to_json())
    data["folders"][0]["copied"] = "many"
    with pytest.raises(ValidationError):
        load(JobReport, data)


def test_batch_report_nests_job_reports(tmp_path: Path) -> None:
    b = BatchReport(file="b.csv", started_at=datetime(2026, 1, 1, tzinfo=UTC),
                    rows=[RowReport(line=2, row_id="r1", source="a@x", target="b@y", status="partial",
                                    report=_report())])
    b.compute()
    assert json.loads(b.to_json()) == json.loads(TypeAdapter(BatchReport).dump_json(b).decode())
    b.write_json(tmp_path / "batch.json")
    back = BatchReport.read_json(tmp_path / "batch.json")
    assert back == b
    assert isinstance(back.rows[0].report, JobReport)
    assert back.totals.failed_messages == 1
