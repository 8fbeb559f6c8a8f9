"""Which sources a caller sees, and the check that refuses names it cannot see.

Invariant: a caller sees a source when they share an access group (a group-less source only by
an unrestricted key) and, when its key has a trust floor (``min_trust``), when the source's tier
prior reaches it: the rules the store filter applies to chunks
(``ragwall.retrieval.search.access_filter``, with :func:`with_floor`; a chunk's trust can only
fall below its tier's prior, so a chunk the floor lets through always belongs to a source the
caller sees). :func:`check_names` refuses a source or group
outside that view with :class:`InvalidRequest`, naming close matches among what the caller can
see, never anything it cannot.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace

from ragwall.errors import InvalidRequest
from ragwall.ingest.registry import Registry
from ragwall.ingest.sources import Source
from ragwall.retrieval.search import SearchFilter
from ragwall.service.keys import Principal


def sees(who: Principal, source: Source, priors: Mapping[str, float]) -> bool:
    """Whether ``who`` may see ``source`` (``priors``: each trust tier's prior)."""
    if who.min_trust is not None and priors.get(source.trust_tier, 0.0) < who.min_trust:
        return False
    return who.groups is None or bool(set(source.groups) & set(who.groups))


def with_floor(who: Principal, request: SearchFilter) -> SearchFilter:
    """``request`` under the key's trust floor: a request may ask for more trust, never less."""
    if who.min_trust is None:
        return request
    return replace(request, min_trust=max(request.min_trust or 0.0, who.min_trust))


def check_names(
    registry: Registry, who: Principal, filters: SearchFilter, priors: Mapping[str, float]
) -> None:
    """Refuse the source and group names in ``filters`` that ``who`` cannot see."""
    visible = [s for s in registry.list_sources() if sees(who, s, priors)]
    _known("source", filters.sources, sorted(s.id for s in visible))
    groups = who.groups if who.groups is not None else {g for s in visible for g in s.groups}
    _known("group", filters.groups, sorted(groups))


def _known(kind: str, asked: tuple[str, ...] | None, known: list[str]) -> None:
    unknown = [name for name in asked or () if name not in known]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        hints.append(f"{name!r}{hint}")
    raise InvalidRequest(
        f"unknown {kind} {', '.join(hints)}: this key can search the {kind}s "
        f"{', '.join(repr(k) for k in known) or '(none)'}; list them with list_sources"
    )
