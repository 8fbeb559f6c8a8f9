"""Ingest benchmark: pipeline throughput against raw embedding, peak memory, unchanged re-ingest.

    python bench/ingest.py --chunks 100000

Builds a deterministic markdown corpus of about ``--chunks`` chunks (paragraphs drawn from the
Cranfield and CISI abstracts in ../shared when present, else from this repository's own docs),
ingests it into a fresh embedded index, re-ingests it unchanged, then embeds a sample of the very
chunks it wrote with the bare model, so both throughputs come from one process on one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _paragraphs() -> list[str]:
    paras: list[str] = []
    for name in ("cranfield", "cisi"):
        corpus = SHARED / name / "corpus.jsonl"
        if corpus.exists():
            for line in corpus.read_text().splitlines():
                text = json.loads(line).get("text", "").strip()
                if len(text) > 200:
                    paras.append(" ".join(text.split()))
    if not paras:
        for path in list((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
            paras += [p.strip() for p in path.read_text().split("\n\n") if len(p.strip()) > 200]
    return paras


def build_corpus(target_chunks: int, folder: Path, seed: int = 7) -> int:
    """Write markdown files of ~40 sections each; returns the number of files."""
    rng = random.Random(seed)
    paras = _paragraphs()
    folder.mkdir(parents=True, exist_ok=True)
    chars_per_chunk = 700  # sections are kept apart by titles; most close at 1-2 paragraphs
    written_chars, n_files = 0, 0
    while written_chars < target_chunks * chars_per_chunk:
        lines = [f"# Report {n_files}", ""]
        for s in range(40):
            lines += [f"## Section {s}: {' '.join(rng.choice(paras).split()[:6])}", ""]
            for _ in range(rng.randint(1, 2)):
                words = rng.choice(paras).split()
                rng.shuffle(words)
                lines += [" ".join(words), ""]
        text = "\n".join(lines)
        (folder / f"doc-{n_files:05d}.md").write_text(text)
        written_chars += len(text)
        n_files += 1
    return n_files


def _rss_parts(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of a process, from /proc/PID/status."""
    anon = file = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith(("RssFile:", "RssShmem:")):
                file += int(line.split()[1]) * 1024
    return anon, file


class PeakRss:
    """Samples the RSS of this process plus its children (the parser workers).

    ``peak`` is total RSS; ``peak_anon`` counts anonymous memory only (heap, model weights,
    in-RAM indexes), leaving out file-backed pages such as the index files Qdrant maps, which the
    kernel can drop under pressure.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak, self.peak_anon = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = anon = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error, OSError):  # a worker may exit meanwhile
                    a, f = _rss_parts(proc.pid)
                    anon += a
                    total += a + f
            self.peak = max(self.peak, total)
            self.peak_anon = max(self.peak_anon, anon)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chunks", type=int, default=100_000, help="approximate corpus size in chunks"
    )
    parser.add_argument(
        "--raw-sample", type=int, default=3000, help="chunks embedded bare for the baseline"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep corpus and index here")
    parser.add_argument(
        "--rules-only",
        action="store_true",
        help="turn the injection model off (RAGWALL_INJECTION_MODEL=none) to measure its cost",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()
    if args.rules_only:
        os.environ["RAGWALL_INJECTION_MODEL"] = "none"

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ragwall-bench-"))
    corpus, data = work / "corpus", work / "data"
    shutil.rmtree(data, ignore_errors=True)
    if not corpus.exists():
        t = time.perf_counter()
        n_files = build_corpus(args.chunks, corpus)
        print(f"corpus: {n_files} files in {time.perf_counter() - t:.1f} s at {corpus}")

    os.environ["RAGWALL_DATA_DIR"] = str(data)
    from ragwall.payload import Key
    from ragwall.retrieval.store import Filter, Match
    from ragwall.service import Service
    from ragwall.settings import Settings

    settings = Settings()
    from tqdm import tqdm

    with Service(settings) as svc:
        svc.add_source("bench", "bench", str(corpus), "internal", ["bench"])
        ingester = svc.runtime.index.current().ingester
        _ = ingester.encoder.dim  # load the model before the clock starts
        bar = tqdm(desc="ingest", unit="doc")

        def progress(_stage: str, done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        with PeakRss() as rss:
            t0 = time.perf_counter()
            first = svc.ingest("bench", "bench", progress=progress)
            first_s = time.perf_counter() - t0
        bar.close()
        t0 = time.perf_counter()
        again = svc.ingest("bench", "bench")
        again_s = time.perf_counter() - t0

        texts: list[str] = []
        offset = None
        while len(texts) < args.raw_sample:
            hits, offset = ingester.store.scroll(
                Filter(must=(Match(Key.SOURCE_ID, "bench"),)),
                limit=512,
                offset=offset,
                with_payload=[Key.TEXT],
            )
            texts += [h.payload[Key.TEXT] for h in hits]
            if offset is None:
                break
        texts = texts[: args.raw_sample]
        t0 = time.perf_counter()
        ingester.encoder.encode(texts)
        raw_s = time.perf_counter() - t0

    pipeline_cps = first.chunks / first_s
    raw_cps = len(texts) / raw_s
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cpus, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "documents": first.documents,
        "chunks": first.chunks,
        "failed": len(first.failed),
        "ingest_s": round(first_s, 1),
        "pipeline_chunks_per_s": round(pipeline_cps, 1),
        "raw_embed_chunks_per_s": round(raw_cps, 1),
        "pipeline_vs_raw": round(pipeline_cps / raw_cps, 3),
        "peak_rss_gib": round(rss.peak / 2**30, 2),
        "peak_rss_anon_gib": round(rss.peak_anon / 2**30, 2),
        "main_maxrss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "reingest_unchanged_s": round(again_s, 1),
        "reingest_written_chunks": again.chunks,
        "reingest_vs_first": round(again_s / first_s, 4),
        "main_process_stage_s": {k: round(v, 1) for k, v in first.stage_seconds.items()},
        "injection_model": not args.rules_only,
        "detect_share_of_ingest": round(first.stage_seconds.get("detect", 0.0) / first_s, 3),
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
