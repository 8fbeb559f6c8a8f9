"""Retrieval latency and throughput over HTTP against a running server.

    python bench/retrieve.py --data-dir /tmp/bench-100k/data [--reranker rerank/models/...]

Starts ``ragwall serve`` on the given data directory (an index built by bench/ingest.py holds
100k chunks), creates a retrieve key, and sends real queries from a second process at
concurrency 1, 4 and 16, with the query-time defenses off and on, without and (when a
reranker is given) with reranking of 20 candidates. Prints p50/p99 latency and requests per second, and the reranker's pairs/s alone.

With ``--compare-telemetry`` it measures what metrics and request logs cost instead: the
default path at concurrency 1 and 16, served with ``RAGWALL_TELEMETRY`` on and off in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RAGWALL = str(Path(sys.executable).with_name("ragwall"))


def _queries(n: int, seed: int = 3) -> list[str]:
    found: list[str] = []
    for name in ("cranfield", "cisi"):
        path = SHARED / name / "queries.jsonl"
        if path.exists():
            found += [json.loads(x)["text"] for x in path.read_text().splitlines() if x.strip()]
    if not found:
        words = (ROOT / "README.md").read_text().split()
        rng = random.Random(seed)
        found = [" ".join(rng.sample(words, 8)) for _ in range(200)]
    rng = random.Random(seed)
    return [rng.choice(found)[:500] for _ in range(n)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _load(
    url: str, key: str, queries: list[str], concurrency: int, rerank: bool, defenses: bool = True
) -> dict:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for q in queries:
        queue.put_nowait(q)
    body_extra = {"rerank": True, "candidates": 20} if rerank else {"rerank": False}
    body_extra["defenses"] = defenses

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            q = queue.get_nowait()
            t = time.perf_counter()
            r = await client.post(
                f"{url}/v1/retrieve",
                json={"query": q, "top_k": 8, **body_extra},
                headers={"Authorization": f"Bearer {key}"},
            )
            latencies.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200 or (rerank and not r.json()["rerank"]["applied"]):
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "req_per_s": round(len(latencies) / wall, 1),
    }


@contextmanager
def served(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """``ragwall serve`` on a free port until the block ends; yields its URL once ready. Its
    log lines go to ``log_path`` (a pipe nobody reads would stall a server that logs)."""
    port = _free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [*command, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None:
                    raise SystemExit(f"server exited: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            yield url
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)


def _print_run(label: str, run: dict) -> None:
    print(
        f"{label} c={run['concurrency']:<2}  p50 {run['p50_ms']:7.1f} ms  "
        f"p99 {run['p99_ms']:7.1f} ms  {run['req_per_s']:6.1f} req/s  errors {run['errors']}"
    )


def _compare_telemetry(command: list[str], env: dict, key: str, requests: int, logs: Path) -> dict:
    """The default serving path (defenses on, no rerank) at concurrency 1 and 16 with telemetry
    (metrics, request logs) on and off, in alternating server runs (off, on, off, on)."""
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for round_ in range(2):
        for mode in ("off", "on"):
            run_env = {**env, "RAGWALL_TELEMETRY": "1" if mode == "on" else "0"}
            run_env["RAGWALL_LOG_FORMAT"] = "json"
            with served(command, run_env, logs / f"serve-{mode}-{round_}.log") as url:
                asyncio.run(_load(url, key, _queries(30), 2, False))  # warm-up
                for concurrency in (1, 16):
                    run = asyncio.run(_load(url, key, _queries(requests), concurrency, False))
                    run["telemetry"] = mode
                    runs[mode].append(run)
                    _print_run(f"telemetry={mode:3} round={round_}", run)
    summary = {}
    for concurrency in (1, 16):
        row = {}
        for mode in ("off", "on"):
            mine = [r for r in runs[mode] if r["concurrency"] == concurrency]
            row[mode] = {
                q: round(statistics.mean(r[q] for r in mine), 2) for q in ("p50_ms", "p99_ms")
            }
        for q in ("p50_ms", "p99_ms"):
            diff = row["on"][q] - row["off"][q]
            row[f"{q}_diff"] = round(diff, 2)
            row[f"{q}_diff_pct"] = round(100 * diff / row["off"][q], 1)
        summary[str(concurrency)] = row
        print(
            f"c={concurrency:<2} telemetry on - off:  p50 {row['p50_ms_diff']:+.2f} ms "
            f"({row['p50_ms_diff_pct']:+.1f} %)  p99 {row['p99_ms_diff']:+.2f} ms "
            f"({row['p99_ms_diff_pct']:+.1f} %)"
        )
    return {"runs": runs["off"] + runs["on"], "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--reranker", default=None, help="cross-encoder for the rerank runs")
    parser.add_argument("--requests", type=int, default=300, help="requests per run")
    parser.add_argument(
        "--ragwall",
        default=RAGWALL,
        help="the ragwall command to serve with (e.g. another checkout's, to compare two versions)",
    )
    parser.add_argument(
        "--compare-telemetry",
        action="store_true",
        help="only compare telemetry (metrics and request logs) on against off",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    command = shlex.split(args.ragwall)

    env = {**os.environ, "RAGWALL_DATA_DIR": str(args.data_dir)}
    if args.reranker:
        env["RAGWALL_RERANKER_MODEL"] = args.reranker
    key = json.loads(
        subprocess.run(
            [*command, "keys", "create", "--scope", "retrieve", "--json", "--name", "bench"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )["key"]
    logs = Path(tempfile.mkdtemp(prefix="ragwall-bench-"))
    results: dict = {"date": datetime.now(UTC).date().isoformat(), "runs": []}
    if args.compare_telemetry:
        results |= _compare_telemetry(command, env, key, args.requests, logs)
        if args.json:
            print(json.dumps(results))
        return
    with served(command, env, logs / "serve.log") as url:
        results["points"] = int(httpx.get(f"{url}/readyz").json()["detail"]["points"])
        asyncio.run(_load(url, key, _queries(30), 2, False))  # warm-up
        modes = [(False, False), (False, True)]
        if args.reranker:
            modes += [(True, False), (True, True)]
        for rerank, defenses in modes:
            for concurrency in (1, 4, 16):
                run = asyncio.run(
                    _load(url, key, _queries(args.requests), concurrency, rerank, defenses)
                )
                run["rerank"] = rerank
                run["defenses"] = defenses
                results["runs"].append(run)
                _print_run(f"rerank={rerank!s:5} defenses={defenses!s:5}", run)
    if args.reranker:
        from ragwall.rerank import load_reranker

        reranker = load_reranker(args.reranker)
        passages = [q * 8 for q in _queries(20)]
        reranker.score("warm up", passages)
        t = time.perf_counter()
        n = 0
        while time.perf_counter() - t < 10:
            reranker.score(_queries(1)[0], passages)
            n += len(passages)
        results["reranker_pairs_per_s"] = round(n / (time.perf_counter() - t), 1)
        print(f"reranker alone: {results['reranker_pairs_per_s']} pairs/s (batches of 20)")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
