"""Copy one source folder into one target folder, exactly once per message, resumably.

The steps, each safe to interrupt at any point:

1. Read the source folder's state. If UIDVALIDITY changed since the journal last saw it, the
   journal's rows for the old UIDs are dropped; the ledger still knows the target's content, so
   the rescan recognises every message already there by its key and copies nothing twice.
2. Fast path: UIDVALIDITY, UIDNEXT and EXISTS unchanged and HIGHESTMODSEQ unchanged -> nothing
   to fetch. With only MODSEQ changed -> fetch just the changed flags (CONDSTORE).
3. Otherwise list the folder's UIDs and flags; sync changed flags onto the copies we made; fetch
   identifying headers of messages the journal does not know yet and compute their keys.
4. In chunks, under the target folder's lock: reconcile the ledger with the target, decide per
   key how many copies are missing (counts, not presence: twins both arrive), record duplicates,
   then claim -> fetch -> APPEND -> confirm in byte-bounded batches. Each batch's ledger and
   journal rows commit in one transaction.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ..dedupe.keys import key_of, message_id_of, subject_of
from ..dedupe.ledger import Ledger, plan_copies
from ..endpoint import Endpoint
from ..journal import FolderRecord, Journal, MessageRecord, folder_lock
from ..models import NON_COPYABLE_FLAGS, AppendItem, MessageMeta
from ..report import Failure, FolderReport
from .progress import Progress

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})


@dataclass
class SyncSettings:
    job_id: str
    journal_path: object  # pathlib.Path; typed loosely to keep this module import-light
    batch_bytes: int = 8_000_000  # bytes in flight per APPEND batch (memory stays flat)
    batch_count: int = 100
    chunk: int = 500  # messages decided per lock hold
    append_limit: int | None = None  # preset/APPENDLIMIT cap
    exclude_keys: Callable[[], set[str]] | None = None  # Gmail All Mail: keys filed elsewhere
    flag_filter: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None  # provider quirks
    prepare_body: Callable[[bytes], bytes] | None = None  # provider quirks (e.g. trailing CRLF)
    cancel: threading.Event | None = None  # checked between batches: Ctrl-C stops within a batch


class Cancelled(Exception):
    """The job was asked to stop; everything done so far is committed."""


def _batches(metas: Sequence[MessageMeta], max_bytes: int, max_count: int) -> Iterator[list[MessageMeta]]:
    batch: list[MessageMeta] = []
    size = 0
    for m in metas:
        if batch and (size + m.size > max_bytes or len(batch) >= max_count):
            yield batch
            batch, size = [], 0
        batch.append(m)
        size += m.size
    if batch:
        yield batch


_FAULT = os.environ.get("MAILMIGRATE_FAULT", "")  # test-only crash injection, e.g. "after-append:25"
_fault_count = 0


def _fault_point(name: str, n: int) -> None:
    """Kill this process hard at a named point (reliability tests: the APPEND happened on the
    server but its journal commit did not). Inert unless MAILMIGRATE_FAULT names the point."""
    global _fault_count
    if not _FAULT.startswith(name + ":"):
        return
    _fault_count += n
    if _fault_count >= int(_FAULT.split(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


class FolderSync:
    def __init__(self, settings: SyncSettings, source: str, target: str, src: Endpoint, dst: Endpoint,
                 journal: Journal, progress: Progress, report: FolderReport) -> None:
        self.s = settings
        self.source, self.target = source, target
        self.src, self.dst = src, dst
        self.j = journal
        self.ledger = Ledger(journal)
        self.progress = progress
        self.r = report
        self._perm: frozenset[str] | None = None
        self._perm_known = False
        self.copied_this_run = 0  # copied by an earlier attempt of this run (see Job._sync_one)

    # --- flags ----------------------------------------------------------------------------

    def _target_flags(self, flags: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
        """Flags to APPEND/STORE on the target, and how many keywords had to be dropped."""
        if not self._perm_known:
            getter = getattr(self.dst, "permanent_flags", None)
            self._perm = getter(self.target) if getter else None
            self._perm_known = True
        out = [f for f in flags if f not in NON_COPYABLE_FLAGS]
        if self.s.flag_filter:
            out = list(self.s.flag_filter(tuple(out)))
        dropped = 0
        if self._perm is not None and "\\*" not in self._perm:
            perm = {p.lower() for p in self._perm}
            kept = [f for f in out if f.lower() in perm or (f in SYSTEM_FLAGS and not perm)]
            dropped = len(out) - len(kept)
            out = kept
        return tuple(out), dropped

    # --- main -----------------------------------------------------------------------------

    def run(self) -> FolderReport:
        t0 = time.monotonic()
        st = self.src.status(self.source)
        rec = self.j.folder(self.s.job_id, self.source)
        if rec and rec.uidvalidity is not None and rec.uidvalidity != st.uidvalidity:
            self.j.forget_uidvalidity(self.s.job_id, self.source, st.uidvalidity)
            self.r.note = (f"source UIDVALIDITY changed ({rec.uidvalidity} -> {st.uidvalidity}): "
                           "rescanned by content, nothing copied twice")
            rec = None
        known = self.j.messages(self.s.job_id, self.source, st.uidvalidity)
        unchanged = bool(rec and rec.complete and rec.uidnext == st.uidnext and rec.exists == st.exists
                         and rec.target_folder == self.target)
        self.progress.folder_total(self.source, st.exists)
        if unchanged and rec and st.highestmodseq is not None and rec.highestmodseq is not None:
            if rec.highestmodseq != st.highestmodseq:
                changed = list(self.src.fetch_meta(self.source, None, changed_since=rec.highestmodseq,
                                                   with_keys=False))
                self._sync_flags(changed, known, st.uidvalidity)
            settled = sum(1 for m in known.values() if m.state in ("copied", "duplicate"))
            self.r.source_messages = st.exists
            self.r.skipped_duplicates = settled
            self.r.failed = sum(1 for m in known.values() if m.state == "failed")
            self.progress.count(self.source, duplicates=settled)
            if self.r.failed == 0:
                self._save(st, complete=True)
                self.r.duration_s = round(time.monotonic() - t0, 3)
                return self.r
            # failed messages from an earlier run: fall through and try them again
        self._full_pass(st, known)
        self.r.duration_s = round(time.monotonic() - t0, 3)
        return self.r

    def _save(self, st: object, *, complete: bool) -> None:
        self.j.save_folder(self.s.job_id, FolderRecord(
            self.source, self.target, st.uidvalidity, st.uidnext, st.exists,  # type: ignore[attr-defined]
            st.highestmodseq, complete))  # type: ignore[attr-defined]

    def _full_pass(self, st: object, known: dict[int, MessageRecord]) -> None:
        uidvalidity: int = st.uidvalidity  # type: ignore[attr-defined]
        self._save(st, complete=False)
        metas = list(self.src.fetch_meta(self.source, None, with_keys=False))
        self.r.source_messages = len(metas)
        self.progress.folder_total(self.source, len(metas))
        self._sync_flags([m for m in metas if m.uid in known], known, uidvalidity)

        new_uids = [m.uid for m in metas if m.uid not in known]
        keyed: dict[int, MessageMeta] = {}
        for m in self.src.fetch_meta(self.source, new_uids, with_keys=True) if new_uids else ():
            keyed[m.uid] = m
        by_uid = {m.uid: m for m in metas}
        keys: dict[int, str] = {}
        for uid, m in keyed.items():
            keys[uid] = key_of(m)
        for uid, k in known.items():
            if uid in by_uid:
                keys[uid] = k.key
        source_keys: Counter[str] = Counter(keys.values())
        open_uids = [m.uid for m in metas if m.uid in keys and (m.uid not in known or known[m.uid].state == "failed")]
        already = sum(1 for m in metas if m.uid in known and known[m.uid].state in ("copied", "duplicate"))
        already = max(0, already - self.copied_this_run)
        self.r.skipped_duplicates += already
        self.progress.count(self.source, duplicates=already)

        excluded: set[str] = self.s.exclude_keys() if self.s.exclude_keys else set()
        referenced = {m.ledger_id for m in known.values() if m.ledger_id is not None}
        for i in range(0, len(open_uids), self.s.chunk):
            chunk = open_uids[i:i + self.s.chunk]
            metas_chunk = [keyed.get(u) or by_uid[u] for u in chunk]
            self._copy_chunk(metas_chunk, keys, source_keys, excluded, referenced, uidvalidity)
        self._save(st, complete=True)

    def _sync_flags(self, metas: list[MessageMeta], known: dict[int, MessageRecord], uidvalidity: int) -> None:
        """Apply source flag changes to the copies we made (migrate early, sync at cut-over)."""
        changes: list[tuple[int, tuple[str, ...]]] = []
        for m in metas:
            rec = known.get(m.uid)
            if not rec or rec.state != "copied":
                continue
            new = tuple(sorted(f for f in m.flags if f not in NON_COPYABLE_FLAGS))
            if new == tuple(sorted(rec.flags)):
                continue
            uid = self.ledger.uid_of(rec.ledger_id) if rec.ledger_id else None
            if uid is None:
                continue  # copy's UID not known yet (server without UIDPLUS): next run
            flags, _ = self._target_flags(new)
            self.dst.set_flags(self.target, uid, flags)
            changes.append((m.uid, new))
        if changes:
            self.j.update_flags(self.s.job_id, self.source, uidvalidity, changes)
            self.r.flags_updated += len(changes)

    def _copy_chunk(self, metas: list[MessageMeta], keys: dict[int, str], source_keys: Counter[str],
                    excluded: set[str], referenced: set[int], uidvalidity: int) -> None:
        job = self.s.job_id
        with folder_lock(self.s.journal_path, self.target):  # type: ignore[arg-type]
            tst = self.dst.status(self.target)
            self.ledger.reconcile(self.dst, self.target, tst)
            open_by_key: dict[str, list[int]] = {}
            skipped_excluded: list[MessageMeta] = []
            for m in metas:
                if keys[m.uid] in excluded:
                    skipped_excluded.append(m)
                else:
                    open_by_key.setdefault(keys[m.uid], []).append(m.uid)
            tcounts = self.ledger.counts(self.target, open_by_key)
            copy_uids, dup_uids = plan_copies(source_keys, tcounts, open_by_key)
            orphans = self.ledger.orphans_of_job(self.target, job, referenced)
            by_uid = {m.uid: m for m in metas}
            rows = []
            for uid in dup_uids:
                m = by_uid[uid]
                ids = orphans.get(keys[uid])
                if ids:  # our own APPEND whose journal commit was lost: it is our copy
                    lid = ids.pop(0)
                    referenced.add(lid)
                    rows.append((uid, keys[uid], tuple(m.flags), "copied", lid, None, m.size))
                else:
                    rows.append((uid, keys[uid], tuple(m.flags), "duplicate", None, None, m.size))
            for m in skipped_excluded:  # e.g. All Mail: filed under a label already
                rows.append((m.uid, keys[m.uid], tuple(m.flags), "duplicate", None, "filed in another folder",
                             m.size))
            if rows:
                self.j.record_messages(job, self.source, uidvalidity, rows)
                n = len(rows)
                self.r.skipped_duplicates += n
                self.progress.count(self.source, duplicates=n)

            to_copy: list[MessageMeta] = []
            fail_rows = []
            for uid in copy_uids:
                m = by_uid[uid]
                if self.s.append_limit and m.size > self.s.append_limit:
                    reason = f"too big: {m.size} bytes, the target accepts at most {self.s.append_limit}"
                    fail_rows.append((uid, keys[uid], tuple(m.flags), "failed", None, reason, m.size))
                    self._fail(m, reason)
                else:
                    to_copy.append(m)
            if fail_rows:
                self.j.record_messages(job, self.source, uidvalidity, fail_rows)
            for batch in _batches(to_copy, self.s.batch_bytes, self.s.batch_count):
                if self.s.cancel is not None and self.s.cancel.is_set():
                    raise Cancelled()
                self._copy_batch(batch, keys, uidvalidity, referenced)

    def _fail(self, m: MessageMeta, reason: str) -> None:
        self.r.failed += 1
        self.r.failures.append(Failure(folder=self.source, uid=m.uid, message_id=message_id_of(m),
                                       subject=subject_of(m), size=m.size, reason=reason))
        self.progress.count(self.source, failed=1)

    def _copy_batch(self, batch: list[MessageMeta], keys: dict[int, str], uidvalidity: int,
                    referenced: set[int]) -> None:
        job = self.s.job_id
        with self.j.tx():
            claims = {m.uid: self.ledger.claim(self.target, keys[m.uid], job) for m in batch}
        raws = {r.uid: r for r in self.src.fetch_messages(self.source, [m.uid for m in batch])}
        items: list[AppendItem] = []
        order: list[MessageMeta] = []
        dropped_total = 0
        for m in batch:
            raw = raws.get(m.uid)
            if raw is None:
                continue  # expunged on the source meanwhile: nothing to copy
            flags, dropped = self._target_flags(tuple(raw.flags))
            dropped_total += dropped
            body = self.s.prepare_body(raw.body) if self.s.prepare_body else raw.body
            items.append(AppendItem(body=body, flags=flags, internaldate=raw.internaldate))
            order.append(m)
        results = self.dst.append(self.target, items) if items else []
        _fault_point("after-append", len(results))
        rows = []
        nbytes = 0
        copied = 0
        meta_of = {m.uid: m for m in batch}
        with self.j.tx():
            for m in batch:
                if m.uid not in raws:
                    self.ledger.release(claims[m.uid])
            for m, item, res in zip(order, items, results, strict=True):
                raw = raws[m.uid]
                if res.ok:
                    self.ledger.confirm(claims[m.uid], res.uid, res.uidvalidity)
                    referenced.add(claims[m.uid])
                    rows.append((m.uid, keys[m.uid], tuple(f for f in raw.flags if f not in NON_COPYABLE_FLAGS),
                                 "copied", claims[m.uid], None, len(item.body)))
                    nbytes += len(item.body)
                    copied += 1
                else:
                    self.ledger.release(claims[m.uid])
                    reason = res.error or "refused by the target"
                    rows.append((m.uid, keys[m.uid], tuple(raw.flags), "failed", None, reason, len(item.body)))
                    self._fail(meta_of[m.uid], reason)
            self.j.record_messages(job, self.source, uidvalidity, rows)
        self.r.copied += copied
        self.r.bytes += nbytes
        self.r.dropped_keywords += dropped_total
        self.progress.count(self.source, copied=copied, nbytes=nbytes)

