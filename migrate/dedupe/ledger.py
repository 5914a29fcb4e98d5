"""The dedupe ledger: what each target folder holds, by dedupe key.

The ledger is a cache of the target, not the truth: ``reconcile`` brings it up to date from the
target itself (new UIDs since the last scan, vanished ones when the count disagrees), so it can be
rebuilt from nothing at any time and messages put there by another tool, an earlier journal or a
crashed run are recognised.

Rows: ``(folder, uidvalidity, uid, key, state, job_id)`` where state is

* ``claimed``: we are about to APPEND this key (written *before* the APPEND, committed);
* ``present``: the target holds it (``uid`` may be NULL for a server without UIDPLUS until the
  next scan finds it).

Deciding (``reconcile`` + ``counts`` + ``claim``) runs under ``journal.folder_lock``; the APPENDs
themselves run outside it. Every claim names its owner (``journal.OwnerLock``: one live attempt at
a folder). A claim of a live owner is in flight and counts as present. A claim whose owner died or
gave up is verified by ``reconcile`` against the target: found -> ``present`` (the APPEND did happen:
no second copy), not found -> deleted (the APPEND never happened: the message is copied again).
That is how an APPEND whose OK never arrived is neither lost nor doubled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from ..endpoint import Endpoint
from ..journal import Journal
from ..models import FolderStatus
from .keys import key_of


class Ledger:
    def __init__(self, journal: Journal) -> None:
        self.j = journal
        self.c = journal.conn

    # --- reading --------------------------------------------------------------------------

    def counts(self, folder: str, keys: Iterable[str]) -> Counter[str]:
        out: Counter[str] = Counter()
        for k in set(keys):
            (n,) = self.c.execute("SELECT COUNT(*) FROM ledger WHERE folder=? AND key=?", (folder, k)).fetchone()
            out[k] = n
        return out

    def orphans_of_job(self, folder: str, job_id: str) -> tuple[dict[str, int], dict[str, list[int]]]:
        """Rows this job's APPENDs put there that no journal message points at: the process died
        between APPEND and its journal commit, and ``reconcile`` found the message.

        Returns (source message -> id) for rows that know which source message they copy, and
        (key -> ids) for any others."""
        by_src: dict[str, int] = {}
        by_key: dict[str, list[int]] = {}
        for rid, key, src in self.c.execute(
                "SELECT id, key, src FROM ledger l WHERE folder=? AND job_id=? AND state='present' AND NOT EXISTS"
                " (SELECT 1 FROM messages m WHERE m.job_id=l.job_id AND m.ledger_id=l.id) ORDER BY id",
                (folder, job_id)):
            if src:
                by_src[src] = rid
            else:
                by_key.setdefault(key, []).append(rid)
        return by_src, by_key

    def present_ids(self, folder: str) -> set[int]:
        """Ids of the rows the target holds (as of the last ``reconcile``)."""
        return {r[0] for r in self.c.execute("SELECT id FROM ledger WHERE folder=? AND state='present'", (folder,))}

    def set_target_sizes(self, sizes: dict[int, int]) -> None:
        """row id -> RFC822.SIZE the target reports for that copy."""
        self.c.executemany("UPDATE ledger SET t_size=? WHERE id=?", [(n, rid) for rid, n in sizes.items()])

    def uid_of(self, row_id: int) -> int | None:
        row = self.c.execute("SELECT uid FROM ledger WHERE id=?", (row_id,)).fetchone()
        return row[0] if row else None

    # --- writing (call inside journal.tx(), under the folder lock) -------------------------

    def claim(self, folder: str, key: str, job_id: str, owner: str, src: str | None = None) -> int:
        """``src`` names the source message (folder, UIDVALIDITY, UID) this copy is of, so that a
        crash recovery credits the copy to exactly that message, not to another with its key."""
        cur = self.c.execute("INSERT INTO ledger (folder, uidvalidity, uid, key, state, job_id, owner, src)"
                             " VALUES (?, NULL, NULL, ?, 'claimed', ?, ?, ?)", (folder, key, job_id, owner, src))
        return int(cur.lastrowid or 0)

    def confirm(self, row_id: int, uid: int | None, uidvalidity: int | None) -> None:
        # Without APPENDUID keep a UID a concurrent reconcile may already have attached.
        self.c.execute("UPDATE ledger SET state='present', uid=COALESCE(?, uid),"
                       " uidvalidity=COALESCE(?, uidvalidity) WHERE id=?", (uid, uidvalidity, row_id))

    def release(self, row_id: int) -> None:
        self.c.execute("DELETE FROM ledger WHERE id=?", (row_id,))

    # --- syncing with the target -----------------------------------------------------------

    def reconcile(self, target: Endpoint, folder: str, status: FolderStatus,
                  alive: Callable[[str | None], bool]) -> int:
        """Bring the folder's rows up to date with the target. Returns the number of target
        messages newly learned. Must be called under the folder lock; ``alive(owner)`` tells
        whether a claim's owner is still at work."""
        row = self.c.execute("SELECT uidvalidity, scanned_uidnext FROM ledger_scan WHERE folder=?",
                             (folder,)).fetchone()
        start = 1
        if row and row[0] == status.uidvalidity:
            start = row[1] or 1
        elif row or self._has_uids(folder):
            # Target UIDVALIDITY changed (or unknown): every stored UID is meaningless.
            with self.j.tx():
                self.c.execute("UPDATE ledger SET uid=NULL, uidvalidity=NULL WHERE folder=? AND state='present'",
                               (folder,))
            start = 1
        learned = 0
        full = start == 1  # never scanned, or a new UIDVALIDITY: match every row against the target
        if full:
            learned += self._full_resync(target, folder, status, alive)
        else:
            (known,) = self.c.execute(
                "SELECT COUNT(*) FROM ledger WHERE folder=? AND uidvalidity=? AND uid>=? AND uid<?",
                (folder, status.uidvalidity, start, status.uidnext)).fetchone()
            # Every UID since the last scan is one we appended ourselves (APPENDUID): nothing to learn.
            if status.uidnext > start and known < status.uidnext - start:
                learned += self._learn(target, folder, status, list(range(start, status.uidnext)), alive)
        with self.j.tx():
            self.c.execute("INSERT INTO ledger_scan (folder, uidvalidity, scanned_uidnext) VALUES (?,?,?)"
                           " ON CONFLICT(folder) DO UPDATE SET uidvalidity=excluded.uidvalidity,"
                           " scanned_uidnext=excluded.scanned_uidnext", (folder, status.uidvalidity, status.uidnext))
            # Claims of dead owners still without a UID after the scan: that APPEND never reached
            # the target. (A live owner's claim is in flight: it stays and counts as present.)
            owners = {r[0] for r in self.c.execute(
                "SELECT DISTINCT owner FROM ledger WHERE folder=? AND state='claimed' AND uid IS NULL", (folder,))}
            for owner in owners:
                if not alive(owner):
                    self.c.execute("DELETE FROM ledger WHERE folder=? AND state='claimed' AND uid IS NULL"
                                   " AND owner IS ?", (folder, owner))
        # Only rows the status snapshot covers: other attempts keep appending and confirming
        # while we look, and their newer UIDs say nothing about this snapshot.
        (with_uid,) = self.c.execute("SELECT COUNT(*) FROM ledger WHERE folder=? AND uid IS NOT NULL AND uid<?",
                                     (folder, status.uidnext)).fetchone()
        (in_flight,) = self.c.execute("SELECT COUNT(*) FROM ledger WHERE folder=? AND uid IS NULL"
                                      " AND state='claimed'", (folder,)).fetchone()
        # Rows and target disagree (beyond APPENDs in flight right now): match everything again.
        if not full and (with_uid > status.exists or with_uid + in_flight < status.exists):
            learned += self._full_resync(target, folder, status, alive)
        return learned

    def _has_uids(self, folder: str) -> bool:
        return self.c.execute("SELECT 1 FROM ledger WHERE folder=? AND uid IS NOT NULL LIMIT 1",
                              (folder,)).fetchone() is not None

    def _learn(self, target: Endpoint, folder: str, status: FolderStatus, uids: list[int] | None,
               alive: Callable[[str | None], bool]) -> int:
        learned = 0
        batch: list[tuple[int, str]] = []

        def flush() -> int:
            n = 0
            with self.j.tx():
                for uid, key in batch:
                    if self.c.execute("SELECT 1 FROM ledger WHERE folder=? AND uid=? AND uidvalidity=?",
                                      (folder, uid, status.uidvalidity)).fetchone():
                        continue
                    # Prefer a row waiting for its UID: our own APPEND (claim of a dead attempt, or
                    # a server without UIDPLUS) rather than a message someone else put there.
                    waiting = self.c.execute("SELECT id, state, owner FROM ledger WHERE folder=? AND key=?"
                                             " AND uid IS NULL ORDER BY state='present' DESC, id",
                                             (folder, key)).fetchall()
                    pick = next((rid for rid, state, owner in waiting
                                 if state == "present" or not alive(owner)), None)
                    if pick is not None:
                        self.confirm(pick, uid, status.uidvalidity)
                    elif waiting:
                        # A live attempt is appending this key right now: the UID is most likely
                        # its own and it will record it from APPENDUID. If not, the count check
                        # below (exists vs rows) triggers a full resync.
                        continue
                    else:
                        self.c.execute("INSERT INTO ledger (folder, uidvalidity, uid, key, state, job_id)"
                                       " VALUES (?,?,?,?, 'present', NULL)", (folder, status.uidvalidity, uid, key))
                    n += 1
            batch.clear()
            return n

        for meta in target.fetch_meta(folder, uids, with_keys=True):
            batch.append((meta.uid, key_of(meta)))
            if len(batch) >= 500:
                learned += flush()
        learned += flush()
        return learned

    def _full_resync(self, target: Endpoint, folder: str, status: FolderStatus,
                     alive: Callable[[str | None], bool]) -> int:
        """Counts disagree (messages expunged on the target, a lost journal, a UID guessed for the
        wrong row): match every target message against the rows again. Rows keep their ids (the
        journal points at them); a row whose message is gone is dropped."""
        actual: dict[int, str] = {} if not status.exists else {
            m.uid: key_of(m) for m in target.fetch_meta(folder, None, with_keys=True) if m.uid < status.uidnext}
        learned = 0
        with self.j.tx():
            seen: set[int] = set()
            for rid, uid in self.c.execute("SELECT id, uid FROM ledger WHERE folder=? AND uid IS NOT NULL"
                                           " AND uid<? ORDER BY id", (folder, status.uidnext)).fetchall():
                if uid not in actual or uid in seen:  # vanished, or a second row claiming one UID
                    self.c.execute("UPDATE ledger SET uid=NULL, uidvalidity=NULL WHERE id=?", (rid,))
                else:
                    seen.add(uid)
            for uid, key in actual.items():
                if uid in seen:
                    continue
                waiting = self.c.execute("SELECT id, state, owner FROM ledger WHERE folder=? AND key=?"
                                         " AND uid IS NULL ORDER BY state='present' DESC, id",
                                         (folder, key)).fetchall()
                pick = next((rid for rid, state, owner in waiting if state == "present" or not alive(owner)), None)
                if pick is not None:
                    self.confirm(pick, uid, status.uidvalidity)
                elif waiting:
                    continue  # in flight: its live owner records it
                else:
                    self.c.execute("INSERT INTO ledger (folder, uidvalidity, uid, key, state, job_id)"
                                   " VALUES (?,?,?,?, 'present', NULL)", (folder, status.uidvalidity, uid, key))
                    learned += 1
            # A "present" row that matched no message: that message is gone from the target (a live
            # attempt's row may just be waiting for the next scan: leave those).
            for rid, owner in self.c.execute("SELECT id, owner FROM ledger WHERE folder=? AND state='present'"
                                             " AND uid IS NULL", (folder,)).fetchall():
                if not alive(owner):
                    self.release(rid)
        return learned


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
