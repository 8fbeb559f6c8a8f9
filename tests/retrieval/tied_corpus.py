"""A small corpus whose fused rankings are full of exact ties, for determinism tests.

Forty short notes say who authorises paying money back without any of the query's terms (the
dense branch finds them, BM25 cannot), and forty device fault-code notes carry the terms in an
unrelated sense (BM25 finds them, the dense branch ranks them below the first forty). So the
fused list pairs a dense-only and a BM25-only hit at every rank r, with the same RRF score
``1 / (k + r)``: an engine that orders equal scores arbitrarily orders each pair at random.
"""

from __future__ import annotations

from pathlib import Path

QUERY = "who approves refunds"
ROLES = (
    "finance director",
    "head of accounting",
    "chief financial officer",
    "controller",
    "budget owner",
    "treasurer",
    "finance manager",
    "accounts lead",
)
DEVICES = (
    "vending machine",
    "parking meter",
    "ticket kiosk",
    "coffee machine",
    "arcade cabinet",
    "laundry machine",
    "toll gate",
    "photo booth",
)
PREFIXES = ("", "regional ", "deputy ", "acting ", "senior ")
MAKES = ("", "old ", "outdoor ", "compact ", "industrial ")


def write_tied_corpus(folder: Path) -> Path:
    """Write the 80 notes (one chunk each) into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    roles = [p + r for p in PREFIXES for r in ROLES]
    devices = [m + d for m in MAKES for d in DEVICES]
    for i, who in enumerate(roles):
        (folder / f"expenses-{i:02d}.md").write_text(
            f"# Expenses\n\nReimbursement of money paid back to customers is authorised by the "
            f"{who}.\n"
        )
    for i, device in enumerate(devices):
        (folder / f"faults-{i:02d}.md").write_text(
            f"# Fault codes\n\nThe {device} firmware: code E{i} jams the drum, E{i + 1} refunds "
            f"coins, E{i + 2} approves the card reader.\n"
        )
    return folder
