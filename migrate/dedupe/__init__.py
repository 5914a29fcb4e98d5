"""Dedupe: message keys (``keys``), the per-target ledger (``ledger``) and the engine's reading of
the target that keeps the ledger up to date (``reconcile``)."""

from .keys import key_of, message_key, normalize_message_id
from .ledger import Ledger, ScanPlan, plan_copies
from .reconcile import reconcile_with_target

__all__ = ["Ledger", "ScanPlan", "key_of", "message_key", "normalize_message_id", "plan_copies",
           "reconcile_with_target"]
