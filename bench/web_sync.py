"""What an unchanged sync of a web source costs (issue 29): its requests, and what it embeds.

    python bench/web_sync.py [--pages 200] [--delay 0] [--json]

Serves ``--pages`` HTML pages (deterministic text built from this repository's README), a
sitemap and a robots.txt from a real HTTP server on loopback (``tests/web_site.py``: ETags,
Last-Modified, 304 to a matching conditional GET). Registers them as one web source, syncs it
once (the first sync), then again unchanged, the way the scheduler does (a full
``Service.ingest``). Prints each sync's seconds, HTTP requests (page requests, and how many
were conditional and answered 304) and documents written. Target: the unchanged sync makes
≤ 200 conditional page requests for 200 pages and re-embeds nothing.

``--delay`` is RAGWALL_WEB_DELAY_S (default here 0: the bench times Ragwall, not politeness;
a deployment's 1 s default makes a 200-page sync last at least 200 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the loopback site lives with the tests

from tests.web_site import Site, serve  # noqa: E402


def build(site: Site, n: int, seed: int = 7) -> None:
    words = re.findall(r"[a-z]{4,}", (ROOT / "README.md").read_text().lower())
    rng = random.Random(seed)
    for i in range(n):
        text = " ".join(
            " ".join(rng.choice(words) for _ in range(rng.randint(8, 16))).capitalize() + "."
            for _ in range(rng.randint(3, 12))
        )
        site.html(f"/docs/page-{i:04d}.html", f"Page {i}", text)
    site.listed = sorted(site.pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.0, help="RAGWALL_WEB_DELAY_S")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()
    site = Site()
    build(site, args.pages)
    server, base = serve(site)
    work = Path(tempfile.mkdtemp(prefix="ragwall-bench-web-"))
    os.environ["RAGWALL_DATA_DIR"] = str(work / "data")
    from ragwall.service import Service
    from ragwall.settings import Settings

    runs = {}
    settings = Settings(web_delay_s=args.delay, query_encoder="torch")
    with Service(settings) as svc:
        svc.add_source("bench", "site", f"{base}/sitemap.xml", "external", refresh_s=3600)
        for name in ("first", "unchanged"):
            site.log.clear()
            t = time.perf_counter()
            report = svc.ingest("bench", "site")
            seconds = time.perf_counter() - t
            pages = [e for e in site.log if e[0].startswith("/docs/")]
            runs[name] = {
                "seconds": round(seconds, 3),
                "requests": report.requests,
                "page_requests": len(pages),
                "conditional": sum(1 for e in pages if e[1]),
                "not_modified": sum(1 for e in pages if e[2] == 304),
                "documents_written": report.documents,
                "unchanged": report.unchanged,
                "failed": len(report.failed),
            }
            print(f"{name:>9} sync: {runs[name]}", file=sys.stderr)
    server.shutdown()
    out = {
        "pages": args.pages,
        "delay_s": args.delay,
        "runs": runs,
        "unchanged_share_of_first": round(
            runs["unchanged"]["seconds"] / runs["first"]["seconds"], 4
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
