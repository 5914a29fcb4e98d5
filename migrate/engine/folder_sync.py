"""Copy one source folder into one target folder, exactly once per message, resumably.

The steps, each safe to interrupt at any point:

1. Read the source folder's state. If UIDVALIDITY changed since the journal last saw it, the
   journal's rows for the old UIDs are dropped; the ledger still knows the target's content, so
   the rescan recognises every message already there by its key and copies nothing twice.
2. Fast path: UIDVALIDITY, UIDNEXT and EXISTS unchanged and HIGHESTMODSEQ unchanged -> nothing
   to fetch. With only MODSEQ changed -> fetch just the changed flags (CONDSTORE).
3. Otherwise list the folder's UIDs and flags; sync changed flags onto the copies we made; fetch
   identifying headers of messages the journal does not know yet and compute their keys.
4. In chunks: under the target folder's lock, reconcile the ledger with the target, decide per
   key how many copies are missing (counts, not presence: twins both arrive), record duplicates
   and commit claims for the rest. Then, outside the lock, fetch -> APPEND -> confirm in
   byte-bounded batches, fetching the next batch while the current one is appended. Each batch's
   ledger and journal rows commit in one transaction.

A big folder is split into parts (contiguous UID ranges) that run on several connections at
once. The folder is scanned once for all of them (``FolderScan``), so a key's count always covers
the whole folder; the claims of a live part count as present for the others.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..dedupe.keys import key_of, message_id_of, split_raw, subject_of
from ..dedupe.ledger import Ledger, plan_copies
from ..dedupe.reconcile import reconcile_with_target
from ..endpoint import Endpoint
from ..errors import MessageError, RetryableError
from ..gate import WriteGate
from ..journal import FolderRecord, Journal, MessageRecord
from ..models import NON_COPYABLE_FLAGS, AppendItem, FolderStatus, MessageMeta, RawMessage
from ..report import Failure, FolderReport
from ..store import MessageRow
from ..store.location import locks_for
from .budget import BudgetReached, DailyBudgets, Ticket
from .locks import Locks
from .memory import give_back_free_memory
from .progress import Progress

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})


@dataclass
class SyncSettings:
    job_id: str
    journal_path: object  # a Path or a PgJournal (``migrate.store.location``); loosely typed: import-light
    batch_bytes: int = 4_000_000  # bytes in flight per APPEND batch (memory stays flat)
    batch_count: int = 100
    chunk: int = 500  # messages decided per lock hold
    append_limit: int | None = None  # preset/APPENDLIMIT cap
    exclude_keys: Callable[[], set[str]] | None = None  # Gmail All Mail: keys filed elsewhere
    flag_filter: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None  # provider quirks
    prepare_body: Callable[[bytes], bytes] | None = None  # provider quirks (e.g. trailing CRLF)
    cancel: threading.Event | None = None  # checked between batches: Ctrl-C stops within a batch
    pace: Callable[[int], None] | None = None  # waits so that n more messages keep the target's rate
    budget: ByteBudget | None = None  # bytes of message bodies in memory across the whole job
    daily: DailyBudgets | None = None  # the providers' daily budgets (``migrate.engine.budget``)
    locks: Locks | None = None  # None: ``locks_for(journal_path)``; a dry run takes none (``NoLocks``)
    # The job's write gate (``migrate.gate``). Closed (a dry run): nothing is fetched or appended,
    # what a real run would copy is counted instead.
    gate: WriteGate | None = None


class ByteBudget:
    """Bounds the message bytes held in memory by all workers together, so that peak memory does
    not depend on how many big messages happen to be in flight at once. A message bigger than the
    whole budget still goes, alone."""

    TRIM_EVERY = 32_000_000  # bytes released between two give_back_free_memory() calls

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._released = 0
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            while self.used and self.used + n > self.limit:
                self._cond.wait()
            self.used += n

    def release(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._released += n
            trim = self._released >= self.TRIM_EVERY
            if trim:
                self._released = 0
            self._cond.notify_all()
        if trim:  # outside the lock: the other workers go on meanwhile
            give_back_free_memory()


class Cancelled(Exception):
    """The job was asked to stop; everything done so far is committed."""


# A message sent alone on a fresh connection this many times, each time losing the connection,
# fails (with the first drop, in a batch, that is three sends): a middlebox or server that
# drops the connection on one message must not stall the whole job.
MAX_ALONE_DROPS = 2
DROPPED_REASON = "the connection was dropped each time this message was sent ({n} times)"


def target_as_recorded(rec: FolderRecord | None, st: FolderStatus | None) -> bool:
    """Is the target folder as the last complete pass left it (UIDVALIDITY, UIDNEXT, EXISTS, and
    HIGHESTMODSEQ where offered)? Only then may its messages be taken as present unseen."""
    if rec is None or st is None or rec.target_status is None:
        return False
    uidvalidity, uidnext, exists, modseq = rec.target_status
    return ((uidvalidity, uidnext, exists) == (st.uidvalidity, st.uidnext, st.exists)
            and (st.highestmodseq is None or modseq == st.highestmodseq))


def _slim(m: MessageMeta, append_limit: int | None) -> MessageMeta:
    """What copying needs of a message once it is keyed: UID, size, flags. The identifying header
    (a few hundred bytes) stays only where the message may fail without ever being fetched (too
    big for the target), so that the report can still name it."""
    if append_limit and m.size > append_limit:
        return m
    return MessageMeta(uid=m.uid, size=m.size, flags=m.flags, internaldate=None)


def _identified(m: MessageMeta, body: bytes | None) -> MessageMeta:
    """``m`` with its identifying header: kept by the scan, or taken from the fetched body."""
    if m.header or not body:
        return m
    return MessageMeta(uid=m.uid, size=m.size, flags=m.flags, internaldate=None, header=split_raw(body)[0])


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


@dataclass
class FolderScan:
    """One scan of a source folder, shared by the parts that copy it (computed by the first)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    status: FolderStatus | None = None
    target_status: FolderStatus | None = None  # the target folder as planning saw it
    fast: bool = False  # both sides unchanged since the last complete pass: nothing to fetch
    note: str | None = None
    metas: dict[int, MessageMeta] = field(default_factory=dict)  # every source message
    keys: dict[int, str] = field(default_factory=dict)
    source_keys: Counter[str] = field(default_factory=Counter)
    open_uids: list[int] = field(default_factory=list)  # to decide: new, or failed before
    settled: int = 0  # already copied or present before this run, and seen on the target now
    # Settled before but gone from the target now: copied again and counted as ``restored``.
    # uid -> (state, ledger row) as the journal had it, to tell a later retry of this run apart.
    restore: dict[int, tuple[str, int | None]] = field(default_factory=dict)
    failed_before: int = 0
    likely: list[int] = field(default_factory=list)  # open UIDs the target lacks, as far as known (the fit check)
    flags_updated: int = 0
    # Connection drops while a message was being appended (shared by the retries of a part):
    # messages of a dropped batch are suspects and go alone; alone_drops counts their solo drops.
    suspects: set[int] = field(default_factory=set)
    alone_drops: Counter[int] = field(default_factory=Counter)
    dropped_headers: dict[int, bytes] = field(default_factory=dict)
    batch_count: int | None = None  # halved after every drop

    def release(self) -> None:
        """The folder is done: drop the per-message data (memory stays flat over many folders)."""
        self.metas, self.keys, self.source_keys, self.open_uids = {}, {}, Counter(), []
        self.restore, self.suspects, self.alone_drops, self.dropped_headers = {}, set(), Counter(), {}
        self.likely = []


