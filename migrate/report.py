"""The job report: the one structure behind the summary table, ``--report`` JSON and the
confirmation mail. Field names are a public contract (admins script against them).

Plain dataclasses, not pydantic models: a report is built and written on every run, and importing
pydantic's model machinery costs about 0.1 s of start-up, more than a whole no-op re-run. What we
*read back* (reports from disk or the journal) is validated by pydantic in ``load``, off that path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

# "waiting": stopped at a provider's daily budget; ``resume_at`` says when it may go on.
JobStatus = Literal["ok", "partial", "failed", "interrupted", "dry-run", "waiting"]
FitOutcome = Literal["fits", "too_big", "does_not_fit"]
T = TypeVar("T")


@dataclass(kw_only=True)
class Failure:
    folder: str
    uid: int | None = None
    message_id: str | None = None
    subject: str | None = None
    size: int | None = None
    reason: str  # the server's answer or our reason, never a secret


@dataclass(kw_only=True)
class FolderReport:
    source: str
    target: str | None  # None: skipped (see ``note``)
    copied: int = 0
    skipped_duplicates: int = 0
    failed: int = 0
    flags_updated: int = 0
    dropped_keywords: int = 0  # keywords the target could not store (PERMANENTFLAGS)
    bytes: int = 0
    source_messages: int = 0
    # Copied again because an earlier copy (or the message found there) had gone from the target.
    restored: int = 0
    # Copies the target stored differently from what we sent (its RFC822.SIZE differs).
    stored_differently: int = 0
    duration_s: float = 0.0
    note: str | None = None  # e.g. "renamed: target refused '~x'", "excluded", "unchanged since last run"
    failures: list[Failure] = field(default_factory=list)


@dataclass(kw_only=True)
class Totals:
    folders: int = 0
    copied: int = 0
    skipped_duplicates: int = 0
    failed: int = 0
    flags_updated: int = 0
    dropped_keywords: int = 0
    bytes: int = 0
    source_messages: int = 0
    restored: int = 0
    stored_differently: int = 0


@dataclass(kw_only=True)
class ErrorInfo:
    reference: str
    message: str
    hint: str | None = None


@dataclass(kw_only=True)
class FitMessage:
    """One message the fit check names (the largest; one too big for the target)."""

    folder: str
    uid: int
    size: int
    subject: str | None = None
    message_id: str | None = None


@dataclass(kw_only=True)
class FitLimit:
    """A limit the fit check compared with, and where it comes from."""

    name: str  # quota-storage | quota-messages | size-limit | messages-per-folder | download-per-day | upload-per-day
    value: int  # bytes, or a count of messages
    source: str  # "GETQUOTAROOT (RFC 9208)", "APPENDLIMIT", "preset gmail: support.google.com/..."


@dataclass(kw_only=True)
class FitReport:
    """Will the job fit the target? Computed after the folders were read, before anything is
    copied (``migrate.engine.fit``). ``text`` is the outcome in words: "fits", "fits, 2 messages
    too big (listed)", "does not fit: 4.2 GB to copy, 1.1 GB free"."""

    outcome: FitOutcome
    text: str
    source_messages: int = 0  # in the folders to copy
    source_bytes: int = 0
    to_copy_messages: int = 0  # not on the target yet (as far as its content is known)
    to_copy_bytes: int = 0
    target_messages: int | None = None  # in the target folders now
    used_bytes: int | None = None  # the target's quota usage
    free_bytes: int | None = None  # None: the target sets no quota (or does not say)
    free_messages: int | None = None
    largest: FitMessage | None = None
    too_big: list[FitMessage] = field(default_factory=list)
    limits: list[FitLimit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # folder limits, daily budgets and what they mean
    finish: str | None = None  # the honest finish time, e.g. "about 2 days: Gmail allows 2.5 GB a day; ..."
    forced: bool = False  # did not fit, copied anyway (--force)


@dataclass(kw_only=True)
class JobReport:
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
    folders: list[FolderReport] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    renamed_folders: list[dict[str, str]] = field(default_factory=list)
    error: ErrorInfo | None = None
    rerun_command: str | None = None  # how to run the job again (no secrets)
    journal: str | None = None
    notification: str | None = None  # what happened to the confirmation mail
    fit: FitReport | None = None  # the fit check (None: the job stopped before it)
    resume_at: datetime | None = None  # status "waiting": when the provider's budget allows more

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
            t.restored += f.restored
            t.stored_differently += f.stored_differently
        self.totals = t
        return t

    def failures(self) -> list[Failure]:
        return [x for f in self.folders for x in f.failures]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    def to_json(self, indent: int | None = None) -> str:
        return dumps(self, indent=indent)

    def write_json(self, path: Path) -> None:
        # Private: it holds addresses and subjects of failed messages.
        write_private(path, self.to_json(indent=2))

    @classmethod
    def read_json(cls, path: Path) -> JobReport:
        return load(cls, json.loads(path.read_text(encoding="utf-8")))


# --- JSON in and out ------------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    """Dataclasses -> dicts (in field order), datetimes -> ISO 8601 with ``Z`` for UTC
    (the format pydantic writes, so reports from every version read alike)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {name: to_jsonable(getattr(obj, name)) for name in (f.name for f in fields(obj))}
    if isinstance(obj, datetime):
        text = obj.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(obj, list | tuple):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False,
                      separators=None if indent else (",", ":"))


def load(cls: type[T], data: Any) -> T:
    """Validate data read back from disk or the journal into ``cls`` (types, nesting, dates).

    pydantic does the checking; it is imported here, not at module level, to keep it off the
    start-up path of every run."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls).validate_python(data)


def write_private(path: Path, text: str) -> None:
    """Write atomically (temp file + rename), readable by the owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = ["ErrorInfo", "Failure", "FitLimit", "FitMessage", "FitOutcome", "FitReport", "FolderReport", "JobReport",
           "JobStatus", "Totals", "dumps",
           "load", "to_jsonable", "utcnow", "write_private"]
