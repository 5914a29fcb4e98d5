"""The dedupe ledger: what each target folder holds, by dedupe key.

The ledger is a cache of the target, not the truth: a reconcile brings it up to date from the
target itself (new UIDs since the last scan, vanished ones when the count disagrees), so it can be
rebuilt from nothing at any time and messages put there by another tool, an earlier journal or a
crashed run are recognised. The reconcile is split in two: the engine reads the target
(``migrate.dedupe.reconcile``) and hands what it found to the ledger as ``(uid, key)`` pairs
(``learn``, ``resync``); the ledger only talks to the store (``migrate.store.LedgerStore``).

Rows (``migrate.store.LedgerRow``): folder, uidvalidity, uid, key, state, job_id, owner, src where
state is

* ``claimed``: we are about to APPEND this key (written *before* the APPEND, committed);
* ``present``: the target holds it (``uid`` may be NULL for a server without UIDPLUS until the
  next scan finds it).

Deciding (reconcile + ``counts`` + ``claim``) runs under ``journal.folder_lock``; the APPENDs
themselves run outside it. Every claim names its owner (``journal.OwnerLock``: one live attempt at
a folder). A claim of a live owner is in flight and counts as present. A claim whose owner died or
gave up is verified by the reconcile against the target: found -> ``present`` (the APPEND did happen:
no second copy), not found -> deleted (the APPEND never happened: the message is copied again).
That is how an APPEND whose OK never arrived is neither lost nor doubled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..models import FolderStatus
from ..store.base import LedgerStore

Alive = Callable[[str | None], bool]  # is a claim's owner still at work?


@dataclass
class ScanPlan:
    """What the engine must read of a target folder to bring its rows up to date."""

    full: bool  # every message (``Ledger.resync``): never scanned, or a new UIDVALIDITY
    uids: list[int] = field(default_factory=list)  # else these UIDs (``Ledger.learn``); none: nothing new


class Ledger:
    """The ledger of one target, kept in the store; never talks to a mail server itself."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    # --- reading --------------------------------------------------------------------------

    def counts(self, folder: str, keys: Iterable[str]) -> Counter[str]:
        out: Counter[str] = Counter()
        for k in set(keys):
            out[k] = self.store.ledger_count(folder, k)
        return out

    def orphans_of_job(self, folder: str, job_id: str) -> tuple[dict[str, int], dict[str, list[int]]]:
        """Rows this job's APPENDs put there that no journal message points at: the process died
        between APPEND and its journal commit, and the reconcile found the message.

        Returns (source message -> id) for rows that know which source message they copy, and
        (key -> ids) for any others."""
        by_src: dict[str, int] = {}
        by_key: dict[str, list[int]] = {}
        for row in self.store.ledger_orphans(folder, job_id):
            if row.src:
                by_src[row.src] = row.id
            else:
                by_key.setdefault(row.key, []).append(row.id)
        return by_src, by_key

    def present_ids(self, folder: str) -> set[int]:
        """Ids of the rows the target holds (as of the last reconcile)."""
        return self.store.ledger_present_ids(folder)

    def set_target_sizes(self, sizes: dict[int, int]) -> None:
        """row id -> RFC822.SIZE the target reports for that copy."""
        self.store.ledger_set_sizes(sizes)

    def uid_of(self, row_id: int) -> int | None:
        row = self.store.ledger_row(row_id)
        return row.uid if row else None

    # --- writing (call inside the store's tx(), under the folder lock) ---------------------

    def claim(self, folder: str, key: str, job_id: str, owner: str, src: str | None = None) -> int:
        """``src`` names the source message (folder, UIDVALIDITY, UID) this copy is of, so that a
        crash recovery credits the copy to exactly that message, not to another with its key."""
        return self.store.ledger_insert(folder, key, "claimed", job_id=job_id, owner=owner, src=src)

    def confirm(self, row_id: int, uid: int | None, uidvalidity: int | None) -> None:
        # Without APPENDUID keep a UID a concurrent reconcile may already have attached.
        self.store.ledger_place(row_id, uid, uidvalidity)

    def release(self, row_id: int) -> None:
        self.store.ledger_delete([row_id])

    # --- following the target ----------------------------------------------------------------
    # The engine reads the target (``migrate.dedupe.reconcile.reconcile_with_target``): first
    # ``begin_scan`` says what to read, then ``learn`` or ``resync`` take what it found as
    # (uid, key) pairs, ``finish_scan`` closes the scan, and where ``agrees`` says no, a
    # ``resync`` matches everything again. All of it under the folder lock.

    def begin_scan(self, folder: str, status: FolderStatus) -> ScanPlan:
        """What to read of the target folder (``status``: its state now)."""
        scan = self.store.ledger_scan(folder)
        start = 1
        if scan and scan.uidvalidity == status.uidvalidity:
            start = scan.scanned_uidnext or 1
        elif scan or self.store.ledger_has_uids(folder):
            # Target UIDVALIDITY changed (or unknown): every stored UID is meaningless.
            self.store.ledger_unplace_present(folder)
            start = 1
        if start == 1:  # never scanned, or a new UIDVALIDITY: match every row against the target
            return ScanPlan(full=True)
        known = self.store.ledger_count_uids(folder, status.uidvalidity, start, status.uidnext)
        # Every UID since the last scan is one we appended ourselves (APPENDUID): nothing to learn.
        if status.uidnext > start and known < status.uidnext - start:
            return ScanPlan(full=False, uids=list(range(start, status.uidnext)))
        return ScanPlan(full=False)

    def learn(self, folder: str, uidvalidity: int, found: Iterable[tuple[int, str]], alive: Alive) -> int:
        """The target holds messages with these keys at these (new) UIDs: attach each to the row
        waiting for it, or add it as present. One transaction. Returns how many were learned."""
        n = 0
        with self.store.tx():
            for uid, key in found:
                if self.store.ledger_has_uid(folder, uidvalidity, uid):
                    continue
                # Prefer a row waiting for its UID: our own APPEND (claim of a dead attempt, or
                # a server without UIDPLUS) rather than a message someone else put there.
                waiting = self.store.ledger_unplaced(folder, key)
                pick = next((r.id for r in waiting if r.state == "present" or not alive(r.owner)), None)
                if pick is not None:
                    self.confirm(pick, uid, uidvalidity)
                elif waiting:
                    # A live attempt is appending this key right now: the UID is most likely
                    # its own and it will record it from APPENDUID. If not, the count check
                    # (``agrees``) triggers a full resync.
                    continue
                else:
                    self.store.ledger_insert(folder, key, "present", uidvalidity=uidvalidity, uid=uid)
                n += 1
        return n

    def resync(self, folder: str, status: FolderStatus, found: Iterable[tuple[int, str]], alive: Alive) -> int:
        """Counts disagree (messages expunged on the target, a lost journal, a UID guessed for the
        wrong row), or the folder is new to the ledger: ``found`` is every message of the target
        folder (uid, key); match every row against it again. Rows keep their ids (the journal
        points at them); a row whose message is gone is dropped. UIDs from ``status.uidnext`` on
        are left out: other attempts keep appending while we look."""
        actual = {uid: key for uid, key in found if uid < status.uidnext}
        learned = 0
        with self.store.tx():
            seen: set[int] = set()
            stale: list[int] = []
            for row in self.store.ledger_placed(folder, status.uidnext):
                if row.uid not in actual or row.uid in seen:  # vanished, or a second row claiming one UID
                    stale.append(row.id)
                else:
                    seen.add(row.uid)  # type: ignore[arg-type]
            self.store.ledger_unplace(stale)
            for uid, key in actual.items():
                if uid in seen:
                    continue
                waiting = self.store.ledger_unplaced(folder, key)
                pick = next((r.id for r in waiting if r.state == "present" or not alive(r.owner)), None)
                if pick is not None:
                    self.confirm(pick, uid, status.uidvalidity)
                elif waiting:
                    continue  # in flight: its live owner records it
                else:
                    self.store.ledger_insert(folder, key, "present", uidvalidity=status.uidvalidity, uid=uid)
                    learned += 1
            # A "present" row that matched no message: that message is gone from the target (a live
            # attempt's row may just be waiting for the next scan: leave those).
            self.store.ledger_delete([r.id for r in self.store.ledger_present_unplaced(folder) if not alive(r.owner)])
        return learned

    def finish_scan(self, folder: str, status: FolderStatus, alive: Alive) -> None:
        """The target was read up to ``status.uidnext``. Claims of dead owners still without a UID
        now: that APPEND never reached the target, the claim goes. (A live owner's claim is in
        flight: it stays and counts as present.)"""
        with self.store.tx():
            self.store.ledger_set_scan(folder, status.uidvalidity, status.uidnext)
            for owner in self.store.ledger_claim_owners(folder):
                if not alive(owner):
                    self.store.ledger_delete_claims(folder, owner)

    def agrees(self, folder: str, status: FolderStatus) -> bool:
        """Do the rows match the target's message count (beyond APPENDs in flight right now)?"""
        # Only rows the status snapshot covers: other attempts keep appending and confirming
        # while we look, and their newer UIDs say nothing about this snapshot.
        with_uid = self.store.ledger_count_placed(folder, status.uidnext)
        in_flight = self.store.ledger_count_in_flight(folder)
        return not (with_uid > status.exists or with_uid + in_flight < status.exists)


def plan_copies(source_keys: Counter[str], target_counts: Counter[str],
                open_by_key: dict[str, list[int]]) -> tuple[list[int], list[int]]:
    """Decide which open source messages to copy and which are already present.

    For each key the target must end up with at least as many copies as the source folder has
    (twins both arrive; a message already there is not sent again; a second source adds only
    what the first did not have). Returns (uids to copy, uids that are duplicates), in UID order.
    """
    copy: list[int] = []
    dup: list[int] = []
    for key, uids in open_by_key.items():
        need = max(0, source_keys[key] - target_counts[key])
        ordered = sorted(uids)
        copy.extend(ordered[:need])
        dup.extend(ordered[need:])
    return sorted(copy), sorted(dup)
