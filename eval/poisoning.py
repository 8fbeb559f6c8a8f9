"""Attack success of corpus poisoning, with Ragwall's defenses off and on.

A clean background (BEIR ``corpus.jsonl`` folders, or folders of documents) is ingested as
trusted sources; the attack passages (PoisonedRAG format) are ingested as an ``external`` source,
one passage per document, twice: all passages per question, and only the first one. Each target
question is then asked. An attack succeeds when any attack passage is among the top 5 hits
returned *unflagged* (with defenses off, nothing is flagged). On clean judged data (``--clean``,
BEIR layout) the eval also reports nDCG@10 with defenses off and on and the share of clean top-5
hits that got a flag. Everything runs through the real ingest pipeline and the real searcher.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragwall.datasets import DatasetError, _jsonl, load_corpus, load_qrels, write_documents
from ragwall.eval.metrics import mean, ndcg_at_k
from ragwall.retrieval.search import SearchFilter, access_filter
from ragwall.service import Service
from ragwall.settings import Settings

TOP = 5
ACTOR = "eval"  # the audit actor of the eval's own throwaway data dir
DEPTH = 30


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


def evaluate_poisoning(
    attack: Path,
    backgrounds: list[Path],
    clean: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:

    say = progress or (lambda _m: None)
    items = load_attack(attack)
    with tempfile.TemporaryDirectory(prefix="ragwall-poison-") as tmp:
        root = Path(tmp)
        # Queries embedded by the model itself (not its int8 twin), as every eval does.
        settings = Settings(data_dir=root / "data", qdrant_url=None, query_encoder="torch")
        with Service(settings) as svc:
            background_ids: list[str] = []
            clean_source, clean_names = None, {}
            for n, folder in enumerate(backgrounds):
                sid = f"background{n}"
                if (folder / "corpus.jsonl").exists():
                    files = root / sid
                    names = write_documents(load_corpus(folder), files)
                    if clean is not None and folder.resolve() == clean.resolve():
                        clean_source, clean_names = sid, names
                    location = str(files)
                else:
                    location = str(folder)
                svc.add_source(ACTOR, sid, location, "internal")
                say(f"ingesting background {folder}")
                svc.ingest(ACTOR, sid)
                background_ids.append(sid)
            if clean is not None and clean_source is None:
                clean_source = "clean"
                clean_names = write_documents(load_corpus(clean), root / "clean")
                svc.add_source(ACTOR, "clean", str(root / "clean"), "internal")
                say(f"ingesting clean corpus {clean}")
                svc.ingest(ACTOR, "clean")
            for sid, per_question in (("attack5", None), ("attack1", 1)):
                folder = root / sid
                folder.mkdir()
                for item in items:
                    for i, text in enumerate(item["adv_texts"][:per_question]):
                        (folder / f"{item['id']}-{i}.txt").write_text(text, encoding="utf-8")
                svc.add_source(ACTOR, sid, str(folder), "external")
                say(f"ingesting attack passages ({sid})")
                svc.ingest(ACTOR, sid)

            searcher = svc.runtime.index.current().searcher
            on = svc.defense_config("flag")

            def asr(attack_source: str, defenses) -> float:  # noqa: ANN001
                allowed = (*background_ids, attack_source) + (
                    (clean_source,) if clean_source and clean_source not in background_ids else ()
                )
                flt = access_filter(None, SearchFilter(sources=allowed))
                hit = 0
                for item in items:
                    res = searcher.search(
                        item["question"], flt, top_k=TOP, candidates=DEPTH, defenses=defenses
                    )
                    planted = [
                        h for h in res.hits[:TOP] if h.provenance["source_id"] == attack_source
                    ]
                    for h in planted:
                        for kind in {f["kind"] for f in h.flags} or {"unflagged"}:
                            tally = caught[attack_source]["on" if defenses else "off"]
                            tally[kind] = tally.get(kind, 0) + 1
                    if any(not h.flags for h in planted):
                        hit += 1
                return round(hit / len(items), 4)

            caught: dict[str, dict[str, dict[str, int]]] = {
                src: {"off": {}, "on": {}} for src in ("attack5", "attack1")
            }
            result: dict[str, Any] = {"questions": len(items)}
            t = time.perf_counter()
            say("asking the target questions")
            result["asr@5"] = {"off": asr("attack5", None), "on": asr("attack5", on)}
            result["asr@5_single"] = {"off": asr("attack1", None), "on": asr("attack1", on)}
            result["attack_top5_flags"] = caught  # planted passages in the top 5, by flag
            result["attack_ms_per_query"] = round(
                (time.perf_counter() - t) * 1000 / (4 * len(items)), 2
            )
            if clean is not None:
                say("clean judged queries")
                result.update(_clean(clean, clean_source, clean_names, searcher, on))
    return result


def _clean(clean: Path, source_id, names, searcher, on) -> dict[str, Any]:  # noqa: ANN001

    qrels_files = sorted((clean / "qrels").glob("*.tsv"))
    if len(qrels_files) != 1:
        raise DatasetError(f"{clean}/qrels must hold exactly one .tsv file for --clean")
    qrels = load_qrels(qrels_files[0])
    queries = {str(q["_id"]): q["text"] for q in _jsonl(clean / "queries.jsonl")}
    flt = access_filter(None, SearchFilter())
    ndcg: dict[str, list[float]] = {"off": [], "on": []}
    flagged = total = 0
    kinds: dict[str, int] = {}
    for qid, judged in qrels.items():
        for mode, cfg in (("off", None), ("on", on)):
            res = searcher.search(queries[qid], flt, top_k=DEPTH, candidates=DEPTH, defenses=cfg)
            ranked, seen = [], set()
            for h in res.hits:
                stem = Path(h.provenance["doc_name"]).stem
                doc = names.get(stem) if h.provenance["source_id"] == source_id else None
                key = doc or f"other:{h.provenance['source_id']}:{stem}"
                if key not in seen:
                    seen.add(key)
                    ranked.append(key)
            ndcg[mode].append(ndcg_at_k(ranked, judged, 10))
            if mode == "on":
                total += min(TOP, len(res.hits))
                flagged += sum(1 for h in res.hits[:TOP] if h.flags)
                for h in res.hits[:TOP]:
                    for f in h.flags:
                        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    return {
        "clean_ndcg@10": {m: round(mean(v), 4) for m, v in ndcg.items()},
        "clean_flag_rate": round(flagged / total, 4) if total else 0.0,
        "clean_flags_by_kind": kinds,
        "clean_queries": len(qrels),
        "qrels": qrels_files[0].name,
    }
