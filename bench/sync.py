"""What an unchanged sync of a folder source costs against its first ingest (issue 29).

    python bench/sync.py [--documents 10000] [--workdir DIR] [--json]

Writes ``--documents`` small markdown files (one or two chunks each, deterministic text built
from this repository's README), registers them as one folder source with a schedule
(``refresh_s``), ingests it once (the first sync), then syncs it again unchanged the way the
scheduler does (a full ``Service.ingest``), and once more after touching 1 % of the files'
content. Prints each sync's seconds, documents written and the unchanged sync's share of the
first one. Target: an unchanged sync costs ≤ 2 % of the first ingest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent


def build(folder: Path, n: int, seed: int = 11) -> None:
    words = re.findall(r"[a-z]{4,}", (ROOT / "README.md").read_text().lower())
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sentences = [
            " ".join(rng.choice(words) for _ in range(rng.randint(8, 16))).capitalize() + "."
            for _ in range(rng.randint(3, 12))
        ]
        (folder / f"note-{i:05d}.md").write_text(f"# Note {i}\n\n" + " ".join(sentences) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=None, help="keep corpus and index here")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ragwall-bench-sync-"))
    corpus, data = work / "corpus", work / "data"
    shutil.rmtree(data, ignore_errors=True)
    if not corpus.exists():
        build(corpus, args.documents)
    os.environ["RAGWALL_DATA_DIR"] = str(data)
    from ragwall.service import Service
    from ragwall.settings import Settings

    runs = {}
    with Service(Settings()) as svc:
        svc.add_source("bench", "notes", str(corpus), "internal", refresh_s=900)
        svc.warm_up()

        def sync(name: str) -> None:
            t = time.perf_counter()
            report = svc.ingest("bench", "notes")
            runs[name] = {
                "seconds": round(time.perf_counter() - t, 3),
                "documents": report.documents,
                "unchanged": report.unchanged,
                "chunks": report.chunks,
            }
            print(f"{name:10} {runs[name]}", flush=True)

        sync("first")
        sync("unchanged")
        for path in sorted(corpus.glob("*.md"))[::100]:  # 1 % of the files change
            path.write_text(path.read_text() + "\nA line added later.\n")
        sync("one_pct")
    result = {
        "documents": args.documents,
        "runs": runs,
        "unchanged_share": round(runs["unchanged"]["seconds"] / runs["first"]["seconds"], 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.now(UTC).date().isoformat(),
    }
    print(
        f"unchanged sync: {runs['unchanged']['seconds']} s against {runs['first']['seconds']} s "
        f"({result['unchanged_share']:.2%} of the first ingest; target <= 2 %)"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
