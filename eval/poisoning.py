"""Attack success of corpus poisoning, with Ragwall's defenses off and on.

The attack file is PoisonedRAG's (``{id: {question, adv_texts, ...}}``). Each attack *form* is
ingested as ``external`` sources, one planted passage per document, twice: all five passages
per target question, and only the first one:

- ``passage``: the generated passage alone (I);
- ``question+passage``: the black-box attack of the paper, P = Q ⊕ I: the target question
  itself, a full stop, then the passage, as PoisonedRAG's own code builds it, so that a retriever
  ranks P first for Q.

A clean background (BEIR ``corpus.jsonl`` folders, or folders of documents) is ingested as
``internal`` sources. Each target question is then asked of the background plus one attack
source. **An attack succeeds on a question when a passage planted for that question is among the
top 5 hits and carries no flag** (with defenses off, nothing is flagged). Passages planted for
other questions do not count: they do not carry this question's false answer.

The clean cost (see :mod:`ragwall.eval.poisoning_clean`): nDCG@10 off and on and the share of
top-5 hits flagged on judged BEIR data (``clean``), and on FAQ-style documents (``faq``) at two
tiers. The provenance lever: the same attack with a caller's ``min_trust`` above the attack
sources' trust. Everything runs through the real ingest pipeline and the real searcher.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ragwall.datasets import DatasetError, load_corpus, write_documents
from ragwall.eval.faq import build_faq
from ragwall.eval.poisoning_clean import faq_cost, judged_cost
from ragwall.retrieval.search import SearchFilter, access_filter
from ragwall.service import Service
from ragwall.settings import Settings

TOP = 5
ACTOR = "eval"  # the audit actor of the eval's own throwaway data dir
DEPTH = 30
FORMS: dict[str, str] = {"passage": "p", "question+passage": "qp"}
COUNTS: tuple[int, ...] = (5, 1)  # planted passages per question


def load_attack(path: Path) -> list[dict[str, Any]]:
    """PoisonedRAG's ``{id: {question, correct answer, incorrect answer, adv_texts}}``."""

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        items = [
            {"id": str(k), "question": v["question"], "adv_texts": list(v["adv_texts"])}
            for k, v in raw.items()
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(
            f"{path} is not a PoisonedRAG attack file ({{id: {{question, adv_texts, ...}}}}): {exc}"
        ) from exc
    if not items:
        raise DatasetError(f"{path} holds no attack questions")
    return items


def planted_text(form: str, question: str, passage: str) -> str:
    """One planted document of ``form``."""
    return f"{question}.{passage}" if form == "question+passage" else passage


def evaluate_poisoning(
    attack: Path,
    backgrounds: list[Path],
    clean: Sequence[Path] = (),
    progress: Callable[[str], None] | None = None,
    *,
    forms: Sequence[str] = tuple(FORMS),
    faq: Sequence[Path] = (),
    faq_articles: int = 40,
    policy: str = "flag",
    lever_min_trust: float | None = None,
) -> dict[str, Any]:
    """Attack success per form and passage count, off and on; the cost on ``clean`` (BEIR
    folders with one qrels file) and ``faq`` (SQuAD folder, benign-docs file) data; with
    ``lever_min_trust``, attack success when callers ask for at least that trust."""

    say = progress or (lambda _m: None)
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise DatasetError(
            f"unknown attack form {unknown} (--form): use {', '.join(FORMS)} or both"
        )
    items = load_attack(attack)
    clean = [Path(c) for c in clean]
    with tempfile.TemporaryDirectory(prefix="ragwall-poison-") as tmp:
        root = Path(tmp)
        # Queries embedded by the model itself (not its int8 twin), as every eval does.
        settings = Settings(data_dir=root / "data", qdrant_url=None, query_encoder="torch")
        with Service(settings) as svc:
            background = _ingest_backgrounds(svc, root, backgrounds, clean, say)
            faq_set = None
            if faq:
                faq_set = build_faq(list(faq), root / "faq", articles=faq_articles)
                for tier in ("internal", "external"):
                    svc.add_source(ACTOR, f"faq-{tier}", str(faq_set.folder), tier)
                    say(f"ingesting FAQ documents ({faq_set.documents}) as {tier}")
                    svc.ingest(ACTOR, f"faq-{tier}")
            attack_sources = {}
            for form in forms:
                for count in COUNTS:
                    sid = f"{FORMS[form]}{count}"
                    folder = root / sid
                    folder.mkdir()
                    for item in items:
                        for i, text in enumerate(item["adv_texts"][:count]):
                            (folder / f"{item['id']}-{i}.txt").write_text(
                                planted_text(form, item["question"], text), encoding="utf-8"
                            )
                    svc.add_source(ACTOR, sid, str(folder), "external")
                    say(f"ingesting attack passages ({form}, {count} per question)")
                    svc.ingest(ACTOR, sid)
                    attack_sources[(form, count)] = sid

            searcher = svc.runtime.index.current().searcher
            on = svc.defense_config(policy)
            allowed = tuple(background.ids)
            result: dict[str, Any] = {"questions": len(items), "policy": policy}
            caught: dict[str, dict[str, dict[str, int]]] = {}
            t = time.perf_counter()
            say("asking the target questions")
            asr: dict[str, dict[str, dict[str, float]]] = {}
            won_on: dict[str, list[str]] = {}
            for (form, count), sid in attack_sources.items():
                key = f"{form}/{count}"
                tally = caught.setdefault(key, {"off": {}, "on": {}})
                row = asr.setdefault(form, {})
                row[str(count)] = {
                    "off": _success(searcher, items, (*allowed, sid), sid, None, tally["off"]),
                    "on": _success(
                        searcher,
                        items,
                        (*allowed, sid),
                        sid,
                        on,
                        tally["on"],
                        won_on=won_on.setdefault(key, []),
                    ),
                }
            result["asr@5"] = asr
            result["won_with_defenses_on"] = won_on  # question ids an attack got through on
            result["attack_top5_flags"] = caught  # own planted passages in the top 5, by flag
            result["attack_ms_per_query"] = round(
                (time.perf_counter() - t) * 1000 / (2 * len(items) * len(attack_sources)), 2
            )
            if lever_min_trust is not None:
                say(f"the provenance lever: min_trust {lever_min_trust}")
                result["lever"] = {
                    "min_trust": lever_min_trust,
                    "asr@5": {
                        f"{form}/{count}": _success(
                            searcher, items, (*allowed, sid), sid, on, {}, lever_min_trust
                        )
                        for (form, count), sid in attack_sources.items()
                    },
                }
            if clean:
                result["clean"] = {}
                for folder in clean:
                    say(f"clean judged queries: {folder}")
                    sid, names = background.clean[folder.resolve()]
                    result["clean"][str(folder)] = judged_cost(
                        folder, sid, names, searcher, on, allowed
                    )
            if faq_set is not None:
                say("FAQ queries")
                result["faq"] = faq_cost(
                    faq_set, allowed, searcher, on, lever_min_trust=lever_min_trust
                )
    return result


def _own(hits: list, attack_source: str, question_id: str) -> list:
    """The top-5 hits planted for this question (planted files are named ``<id>-<n>.txt``)."""
    return [
        h
        for h in hits[:TOP]
        if h.provenance["source_id"] == attack_source
        and Path(h.provenance["doc_name"]).stem.rsplit("-", 1)[0] == question_id
    ]


@dataclass
class _Background:
    """The background sources' ids, and each clean corpus's source id and file names."""

    ids: list[str] = field(default_factory=list)
    clean: dict[Path, tuple[str, dict[str, str]]] = field(default_factory=dict)


def _ingest_backgrounds(
    svc: Service, root: Path, backgrounds: list[Path], clean: list[Path], say: Callable
) -> _Background:
    """Every background and clean corpus as an ``internal`` source (a clean corpus that is also
    a background is ingested once)."""
    out = _Background()
    wanted = {c.resolve() for c in clean}
    folders = list(backgrounds) + [
        c for c in clean if c.resolve() not in {b.resolve() for b in backgrounds}
    ]
    for n, folder in enumerate(folders):
        sid = f"background{n}"
        if (folder / "corpus.jsonl").exists():
            files = root / sid
            names = write_documents(load_corpus(folder), files)
            if folder.resolve() in wanted:
                out.clean[folder.resolve()] = (sid, names)
            location = str(files)
        elif folder.resolve() in wanted:
            raise DatasetError(f"{folder} is not a BEIR folder (corpus.jsonl): --clean needs one")
        else:
            location = str(folder)
        svc.add_source(ACTOR, sid, location, "internal")
        say(f"ingesting background {folder}")
        svc.ingest(ACTOR, sid)
        out.ids.append(sid)
    return out


def _success(
    searcher: Any,
    items: list[dict[str, Any]],
    sources: tuple[str, ...],
    attack_source: str,
    defenses: Any,
    tally: dict[str, int],
    min_trust: float | None = None,
    won_on: list[str] | None = None,
) -> float:
    """The share of questions with a passage planted for them unflagged in the top 5 (their
    ids appended to ``won_on``)."""
    flt = access_filter(None, SearchFilter(sources=sources, min_trust=min_trust))
    won = 0
    for item in items:
        res = searcher.search(item["question"], flt, top_k=TOP, candidates=DEPTH, defenses=defenses)
        own = _own(res.hits, attack_source, item["id"])
        shown = own  # flags are counted as the flag policy shows them: drop would hide them
        if defenses is not None and defenses.policy != "flag":
            flag = replace(defenses, policy="flag")
            res = searcher.search(item["question"], flt, top_k=TOP, candidates=DEPTH, defenses=flag)
            shown = _own(res.hits, attack_source, item["id"])
        for h in shown:
            for kind in {f["kind"] for f in h.flags} or {"unflagged"}:
                tally[kind] = tally.get(kind, 0) + 1
        if any(not h.flags for h in own):
            won += 1
            if won_on is not None:
                won_on.append(item["id"])
    return round(won / len(items), 4)
