"""Budgets per key and usage per workflow (issue 28, parts 3 and 4): ``--rpm`` and
``--daily-requests`` enforced with the RateLimit header fields and 429 ``rate_limited``; 401 and
403 never count; a token spends its parent key's budget; budgets changed over the admin API and
the CLI; the usage report's counts equal the calls made. Real service, model and engine, the app
in process; the limiter's own clock is moved forward instead of waiting a minute."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import limits.storage.memory
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ragwall.api.app import create_app
from ragwall.api.cli import app
from ragwall.service import Service
from ragwall.service.keys import Budget
from ragwall.settings import Settings
from tests.api.helpers import ingest_group_sources

QUERY = {"query": "pump seal refunds director", "top_k": 10}


@pytest.fixture(scope="module")
def api(tmp_path_factory, encoder):
    root = tmp_path_factory.mktemp("budgets")
    settings = Settings(data_dir=root / "data", query_encoder="torch")
    svc = Service(settings, encoder=encoder)
    ingest_group_sources(svc, root)
    admin = svc.create_key("setup", "admin")[0]
    with TestClient(create_app(settings, svc)) as client:
        yield client, svc, admin, settings
    svc.close()


@pytest.fixture
def later(monkeypatch):
    """Moves the limiter's clock (the ``limits`` memory storage's) forward by some seconds."""
    offset = [0.0]

    class Clock:
        @staticmethod
        def time() -> float:
            return time.time() + offset[0]

    monkeypatch.setattr(limits.storage.memory, "time", Clock)

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


def _h(credential: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}", **extra}


def _fields(response) -> dict[str, dict[str, int]]:  # noqa: ANN001
    """The RateLimit field's items: ``{"minute": {"r": 4, "t": 60}, …}``."""
    items = {}
    for item in response.headers["RateLimit"].split(", "):
        name, *params = item.split(";")
        items[name.strip('"')] = {k: int(v) for k, v in (p.split("=") for p in params)}
    return items


def _key(svc: Service, **budget: int) -> tuple[str, str]:
    key, record = svc.create_key("setup", "retrieve", budget=Budget(**budget))
    return key, record.id


def test_rpm_5_the_sixth_call_gets_429_and_a_minute_later_calls_pass(api, later):
    client, svc, admin, _ = api
    key, key_id = _key(svc, rpm=5, daily_requests=100)
    for n in range(5):
        got = client.post("/v1/retrieve", json=QUERY, headers=_h(key))
        assert got.status_code == 200, got.text
        assert got.headers["RateLimit-Policy"] == '"minute";q=5;w=60, "day";q=100;w=86400'
        fields = _fields(got)
        assert fields["minute"]["r"] == 4 - n and fields["day"]["r"] == 99 - n
        assert 0 < fields["minute"]["t"] <= 60
    refused = client.post("/v1/retrieve", json=QUERY, headers=_h(key))
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert set(refused.json()) == {"error"} and error["code"] == "rate_limited"
    assert key_id in error["message"] and "ragwall keys set" in error["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert _fields(refused)["minute"]["r"] == 0
    assert _fields(refused)["day"]["r"] == 95  # a refused call spends nothing
    # The 429 is audited as a refusal, and counted by key id in the metrics.
    records = [json.loads(x) for x in svc.runtime.audit.path.read_text().splitlines()]
    assert any(
        r["action"] == "refused" and r["key_id"] == key_id and r["reason"] == "rate_limited"
        for r in records
    )
    metrics = client.get("/metrics", headers=_h(admin)).text
    assert f'ragwall_rate_limited_total{{key_id="{key_id}"}} 1.0' in metrics
    # The oldest call leaves the window a minute after it was made.
    later(61)
    again = client.post("/v1/retrieve", json=QUERY, headers=_h(key))
    assert again.status_code == 200, again.text
    assert _fields(again)["minute"]["r"] == 4 and _fields(again)["day"]["r"] == 94


def test_401_and_403_never_count_and_every_authenticated_answer_has_the_fields(api):
    client, svc, _, _ = api
    key, _ = _key(svc, rpm=2)
    for _ in range(4):
        forbidden = client.get("/v1/sources", headers=_h(key))  # an admin route
        assert forbidden.status_code == 403
        assert _fields(forbidden)["minute"]["r"] == 2
        assert client.post("/v1/retrieve", json=QUERY, headers=_h(key + "x")).status_code == 401
    unknown = client.get("/v1/nothing-here", headers=_h(key))
    assert unknown.status_code == 404 and _fields(unknown)["minute"]["r"] == 2
    bad = client.post("/v1/retrieve", json={"query": ""}, headers=_h(key))
    assert bad.status_code == 422 and _fields(bad)["minute"]["r"] == 1  # it passed the scope
    assert client.post("/v1/retrieve", json=QUERY, headers=_h(key)).status_code == 200
    assert client.post("/v1/retrieve", json=QUERY, headers=_h(key)).status_code == 429
    # Without an identity provider there is no resource metadata to point to.
    assert client.get("/.well-known/oauth-protected-resource/mcp").status_code == 404
    assert client.post("/mcp", json={}).headers["WWW-Authenticate"] == "Bearer"
    # A key without a budget has no policy to report.
    free, _ = _key(svc)
    got = client.post("/v1/retrieve", json=QUERY, headers=_h(free))
    assert got.status_code == 200 and "RateLimit" not in got.headers


def test_a_token_spends_its_parent_keys_budget(api):
    client, svc, _, _ = api
    key, _ = _key(svc, rpm=3)
    minted = client.post("/v1/tokens", json={"workflow_id": "wf"}, headers=_h(key))  # 1
    assert minted.status_code == 201
    token = minted.json()["token"]
    assert client.post("/v1/retrieve", json=QUERY, headers=_h(token)).status_code == 200  # 2
    assert client.post("/v1/retrieve", json=QUERY, headers=_h(key)).status_code == 200  # 3
    spent = client.post("/v1/retrieve", json=QUERY, headers=_h(token))
    assert spent.status_code == 429 and spent.json()["error"]["code"] == "rate_limited"


def test_mcp_tool_calls_spend_the_budget_and_the_handshake_does_not(api):
    client, svc, _, _ = api
    key, _ = _key(svc, rpm=1)
    headers = _h(key, Accept="application/json, text/event-stream")
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "search", "arguments": {"query": "pump seal"}},
    }
    for _ in range(3):
        got = client.post("/mcp", json=listing, headers=headers)
        assert got.status_code == 200 and _fields(got)["minute"]["r"] == 1
    first = client.post("/mcp", json=call, headers=headers)
    assert first.status_code == 200 and not first.json()["result"].get("isError")
    second = client.post("/mcp", json=call, headers=headers)
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"
    assert int(second.headers["Retry-After"]) >= 1


