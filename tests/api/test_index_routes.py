"""Index versions over HTTP against a real server: a reindex and a rollback under a steady
request loop, the job API (idempotency, 409, 422, cancel), a kill -9 during a build, and the CLI
beside a running server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from ragwall.ingest.registry import Registry
from tests.conftest import shared
from tests.service.test_index import _write_corpus

RAGWALL = str(Path(sys.executable).with_name("ragwall"))
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data, self.env = data, env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.corpus: Path | None = None  # the registered source's folder

    def start(self) -> None:
        log = (self.data.parent / "server.log").open("ab")  # read it when a test fails
        self.proc = subprocess.Popen(
            [RAGWALL, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}")
            time.sleep(0.25)
        pytest.fail("the server did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RAGWALL, *args], env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One ingested data dir with an admin and a reader key, built once with the CLI; each test
    serves its own copy (the corpus folder is shared: a test that changes it puts it back)."""
    root = tmp_path_factory.mktemp("index-routes")
    data, corpus = root / "data", root / "kb"
    _write_corpus(corpus, n_extra=60)
    env = {**os.environ, "RAGWALL_DATA_DIR": str(data), "RAGWALL_QUERY_ENCODER": "torch"}
    assert _cli(env, "sources", "add", "kb", str(corpus), "--trust", "internal").returncode == 0
    assert _cli(env, "ingest", "kb").returncode == 0
    admin = json.loads(_cli(env, "keys", "create", "--scope", "admin", "--json").stdout)["key"]
    reader = json.loads(_cli(env, "keys", "create", "--json").stdout)["key"]
    return data, corpus, admin, reader


@pytest.fixture
def served(template, tmp_path):
    built, corpus, admin, reader = template
    data = tmp_path / "data"
    shutil.copytree(built, data)
    env = {**os.environ, "RAGWALL_DATA_DIR": str(data), "RAGWALL_QUERY_ENCODER": "torch"}
    server = Server(data, env)
    server.corpus = corpus
    server.start()
    try:
        yield server, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {reader}"}
    finally:
        server.stop()


def _wait_job(url: str, headers: dict, job_id: str, until=("succeeded", "failed", "cancelled")):
    for _ in range(1800):
        job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["state"] in until:
            return job
        time.sleep(0.5)
    pytest.fail(f"job {job_id} did not finish")


