"""The HTTP API end to end: real model, real embedded Qdrant, real keys and audit log."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from ragwall.api.app import create_app
from ragwall.ingest import make_source
from ragwall.service import Service
from tests.conftest import shared


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A served index with two sources in different groups, and keys of each kind."""
    from ragwall.settings import Settings

    root = tmp_path_factory.mktemp("api")
    settings = Settings(data_dir=root / "data")
    services = Service(settings)
    fin, eng = root / "finance", root / "eng"
    fin.mkdir()
    eng.mkdir()
    (fin / "refunds.md").write_text(
        "# Refund policy\n\nRefunds above 500 EUR need approval by the finance director. "
        "Refunds are paid with the monthly salary run.\n"
    )
    shutil.copy(shared("docs", "handbook-1p.docx"), eng)
    shutil.copy(shared("docs", "README.md"), eng)
    for sid, folder, group, tier in (
        ("fin", fin, "finance", "verified"),
        ("eng", eng, "eng", "untrusted"),
    ):
        source = make_source(sid, str(folder), tier, [group])
        services.runtime.registry.add_source(source)
        services.runtime.index.current().ingester.ingest(source)
    keys = {
        "finance": services.runtime.keys.create("retrieve", ["finance"])[0],
        "eng": services.runtime.keys.create("retrieve", ["eng"])[0],
        "all": services.runtime.keys.create("retrieve", None)[0],
        "admin": services.runtime.keys.create("admin", None)[0],
    }
    with TestClient(create_app(settings, services)) as client:
        yield client, keys, services, root
    services.close()


def _post(client, key, body):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/v1/retrieve", json=body, headers=headers)


def test_retrieve_returns_hits_with_provenance_scores_and_flags(api):
    client, keys, *_ = api
    r = _post(client, keys["all"], {"query": "who approves large refunds", "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] and body["timings_ms"]["search"] >= 0
    top = body["hits"][0]
    assert "finance director" in top["text"]
    assert top["provenance"]["source_id"] == "fin" and top["provenance"]["doc_sha256"]
    assert top["provenance"]["trust_tier"] == "verified" and top["trust"] == 1.0
    assert top["scores"]["fused"] is not None and top["scores"]["dense"] is not None
    assert top["flags"] == []
    assert body["rerank"] == {
        "requested": False,
        "applied": False,
        "model": None,
        "skipped_reason": None,
    }


def test_dbsf_fusion_and_filters(api):
    client, keys, *_ = api
    r = _post(
        client,
        keys["all"],
        {"query": "trustee", "fusion": "dbsf", "filters": {"sources": ["eng"], "min_trust": 0.0}},
    )
    assert r.status_code == 200
    assert {h["provenance"]["source_id"] for h in r.json()["hits"]} == {"eng"}
    r = _post(client, keys["all"], {"query": "trustee", "filters": {"min_trust": 0.5}})
    assert all(h["trust"] >= 0.5 for h in r.json()["hits"])


def test_rerank_requested_without_a_model_says_why(api):
    client, keys, *_ = api
    body = _post(client, keys["all"], {"query": "refund", "rerank": True}).json()
    assert body["rerank"]["requested"] and not body["rerank"]["applied"]
    assert "no reranker" in body["rerank"]["skipped_reason"]


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"groups": ["eng"]},
        {"groups": ["eng", "finance"]},
        {"sources": ["eng"]},
        {"sources": ["eng", "fin"], "groups": ["eng"]},
        {"min_trust": 0.0},
        {"doc_sha256": ["0" * 64]},
    ],
)
def test_a_group_key_never_sees_another_groups_chunks(api, filters):
    client, keys, *_ = api
    for query in ("refund approval finance director", "trustee", "example docs curl"):
        r = _post(
            client,
            keys["finance"],
            {"query": query, "top_k": 50, "candidates": 200, "filters": filters},
        )
        assert r.status_code == 200
        assert all(h["provenance"]["groups"] == ["finance"] for h in r.json()["hits"]), filters
        r = _post(
            client,
            keys["eng"],
            {"query": query, "top_k": 50, "candidates": 200, "filters": filters},
        )
        assert all("finance" not in h["provenance"]["groups"] for h in r.json()["hits"])


