"""Drift-eval checks on real data, with timings: the figures docs/benchmarks.md quotes.

    python bench/drift.py --workdir /tmp/bench-drift [--report-dir docs/drift-example]

Over a Cranfield index (1,400 abstracts, one source, ingested by the real pipeline):

1. **Poisoning shows up.** Snapshot Cranfield's dev queries plus PoisonedRAG's target questions
   (``nq.json``); add every attack passage as a new ``external`` source, ingest it, and compare
   the snapshot with the index now, gated by ``--max-new-source-share 0.05``. Reports where the
   attacked questions rank in the most-changed list, the source-share table's head, the gate, and
   the Cranfield queries' RBO. Then the attack source is removed.
2. **An identical rebuild shows no drift.** ``reindex --rebuild`` with unchanged settings (every
   document re-parsed and re-embedded), then version vs version on the dev queries with qrels.
3. **A chunk-size change**: ``reindex`` at ``--small-chunks`` tokens (default 96) against the
   identical rebuild: the measured drift and whether the nDCG change is significant.

Each comparison's wall time is printed (two snapshots through the real search path, the
embedding-drift sample and the statistics). Needs ``../shared/data`` (cranfield, poisonedrag).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragwall.datasets import load_corpus, write_documents  # noqa: E402
from ragwall.eval.drift.compare import Gates  # noqa: E402
from ragwall.eval.drift.queries import QuerySet, load_dataset_queries  # noqa: E402
from ragwall.eval.drift.report import write_report  # noqa: E402
from ragwall.eval.drift.snapshot import save_snapshot  # noqa: E402
from ragwall.service import (
    Service,  # noqa: E402
    Side,  # noqa: E402
)
from ragwall.settings import Settings  # noqa: E402

ACTOR = "bench"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _keep(result: dict) -> dict:
    keys = ("queries", "rbo", "jaccard@k", "jaccard@k_chunks", "top1_changed", "ndcg@10")
    out = {k: result[k] for k in keys if k in result}
    out["sources"] = result["sources"][:3]
    out["scores"] = result["scores"]
    out["embedding"] = result["embedding"]
    out["gates"] = result["gates"]
    out["verdict"] = result["verdict"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-drift"))
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--small-chunks", type=int, default=96)
    parser.add_argument("--report-dir", type=Path, default=None, help="keep the reports here")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    reports = args.report_dir or args.workdir / "reports"
    out: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.now(UTC).date().isoformat(),
    }
    cran = args.data / "cranfield"
    dev = load_dataset_queries(cran, "dev")
    attack = json.loads((args.data / "poisonedrag" / "nq.json").read_text(encoding="utf-8"))
    attacked = {f"prag-{k}": v["question"] for k, v in attack.items()}
    mixed = QuerySet({**dev.queries, **attacked}, dev.qrels, "cranfield dev + poisonedrag")

    docs = args.workdir / "cranfield"
    write_documents(load_corpus(cran), docs)
    passages = args.workdir / "attack"
    passages.mkdir()
    for k, v in attack.items():
        for i, text in enumerate(v["adv_texts"]):
            (passages / f"{k}-{i}.txt").write_text(text, encoding="utf-8")

    settings = Settings(data_dir=args.workdir / "data", qdrant_url=None)
    with Service(settings) as svc:
        t = time.perf_counter()
        svc.add_source(ACTOR, "cranfield", str(docs), "internal")
        rep = svc.ingest(ACTOR, "cranfield")
        out["ingest"] = {"chunks": rep.chunks, "seconds": round(time.perf_counter() - t, 1)}
        print(f"ingested {rep.chunks} chunks", flush=True)

        # 1. poisoning
        t = time.perf_counter()
        before = svc.snapshot(ACTOR, mixed, 10)
        snap_s = time.perf_counter() - t
        save_snapshot(before, args.workdir / "before.json")
        svc.add_source(ACTOR, "web-import", str(passages), "external")
        svc.ingest(ACTOR, "web-import")
        t = time.perf_counter()
        result = svc.drift(
            ACTOR,
            mixed,
            Side(snapshot=before),
            Side(),
            10,
            Gates(max_new_source_share=0.05),
        )
        poison = _keep(result)
        poison["seconds"] = round(time.perf_counter() - t, 2)
        poison["snapshot_seconds"] = round(snap_s, 2)
        most = result["most_changed"]
        poison["most_changed_attacked"] = sum(1 for q in most if q["id"].startswith("prag-"))
        poison["most_changed_listed"] = len(most)
        per = result["per_query"]
        cran_rbo = [r["rbo"] for r in per if not r["id"].startswith("prag-")]
        prag_rbo = [r["rbo"] for r in per if r["id"].startswith("prag-")]
        poison["cranfield_mean_rbo"] = round(sum(cran_rbo) / len(cran_rbo), 4)
        poison["attacked_mean_rbo"] = round(sum(prag_rbo) / len(prag_rbo), 4)
        write_report(result, reports / "poisoning")
        out["poisoning"] = poison
        print(f"poisoning: {json.dumps(poison)}", flush=True)
        svc.remove_source(ACTOR, "web-import")

        # 2. identical rebuild
        t = time.perf_counter()
        job = svc.reindex(ACTOR, {"rebuild": True})
        out["rebuild_seconds"] = round(time.perf_counter() - t, 1)
        assert job.state == "succeeded", job.error
        t = time.perf_counter()
        result = svc.drift(ACTOR, dev, Side(version=1), Side(), 10, Gates(min_mean_rbo=0.98))
        same = _keep(result)
        same["seconds"] = round(time.perf_counter() - t, 2)
        write_report(result, reports / "identical-rebuild")
        out["identical_rebuild"] = same
        print(f"identical rebuild: {json.dumps(same)}", flush=True)

        # 3. chunk size
        job = svc.reindex(ACTOR, {"chunk_max_tokens": args.small_chunks})
        assert job.state == "succeeded", job.error
        t = time.perf_counter()
        result = svc.drift(ACTOR, dev, Side(version=2), Side(), 10, Gates(max_ndcg_drop=0.0))
        small = _keep(result)
        small["seconds"] = round(time.perf_counter() - t, 2)
        small["chunks"] = job.result["chunks"]
        write_report(result, reports / f"chunks-{args.small_chunks}")
        out[f"chunk_tokens_{args.small_chunks}"] = small
        print(f"chunk size {args.small_chunks}: {json.dumps(small)}", flush=True)
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
