"""What MCP costs over REST: an MCP ``search`` round trip against ``POST /v1/retrieve``.

    python bench/mcp_overhead.py [--data-dir DIR] [--requests 300]

Serves a data dir with ``ragwall serve`` (default: a fresh one holding this repository's
``samples/`` and ``docs/``, as ``make run`` ingests them), creates a retrieve key, and sends the
same queries at concurrency 1 both ways, interleaved (REST then MCP for one query, MCP then REST
for the next), so that both see the same server state. The MCP client is the SDK's own
(``streamable_http_client`` and ``ClientSession``, one initialized session; each tool call is one
HTTP POST, as the endpoint is stateless). Prints p50 and p99 of both and of their difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieve import RAGWALL, ROOT, _queries, served  # noqa: E402 - the sibling bench script

TOP_K = 8


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _prepare(env: dict[str, str]) -> None:
    """Ingest ``samples/`` and ``docs/`` into the data dir, as ``make run`` does."""
    for name, folder, trust in (("samples", "samples", "internal"), ("docs", "docs", "verified")):
        subprocess.run(
            [RAGWALL, "sources", "add", name, str(ROOT / folder), "--trust", trust, "--exist-ok"],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run([RAGWALL, "ingest", name], env=env, check=True, capture_output=True)


def bench_setup(data_dir: Path | None, name: str) -> tuple[Path, dict[str, str], str]:
    """A scratch folder, the environment naming the data dir (``data_dir``, else a fresh one
    in the scratch folder holding ``samples/`` and ``docs/``) and a new retrieve key in it."""
    scratch = Path(tempfile.mkdtemp(prefix=f"ragwall-bench-{name}-"))
    data = data_dir or scratch / "data"
    env = {**os.environ, "RAGWALL_DATA_DIR": str(data)}
    if data_dir is None:
        print(f"ingesting samples/ and docs/ into {data}", file=sys.stderr)
        _prepare(env)
    created = subprocess.run(
        [RAGWALL, "keys", "create", "--json", "--name", f"bench-{name}"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return scratch, env, json.loads(created.stdout)["key"]


async def _compare(url: str, key: str, queries: list[str]) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    rest_ms: list[float] = []
    mcp_ms: list[float] = []
    errors = 0
    async with (
        httpx.AsyncClient(timeout=60, headers=headers) as rest,
        httpx2.AsyncClient(timeout=60, headers=headers) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()

        async def one_rest(q: str) -> None:
            nonlocal errors
            t = time.perf_counter()
            r = await rest.post(f"{url}/v1/retrieve", json={"query": q, "top_k": TOP_K})
            rest_ms.append((time.perf_counter() - t) * 1000)
            errors += r.status_code != 200

        async def one_mcp(q: str) -> None:
            nonlocal errors
            t = time.perf_counter()
            r = await session.call_tool("search", {"query": q, "top_k": TOP_K})
            mcp_ms.append((time.perf_counter() - t) * 1000)
            errors += bool(r.is_error)

        for q in queries[:20]:  # warm-up, not counted
            await one_rest(q)
            await one_mcp(q)
        rest_ms.clear()
        mcp_ms.clear()
        for i, q in enumerate(queries):
            first, second = (one_rest, one_mcp) if i % 2 == 0 else (one_mcp, one_rest)
            await first(q)
            await second(q)
    diff = [m - r for m, r in zip(mcp_ms, rest_ms, strict=True)]
    return {
        "requests": len(queries),
        "errors": errors,
        "rest": {"p50_ms": _pct(rest_ms, 0.5), "p99_ms": _pct(rest_ms, 0.99)},
        "mcp": {"p50_ms": _pct(mcp_ms, 0.5), "p99_ms": _pct(mcp_ms, 0.99)},
        "mcp_minus_rest": {
            "p50_ms": round(_pct(mcp_ms, 0.5) - _pct(rest_ms, 0.5), 2),
            "p99_ms": round(_pct(mcp_ms, 0.99) - _pct(rest_ms, 0.99), 2),
            "median_paired_ms": round(statistics.median(diff), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh one")
    parser.add_argument("--requests", type=int, default=300, help="queries each way")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scratch, env, key = bench_setup(args.data_dir, "mcp")
    with served([RAGWALL], env, scratch / "serve.log") as url:
        result = asyncio.run(_compare(url, key, _queries(args.requests)))
    result["date"] = datetime.now(UTC).date().isoformat()
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['requests']} queries each way at c=1, errors {result['errors']}")
    for name in ("rest", "mcp", "mcp_minus_rest"):
        row = result[name]
        extra = f"  paired median {row['median_paired_ms']} ms" if name == "mcp_minus_rest" else ""
        print(f"{name:15} p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms{extra}")


if __name__ == "__main__":
    main()