def test_budgets_change_over_the_admin_api_from_the_next_call(api):
    client, svc, admin, _ = api
    key, key_id = _key(svc)
    assert "RateLimit" not in client.post("/v1/retrieve", json=QUERY, headers=_h(key)).headers
    changed = client.patch(f"/v1/keys/{key_id}", json={"rpm": 1}, headers=_h(admin))
    assert changed.status_code == 200, changed.text
    assert (changed.json()["rpm"], changed.json()["daily_requests"]) == (1, None)
    assert client.post("/v1/retrieve", json=QUERY, headers=_h(key)).status_code == 200
    assert client.post("/v1/retrieve", json=QUERY, headers=_h(key)).status_code == 429
    # A field left out stays; null removes that limit.
    both = client.patch(f"/v1/keys/{key_id}", json={"daily_requests": 50}, headers=_h(admin))
    assert (both.json()["rpm"], both.json()["daily_requests"]) == (1, 50)
    cleared = client.patch(
        f"/v1/keys/{key_id}", json={"rpm": None, "daily_requests": None}, headers=_h(admin)
    )
    assert (cleared.json()["rpm"], cleared.json()["daily_requests"]) == (None, None)
    assert client.post("/v1/retrieve", json=QUERY, headers=_h(key)).status_code == 200
    listed = {k["id"]: k for k in client.get("/v1/keys", headers=_h(admin)).json()}
    assert listed[key_id]["rpm"] is None and "secret" not in json.dumps(listed)
    # Bad input: a clear 4xx, nothing changed.
    for body, status, code in (
        ({"rpm": 0}, 422, "invalid_request"),
        ({"rpm": "5"}, 422, "invalid_request"),
        ({"burst": 5}, 422, "invalid_request"),
    ):
        got = client.patch(f"/v1/keys/{key_id}", json=body, headers=_h(admin))
        assert (got.status_code, got.json()["error"]["code"]) == (status, code), body
    missing = client.patch("/v1/keys/000000000000", json={"rpm": 5}, headers=_h(admin))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "key_not_found")
    assert client.patch(f"/v1/keys/{key_id}", json={"rpm": 5}, headers=_h(key)).status_code == 403
    records = [json.loads(x) for x in svc.runtime.audit.path.read_text().splitlines()]
    changes = [r for r in records if r["action"] == "key.budget" and r["changed_key_id"] == key_id]
    assert [(r["rpm"], r["daily_requests"]) for r in changes] == [(1, None), (1, 50), (None, None)]


