"""ragwall.api.guard against a real server: a chunked body is cut off at the limit, before or
after authentication, and the server's memory stays flat while a client streams 48 MiB."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess

import httpx
import psutil
import pytest

from tests.api.helpers import RAGWALL, ragwall_serve

STREAM_MIB = 48


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("guard") / "data"
    env = {**os.environ, "RAGWALL_DATA_DIR": str(data), "RAGWALL_QUERY_ENCODER": "torch"}
    created = subprocess.run(
        [RAGWALL, "keys", "create", "--json"], env=env, capture_output=True, text=True, check=True
    )
    key = json.loads(created.stdout)["key"]
    with ragwall_serve(env) as (url, proc):
        yield int(url.rsplit(":", 1)[1]), key, psutil.Process(proc.pid)


def _stream(port: int, headers: dict[str, str], mib: int) -> tuple[int, int]:
    """POST a chunked body of ``mib`` MiB; returns (status, bytes the server took before answering)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "POST /v1/retrieve HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    head += "Content-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"  # 64 KiB of JSON whitespace
    sent = 0
    sock.setblocking(False)
    reply = b""
    try:
        for _ in range(mib * 16):
            with contextlib.suppress(BlockingIOError):
                reply += sock.recv(65536)
            if reply:
                break
            sock.setblocking(True)
            sock.sendall(chunk)
            sock.setblocking(False)
            sent += 0x10000
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.setblocking(True)
    sock.settimeout(30)
    try:
        while b"\r\n" not in reply:
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    finally:
        sock.close()
    return int(reply.split(b" ", 2)[1]), sent


@pytest.mark.slow
def test_chunked_bodies_are_cut_off_and_memory_stays_flat(server):
    port, key, proc = server
    rss_before = proc.memory_info().rss
    status, sent = _stream(port, {}, STREAM_MIB)  # no key: refused before the body is read
    assert status == 401
    status, sent = _stream(port, {"Authorization": f"Bearer {key}"}, STREAM_MIB)
    assert status == 413
    assert sent < STREAM_MIB * 2**20  # the server answered before the client was done
    growth = proc.memory_info().rss - rss_before
    assert growth < 24 * 2**20, f"server grew by {growth / 2**20:.0f} MiB"
    # And it still serves.
    r = httpx.post(
        f"http://127.0.0.1:{port}/v1/retrieve",
        json={"query": "anything"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
