"""Reindex benchmark: rebuild speed against the first ingest, request latency during a build,
and requests across a switch and a rollback.

    python bench/reindex.py --chunks 100000 --workdir /tmp/bench-reindex

1. Builds the ingest bench's deterministic corpus (``bench/ingest.py``) and ingests it (the
   first ingest, in this process, timed by the ingest itself).
2. Serves it (``ragwall serve``) and measures retrieve latency at concurrency 1, idle.
3. A full reindex with another chunk size (``POST /v1/index/reindex``), with the same request
   loop running: the build's chunks/s against the first ingest's, and latency during the build.
4. A reindex that changes only the trust priors (stored vectors reused): its time against the
   first ingest's.
5. A rollback and an activate under the loop: non-2xx responses, the versions that answered,
   and the longest time after a switch returned during which a request still got the old one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.ingest import build_corpus  # noqa: E402
from bench.retrieve import _free_port, _queries  # noqa: E402

RAGWALL = str(Path(sys.executable).with_name("ragwall"))


class Loop:
    """Retrieves at concurrency 1: (sent, latency_s, status, index_version) per request."""

    def __init__(self, url: str, key: str, queries: list[str]) -> None:
        self.url, self.key, self.queries = url, key, queries
        self.rows: list[tuple[float, float, int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as client:
            i = 0
            while not self._stop.is_set():
                body = {"query": self.queries[i % len(self.queries)], "top_k": 8}
                sent = time.monotonic()
                r = client.post("/v1/retrieve", json=body)
                version = r.json().get("index_version") if r.status_code == 200 else None
                self.rows.append((sent, time.monotonic() - sent, r.status_code, version))
                i += 1

    def start(self) -> Loop:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, float, int, str | None]]:
        self._stop.set()
        self._thread.join(120)
        return self.rows


def _pcts(rows: list) -> dict[str, float]:
    lat = sorted(r[1] * 1000 for r in rows)
    if not lat:
        return {"n": 0}
    return {
        "n": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        "max_ms": round(lat[-1], 1),
    }


def _job(client: httpx.Client, body: dict) -> dict:
    started = client.post("/v1/index/reindex", json=body)
    started.raise_for_status()
    job_id = started.json()["job_id"]
    last = 0.0
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        p = job.get("progress") or {}
        if time.monotonic() - last > 30:
            last = time.monotonic()
            print(
                f"  {p.get('stage')}: {p.get('documents_done')}/{p.get('documents_total')} "
                f"documents, {p.get('chunks')} chunks, {p.get('elapsed_s')} s",
                flush=True,
            )
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="approximate corpus size")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--idle-requests", type=int, default=300)
    parser.add_argument(
        "--quiet-rebuild",
        action="store_true",
        help="also time a full reindex with no requests running (the build alone)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ragwall-reindex-"))
    corpus, data = work / "corpus", work / "data"
    shutil.rmtree(data, ignore_errors=True)
    if not corpus.exists():
        build_corpus(args.chunks, corpus)
    env = {**os.environ, "RAGWALL_DATA_DIR": str(data), "RAGWALL_QUERY_ENCODER": "onnx"}
    os.environ.update({"RAGWALL_DATA_DIR": str(data)})
    out: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "chunks_target": args.chunks,
    }

    # 1. The first ingest, in this process (timed by the ingest).
    from ragwall.service import Service, cli_actor

    with Service() as svc:
        svc.add_source(cli_actor(), "bench", str(corpus), "internal")
        report = svc.ingest(cli_actor(), "bench")
        key, _ = svc.create_key(cli_actor(), "admin", name="bench")
    first = {"chunks": report.chunks, "seconds": round(report.seconds, 1)}
    first["chunks_per_s"] = round(report.chunks / report.seconds, 2)
    out["first_ingest"] = first
    print(f"first ingest: {first}", flush=True)

    # 2. Serve it; idle latency.
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [RAGWALL, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        queries = _queries(200)
        headers = {"Authorization": f"Bearer {key}"}
        client = httpx.Client(base_url=url, headers=headers, timeout=120)
        for q in queries[:20]:  # warm up
            client.post("/v1/retrieve", json={"query": q})
        loop = Loop(url, key, queries).start()
        while len(loop.rows) < args.idle_requests:
            time.sleep(0.2)
        out["idle"] = _pcts(loop.stop())
        print(f"idle: {out['idle']}", flush=True)

        # 3. Full reindex (another chunk size) under the loop.
        loop = Loop(url, key, queries).start()
        job = _job(client, {"chunk_max_tokens": 200})
        rows = loop.stop()
        result = job["result"] or {}
        full = {
            "state": job["state"],
            "error": job["error"],
            "chunks": result.get("chunks"),
            "seconds": result.get("seconds"),
            "reused_vectors": result.get("reused_vectors"),
        }
        if result:
            full["chunks_per_s"] = round(result["chunks"] / result["seconds"], 2)
            full["ratio_to_first_ingest"] = round(full["chunks_per_s"] / first["chunks_per_s"], 3)
        full["during_build"] = _pcts(rows)  # the loop ran from the POST to the job's end
        full["non_2xx"] = sum(1 for r in rows if not 200 <= r[2] < 300)
        out["full_reindex"] = full
        print(f"full reindex: {full}", flush=True)

        if args.quiet_rebuild:
            job = _job(client, {"chunk_max_tokens": 180})
            result = job["result"] or {}
            quiet = {
                "state": job["state"],
                "chunks": result.get("chunks"),
                "seconds": result.get("seconds"),
            }
            if result:
                quiet["chunks_per_s"] = round(result["chunks"] / result["seconds"], 2)
                quiet["ratio_to_first_ingest"] = round(
                    quiet["chunks_per_s"] / first["chunks_per_s"], 3
                )
            out["full_reindex_no_requests"] = quiet
            print(f"full reindex, no requests: {quiet}", flush=True)

        # 4. Trust priors only: vectors reused.
        priors = {"verified": 1.0, "internal": 0.75, "external": 0.5, "untrusted": 0.2}
        job = _job(client, {"trust_priors": priors})
        result = job["result"] or {}
        reuse = {
            "state": job["state"],
            "seconds": result.get("seconds"),
            "reused_vectors": result.get("reused_vectors"),
            "chunks": result.get("chunks"),
        }
        if result:
            reuse["share_of_first_ingest"] = round(result["seconds"] / first["seconds"], 4)
        out["trust_prior_reindex"] = reuse
        print(f"trust-prior reindex: {reuse}", flush=True)

        # 5. Rollback and activate under the loop.
        loop = Loop(url, key, queries).start()
        time.sleep(2)
        switches = []
        for call in ("rollback", "activate"):
            current = client.get("/v1/index").json()
            if call == "rollback":
                r = client.post("/v1/index/rollback")
            else:
                target = next(v["version"] for v in current["versions"] if v["state"] == "ready")
                r = client.post("/v1/index/activate", json={"version": target})
            r.raise_for_status()
            switches.append((time.monotonic(), r.json()["active"]))
            time.sleep(3)
        rows = loop.stop()
        lag = 0.0  # the latest request, sent after a switch returned, that got the old version
        for at, active in switches:
            stale = [r[0] - at for r in rows if at <= r[0] < at + 3 and r[3] != active]
            lag = max([lag, *stale])
        out["switches"] = {
            "requests": len(rows),
            "non_2xx": sum(1 for r in rows if not 200 <= r[2] < 300),
            "versions": sorted({r[3] for r in rows if r[3]}),
            "max_stale_after_switch_s": round(lag, 3),
            "latency": _pcts(rows),
        }
        print(f"switches: {out['switches']}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=120)
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