def test_keys_and_scopes(api):
    client, keys, *_ = api
    assert _post(client, None, {"query": "x"}).status_code == 401
    bad = _post(client, "rw_000000000000_" + "a" * 43, {"query": "x"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    assert _post(client, "not-a-key", {"query": "x"}).status_code == 401
    r = client.get("/v1/sources", headers={"Authorization": f"Bearer {keys['finance']}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = client.get("/v1/sources", headers={"X-API-Key": keys["admin"]})
    assert r.status_code == 200 and {s["id"] for s in r.json()} == {"fin", "eng"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   \n\t "}, "query"),
        ({"query": "x" * 100_000}, "query"),
        ({"query": "ok", "top_k": 0}, "top_k"),
        ({"query": "ok", "top_k": 10_000}, "top_k"),
        ({"query": "ok", "top_k": "many"}, "top_k"),
        ({"query": "ok", "top_k": "5"}, "top_k"),  # strict: no coercion from strings
        ({"query": "ok", "top_k": True}, "top_k"),  # nor from booleans
        ({"query": "ok", "context": "yes"}, "context"),
        ({"query": "ok", "filters": {"sources": "fin"}}, "filters"),
        ({"query": "ok", "filters": {"tenant": "x"}}, "filters"),
        ({"query": "ok", "filters": {"min_trust": 2}}, "filters"),
        ({"query": "ok", "fusion": "sum"}, "fusion"),
        ({"query": "ok", "surprise": 1}, "surprise"),
        ({"query": 42}, "query"),
        ({"query": "a\x00b"}, "query"),
        ({}, "query"),
    ],
)
def test_bad_input_is_a_clear_4xx(api, body, field):
    client, keys, *_ = api
    r = _post(client, keys["all"], body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and field in err["message"] + json.dumps(err["details"])


def test_invalid_json_and_unicode_edges(api):
    client, keys, *_ = api
    headers = {"Authorization": f"Bearer {keys['all']}", "Content-Type": "application/json"}
    r = client.post("/v1/retrieve", content=b'{"query": "unterminated', headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.post("/v1/retrieve", content=b'{"query": "\\ud800 lone surrogate"}', headers=headers)
    assert r.status_code == 422
    for query in (
        "🚀 réfund ñ 退款",
        "\u202eRTL override",
        "a" + "\u0301" * 50,
        "ｆｕｌｌｗｉｄｔｈ",
    ):
        assert _post(client, keys["all"], {"query": query}).status_code == 200
    r = client.post("/v1/retrieve", content=b"x" * 2_000_000, headers=headers)
    assert r.status_code == 413
    for body in (b'{"query": "\xff\xfe invalid utf-8"}', b"[" * 20_000 + b"]" * 20_000):
        r = client.post("/v1/retrieve", content=body, headers=headers)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text


def test_a_chunked_body_is_limited_as_it_arrives(api):
    client, keys, *_ = api
    headers = {"Authorization": f"Bearer {keys['all']}", "Content-Type": "application/json"}

    def chunks():  # no Content-Length: the body is framed in chunks (memory: tests/api/test_guard)
        for _ in range(64):
            yield b" " * 65536

    r = client.post("/v1/retrieve", content=chunks(), headers=headers)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_the_key_is_checked_before_the_body(api):
    client, keys, services, _ = api
    for headers in ({}, {"Authorization": "Bearer rw_000000000000_notavalidsecretatall"}):
        for body in (b"not json at all", b'{"query": 42, "top_k": "x"}', b"x" * 2_000_000):
            r = client.post("/v1/retrieve", content=body, headers=headers)
            assert r.status_code == 401, r.text  # never 413 or 422 details to a stranger
            assert "details" not in r.json()["error"]


def test_refusals_are_audited_with_who_and_why(api):
    client, keys, services, _ = api
    before = services.runtime.audit.verify().records
    assert _post(client, None, {"query": "x"}).status_code == 401
    r = client.get("/v1/sources", headers={"Authorization": f"Bearer {keys['finance']}"})
    assert r.status_code == 403
    assert _post(client, keys["all"], {"query": "ok", "top_k": "5"}).status_code == 422
    records = [json.loads(x) for x in services.runtime.audit.path.read_text().splitlines()][before:]
    assert [(r["action"], r["status"], r["reason"]) for r in records] == [
        ("refused", 401, "unauthorized"),
        ("refused", 403, "forbidden"),
        ("refused", 422, "invalid_request"),
    ]
    finance_id = keys["finance"].split("_")[1]
    assert records[0]["key_id"] == "anonymous" and records[1]["key_id"] == finance_id
    assert records[1]["route"] == "/v1/sources" and records[1]["method"] == "GET"
    assert services.runtime.audit.verify().ok


def test_health_and_openapi(api):
    client, *_ = api
    assert client.get("/healthz").json() == {"status": "ok", "detail": {}}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and int(ready["detail"]["points"]) > 0
    schema = client.get("/openapi.json").json()
    retrieve = schema["paths"]["/v1/retrieve"]["post"]
    assert "RetrieveRequest" in json.dumps(retrieve["requestBody"])
    assert {"200", "401", "403", "422"} <= set(retrieve["responses"])
    assert "Provenance" in schema["components"]["schemas"]


def test_every_call_is_audited_and_the_chain_verifies(api):
    client, keys, services, _ = api
    before = services.runtime.audit.verify().records
    _post(client, keys["all"], {"query": "refund"})
    job = client.post("/v1/sources/fin/ingest", headers={"X-API-Key": keys["admin"]}).json()
    services.jobs.wait(job["job_id"], 600)
    report = services.runtime.audit.verify()
    assert report.ok and report.records == before + 3
    last = [json.loads(x) for x in services.runtime.audit.path.read_text().splitlines()][-3:]
    assert last[0]["action"] == "retrieve" and last[0]["query_sha256"] and last[0]["results"]
    assert "refund" not in json.dumps(last[0])  # the query itself is not stored, only its hash
    assert [r["action"] for r in last[1:]] == ["source.ingest_start", "source.ingest"]


def test_docs_pages_work_offline(api):
    """/docs and /redoc reference no other host, and every asset they name is served."""
    import re

    client, *_ = api
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", r.text)
        assert urls, r.text
        assert not [u for u in urls if re.match(r"(https?:)?//", u)], urls
        for url in urls:
            if url.startswith("/docs-assets/"):
                assert client.get(url).status_code == 200, url
    assert "openapi.json" in client.get("/docs").text


def test_an_ingest_of_a_busy_source_is_409(api):
    from filelock import FileLock

    client, keys, services, _ = api
    locks = services.settings.data_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / "ingest-fin.lock")):  # another ingest of "fin" is running
        r = client.post("/v1/sources/fin/ingest", headers={"X-API-Key": keys["admin"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "ingest_running", r.text
    r = client.post("/v1/sources/fin/ingest", headers={"X-API-Key": keys["admin"]})
    assert r.status_code == 202, r.text  # a job (polled at GET /v1/jobs/{id})
    services.jobs.wait(r.json()["job_id"], 600)
    assert services.job(r.json()["job_id"]).state == "succeeded"
