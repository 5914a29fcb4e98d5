"""The job report: the one structure behind the summary table, ``--report`` JSON and the
confirmation mail. Field names are a public contract (admins script against them)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

JobStatus = Literal["ok", "partial", "failed", "interrupted", "dry-run"]


class Failure(BaseModel):
    folder: str
    uid: int | None = None
    message_id: str | None = None
    subject: str | None = None
    size: int | None = None
    reason: str  # the server's answer or our reason, never a secret


class FolderReport(BaseModel):
    source: str
    target: str | None  # None: skipped (see ``note``)
    copied: int = 0
    skipped_duplicates: int = 0
    failed: int = 0
    flags_updated: int = 0
    dropped_keywords: int = 0  # keywords the target could not store (PERMANENTFLAGS)
    bytes: int = 0
    source_messages: int = 0
    duration_s: float = 0.0
    note: str | None = None  # e.g. "renamed: target refused '~x'", "excluded", "unchanged since last run"
    failures: list[Failure] = Field(default_factory=list)


class Totals(BaseModel):
    folders: int = 0
    copied: int = 0
    skipped_duplicates: int = 0
    failed: int = 0
    flags_updated: int = 0
    dropped_keywords: int = 0
    bytes: int = 0
    source_messages: int = 0


class ErrorInfo(BaseModel):
    reference: str
    message: str
    hint: str | None = None


class JobReport(BaseModel):
    job_id: str
    source: str  # label, e.g. "alice@imap.example.com:993" (never a secret)
    target: str
    source_email: str | None = None
    target_email: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float = 0.0
    status: JobStatus = "ok"
    exit_code: int = 0
    dry_run: bool = False
    folders: list[FolderReport] = Field(default_factory=list)
    totals: Totals = Field(default_factory=Totals)
    renamed_folders: list[dict[str, str]] = Field(default_factory=list)
    error: ErrorInfo | None = None
    rerun_command: str | None = None  # how to run the job again (no secrets)
    journal: str | None = None
    notification: str | None = None  # what happened to the confirmation mail

    def compute_totals(self) -> Totals:
        t = Totals(folders=len(self.folders))
        for f in self.folders:
            t.copied += f.copied
            t.skipped_duplicates += f.skipped_duplicates
            t.failed += f.failed
            t.flags_updated += f.flags_updated
            t.dropped_keywords += f.dropped_keywords
            t.bytes += f.bytes
            t.source_messages += f.source_messages
        self.totals = t
        return t

    def failures(self) -> list[Failure]:
        return [x for f in self.folders for x in f.failures]

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        # Private: it holds addresses and subjects of failed messages.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.model_dump_json(indent=2))
        tmp.replace(path)

    @classmethod
    def read_json(cls, path: Path) -> JobReport:
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


def utcnow() -> datetime:
    return datetime.now(UTC)
