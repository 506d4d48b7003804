"""One module per scenario; each has ``async def run(stack, scale) -> Result``."""

from __future__ import annotations

ORDER = ("ingest", "latency", "reads", "fanout", "scheduler")
"""The order ``make bench`` runs them in (the scheduler stops the notifier, so it comes last)."""
