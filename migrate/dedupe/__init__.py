"""Dedupe: message keys (``keys``) and the per-target ledger (``ledger``)."""

from .keys import key_of, message_key, normalize_message_id
from .ledger import Ledger, plan_copies

__all__ = ["Ledger", "key_of", "message_key", "normalize_message_id", "plan_copies"]