class Loop:
    """Retrieves in a loop at concurrency 1, recording (time, status, index_version)."""

    def __init__(self, url: str, headers: dict) -> None:
        self.url, self.headers = url, headers
        self.seen: list[tuple[float, int, str | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            while not self.stop.is_set():
                r = client.post("/v1/retrieve", json={"query": "who approves refunds", "top_k": 3})
                version = r.json().get("index_version") if r.status_code == 200 else None
                self.seen.append((time.monotonic(), r.status_code, version))

    def __enter__(self) -> Loop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def test_reindex_and_rollback_under_a_request_loop(served):
    server, admin, reader = served
    url = server.url
    assert httpx.post(f"{url}/v1/index/reindex", headers=reader, json={}).status_code == 403
    with Loop(url, reader) as loop:
        time.sleep(1.0)
        body = {"chunk_max_tokens": 96}
        key = {**admin, "Idempotency-Key": "build-1"}
        first = httpx.post(f"{url}/v1/index/reindex", headers=key, json=body)
        assert first.status_code == 202, first.text
        job_id = first.json()["job_id"]
        assert first.headers["location"] == f"/v1/jobs/{job_id}"
        again = httpx.post(f"{url}/v1/index/reindex", headers=key, json=body)
        assert again.status_code == 202 and again.json()["job_id"] == job_id
        other = httpx.post(
            f"{url}/v1/index/reindex", headers={**admin, "Idempotency-Key": "b2"}, json={}
        )
        assert other.status_code == 409 and other.json()["error"]["job_id"] == job_id
        job = _wait_job(url, admin, job_id)
        switched_at = time.monotonic()
        assert job["state"] == "succeeded", job["error"]
        assert (job["version"], job["previous"]) == ("v2", "v1")
        assert job["progress"]["documents_done"] == job["progress"]["documents_total"] == 63
        time.sleep(1.5)
        rolled = httpx.post(f"{url}/v1/index/rollback", headers=admin)
        rolled_at = time.monotonic()
        assert rolled.json() == {"active": "v1", "previous": "v2"}
        time.sleep(1.5)
    statuses = {status for _, status, _ in loop.seen}
    assert statuses == {200}, [s for s in loop.seen if s[1] != 200][:5]
    versions = [v for _, _, v in loop.seen]
    assert set(versions) == {"v1", "v2"}
    # Each switch is seen by every request sent a second after it (here: at once).
    assert all(v == "v2" for t, _, v in loop.seen if switched_at + 1 <= t < rolled_at - 0.05)
    assert all(v == "v1" for t, _, v in loop.seen if t >= rolled_at + 1)
    assert len(loop.seen) > 20

    index = httpx.get(f"{url}/v1/index", headers=admin).json()
    assert index["active"] == "v1"
    assert [(v["version"], v["state"]) for v in index["versions"]] == [
        ("v2", "ready"),
        ("v1", "active"),
    ]
    assert index["versions"][0]["fingerprint"]["chunk_max_tokens"] == 96
    assert {"created_at", "documents", "chunks", "job_id"} <= set(index["versions"][0])
    assert httpx.post(f"{url}/v1/index/activate", headers=admin, json={"version": "v2"}).json() == {
        "active": "v2",
        "previous": "v1",
    }


def test_job_api_refusals(served):
    server, admin, _ = served
    url = server.url
    bad = httpx.post(f"{url}/v1/index/reindex", headers=admin, json={"chunk_size": 100})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    model = httpx.post(
        f"{url}/v1/index/reindex", headers=admin, json={"embedding_model": "/nonexistent/model"}
    )
    assert model.status_code == 422 and "embedding_model" in model.json()["error"]["message"]
    assert httpx.get(f"{url}/v1/jobs/nope", headers=admin).status_code == 404
    assert httpx.post(f"{url}/v1/index/rollback", headers=admin).status_code == 409
    missing = httpx.post(f"{url}/v1/index/activate", headers=admin, json={"version": "v9"})
    assert missing.status_code == 404
    assert httpx.get(f"{url}/v1/index", headers=admin).json()["versions"][0]["version"] == "v1"
    # Cancel: the job stops and its version is gone; v1 still answers.
    started = httpx.post(f"{url}/v1/index/reindex", headers=admin, json={"chunk_max_tokens": 50})
    job_id = started.json()["job_id"]
    _wait_progress(url, admin, job_id)
    assert httpx.delete(f"{url}/v1/jobs/{job_id}", headers=admin).status_code == 202
    assert _wait_job(url, admin, job_id)["state"] == "cancelled"
    index = httpx.get(f"{url}/v1/index", headers=admin).json()
    assert index["active"] == "v1" and index["versions"][0]["state"] == "failed"


def _wait_progress(url: str, headers: dict, job_id: str) -> None:
    for _ in range(1200):
        job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers).json()
        if (job.get("progress") or {}).get("documents_done", 0) > 0:
            return
        time.sleep(0.1)
    pytest.fail("the job made no progress")


def test_kill_9_during_a_build_then_restart(served):
    server, admin, reader = served
    url = server.url
    before = httpx.post(f"{url}/v1/retrieve", headers=reader, json={"query": "refunds"}).json()
    job_id = httpx.post(
        f"{url}/v1/index/reindex", headers=admin, json={"chunk_max_tokens": 60}
    ).json()["job_id"]
    _wait_progress(url, admin, job_id)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)
    time.sleep(1)  # the parser process notices its parent is gone
    server.start()
    job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=admin).json()
    assert job["state"] == "failed" and "interrupted" in job["error"]
    index = httpx.get(f"{url}/v1/index", headers=admin).json()
    assert index["active"] == "v1"
    assert {v["version"]: v["state"] for v in index["versions"]}["v2"] == "failed"
    assert not (server.data / "qdrant" / "ragwall__v2").exists()
    after = httpx.post(f"{url}/v1/retrieve", headers=reader, json={"query": "refunds"}).json()
    assert [h["id"] for h in after["hits"]] == [h["id"] for h in before["hits"]]
    new = httpx.post(f"{url}/v1/index/reindex", headers=admin, json={"chunk_max_tokens": 60})
    assert _wait_job(url, admin, new.json()["job_id"])["state"] == "succeeded"
    assert httpx.get(f"{url}/v1/index", headers=admin).json()["active"] == "v3"


