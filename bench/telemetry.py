"""What metrics, request logs and traces cost one request, in process, without a network.

    python bench/telemetry.py [--requests 20000]

Sends requests through the real observing middleware (``ragwall.telemetry.asgi.Observe``) around
an app that answers at once, and records a retrieve's metrics and log facts as the service does,
against the same app without the middleware: the difference is telemetry's own CPU time per
request, free of the noise of a loaded server (bench/retrieve.py --compare-telemetry measures
the end-to-end latency). JSON log lines go to /dev/null, as a log pipeline would take them.
Tracing is measured with the SDK exporting to an in-memory exporter (the OTLP exporter batches
and sends off the request path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from ragwall.telemetry import Metrics, configure_logging, current, tracing  # noqa: E402
from ragwall.telemetry.asgi import Observe  # noqa: E402

FLAGS = [{"kind": "injection"}, {"kind": "low_trust"}]


def _app(metrics: Metrics, record: bool) -> Starlette:
    async def retrieve(request):  # noqa: ANN001, ANN202
        if record:  # what Service._observe_retrieve adds to a retrieve
            stages = {"embed": 4.1, "search": 3.2, "defend": 0.9, "audit": 0.3}
            kinds = ["injection", "low_trust"]
            metrics.retrieve(stages, 8, kinds, 0, 0)
            facts = current()
            if facts is not None:
                facts.stages_ms.update(stages)
                facts.hits = 8
                facts.flags.update(kinds)
                facts.dropped, facts.demoted = 0, 0
        return JSONResponse({"hits": 8})

    app = Starlette(routes=[Route("/v1/retrieve", retrieve, methods=["POST"])])
    app.state.service = SimpleNamespace(metrics=metrics)
    return app


async def _drive(app, n: int) -> list[float]:  # noqa: ANN001
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/retrieve",
        "raw_path": b"/v1/retrieve",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }

    async def receive():  # noqa: ANN202
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):  # noqa: ANN001, ANN202
        return None

    times = []
    for _ in range(n):
        t = time.perf_counter()
        await app(dict(scope, app=app), receive, send)
        times.append(time.perf_counter() - t)
    return times


def _per_request_us(app, n: int) -> float:  # noqa: ANN001
    asyncio.run(_drive(app, min(n, 2000)))  # warm-up
    runs = [statistics.median(asyncio.run(_drive(app, n))) for _ in range(5)]
    return statistics.median(runs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    configure_logging("json", "INFO", stream=devnull)

    metrics = Metrics()
    bare = _per_request_us(_app(metrics, record=False), args.requests)
    on = _per_request_us(Observe(_app(metrics, record=True)), args.requests)
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracing.configure(SimpleSpanProcessor(exporter))
    traced = _per_request_us(Observe(_app(metrics, record=True)), args.requests)
    tracing.disable()
    out = {
        "bare_us": round(bare, 1),
        "metrics_and_logs_us": round(on - bare, 1),
        "with_tracing_us": round(traced - bare, 1),
    }
    print(f"bare app: {out['bare_us']} us a request (median)")
    print(f"+ metrics and a JSON log line: +{out['metrics_and_logs_us']} us a request")
    print(f"+ metrics, log line and spans (in-memory exporter): +{out['with_tracing_us']} us")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
