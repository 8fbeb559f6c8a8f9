"""What several API tests share: a free loopback port, a real ``ragwall serve`` process, and
two sources in their own access groups."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

RAGWALL = str(Path(sys.executable).with_name("ragwall"))

#: Two sources, each in the access group of its own name.
GROUP_SOURCES = {
    "eng": "# Pumps\n\nThe water pump seal is replaced every six months.\n",
    "fin": "# Refunds\n\nRefunds above 500 EUR need the finance director.\n",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ragwall_serve(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """``ragwall serve`` on a free port with ``env``, until the block ends; yields its URL, once
    ``/healthz`` answers, and its process."""
    port = free_port()
    proc = subprocess.Popen(
        [RAGWALL, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("the server did not start")
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def ingest_group_sources(svc, root: Path) -> None:  # noqa: ANN001 - a Service
    """Register and ingest :data:`GROUP_SOURCES` under ``root``."""
    for sid, text in GROUP_SOURCES.items():
        (root / sid).mkdir()
        (root / sid / f"{sid}.md").write_text(text)
        svc.add_source("setup", sid, str(root / sid), "internal", [sid])
        svc.ingest("setup", sid)
