"""Bring a target folder's ledger rows up to date with the target itself.

The engine's half of the reconcile (the ledger's half is ``Ledger.begin_scan`` / ``learn`` /
``resync`` / ``finish_scan`` / ``agrees``): this reads the target (``Endpoint.fetch_meta``),
computes each message's key and hands the ledger lists of ``(uid, key)``. The ledger itself never
talks to a mail server, so the same rules hold whatever the store is.

Call under the target folder's lock (``migrate.journal.folder_lock``).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..endpoint import Endpoint
from ..models import FolderStatus
from .keys import key_of
from .ledger import Alive, Ledger

LEARN_BATCH = 500  # (uid, key) pairs per ``Ledger.learn`` transaction while the target is read


def target_keys(target: Endpoint, folder: str, uids: list[int] | None) -> Iterator[tuple[int, str]]:
    """(uid, key) of the target folder's messages (``uids``; None: every message), as they arrive."""
    for meta in target.fetch_meta(folder, uids, with_keys=True):
        yield meta.uid, key_of(meta)


def reconcile_with_target(ledger: Ledger, target: Endpoint, folder: str, status: FolderStatus,
                          alive: Alive) -> int:
    """Learn the target folder's new messages, and match every row again where the ledger is new
    to the folder, its UIDVALIDITY changed or its rows disagree with the target's count.
    ``status`` is the target folder now; ``alive(owner)`` tells whether a claim's owner is still at
    work. Returns the number of target messages newly learned."""
    plan = ledger.begin_scan(folder, status)
    learned = 0
    if plan.full:
        learned += _resync(ledger, target, folder, status, alive)
    elif plan.uids:
        batch: list[tuple[int, str]] = []
        for pair in target_keys(target, folder, plan.uids):
            batch.append(pair)
            if len(batch) >= LEARN_BATCH:
                learned += ledger.learn(folder, status.uidvalidity, batch, alive)
                batch = []
        learned += ledger.learn(folder, status.uidvalidity, batch, alive)
    ledger.finish_scan(folder, status, alive)
    # Rows and target disagree (beyond APPENDs in flight right now): match everything again.
    if not plan.full and not ledger.agrees(folder, status):
        learned += _resync(ledger, target, folder, status, alive)
    return learned


def _resync(ledger: Ledger, target: Endpoint, folder: str, status: FolderStatus, alive: Alive) -> int:
    found = list(target_keys(target, folder, None)) if status.exists else []
    return ledger.resync(folder, status, found, alive)
