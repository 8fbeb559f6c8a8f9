"""What the poisoning defenses cost on clean data: ranking quality and false flags.

- :func:`judged_cost`: a BEIR folder's judged queries against its corpus (ingested ``internal``):
  nDCG@10 with defenses off and on (the caller's policy), and the share of top-5 hits flagged.
- :func:`faq_cost`: FAQ-style documents (:mod:`ragwall.eval.faq`), ingested twice, as an
  ``internal`` and as an ``external`` source, and asked their questions verbatim and in other
  words. The query-time heuristics watch uncurated tiers only, so the ``external`` copy is where
  an honest FAQ can be mistaken for a planted passage; the ``internal`` copy is what a
  deployment that curates its FAQ gets. With ``lever_min_trust``, the FAQ's nDCG when callers
  ask for that trust (the cost of the provenance lever: an external FAQ is filtered out).

A flag counts as false on every clean hit: nothing in these corpora was planted.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ragwall.datasets import DatasetError, _jsonl, load_qrels
from ragwall.eval.faq import FaqSet
from ragwall.eval.metrics import mean, ndcg_at_k
from ragwall.retrieval.search import SearchFilter, access_filter

TOP = 5
DEPTH = 30


def _ranked(hits: list, source_id: str, names: dict[str, str] | None) -> list[str]:
    """Hits as document keys in order, one per document (chunks collapse to their document)."""
    ranked, seen = [], set()
    for h in hits:
        stem = Path(h.provenance["doc_name"]).stem
        mine = h.provenance["source_id"] == source_id
        doc = (names.get(stem) if names is not None else stem) if mine else None
        key = doc or f"other:{h.provenance['source_id']}:{stem}"
        if key not in seen:
            seen.add(key)
            ranked.append(key)
    return ranked


class _Tally:
    def __init__(self) -> None:
        self.ndcg: dict[str, list[float]] = {"off": [], "on": []}
        self.hits = self.flagged = 0
        self.kinds: dict[str, int] = {}

    def count(self, hits: list) -> None:
        self.hits += min(TOP, len(hits))
        for h in hits[:TOP]:
            self.flagged += bool(h.flags)
            for f in h.flags:
                self.kinds[f["kind"]] = self.kinds.get(f["kind"], 0) + 1

    def summary(self) -> dict[str, Any]:
        return {
            "ndcg@10": {m: round(mean(v), 4) for m, v in self.ndcg.items()},
            "flag_rate": round(self.flagged / self.hits, 4) if self.hits else 0.0,
            "flags_by_kind": self.kinds,
            "queries": len(self.ndcg["off"]),
        }


def _ask(
    searcher: Any,
    query: str,
    judged: dict[str, int],
    flt: Any,
    on: Any,
    source_id: str,
    names: dict[str, str] | None,
    tally: _Tally,
) -> None:
    """nDCG@10 with defenses off and on (``on``'s policy); flags counted on the top 5 as the
    ``flag`` policy returns them (a ``drop`` policy would hide what it dropped)."""
    for mode, cfg in (("off", None), ("on", on)):
        res = searcher.search(query, flt, top_k=DEPTH, candidates=DEPTH, defenses=cfg)
        tally.ndcg[mode].append(ndcg_at_k(_ranked(res.hits, source_id, names), judged, 10))
        if mode == "on" and on.policy == "flag":
            tally.count(res.hits)
    if on.policy != "flag":
        flagged = replace(on, policy="flag")
        tally.count(searcher.search(query, flt, top_k=TOP, candidates=DEPTH, defenses=flagged).hits)


def judged_cost(
    clean: Path,
    source_id: str,
    names: dict[str, str],
    searcher: Any,
    on: Any,
    background: tuple[str, ...],
) -> dict[str, Any]:
    """nDCG@10 off/on and the flagged share of top-5 hits on a BEIR folder's judged queries,
    asked of the clean ``background`` sources (never the attack's: its passages are meant to be
    flagged, and would count as false flags here)."""
    qrels_files = sorted((clean / "qrels").glob("*.tsv"))
    if len(qrels_files) != 1:
        raise DatasetError(f"{clean}/qrels must hold exactly one .tsv file for --clean")
    qrels = load_qrels(qrels_files[0])
    queries = {str(q["_id"]): q["text"] for q in _jsonl(clean / "queries.jsonl")}
    flt = access_filter(None, SearchFilter(sources=background))
    tally = _Tally()
    for qid, judged in qrels.items():
        if qid in queries and any(g > 0 for g in judged.values()):
            _ask(searcher, queries[qid], judged, flt, on, source_id, names, tally)
    return {**tally.summary(), "qrels": qrels_files[0].name}


def faq_cost(
    faq: FaqSet,
    background: tuple[str, ...],
    searcher: Any,
    on: Any,
    lever_min_trust: float | None = None,
) -> dict[str, Any]:
    """Per tier (``internal``, ``external``) and query kind (``verbatim``, ``other``): nDCG@10
    off/on and the flagged share of top-5 hits, the FAQ source beside the background."""
    out: dict[str, Any] = {"documents": faq.documents, "queries": len(faq.queries)}
    for tier in ("internal", "external"):
        sid = f"faq-{tier}"
        flt = access_filter(None, SearchFilter(sources=(*background, sid)))
        by_kind: dict[str, _Tally] = {}
        for qid, query in faq.queries.items():
            tally = by_kind.setdefault(faq.kinds[qid], _Tally())
            _ask(searcher, query, faq.qrels[qid], flt, on, sid, None, tally)
        out[tier] = {kind: t.summary() for kind, t in sorted(by_kind.items())}
    if lever_min_trust is not None and faq.queries:
        sid = "faq-external"
        flt = access_filter(
            None, SearchFilter(sources=(*background, sid), min_trust=lever_min_trust)
        )
        scores = [
            ndcg_at_k(
                _ranked(
                    searcher.search(q, flt, top_k=DEPTH, candidates=DEPTH, defenses=on).hits,
                    sid,
                    None,
                ),
                faq.qrels[qid],
                10,
            )
            for qid, q in faq.queries.items()
        ]
        out["external_with_lever_ndcg@10"] = round(mean(scores), 4)
    return out