class FolderSync:
    """Copies one part (``part`` of ``parts``) of a folder. Safe to redo after any failure."""

    def __init__(self, settings: SyncSettings, source: str, target: str, src: Endpoint, dst: Endpoint,
                 journal: Journal, progress: Progress, report: FolderReport, *, scan: FolderScan | None = None,
                 part: int = 0, parts: int = 1) -> None:
        self.s = settings
        self.locks: Locks = settings.locks or locks_for(settings.journal_path)  # type: ignore[arg-type]
        self.source, self.target = source, target
        self.src, self.dst = src, dst
        self.j = journal
        self.ledger = Ledger(journal)
        self.progress = progress
        self.r = report
        self.scan = scan or FolderScan()
        self.part, self.parts = part, parts
        self._sent: dict[int, tuple[int, int]] = {}  # ledger row -> (target UID, bytes sent)
        self._perm: frozenset[str] | None = None
        self._perm_known = False
        self.owner = ""

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

    def run(self, *, scan_only: bool = False) -> FolderReport:
        """Copy this part (``scan_only``: only read the folder, the job's scan phase). The caller
        marks the folder complete once every part succeeded."""
        t0 = time.monotonic()
        with self.locks.owner() as owner:
            self.owner = owner.token
            with self.scan.lock:
                if not self.scan.done:
                    self._scan()
                    self.scan.done = True
            if scan_only:
                return self.r
            sc = self.scan
            if self.part == 0:
                self.r.note = sc.note or self.r.note
                self.r.flags_updated = sc.flags_updated
            if sc.fast:
                if self.part == 0:
                    self.r.source_messages = len(sc.metas) or (sc.status.exists if sc.status else 0)
                    self.r.skipped_duplicates = sc.settled
                    self.progress.count(self.source, duplicates=sc.settled)
            else:
                self._copy_share()
        self.r.duration_s = round(time.monotonic() - t0, 3)
        return self.r

    def save_complete(self) -> None:
        st = self.scan.status
        assert st is not None
        t = self.dst.status(self.target)
        self.j.save_folder(self.s.job_id, FolderRecord(self.source, self.target, st.uidvalidity, st.uidnext,
                                                       st.exists, st.highestmodseq, True,
                                                       (t.uidvalidity, t.uidnext, t.exists, t.highestmodseq)))

    def _scan(self) -> None:
        sc = self.scan
        # The job read the status while planning; it is the snapshot this pass completes.
        st = sc.status = sc.status or self.src.status(self.source)
        rec = self.j.folder(self.s.job_id, self.source)
        if rec and rec.uidvalidity is not None and rec.uidvalidity != st.uidvalidity:
            self.j.forget_uidvalidity(self.s.job_id, self.source, st.uidvalidity)
            sc.note = (f"source UIDVALIDITY changed ({rec.uidvalidity} -> {st.uidvalidity}): "
                       "rescanned by content, nothing copied twice")
            rec = None
        known = self.j.messages(self.s.job_id, self.source, st.uidvalidity)
        self.progress.folder_total(self.source, st.exists)
        unchanged = bool(rec and rec.complete and rec.uidnext == st.uidnext and rec.exists == st.exists
                         and rec.target_folder == self.target and st.highestmodseq is not None
                         and rec.highestmodseq is not None and target_as_recorded(rec, sc.target_status))
        failed_before = sum(1 for m in known.values() if m.state == "failed")
        if unchanged and rec and not failed_before:
            if rec.highestmodseq != st.highestmodseq:  # only flags changed (CONDSTORE)
                changed = list(self.src.fetch_meta(self.source, None, changed_since=rec.highestmodseq,
                                                   with_keys=False))
                self._sync_flags(changed, known, st.uidvalidity)
            sc.fast = True
            sc.settled = sum(1 for m in known.values() if m.state in ("copied", "duplicate"))
            return
        self.j.save_folder(self.s.job_id, FolderRecord(self.source, self.target, st.uidvalidity, st.uidnext,
                                                       st.exists, st.highestmodseq, False))
        if any(m.state in ("copied", "duplicate") for m in known.values()):
            # The journal is a cache: bring the ledger up to date with what the target holds now
            # (messages deleted there, a recreated folder) before trusting any "copied".
            self._reconcile()
        # A folder the journal knows nothing of (a first run) is read in one pass with its keys;
        # otherwise list it cheaply and fetch identifying headers only for the new messages.
        # Each message is keyed as it arrives and kept slim (see _slim): the scan holds a whole
        # folder's messages, so every byte kept per message counts.
        limit = self.s.append_limit
        sc.metas = {}
        for m in self.src.fetch_meta(self.source, None, with_keys=not known):
            if not known:
                sc.keys[m.uid] = key_of(m)
            sc.metas[m.uid] = _slim(m, limit)
        self.progress.folder_total(self.source, len(sc.metas))
        self._sync_flags([m for m in sc.metas.values() if m.uid in known], known, st.uidvalidity)
        new_uids = [u for u in sc.metas if u not in known]
        # Failed before: fetch their headers too, so the report can still name them.
        keyed = new_uids + [u for u in sc.metas if u in known and known[u].state == "failed"]
        if known and keyed:
            for m in self.src.fetch_meta(self.source, keyed, with_keys=True):
                if m.uid not in known:
                    sc.keys[m.uid] = key_of(m)
                sc.metas[m.uid] = _slim(m, limit)
        for uid, k in known.items():
            if uid in sc.metas:
                sc.keys[uid] = k.key
        sc.source_keys = Counter(sc.keys.values())
        sc.restore = self._missing_on_target(known)
        sc.open_uids = sorted(u for u in sc.metas if u in sc.keys
                              and (u not in known or known[u].state == "failed" or u in sc.restore))
        sc.settled = sum(1 for u in sc.metas if u in known and known[u].state in ("copied", "duplicate")
                         and u not in sc.restore)
        self.progress.folder_bytes(self.source, sum(sc.metas[u].size for u in sc.open_uids))
        sc.likely = self._likely_copies()

    def _likely_copies(self) -> list[int]:
        """The open messages the target does not hold yet, as far as its ledger knows: what the fit
        check counts as to copy (each chunk decides again, under the folder lock)."""
        sc = self.scan
        t = sc.target_status
        if not sc.open_uids or t is None or not t.exists:
            return list(sc.open_uids)  # a new or empty target folder holds none of them
        self._reconcile()  # the chunks' reconcile then only reads what arrives meanwhile
        by_key: dict[str, list[int]] = {}
        for uid in sc.open_uids:
            by_key.setdefault(sc.keys[uid], []).append(uid)
        copy, _present = plan_copies(sc.source_keys, self.ledger.counts(self.target, by_key), by_key)
        return copy

    def _reconcile(self) -> None:
        with self.locks.folder(self.target):
            reconcile_with_target(self.ledger, self.dst, self.target, self.dst.status(self.target), self._alive)

    def _missing_on_target(self, known: dict[int, MessageRecord]) -> dict[int, tuple[str, int | None]]:
        """Messages the journal calls settled that the (just reconciled) ledger no longer shows on
        the target: our copy is gone, or the target holds a key fewer times than the source."""
        sc = self.scan
        if not known:
            return {}
        present = self.ledger.present_ids(self.target)
        out: dict[int, tuple[str, int | None]] = {}
        dups: dict[str, list[int]] = {}
        for uid in sc.metas:
            rec = known.get(uid)
            if rec is None:
                continue
            if rec.state == "copied" and (rec.ledger_id is None or rec.ledger_id not in present):
                out[uid] = (rec.state, rec.ledger_id)
            elif rec.state == "duplicate" and not rec.reason:  # (a reason: left out on purpose)
                dups.setdefault(rec.key, []).append(uid)
        if dups:
            reopen, _ = plan_copies(sc.source_keys, self.ledger.counts(self.target, dups), dups)
            out.update((uid, ("duplicate", None)) for uid in reopen)
        return out

    def _copy_share(self) -> None:
        sc = self.scan
        assert sc.status is not None
        uidvalidity = sc.status.uidvalidity
        n = len(sc.open_uids)
        share = sc.open_uids[n * self.part // self.parts: n * (self.part + 1) // self.parts]
        if self.part == 0:
            self.r.source_messages = len(sc.metas)
            self.r.skipped_duplicates += sc.settled
            self.progress.count(self.source, duplicates=sc.settled)
        # A retry of this part: what an earlier attempt settled is in the journal now.
        known = self.j.messages(self.s.job_id, self.source, uidvalidity, uid_range=(share[0], share[-1])) if share else {}
        share = [u for u in share if u not in known or known[u].state == "failed"
                 or sc.restore.get(u) == (known[u].state, known[u].ledger_id)]
        excluded: set[str] = self.s.exclude_keys() if self.s.exclude_keys else set()
        for i in range(0, len(share), self.s.chunk):
            if self.s.cancel is not None and self.s.cancel.is_set():
                raise Cancelled()
            self._copy_chunk([sc.metas[u] for u in share[i:i + self.s.chunk]], excluded, uidvalidity)

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
            self.scan.flags_updated += len(changes)

    def _src_id(self, uid: int, uidvalidity: int) -> str:
        return f"{self.source}\x00{uidvalidity}\x00{uid}"

    def _alive(self, owner: str | None) -> bool:
        return owner == self.owner or self.locks.alive(owner)

    def _copy_chunk(self, metas: list[MessageMeta], excluded: set[str], uidvalidity: int) -> None:
        job, keys = self.s.job_id, self.scan.keys
        with self.locks.folder(self.target):
            # Decide under the lock; APPEND after it (other parts and imports decide meanwhile,
            # counting our claims as present).
            reconcile_with_target(self.ledger, self.dst, self.target, self.dst.status(self.target), self._alive)
            orphan_src, orphans = self.ledger.orphans_of_job(self.target, job)
            rows: list[MessageRow] = []
            open_by_key: dict[str, list[int]] = {}
            skipped_excluded: list[MessageMeta] = []
            for m in metas:
                rid = orphan_src.get(self._src_id(m.uid, uidvalidity))
                if rid is not None:  # copied before a crash, found on the target: it is this copy
                    rows.append(MessageRow(m.uid, keys[m.uid], tuple(m.flags), "copied", rid, None, m.size))
                elif keys[m.uid] in excluded:
                    skipped_excluded.append(m)
                else:
                    open_by_key.setdefault(keys[m.uid], []).append(m.uid)
            tcounts = self.ledger.counts(self.target, open_by_key)
            copy_uids, dup_uids = plan_copies(self.scan.source_keys, tcounts, open_by_key)
            by_uid = {m.uid: m for m in metas}
            to_copy: list[MessageMeta] = []
            with self.j.tx():
                for uid in dup_uids:
                    m = by_uid[uid]
                    ids = orphans.get(keys[uid])
                    if ids:  # an older claim without its source message recorded: match by key
                        rows.append(MessageRow(uid, keys[uid], tuple(m.flags), "copied", ids.pop(0), None, m.size))
                    else:
                        rows.append(MessageRow(uid, keys[uid], tuple(m.flags), "duplicate", None, None, m.size))
                for m in skipped_excluded:  # e.g. All Mail: filed under a label already
                    rows.append(MessageRow(m.uid, keys[m.uid], tuple(m.flags), "duplicate", None, "filed in another folder",
                                 m.size))
                for uid in copy_uids:
                    m = by_uid[uid]
                    reason = None
                    if self.s.append_limit and m.size > self.s.append_limit:
                        # "37.7 MiB", as 'mailmigrate providers' shows the limits
                        from ..providers.describe import format_bytes as size
                        reason = f"too big: {size(m.size)}, the target accepts at most {size(self.s.append_limit)}"
                    elif self.scan.alone_drops[uid] >= MAX_ALONE_DROPS:
                        reason = DROPPED_REASON.format(n=self.scan.alone_drops[uid] + 1)
                    if reason:
                        rows.append(MessageRow(uid, keys[uid], tuple(m.flags), "failed", None, reason, m.size))
                        self._fail(m, reason, self.scan.dropped_headers.get(uid))
                    else:
                        to_copy.append(m)
                self.j.record_messages(job, self.source, uidvalidity, rows)
                claims = {m.uid: self.ledger.claim(self.target, keys[m.uid], job, self.owner,
                                                   self._src_id(m.uid, uidvalidity)) for m in to_copy}
        ndup = sum(1 for r in rows if r.state != "failed")
        self.r.skipped_duplicates += ndup
        self.progress.count(self.source, duplicates=ndup,
                            settled_bytes=sum(r.size or 0 for r in rows if r.state != "failed"))
        self._transfer(to_copy, claims, uidvalidity)

    def _transfer(self, to_copy: list[MessageMeta], claims: dict[int, int], uidvalidity: int) -> None:
        """Fetch and APPEND in batches; the next batch is fetched while this one is appended
        (two batches in memory at most, each bounded by ``batch_bytes``)."""
        sc = self.scan
        if to_copy and self.s.gate is not None and not self.s.gate.allow(
                "append", f"{self.dst.label}: {len(to_copy)} message(s) into {self.target}"):
            self._would_copy(to_copy)
            return
        count = min(self.s.batch_count, sc.batch_count or self.s.batch_count)
        batches = [[m] for m in to_copy if m.uid in sc.suspects]
        batches += _batches([m for m in to_copy if m.uid not in sc.suspects], self.s.batch_bytes, count)
        if not batches:
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")

        budget, daily = self.s.budget, self.s.daily
        held: dict[int, int] = {}  # batch index -> bytes held in the budget
        tickets: dict[int, Ticket] = {}  # batch index -> its room in the daily budgets
        done: set[int] = set()  # UIDs whose batch was appended (their claims are settled)

        def fetch(i: int) -> tuple[list[MessageMeta], dict[int, RawMessage | MessageError], Ticket | None]:
            batch = batches[i]
            ticket = None
            if daily:  # only what fits today's budgets: BudgetReached when not even one message does
                ticket = tickets[i] = daily.take([m.size for m in batch])
                batch = batch[:ticket.count]
            size = sum(m.size for m in batch)
            if budget is not None:
                budget.acquire(size)
                held[i] = size
            raws = self._fetch_batch([m.uid for m in batch])
            if daily and ticket is not None:
                daily.moved(ticket, "download", sum(len(r.body) for r in raws.values() if isinstance(r, RawMessage)))
            return batch, raws, ticket

        try:
            nxt: Future[tuple[list[MessageMeta], dict[int, RawMessage | MessageError], Ticket | None]]
            nxt = pool.submit(fetch, 0)
            for i in range(len(batches)):
                batch, raws, ticket = nxt.result()
                stop = ticket.stop if ticket is not None else None
                more = i + 1 < len(batches) and stop is None
                cancelled = self.s.cancel is not None and self.s.cancel.is_set()
                if more and not cancelled:
                    nxt = pool.submit(fetch, i + 1)
                # A batch fetched is appended even when the job is stopping: its bytes were read
                # (and counted against a daily budget) already.
                written = self._append_batch(batch, raws, claims, uidvalidity)
                done.update(m.uid for m in batch)
                del raws
                if budget is not None:
                    budget.release(held.pop(i, 0))
                if daily and ticket is not None:
                    daily.moved(ticket, "upload", written)
                if stop is not None:
                    raise stop  # the next message would go over a daily budget
                if more and cancelled:
                    raise Cancelled()
        except BudgetReached:
            self._release_claims([m for m in to_copy if m.uid not in done], claims)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if budget is not None:
                for size in held.values():
                    budget.release(size)
            if daily:
                for ticket in tickets.values():
                    daily.release(ticket)
        self._check_stored_sizes()

    def _release_claims(self, unsent: list[MessageMeta], claims: dict[int, int]) -> None:
        """Messages claimed for this chunk but not sent (a daily budget stopped the job): their
        claims go, so that nothing counts them as present."""
        with self.j.tx():
            for m in unsent:
                self.ledger.release(claims[m.uid])

    def _would_copy(self, to_copy: list[MessageMeta]) -> None:
        """A closed gate (a dry run): count what a real run would copy, without fetching it."""
        restored = sum(1 for m in to_copy if m.uid in self.scan.restore)
        nbytes = sum(m.size for m in to_copy)
        self.r.copied += len(to_copy) - restored
        self.r.restored += restored
        self.r.bytes += nbytes
        self.progress.count(self.source, copied=len(to_copy), nbytes=nbytes)

    def _fetch_batch(self, uids: list[int]) -> dict[int, RawMessage | MessageError]:
        """Bodies of ``uids``; a message the source refuses to hand out (FETCH answered NO)
        fails alone: the batch is then read one message at a time."""
        try:
            return {r.uid: r for r in self.src.fetch_messages(self.source, uids)}
        except MessageError as exc:
            if len(uids) == 1:
                return {uids[0]: exc}
        out: dict[int, RawMessage | MessageError] = {}
        for uid in uids:
            try:
                out.update((r.uid, r) for r in self.src.fetch_messages(self.source, [uid]))
            except MessageError as exc:
                out[uid] = exc
        return out

    def _check_stored_sizes(self) -> None:
        """Ask the target for the size of the copies just made (one FETCH): a copy the server
        stored differently from what we sent is counted (``stored_differently``) and the size it
        shows is kept in the ledger."""
        sent, self._sent = self._sent, {}
        if not sent:
            return
        by_uid = {uid: (rid, n) for rid, (uid, n) in sent.items()}
        shown: dict[int, int] = {}
        for m in self.dst.fetch_meta(self.target, sorted(by_uid), with_keys=False):
            if m.uid in by_uid:
                shown[by_uid[m.uid][0]] = m.size
        with self.j.tx():
            self.ledger.set_target_sizes(shown)
        differ = sum(1 for rid, n in shown.items() if n != sent[rid][1])
        self.r.stored_differently += differ

    def _fail(self, m: MessageMeta, reason: str, body: bytes | None = None) -> None:
        """Record a failed message; its Message-ID and subject come from the scan (kept for
        messages that can fail unfetched) or from the body the target refused."""
        m = _identified(m, body)
        self.r.failed += 1
        self.r.failures.append(Failure(folder=self.source, uid=m.uid, message_id=message_id_of(m),
                                       subject=subject_of(m), size=m.size, reason=reason))
        self.progress.failed_message(self.source, m.uid, reason, nbytes=m.size)

    def _append_batch(self, batch: list[MessageMeta], raws: dict[int, RawMessage | MessageError],
                      claims: dict[int, int], uidvalidity: int) -> int:
        """Append a fetched batch and record it; returns the bytes the target stored."""
        job, keys, sc = self.s.job_id, self.scan.keys, self.scan
        items: list[AppendItem] = []
        order: list[MessageMeta] = []
        refused: list[tuple[MessageMeta, str]] = []  # the source would not hand them out
        dropped_total = 0
        for m in batch:
            raw = raws.get(m.uid)
            if raw is None:
                continue  # expunged on the source meanwhile: nothing to copy
            if isinstance(raw, MessageError):
                refused.append((m, raw.message))
                continue
            flags, dropped = self._target_flags(tuple(raw.flags))
            dropped_total += dropped
            body = self.s.prepare_body(raw.body) if self.s.prepare_body else raw.body
            items.append(AppendItem(body=body, flags=flags, internaldate=raw.internaldate))
            order.append(m)
        if self.s.pace is not None and items:
            self.s.pace(len(items))
        try:
            results = self.dst.append(self.target, items) if items else []
        except RetryableError:
            # The connection went while these were sent. Whatever the cause, the retry sends them
            # one by one, in smaller batches; a message that loses the connection alone again and
            # again fails by itself (see MAX_ALONE_DROPS).
            if len(order) == 1:
                sc.alone_drops[order[0].uid] += 1
                # Keep its header: if it fails it fails unfetched, and the report must name it.
                sc.dropped_headers[order[0].uid] = split_raw(items[0].body)[0]
            sc.suspects.update(m.uid for m in order)
            sc.batch_count = max(1, min(sc.batch_count or self.s.batch_count, len(order)) // 2)
            raise
        _fault_point("after-append", len(results))
        rows: list[MessageRow] = []
        nbytes = copied = restored = 0
        with self.j.tx():
            for m in batch:
                if not isinstance(raws.get(m.uid), RawMessage):
                    self.ledger.release(claims[m.uid])
            for m, reason in refused:
                rows.append(MessageRow(m.uid, keys[m.uid], tuple(m.flags), "failed", None, reason, m.size))
                self._fail(m, reason)
            for m, item, res in zip(order, items, results, strict=True):
                raw = raws[m.uid]
                assert isinstance(raw, RawMessage)
                if res.ok:
                    self.ledger.confirm(claims[m.uid], res.uid, res.uidvalidity)
                    rows.append(MessageRow(m.uid, keys[m.uid], tuple(f for f in raw.flags if f not in NON_COPYABLE_FLAGS),
                                 "copied", claims[m.uid], None, len(item.body)))
                    if res.uid is not None:
                        self._sent[claims[m.uid]] = (res.uid, len(item.body))
                    nbytes += len(item.body)
                    if m.uid in sc.restore:
                        restored += 1
                    else:
                        copied += 1
                else:
                    self.ledger.release(claims[m.uid])
                    reason = res.error or "refused by the target"
                    rows.append(MessageRow(m.uid, keys[m.uid], tuple(raw.flags), "failed", None, reason, len(item.body)))
                    self._fail(m, reason, raw.body)
            self.j.record_messages(job, self.source, uidvalidity, rows)
        sc.suspects.difference_update(m.uid for m in order)
        self.r.copied += copied
        self.r.restored += restored
        self.r.bytes += nbytes
        self.r.dropped_keywords += dropped_total
        self.progress.count(self.source, copied=copied + restored, nbytes=nbytes)
        return nbytes
