"""The ONNX query encoder against PyTorch: speed per short query and cosine agreement.

    python bench/query_encoder.py [--json]

Exports the configured embedding model the way the server does (into a scratch folder), then
embeds the same short queries one at a time with both, and compares the vectors on the export's
probe sentences and on every README line of 30+ characters (texts the export check never saw).
Also times the injection rules per chunk on Cranfield abstracts (when ../shared is present).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERIES = [
    "boundary layer transition at hypersonic speed",
    "how do I reset my password",
    "what are the customs rules for shipping to norway and sweden",
]


def _ms_per_query(fn, rounds: int) -> float:  # noqa: ANN001
    fn(QUERIES[0])
    t = time.perf_counter()
    for i in range(rounds):
        fn(QUERIES[i % len(QUERIES)])
    return (time.perf_counter() - t) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ragwall.defend.rules import scan
    from ragwall.embed import DenseEncoder
    from ragwall.retrieval.onnx_embed import PROBES, load_query_encoder

    encoder = DenseEncoder()
    onnx_encoder = load_query_encoder(encoder, Path(tempfile.mkdtemp(prefix="ragwall-qe-")))
    lines = [
        x.strip() for x in (ROOT / "README.md").read_text().splitlines() if len(x.strip()) >= 30
    ]
    result: dict = {
        "torch_ms_per_query": round(_ms_per_query(encoder.encode_query, args.rounds), 2),
        "onnx_ms_per_query": round(_ms_per_query(onnx_encoder.encode_query, args.rounds), 2),
    }
    for name, texts in (("probes", PROBES), ("readme_lines", lines)):
        cos = (onnx_encoder.encode(texts) * encoder.encode(texts)).sum(axis=1)
        result[f"cosine_{name}"] = {
            "n": len(texts),
            "min": round(float(cos.min()), 4),
            "mean": round(float(cos.mean()), 4),
        }
    cranfield = ROOT.parent / "shared" / "data" / "cranfield" / "corpus.jsonl"
    if cranfield.exists():
        chunks = [json.loads(x)["text"][:1000] for x in cranfield.read_text().splitlines()[:300]]
        t = time.process_time()
        for text in chunks:
            scan(text)
        result["rules_cpu_ms_per_chunk"] = round((time.process_time() - t) / len(chunks) * 1000, 3)
    for key, value in result.items():
        print(f"{key:<24} {value}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
