"""A job stopped by a full target: say per folder what was not copied, and why.

``OverQuota`` is fatal (nothing fits until someone makes room), so the job stops where it is:
the folder being copied and the others running beside it end part way. Without this, their
messages that were not copied were counted nowhere (``copied 0 / present 38 / failed 0`` for 43
messages). Here every folder the job had started counts what it did not copy as failed, with a
reason in plain words (the confirmation mail translates it); a folder the job never reached (its
note says "not started") says so instead: how many of its messages the target holds already was
not looked at, so nothing is counted for it.
"""

from __future__ import annotations

from ..errors import OverQuota
from ..report import Failure, JobReport

FULL = "the new mailbox is full"  # Failure.reason and FolderReport.note (migrate.notify.compose translates it)
FULL_NOT_STARTED = "not started: the new mailbox is full"


def count_not_copied(report: JobReport) -> None:
    """Before the totals are computed: if the job stopped because the target is full, count the
    messages each started folder did not copy as failed (reason ``FULL``)."""
    if report.error is None or report.error.reference != OverQuota.reference:
        return
    for fr in report.folders:
        if fr.target is None:
            continue
        done = fr.copied + fr.restored + fr.skipped_duplicates + fr.failed
        if not done and (fr.note or "").startswith("not started"):
            fr.note = FULL_NOT_STARTED  # never reached: what the target holds of it is not known
            continue
        missing = fr.source_messages - done
        if missing > 0:
            fr.failed += missing
            fr.failures.append(Failure(folder=fr.source, reason=FULL))
            fr.note = FULL
