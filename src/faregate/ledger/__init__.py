"""The cost ledger: one row per request, written in batches off the request path."""

from faregate.ledger.events import CostEvent, nanos_to_usd, usd_to_nanos
from faregate.ledger.journal import Journal, journal_for
from faregate.ledger.store import LedgerStore, open_store
from faregate.ledger.writer import LedgerWriter

__all__ = [
    "CostEvent",
    "Journal",
    "LedgerStore",
    "LedgerWriter",
    "journal_for",
    "nanos_to_usd",
    "open_store",
    "usd_to_nanos",
]
