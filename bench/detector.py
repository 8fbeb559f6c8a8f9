"""The injection detector on big and odd texts: seconds per megabyte, rules and model apart.

    python bench/detector.py [--megabytes 1] [--kinds prose,base64,cjk,mixed] [--json]

Builds texts of ``--megabytes`` MB each (English prose from this repository's docs, a base64
blob, CJK, mixed scripts with zero-width and bidi characters) and scores each whole, as the
detector scores a text outside ingest: the rules on the whole text, the model in overlapping
passes of its own. Time should grow linearly with size: each text is also scored at a quarter of
the size and the ratio printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]


def texts(size: int) -> dict[str, str]:
    prose = "\n\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    prose += (ROOT / "README.md").read_text()
    cjk = "这是一个普通的中文句子，用于测试检测器的速度。日本語の文章も少し混ぜます。"
    mixed = "Mixed Latin и кириллица \u200b and العربية \u202ebidi\u202c text. "
    blob = base64.b64encode(os.urandom(size)).decode()

    def fill(unit: str) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    return {"prose": fill(prose), "base64": blob[:size], "cjk": fill(cjk), "mixed": fill(mixed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument(
        "--kinds", default="prose,base64,cjk,mixed", help="comma-separated: which texts to score"
    )
    parser.add_argument(
        "--ingest-chunks",
        type=int,
        default=0,
        help="also time the bare embedding pass and the detector (model pass and rules) on this "
        "many 1,000-character chunks of the repository's docs (interleaved, 3 rounds)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ragwall.defend.rules import scan
    from ragwall.embed import DenseEncoder
    from ragwall.ingest.pipeline import make_detector
    from ragwall.settings import Settings

    encoder = DenseEncoder()
    detector = make_detector(Settings())
    detector.score_texts(["warm up the model"])
    size = int(args.megabytes * 1_000_000)
    result: dict = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "chars": size,
        "texts": {},
    }
    wanted = set(args.kinds.split(","))
    for name, text in texts(size).items():
        if name not in wanted:
            continue
        t = time.perf_counter()
        scan(text)
        rules_s = time.perf_counter() - t
        t = time.perf_counter()
        sig = detector.score_texts([text])[0]
        whole_s = time.perf_counter() - t
        quarter = text[: size // 4]
        t = time.perf_counter()
        detector.score_texts([quarter])
        quarter_s = time.perf_counter() - t
        result["texts"][name] = {
            "rules_s": round(rules_s, 2),
            "detector_s": round(whole_s, 2),
            "us_per_char": round(whole_s / size * 1e6, 2),
            "full_vs_quarter_time": round(whole_s / quarter_s, 2),
            "score": sig.injection_score,
        }
        print(name, json.dumps(result["texts"][name]), flush=True)
    if args.ingest_chunks:
        result["ingest"] = ingest_cost(encoder, detector, args.ingest_chunks)
        print("ingest", json.dumps(result["ingest"]), flush=True)
    if args.json:
        print(json.dumps(result))


def ingest_cost(encoder, detector, n: int) -> dict:  # noqa: ANN001
    """Seconds for the bare embedding of ``n`` chunks and for the detector on them (the
    injection model's own ONNX pass plus the rules, what ingest adds), best of 3 interleaved
    rounds; ``added`` is the detector's time over the bare embedding's."""
    from ragwall.defend.rules import scan

    prose = texts(n * 1000)["prose"]
    chunks = [prose[i : i + 1000] for i in range(0, n * 1000, 1000)]
    bare, detect, rules = [], [], []
    for _ in range(3):
        t = time.perf_counter()
        encoder.encode(chunks)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        detector.score_texts(chunks)
        detect.append(time.perf_counter() - t)
        t = time.perf_counter()
        for c in chunks:
            scan(c)
        rules.append(time.perf_counter() - t)
    return {
        "chunks": n,
        "bare_embed_s": round(min(bare), 2),
        "detector_s": round(min(detect), 2),
        "rules_s": round(min(rules), 2),
        "added": round(min(detect) / min(bare), 3),
    }


if __name__ == "__main__":
    main()
