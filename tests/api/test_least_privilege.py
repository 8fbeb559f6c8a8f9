"""Least privilege over HTTP and the CLI (issue 24): a group-bound key never holds the admin scope
(new ones are refused, ones stored by an older release are refused by every admin view and may
only retrieve, filtered), a source without groups is seen by unrestricted keys only, and a source
can be removed while the server runs (``DELETE /v1/sources/{id}``, ``sources remove --url``)."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from filelock import FileLock

from ragwall.api.app import create_app
from ragwall.service import Service
from ragwall.service.keys import ApiKeyError

RAGWALL = str(Path(sys.executable).with_name("ragwall"))
SHA = "a" * 64


@pytest.fixture(scope="module")
def api(tmp_path_factory, encoder):
    """Sources in group `finance`, without groups, and two to remove; an unrestricted admin key,
    a finance retrieve key, and an admin key bound to `finance` stored as an older release did."""
    from ragwall.settings import Settings

    root = tmp_path_factory.mktemp("least")
    docs = {
        "fin": ("finance", "# Refunds\n\nRefunds above 500 EUR need the finance director.\n"),
        "open": (None, "# Parking\n\nThe parking garage opens at seven and closes at midnight.\n"),
        "gone": (None, "# Canteen\n\nThe canteen serves lunch from noon until two o'clock.\n"),
        "gone2": (None, "# Library\n\nThe library lends books for three weeks at a time.\n"),
    }
    settings = Settings(data_dir=root / "data")
    svc = Service(settings, encoder=encoder)
    for sid, (group, text) in docs.items():
        (root / sid).mkdir()
        (root / sid / f"{sid}.md").write_text(text)
        svc.add_source("setup", sid, str(root / sid), "internal", [group] if group else [])
        svc.ingest("setup", sid)
    admin, _ = svc.runtime.keys.create("admin")
    legacy, record = svc.runtime.keys.create("admin")
    # what `keys create --scope admin -g finance` stored before issue 24
    with sqlite3.connect(settings.state_path) as db:
        db.execute("UPDATE api_keys SET groups = ? WHERE id = ?", ('["finance"]', record.id))
    keys = {
        "admin": admin,
        "legacy": legacy,
        "finance": svc.runtime.keys.create("retrieve", ["finance"])[0],
    }
    with TestClient(create_app(settings, svc)) as client:
        yield client, keys, svc, root
    svc.close()


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _audit(svc: Service) -> list[dict]:
    return [json.loads(line) for line in svc.runtime.audit.path.read_text().splitlines()]


def _sources(client: TestClient, key: str, query: str) -> set[str]:
    got = client.post("/v1/retrieve", json={"query": query, "top_k": 10}, headers=_h(key))
    assert got.status_code == 200, got.text
    return {h["provenance"]["source_id"] for h in got.json()["hits"]}


def test_an_admin_key_cannot_be_bound_to_groups(api):
    _, _, svc, _ = api
    before, keys = len(_audit(svc)), len(svc.runtime.keys.list())
    with pytest.raises(ApiKeyError, match="cannot be bound to groups"):
        svc.create_key("test", "admin", ["finance"])
    assert (
        len(svc.runtime.keys.list()) == keys and len(_audit(svc)) == before
    )  # nothing made or audited


def _admin_calls(app) -> Iterator[tuple[str, str]]:  # noqa: ANN001 - the FastAPI app
    """Every admin route of the API (all of /v1 but retrieve and a key's own tokens), path
    parameters filled in."""
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/v1/") or path == "/v1/retrieve" or path.startswith("/v1/tokens"):
            continue
        path = re.sub(r"\{doc_sha256\}", SHA, path)
        path = re.sub(r"\{source_id\}", "fin", path)
        path = re.sub(r"\{[a-z_]+\}", "nope", path)
        for method in operations:
            yield method.upper(), path


def test_a_stored_group_bound_admin_key_is_refused_by_every_admin_view(api):
    client, keys, svc, root = api
    calls = sorted(set(_admin_calls(client.app))) + [("GET", "/metrics")]
    assert ("POST", "/v1/eval/drift") in calls and ("DELETE", "/v1/sources/fin") in calls
    bodies = {
        "/v1/sources": {"id": "x", "path": str(root / "fin")},
        "/v1/eval/drift": {"queries": ["refunds"], "baseline": "v1"},
        "/v1/index/activate": {"version": "v1"},
    }
    for method, path in calls:
        body = bodies.get(path) if method == "POST" else None
        got = client.request(method, path, json=body, headers=_h(keys["legacy"]))
        assert got.status_code == 403, (method, path, got.status_code, got.text)
        error = got.json()["error"]
        assert error["code"] == "forbidden", (method, path, error)
        assert "group-bound keys cannot hold the admin scope" in error["message"], (path, error)
        assert "ragwall keys create --scope admin" in error["message"]
    # an unrestricted admin key is let through the same routes
    assert client.get("/v1/index", headers=_h(keys["admin"])).status_code == 200
    # nothing changed
    assert sorted(s.id for s in svc.runtime.registry.list_sources()) == [
        "fin",
        "gone",
        "gone2",
        "open",
    ]
    assert svc.runtime.registry.quarantined() == ((), ())
    assert svc.runtime.registry.recent_jobs() == []
    # console sign-in: refused, and why
    page = client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    signed = client.post(
        "/admin/login", data={"key": keys["legacy"], "csrf": token}, follow_redirects=False
    )
    assert (
        signed.status_code == 403 and "group-bound keys cannot hold the admin scope" in signed.text
    )
    assert "ragwall_console=" not in signed.headers.get("set-cookie", "")
    # it may still retrieve, filtered by its groups
    assert _sources(client, keys["legacy"], "parking garage canteen library refunds") == {"fin"}


def test_a_group_bound_key_never_sees_a_source_without_groups(api):
    client, keys, _, _ = api
    assert "open" not in _sources(client, keys["finance"], "when does the parking garage open")
    assert _sources(client, keys["finance"], "parking garage refunds") == {"fin"}
    assert "open" in _sources(client, keys["admin"], "when does the parking garage open")


def test_a_source_is_removed_over_http_while_the_server_runs(api):
    client, keys, svc, _ = api
    admin_id = svc.authenticate(keys["admin"]).key_id
    assert "gone" in _sources(client, keys["admin"], "when does the canteen serve lunch")
    with FileLock(str(svc.settings.data_dir / "locks" / "ingest-gone.lock")):  # an ingest runs
        busy = client.delete("/v1/sources/gone", headers=_h(keys["admin"]))
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "ingest_running"
    assert "gone" in [s.id for s in svc.runtime.registry.list_sources()]
    before = len(_audit(svc))
    done = client.delete("/v1/sources/gone", headers=_h(keys["admin"]))
    assert done.status_code == 200 and done.json() == {"source_id": "gone", "chunks": 1}, done.text
    assert "gone" not in [s.id for s in svc.runtime.registry.list_sources()]
    assert "gone" not in _sources(client, keys["admin"], "when does the canteen serve lunch")
    [record] = _audit(svc)[before:-1]  # the retrieve above came after it
    assert record["action"] == "source.remove" and record["key_id"] == admin_id
    assert record["source_id"] == "gone" and record["chunks"] == 1
    again = client.delete("/v1/sources/gone", headers=_h(keys["admin"]))
    assert again.status_code == 404 and again.json()["error"]["code"] == "source_not_found"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _served(app) -> Iterator[str]:  # noqa: ANN001 - the FastAPI app
    """The app on a real HTTP server in a thread, for the CLI's --url."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_sources_remove_with_url_goes_to_the_running_server(api):
    client, keys, svc, _ = api
    env = {**os.environ, "RAGWALL_DATA_DIR": str(svc.settings.data_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [RAGWALL, *args], env=env, capture_output=True, text=True, timeout=300
        )

    local = cli("sources", "remove", "gone2")  # this process holds the embedded index
    assert local.returncode == 2 and "--url" in local.stderr, local.stderr
    assert "Traceback" not in local.stderr
    with _served(client.app) as url:
        done = cli("sources", "remove", "gone2", "--url", url, "--key", keys["admin"])
        assert done.returncode == 0, done.stderr
        assert "removed source gone2 and 1 chunks" in done.stdout
        missing = cli("sources", "remove", "gone2", "--url", url, "--key", keys["admin"])
        assert missing.returncode == 2 and "source_not_found" in missing.stderr
        legacy = cli("sources", "remove", "open", "--url", url, "--key", keys["legacy"])
        assert legacy.returncode == 2 and "group-bound" in legacy.stderr
    assert [s.id for s in svc.runtime.registry.list_sources()] == ["fin", "open"]
    # `keys list` shows the scope such a key acts with, and why.
    legacy_id = keys["legacy"].split("_")[1]
    listed = cli("keys", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if legacy_id in line)
    assert "retrieve (stored as admin: group-bound keys cannot be admin)" in row
    assert keys["admin"] not in done.stdout + done.stderr  # the key is never printed


def test_a_keys_trust_floor_binds_every_view(api):
    """A key made with ``min_trust`` never sees chunks or sources below it: not by search, not
    by fetch, not in its source list; a request cannot lower the floor, and a token minted from
    the key carries it."""
    from ragwall.errors import ChunkNotFound, InvalidRequest
    from ragwall.retrieval.search import SearchFilter
    from ragwall.service.retrieve import RetrieveParams

    client, keys, svc, root = api
    (root / "web").mkdir()
    (root / "web" / "garage.md").write_text(
        "# Garage\n\nThe parking garage opens at seven; visitors park on level two.\n"
    )
    svc.add_source("setup", "web", str(root / "web"), "external")
    svc.ingest("setup", "web")
    floor, record = svc.create_key("test", "retrieve", name="floored", min_trust=0.6)
    assert record.min_trust == 0.6
    created = [r for r in _audit(svc) if r["action"] == "key.create"][-1]
    assert created["min_trust"] == 0.6
    with pytest.raises(ApiKeyError, match="min_trust"):
        svc.create_key("test", "retrieve", min_trust=1.5)

    query = "when does the parking garage open"
    assert {"web", "open"} <= _sources(client, keys["admin"], query)
    assert "web" not in _sources(client, floor, query) and "open" in _sources(client, floor, query)
    lowered = client.post(
        "/v1/retrieve",
        json={"query": query, "top_k": 10, "filters": {"min_trust": 0.0}},
        headers=_h(floor),
    )
    assert "web" not in {h["provenance"]["source_id"] for h in lowered.json()["hits"]}
    named = client.post(
        "/v1/retrieve",
        json={"query": query, "filters": {"sources": ["web"]}},
        headers=_h(floor),
    )
    assert named.status_code == 200 and named.json()["hits"] == []

    who = svc.authenticate(floor)
    with pytest.raises(InvalidRequest, match="unknown source"):  # an agent's strict call
        svc.retrieve(
            who, RetrieveParams(query, filters=SearchFilter(sources=("web",)), strict_names=True)
        )
    assert "web" not in {s.id for s in svc.visible_sources(who)}
    web_hit = next(
        h
        for h in client.post(
            "/v1/retrieve", json={"query": query}, headers=_h(keys["admin"])
        ).json()["hits"]
        if h["provenance"]["source_id"] == "web"
    )
    with pytest.raises(ChunkNotFound):
        svc.fetch(who, chunk_id=web_hit["id"])
    assert svc.fetch(svc.authenticate(keys["admin"]), chunk_id=web_hit["id"]).result.hits

    token = client.post("/v1/tokens", json={"ttl_s": 300}, headers=_h(floor))
    assert token.status_code in (200, 201), token.text
    assert "web" not in _sources(client, token.json()["token"], query)
    listed = client.get("/v1/keys", headers=_h(keys["admin"])).json()
    assert next(k for k in listed if k["id"] == record.id)["min_trust"] == 0.6
