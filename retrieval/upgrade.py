"""Payload forms that older indexes hold, brought to today's when a store opens.

Invariant: once :func:`upgrade_payloads` has run, every point that has a ``hidden_text`` holds
it as the integer 0 or 1 (``ragwall.payload.hidden_flag``), which a filter matches on both
engines. Indexes written before stored a JSON boolean, which the embedded engine (qdrant-edge
0.9) matches with no filter at all; such points are the ones whose value is neither 0 nor 1, and
they are rewritten in place (true → 1, anything else → 0). Idempotent, and one count when there
is nothing left to do.
"""

from __future__ import annotations

from ragwall.errors import StoreError
from ragwall.payload import Key, hidden_flag
from ragwall.retrieval.store import Filter, HasId, IsEmpty, MatchAny, Store

#: Points rewritten per round.
PAGE = 1000
#: Points whose ``hidden_text`` is set but is not 0/1: an older index's booleans.
LEGACY_HIDDEN = Filter(
    must_not=(MatchAny(Key.HIDDEN_TEXT, (0, 1)), IsEmpty(Key.HIDDEN_TEXT)),
)


def upgrade_payloads(store: Store) -> int:
    """Rewrite older payload forms (see the module docstring); returns the points rewritten."""
    left = store.count(LEGACY_HIDDEN)
    done = 0
    while left:
        hits, _ = store.scroll(LEGACY_HIDDEN, PAGE, None, with_payload=[Key.HIDDEN_TEXT])
        if not hits:
            break
        by_value: dict[int, list[str]] = {0: [], 1: []}
        for h in hits:
            by_value[hidden_flag(h.payload.get(Key.HIDDEN_TEXT) is True)].append(h.id)
        for value, ids in by_value.items():
            if ids:
                store.set_payload({Key.HIDDEN_TEXT: value}, Filter(must=(HasId(tuple(ids)),)))
        done += len(hits)
        now = store.count(LEGACY_HIDDEN)
        if now >= left:  # nothing changed: the engine did not take the rewrite
            raise StoreError(
                f"could not rewrite {now} points' {Key.HIDDEN_TEXT} from a boolean to 0/1; "
                "rebuild the index (`ragwall reindex --rebuild`)"
            )
        left = now
    return done
