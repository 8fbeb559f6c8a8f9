"""What an access token costs over an API key: verification alone, and a retrieve over HTTP.

    python bench/tokens.py [--data-dir DIR] [--requests 1000]

Serves a data dir with ``ragwall serve`` (default: a fresh one holding this repository's
``samples/`` and ``docs/``, as ``make run`` ingests them), creates a retrieve key, mints a token
from it (``POST /v1/tokens``) and sends the same queries at concurrency 1 with each credential,
interleaved query by query. Then, in this process, times ``Service.authenticate`` on the key and
on the token (the signature check, the parent-key and revocation lookups) over many calls.
Prints p50 and p99 of both, and their differences. Last, the cost of a budget: one charge of a
key's moving windows (``Budgets.charge``) with the windows empty and with the daily one nearly
full (its largest allowed quota, 200,000 calls, 199,000 of them spent).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcp_overhead import _pct, bench_setup  # noqa: E402 - the sibling bench script
from retrieve import RAGWALL, _queries, served  # noqa: E402


def _http(url: str, key: str, token: str, queries: list[str]) -> dict:
    times: dict[str, list[float]] = {"key": [], "token": []}
    errors = 0
    with httpx.Client(timeout=60) as client:

        def one(name: str, credential: str, q: str) -> None:
            nonlocal errors
            t = time.perf_counter()
            r = client.post(
                f"{url}/v1/retrieve",
                json={"query": q, "top_k": 8},
                headers={"Authorization": f"Bearer {credential}"},
            )
            times[name].append((time.perf_counter() - t) * 1000)
            errors += r.status_code != 200

        for q in queries[:20]:
            one("key", key, q)
            one("token", token, q)
        for kept in times.values():
            kept.clear()  # the warm-up is not counted
        for i, q in enumerate(queries):
            order = [("key", key), ("token", token)]
            for name, credential in order if i % 2 == 0 else order[::-1]:
                one(name, credential, q)
    diff = [t - k for t, k in zip(times["token"], times["key"], strict=True)]
    out = {n: {"p50_ms": _pct(v, 0.5), "p99_ms": _pct(v, 0.99)} for n, v in times.items()}
    out["token_minus_key"] = {
        "p50_ms": round(out["token"]["p50_ms"] - out["key"]["p50_ms"], 2),
        "median_paired_ms": round(statistics.median(diff), 3),
    }
    out["errors"] = errors
    return out


def _burst(url: str, token: str, n: int = 1000) -> dict:
    """``n`` calls with invalid tokens (garbage, a broken signature, ``alg: none``, a foreign
    key's signature), one after another: the statuses they got."""
    import base64

    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    claims = jwt.decode(token, options={"verify_signature": False})
    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = token.split(".")[1]
    bad = [
        "a.b.c",
        token[:-4] + "AAAA",
        f"{head}.{body}.",
        jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA"),
    ]
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=60) as client:
        for i in range(n):
            r = client.post(
                f"{url}/v1/retrieve",
                json={"query": "x"},
                headers={"Authorization": f"Bearer {bad[i % len(bad)]}"},
            )
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    return {
        "requests": n,
        "statuses": statuses,
        "5xx": sum(v for k, v in statuses.items() if k >= 500),
    }


def _in_process(data: Path, key: str, token: str, n: int) -> dict:
    from ragwall.service import Service
    from ragwall.settings import Settings

    out = {}
    with Service(Settings(data_dir=data)) as svc:
        for name, credential in (("key", key), ("token", token)):
            assert svc.authenticate(credential) is not None, name
            times = []
            for _ in range(n):
                t = time.perf_counter()
                svc.authenticate(credential)
                times.append((time.perf_counter() - t) * 1000)
            out[name] = {"p50_ms": _pct(times, 0.5), "p99_ms": _pct(times, 0.99)}
    return out


def _budget_charge(n: int = 1000) -> dict:
    from ragwall.service.budgets import Budgets
    from ragwall.service.keys import MAX_DAILY_REQUESTS, MAX_RPM, Budget, Principal

    out = {}
    for name, spent in (("empty", 0), ("daily_nearly_full", MAX_DAILY_REQUESTS - n)):
        budgets = Budgets()
        who = Principal("bench", "retrieve", None, budget=Budget(MAX_RPM, MAX_DAILY_REQUESTS))
        fill = Principal("bench", "retrieve", None, budget=Budget(None, MAX_DAILY_REQUESTS))
        for _ in range(spent):  # the daily window only (the minute one would refuse them)
            budgets.charge(fill)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            budgets.charge(who)
            times.append((time.perf_counter() - t) * 1000)
        out[name] = {"p50_ms": _pct(times, 0.5), "p99_ms": _pct(times, 0.99)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh one")
    parser.add_argument("--requests", type=int, default=1000, help="queries with each credential")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scratch, env, key = bench_setup(args.data_dir, "tokens")
    data = Path(env["RAGWALL_DATA_DIR"])
    with served([RAGWALL], env, scratch / "serve.log") as url:
        minted = httpx.post(
            f"{url}/v1/tokens",
            json={"ttl_s": 3600, "workflow_id": "bench"},
            headers={"Authorization": f"Bearer {key}"},
        )
        minted.raise_for_status()
        token = minted.json()["token"]
        result = {"http": _http(url, key, token, _queries(args.requests))}
        result["invalid_burst"] = _burst(url, token)
    result["authenticate"] = _in_process(data, key, token, 5000)
    result["budget_charge"] = _budget_charge()
    result["date"] = datetime.now(UTC).date().isoformat()
    if args.json:
        print(json.dumps(result))
        return
    http, auth = result["http"], result["authenticate"]
    print(f"{args.requests} retrieves each way at c=1, errors {http['errors']}")
    for name in ("key", "token"):
        row = http[name]
        print(f"retrieve with a {name:5}  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms")
    d = http["token_minus_key"]
    print(f"token - key       p50 {d['p50_ms']:+7.2f} ms  paired median {d['median_paired_ms']} ms")
    for name in ("key", "token"):
        row = auth[name]
        print(f"authenticate {name:5}  p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms")
    for name, row in result["budget_charge"].items():
        print(f"budget charge, {name:17}  p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms")
    burst = result["invalid_burst"]
    print(f"{burst['requests']} invalid tokens: statuses {burst['statuses']}, 5xx {burst['5xx']}")


if __name__ == "__main__":
    main()
