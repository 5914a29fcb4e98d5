"""The fit check: will the job fit the target? Decided before anything is copied.

The job reads every folder first (the scan: UIDs, ``RFC822.SIZE`` and identifying headers, no
bodies) and plans what each folder will copy. ``check`` (pure) sets that against:

* the target's quota (``GETQUOTAROOT``, RFC 9208: storage and message count left);
* the largest message it accepts: its ``APPENDLIMIT`` and the preset's size limit (a message
  above it is listed: it would fail alone, with its reason);
* the provider's folder limits, where the preset knows them (messages per folder);
* the daily budgets of both accounts (``migrate.engine.budget``): they do not stop a job from
  fitting, they say how long it takes (the honest finish time, ``migrate.engine.eta``).

The outcome, in words: "fits"; "fits, 2 messages too big (listed)"; "does not fit: 4.2 GB to
copy, 1.1 GB free". A job that does not fit stops before its first write with ``DoesNotFit``
(exit 2) unless forced (``--force``); a dry run shows the check and writes nothing anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..dedupe.keys import message_id_of, subject_of
from ..errors import ExitCode, FatalError
from ..models import MessageMeta, Quota
from ..report import FitLimit, FitMessage, FitReport
from .budget import DailyLimit, megabytes
from .eta import Window, finish_time, human_bytes

TOO_BIG_LISTED = 50  # names in the report; the count says how many there are


class DoesNotFit(FatalError):
    """The job does not fit the target: nothing was copied (``--force`` copies anyway)."""

    reference = "does-not-fit"
    exit_code = ExitCode.USAGE


@dataclass
class FolderSizes:
    """What the scan found in one folder to copy."""

    source: str
    target: str | None
    messages: int  # source messages
    bytes: int  # of the messages read (0 for a folder unchanged since the last run: not read)
    copy: list[MessageMeta] = field(default_factory=list)  # not on the target yet, as far as known
    largest: MessageMeta | None = None
    target_messages: int = 0  # in the target folder now


@dataclass
class Limits:
    """The target's limits and the job's budgets, with where each comes from."""

    quota: Quota | None = None
    append_limit: int | None = None  # the server's APPENDLIMIT
    preset_size_limit: int | None = None
    preset: str = ""  # the target's preset name
    provider: str = "the target"  # its name in a sentence
    messages_per_folder: int | None = None
    folder_limit_source: str = ""
    budgets: Sequence[tuple[DailyLimit, int]] = ()  # each budget and what was moved under it today
    windows: Sequence[Window] = ()

    @property
    def size_limit(self) -> int | None:
        known = [n for n in (self.append_limit, self.preset_size_limit) if n]
        return min(known) if known else None


def _named(folder: str, m: MessageMeta) -> FitMessage:
    return FitMessage(folder=folder, uid=m.uid, size=m.size, subject=subject_of(m) if m.header else None,
                      message_id=message_id_of(m) if m.header else None)


def check(folders: Sequence[FolderSizes], limits: Limits) -> FitReport:
    """The fit report (``migrate.report.FitReport``) of a job (see the module docstring)."""
    cap = limits.size_limit
    too_big = [(f.source, m) for f in folders for m in f.copy if cap and m.size > cap]
    will_copy = [m for f in folders for m in f.copy if not (cap and m.size > cap)]
    to_copy_bytes = sum(m.size for m in will_copy)
    largest = max(((f.source, f.largest) for f in folders if f.largest is not None),
                  key=lambda x: x[1].size, default=None)
    q = limits.quota
    report = FitReport(
        outcome="fits", text="fits", source_messages=sum(f.messages for f in folders),
        source_bytes=sum(f.bytes for f in folders), to_copy_messages=len(will_copy), to_copy_bytes=to_copy_bytes,
        target_messages=sum(f.target_messages for f in folders),
        used_bytes=q.storage_used if q else None, free_bytes=q.free_bytes if q else None,
        free_messages=q.free_messages if q else None,
        largest=_named(*largest) if largest else None,
        too_big=[_named(folder, m) for folder, m in sorted(too_big, key=lambda x: -x[1].size)[:TOO_BIG_LISTED]],
        limits=_limits(limits))
    problem = _does_not_fit(report, folders, limits)
    if problem:
        report.outcome, report.text = "does_not_fit", f"does not fit: {problem}"
    elif too_big:
        report.outcome = "too_big"
        report.text = f"fits, {len(too_big)} message{'s' if len(too_big) != 1 else ''} too big (listed)"
    if q is None:
        report.notes.append("the target does not say how much room it has (no IMAP QUOTA): "
                            "checked against its size limits only")
    for limit, used in limits.budgets:
        report.notes.append(f"{limit.says()} ({limit.source}); {megabytes(used)} moved today")
    eta = finish_time(to_copy_bytes, None, limits.windows)
    if eta.budget_bound:
        report.finish = eta.text
        report.notes.append(f"finish time: {eta.text}")
    return report


def _does_not_fit(r: FitReport, folders: Sequence[FolderSizes], limits: Limits) -> str | None:
    """Why the job cannot fit, in words; None when it can."""
    if r.free_bytes is not None and r.to_copy_bytes > r.free_bytes:
        return f"{human_bytes(r.to_copy_bytes)} to copy, {human_bytes(r.free_bytes)} free"
    if r.free_messages is not None and r.to_copy_messages > r.free_messages:
        return f"{r.to_copy_messages:,} messages to copy, room for {r.free_messages:,} more"
    per_folder = limits.messages_per_folder
    if per_folder:
        for f in folders:
            would_hold = f.target_messages + len(f.copy)
            if f.target is not None and would_hold > per_folder:
                return (f"'{f.target}' would hold {would_hold:,} messages, {limits.provider} allows "
                        f"{per_folder:,} per folder")
    return None


def _limits(limits: Limits) -> list[FitLimit]:
    out: list[FitLimit] = []
    q = limits.quota
    if q is not None and q.storage_limit is not None:
        out.append(FitLimit(name="quota-storage", value=q.storage_limit, source="GETQUOTAROOT (RFC 9208)"))
    if q is not None and q.messages_limit is not None:
        out.append(FitLimit(name="quota-messages", value=q.messages_limit, source="GETQUOTAROOT (RFC 9208)"))
    if limits.append_limit:
        out.append(FitLimit(name="size-limit", value=limits.append_limit, source="APPENDLIMIT (RFC 7889)"))
    if limits.preset_size_limit:
        out.append(FitLimit(name="size-limit", value=limits.preset_size_limit, source=f"preset {limits.preset}"))
    if limits.messages_per_folder:
        out.append(FitLimit(name="messages-per-folder", value=limits.messages_per_folder,
                            source=limits.folder_limit_source))
    for limit, _used in limits.budgets:
        out.append(FitLimit(name=f"{limit.direction}-per-day", value=limit.per_day, source=limit.source))
    return out


def fit_lines(fit: FitReport) -> list[str]:
    """The fit report as lines for a terminal or a log (the CLI's summary, ``--dry-run``)."""
    free = "unknown" if fit.free_bytes is None else human_bytes(fit.free_bytes)
    lines = [f"fit: {fit.text}" + (" (copied anyway: --force)" if fit.forced else ""),
             f"  to copy: {fit.to_copy_messages:,} messages, {human_bytes(fit.to_copy_bytes)}; free on the target: "
             f"{free}" + (f" ({fit.free_messages:,} more messages)" if fit.free_messages is not None else "")]
    if fit.largest is not None:
        lines.append(f"  largest: {human_bytes(fit.largest.size)} ({_where(fit.largest)})")
    for m in fit.too_big:
        lines.append(f"  too big: {human_bytes(m.size)} ({_where(m)})")
    lines += [f"  {note}" for note in fit.notes]
    return lines


def _where(m: FitMessage) -> str:
    return f"{m.folder} uid {m.uid}" + (f", subject {m.subject!r}" if m.subject else "")