def test_the_usage_report_counts_match_the_calls_made(api):
    client, svc, admin, settings = api
    key, key_id = _key(svc)
    made: dict[str, dict[str, int]] = {}

    def retrieve(credential: str, workflow: str, **headers: str) -> None:
        got = client.post("/v1/retrieve", json=QUERY, headers=_h(credential, **headers))
        assert got.status_code == 200, got.text
        hits = got.json()["hits"]
        row = made.setdefault(workflow, {"requests": 0, "hits": 0, "context_tokens": 0})
        row["requests"] += 1
        row["hits"] += len(hits)
        row["context_tokens"] += sum(h["provenance"]["token_count"] for h in hits)

    for _ in range(3):
        retrieve(key, "usage-a", **{"X-Workflow-Id": "usage-a"})
    for _ in range(2):
        retrieve(key, "usage-b", **{"X-Workflow-Id": "usage-b"})
    token = client.post(
        "/v1/tokens", json={"workflow_id": "usage-t", "actor": "usage-bot"}, headers=_h(key)
    ).json()["token"]
    # A token's workflow binds: the header does not rename it.
    retrieve(token, "usage-t", **{"X-Workflow-Id": "usage-other"})
    retrieve(token, "usage-t")
    assert (
        client.get("/v1/sources", headers=_h(key, **{"X-Workflow-Id": "usage-a"})).status_code
        == 403
    )
    bad = client.post("/v1/retrieve", json=QUERY, headers=_h(key, **{"X-Workflow-Id": "a\tb"}))
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_request")

    report = svc.usage(timedelta(hours=1), "workflow")
    rows = {r.key: r for r in report.rows}
    for workflow, counts in made.items():
        row = rows[workflow]
        assert (row.requests, row.hits, row.context_tokens) == (
            counts["requests"],
            counts["hits"],
            counts["context_tokens"],
        ), workflow
    assert made["usage-a"]["hits"] > 0 and made["usage-a"]["context_tokens"] > 0
    assert rows["usage-a"].refusals == 1 and "usage-other" not in rows
    by_key = {r.key: r for r in svc.usage(timedelta(hours=1), "key").rows}[key_id]
    assert by_key.requests == 7  # 5 retrieves with the key, 2 with its token (minting is not one)
    assert by_key.refusals == 2  # the 403 and the malformed workflow header
    actors = {r.key: r for r in svc.usage(timedelta(hours=1), "actor").rows}
    assert actors["usage-bot"].requests == 2

    # The same report over REST and from the command line (a second process, the same trail).
    rest = client.get(
        "/v1/usage", params={"since": "1h", "by": "workflow"}, headers=_h(admin)
    ).json()
    assert {r["key"]: r["requests"] for r in rest["rows"]}["usage-b"] == 2
    assert client.get("/v1/usage", params={"since": "1y"}, headers=_h(admin)).status_code == 422
    env = {"RAGWALL_DATA_DIR": str(settings.data_dir)}
    cli = CliRunner().invoke(app, ["usage", "--since", "1h", "--by", "workflow", "--json"], env=env)
    assert cli.exit_code == 0, cli.stderr
    rows = {r["key"]: r for r in json.loads(cli.stdout)["rows"]}
    assert rows["usage-a"]["hits"] == made["usage-a"]["hits"]
    wrong = CliRunner().invoke(app, ["usage", "--since", "yesterday"], env=env)
    assert wrong.exit_code == 2 and "not a duration" in wrong.stderr


def test_keys_create_and_set_budgets_on_the_command_line(tmp_path):
    """The `ragwall` app in process (Typer's runner: the same options and exit statuses)."""
    env = {"RAGWALL_DATA_DIR": str(tmp_path / "data")}

    def ragwall(*args: str):  # noqa: ANN202 - click's Result
        return CliRunner().invoke(app, list(args), env=env)

    made = ragwall("keys", "create", "--rpm", "5", "--daily-requests", "1000", "--json")
    assert made.exit_code == 0, made.stderr
    key_id = json.loads(made.stdout)["id"]
    assert re.search(rf"{key_id}.*5/min, 1000/day", ragwall("keys", "list").stdout)
    changed = ragwall("keys", "set", key_id, "--no-rpm", "--daily-requests", "10")
    assert changed.exit_code == 0 and "10/day" in changed.stdout and "/min" not in changed.stdout
    for args, message in (
        (("keys", "set", key_id), "nothing to change"),
        (("keys", "set", key_id, "--rpm", "3", "--no-rpm"), "not both"),
        (("keys", "set", "000000000000", "--rpm", "3"), "no active key"),
        (("keys", "create", "--rpm", "0"), "--rpm"),
    ):
        got = ragwall(*args)
        assert got.exit_code == 2 and message in got.stderr, (args, got.stderr)