def test_cli_beside_a_running_server(served):
    server, admin, _ = served
    env = server.env
    local = _cli(env, "reindex")
    assert local.returncode == 2
    said = " ".join(local.stderr.split())  # rich wraps lines at the console's width
    assert "--url" in said and "open in another process" in said
    listed = _cli(env, "index", "list", "--json")  # a registry read: works beside the server
    assert listed.returncode == 0 and json.loads(listed.stdout)["active"] == "v1"
    key = admin["Authorization"].removeprefix("Bearer ")
    remote = _cli(
        env, "reindex", "--url", server.url, "--key", key, "--chunk-max-tokens", "90", "--json"
    )
    assert remote.returncode == 0, remote.stderr
    result = json.loads(remote.stdout.strip().splitlines()[-1])
    assert set(result) == {
        "version",
        "previous",
        "documents",
        "chunks",
        "reused_vectors",
        "seconds",
    }
    assert (result["version"], result["previous"], result["documents"]) == ("v2", "v1", 63)
    # Issue 24: every admin command that needs the server's lock can target the server.
    local = _cli(env, "index", "rollback")
    assert local.returncode == 2 and "--url" in local.stderr
    back = _cli(env, "index", "rollback", "--url", server.url, "--key", key)
    assert back.returncode == 0, back.stderr
    assert "index v1 is active (was v2)" in back.stdout
    again = _cli(env, "index", "activate", "v2", "--url", server.url, "--key", key)
    assert again.returncode == 0 and "index v2 is active (was v1)" in again.stdout
    refused = _cli(env, "index", "activate", "v9", "--url", server.url, "--key", key)
    assert refused.returncode == 2 and "404" in refused.stderr
    # A remote reindex whose gate fails names its job and exits 1; the new version waits.
    queries = server.data.parent / "gate.txt"
    queries.write_text("pump seal inspection\nvalve maintenance\nsafety procedure\n")
    gated = _cli(
        env,
        *("reindex", "--url", server.url, "--key", key, "--chunk-max-tokens", "40"),
        *("--gate", str(queries), "--min-mean-rbo", "1.0"),
    )
    assert gated.returncode == 1, gated.stderr
    said = " ".join(gated.stderr.split())
    assert "error: reindex job " in said and " failed" in said and "KeyError" not in said
    assert json.loads(_cli(env, "index", "list", "--json").stdout)["active"] == "v2"
    # Output for logs and scripts is not wrapped at 80 columns (stdout is a pipe here).
    table = _cli(env, "index", "list")
    model = json.loads(listed.stdout)["versions"][0]["fingerprint"]["embedding_model"]
    assert table.returncode == 0 and model in table.stdout and "…" not in table.stdout
    helped = _cli(env, "reindex", "--help")
    assert "--max-new-source-share" in helped.stdout and "…" not in helped.stdout
    # Issue 24: `ragwall ingest` runs as a job of the server with --url, and prints the same
    # summary with the same exit status (1: a document failed, the rest were ingested).
    local = _cli(env, "ingest", "kb")
    assert local.returncode == 2 and "--url" in " ".join(local.stderr.split())
    broken = server.corpus / "broken.docx"
    broken.write_bytes(b"not a zip archive at all")
    try:
        remote = _cli(env, "ingest", "kb", "--url", server.url, "--key", key, "--json")
    finally:
        broken.unlink()  # the corpus is the module's
    assert remote.returncode == 1, remote.stderr
    summary = json.loads(remote.stdout.strip().splitlines()[-1])
    assert (summary["documents"], summary["unchanged"], len(summary["failed"])) == (0, 63, 1)
    said = " ".join(remote.stderr.split())
    assert "broken.docx" in said and "kb: 0 documents, 0 chunks written, 63 unchanged" in said
    # Stopping the server (SIGTERM) cancels its running ingest job: no parser worker outlives it.
    slow = server.data.parent / "slow"
    slow.mkdir()
    for i in range(20):
        (slow / f"note-{i:02d}.md").write_text(f"# Note {i}\n\nThe pump seal {i} was checked.\n")
    shutil.copy(shared("docs", "handbook-872p.docx"), slow / "zz-handbook.docx")
    bearer = {"Authorization": f"Bearer {key}"}
    added = httpx.post(
        f"{server.url}/v1/sources", headers=bearer, json={"id": "slow", "path": str(slow)}
    )
    assert added.status_code == 201, added.text
    job_id = httpx.post(f"{server.url}/v1/sources/slow/ingest", headers=bearer).json()["job_id"]
    _wait_progress(server.url, bearer, job_id)
    workers = [
        p
        for p in psutil.Process(server.proc.pid).children(recursive=True)
        if "spawn_main" in " ".join(p.cmdline())
    ]
    assert workers, "the ingest runs no parser worker"
    server.stop()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"parser workers outlived the server: {alive}"
    state = Registry(server.data / "ragwall.sqlite3")
    try:
        assert state.get_job(job_id).state == "cancelled"
    finally:
        state.close()
