"""Jobs over HTTP (TestClient, real model and store): an ingest as a job (202, progress,
summary, the console's button), ``Idempotency-Key`` per caller, the busy runner's 409 naming the
running job's kind, a drift job cancelled between queries, and a drift request refused before
any job starts."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from ragwall.api.app import create_app
from ragwall.service import Service
from tests.api.test_console import _csrf, _sign_in
from tests.service.test_index import _write_corpus


@pytest.fixture(scope="module")
def api(tmp_path_factory, encoder):
    from ragwall.settings import Settings

    root = tmp_path_factory.mktemp("jobs-api")
    _write_corpus(root / "kb")
    settings = Settings(data_dir=root / "data", query_encoder="torch")
    svc = Service(settings, encoder=encoder)
    svc.add_source("setup", "kb", str(root / "kb"), "internal")
    svc.ingest("setup", "kb")
    keys = {
        "one": svc.runtime.keys.create("admin", None)[0],
        "two": svc.runtime.keys.create("admin", None)[0],
    }
    with TestClient(create_app(settings, svc)) as client:
        yield client, keys, svc, root
    svc.close()


def _h(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def _wait(client: TestClient, key: str, job_id: str) -> dict:
    for _ in range(3000):
        job = client.get(f"/v1/jobs/{job_id}", headers=_h(key)).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def _audit(svc: Service, job_id: str) -> list[dict]:
    lines = svc.runtime.audit.path.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("job_id") == job_id]


def test_ingest_over_http_is_a_job_and_an_idempotency_key_is_its_callers(api):
    client, keys, svc, _ = api
    one = _h(keys["one"], "ingest-kb-1")
    first = client.post("/v1/sources/kb/ingest", headers=one)
    assert first.status_code == 202, first.text
    job = first.json()
    assert first.headers["location"] == f"/v1/jobs/{job['job_id']}"
    assert (job["kind"], job["params"]) == ("ingest", {"source_id": "kb", "force": False})
    retry = client.post("/v1/sources/kb/ingest", headers=one)  # the same caller retrying
    assert retry.status_code == 202 and retry.json()["job_id"] == job["job_id"]
    reused = client.post("/v1/sources/kb/ingest?force=true", headers=one)  # another request
    assert reused.status_code == 422, reused.text
    error = reused.json()["error"]
    assert error["code"] == "idempotency_key_reused" and error["job_id"] == job["job_id"]
    assert "use a new key for a new request" in error["message"]
    done = _wait(client, keys["one"], job["job_id"])
    assert done["state"] == "succeeded", done["error"]
    assert {k: done["result"][k] for k in ("documents", "chunks", "unchanged", "removed")} == {
        "documents": 0,
        "chunks": 0,
        "unchanged": 3,
        "removed": 0,
    }
    assert done["result"]["failed"] == [] and done["progress"]["stage"] == "done"
    # Another admin's equal key is another key: a second job, not the first one's answer.
    two = client.post("/v1/sources/kb/ingest", headers=_h(keys["two"], "ingest-kb-1"))
    assert two.status_code == 202 and two.json()["job_id"] != job["job_id"]
    assert _wait(client, keys["two"], two.json()["job_id"])["state"] == "succeeded"
    again = client.post("/v1/sources/kb/ingest", headers=one)
    assert again.json()["job_id"] == job["job_id"]
    assert [r["action"] for r in _audit(svc, job["job_id"])] == [
        "source.ingest_start",
        "source.ingest",
    ]
    missing = client.post("/v1/sources/nope/ingest", headers=_h(keys["one"]))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "source_not_found"


def test_the_consoles_ingest_button_starts_a_job_and_shows_it(api):
    client, keys, svc, _ = api
    c = TestClient(client.app, cookies={})
    assert _sign_in(c, keys["one"]).status_code == 303
    got = c.post("/admin/sources/kb/ingest", data={"csrf": _csrf(c)}, follow_redirects=False)
    assert got.status_code == 303 and got.headers["location"] == "/admin/jobs"
    (job,) = [j for j in svc.runtime.registry.recent_jobs(1) if j.kind == "ingest"]
    assert _wait(client, keys["one"], job.id)["state"] == "succeeded"
    page = c.get("/admin/jobs").text
    assert f"ingest job {job.id} of kb started" in page
    assert "kb: 0 documents, 0 chunks, 3 unchanged, 0 removed, 0 failed" in page


def _start_long_drift(client: TestClient, admin: dict[str, str]) -> str:
    """A drift job of 1,500 queries (a minute or more), once it is running its queries."""
    queries = [f"maintenance note {i}: was the water pump seal checked?" for i in range(1500)]
    started = client.post(
        "/v1/eval/drift", json={"queries": queries, "baseline": "v1", "top_k": 3}, headers=admin
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    for _ in range(600):
        job = client.get(f"/v1/jobs/{job_id}", headers=admin).json()
        if job["state"] == "running" and job["progress"]["stage"].startswith("baseline"):
            return job_id
        time.sleep(0.05)
    pytest.fail(f"the drift job did not start its queries: {job}")


def test_a_drift_job_stops_between_queries_when_cancelled(api):
    client, keys, svc, _ = api
    admin = _h(keys["one"])
    job_id = _start_long_drift(client, admin)
    asked = time.monotonic()
    assert client.delete(f"/v1/jobs/{job_id}", headers=admin).status_code == 202
    ended = _wait(client, keys["one"], job_id)
    assert time.monotonic() - asked < 15, "the cancel did not stop the comparison"
    assert ended["state"] == "cancelled", ended
    assert 0 <= ended["progress"]["elapsed_s"] < 15 and ended["result"] is None
    assert [r["action"] for r in _audit(svc, job_id)] == [
        "eval.drift_start",
        "eval.drift_cancel",
        "eval.drift_cancelled",
    ]


def test_a_busy_runner_names_the_running_jobs_kind_and_ingests_run_beside_it(api):
    client, keys, svc, _ = api
    admin = _h(keys["one"])
    svc.jobs.wait(svc.jobs.running() or "", 600)  # the previous test's job has ended
    job_id = _start_long_drift(client, admin)
    try:
        busy = client.post("/v1/index/reindex", json={}, headers=admin)
        assert busy.status_code == 409, busy.text
        error = busy.json()["error"]
        assert (error["code"], error["job_id"]) == ("job_running", job_id)
        assert f"a drift job ({job_id})" in error["message"]
        beside = client.post("/v1/sources/kb/ingest", headers=admin)
        assert beside.status_code == 202, beside.text
        assert _wait(client, keys["one"], beside.json()["job_id"])["state"] == "succeeded"
    finally:
        client.delete(f"/v1/jobs/{job_id}", headers=admin)
        svc.jobs.wait(job_id, 600)


def test_a_drift_request_the_cli_refuses_is_refused_before_any_job(api):
    """A retired version (as `ragwall eval drift` refuses it): 404, and no job."""
    client, keys, svc, root = api
    svc.jobs.wait(svc.jobs.running() or "", 600)  # the previous test's job has ended
    svc.runtime.registry.add_version("retired", str(root / "gone"), {}, "fp", "now", version=50)
    jobs = len(svc.runtime.registry.recent_jobs(1000))
    for body in (
        {"queries": ["water pump seal"], "baseline": "v50"},
        {"queries": ["water pump seal"], "baseline": "v1", "candidate": "v50"},
    ):
        got = client.post("/v1/eval/drift", json=body, headers=_h(keys["one"]))
        assert got.status_code == 404, got.text
        error = got.json()["error"]
        assert error["code"] == "version_not_found" and "v50 is retired" in error["message"]
    assert len(svc.runtime.registry.recent_jobs(1000)) == jobs
