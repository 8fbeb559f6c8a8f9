"""Access tokens minted by Ragwall (issue 28, part 1): narrower than their key, accepted where a
key is (REST and /mcp, never the console), dead when expired, revoked, or when their key is
revoked; forged, ``alg: none`` and HMAC-with-the-public-key tokens refused. Real service, real
model and engine, the app in process."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from ragwall.api.app import create_app
from ragwall.service import Service
from ragwall.settings import Settings
from tests.api.helpers import ingest_group_sources


@pytest.fixture(scope="module")
def api(tmp_path_factory, encoder):
    """Sources in groups ``eng`` and ``fin``; an unrestricted admin key and a retrieve key bound
    to both groups."""
    root = tmp_path_factory.mktemp("tokens")
    settings = Settings(data_dir=root / "data", token_max_ttl_s=1200, query_encoder="torch")
    svc = Service(settings, encoder=encoder)
    ingest_group_sources(svc, root)
    keys = {
        "admin": svc.create_key("setup", "admin")[0],
        "both": svc.create_key("setup", "retrieve", ["eng", "fin"])[0],
    }
    with TestClient(create_app(settings, svc)) as client:
        yield client, keys, svc
    svc.close()


def _h(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _mint(client: TestClient, key: str, **body) -> dict:
    got = client.post("/v1/tokens", json=body, headers=_h(key))
    assert got.status_code == 201, got.text
    return got.json()


def _sources(client: TestClient, credential: str) -> set[str]:
    got = client.post(
        "/v1/retrieve",
        json={"query": "pump seal refunds director", "top_k": 10},
        headers=_h(credential),
    )
    assert got.status_code == 200, got.text
    return {h["provenance"]["source_id"] for h in got.json()["hits"]}


def _status(client: TestClient, credential: str) -> int:
    return client.post("/v1/retrieve", json={"query": "pump"}, headers=_h(credential)).status_code


def _audit(svc: Service) -> list[dict]:
    return [json.loads(line) for line in svc.runtime.audit.path.read_text().splitlines()]


def test_a_token_narrower_than_its_key_sees_only_its_groups(api):
    client, keys, svc = api
    assert _sources(client, keys["both"]) == {"eng", "fin"}
    minted = _mint(client, keys["both"], groups=["eng"], workflow_id="wf-42", actor="triage-bot")
    assert minted["token_type"] == "Bearer" and minted["groups"] == ["eng"]
    assert minted["scopes"] == ["retrieve"]
    expires = datetime.fromisoformat(minted["expires_at"])
    assert timedelta(seconds=890) < expires - datetime.now(UTC) <= timedelta(seconds=900)
    assert _sources(client, minted["token"]) == {"eng"}
    # The audit trail names the token, its workflow and its actor (never the token itself).
    records = _audit(svc)
    mint = [r for r in records if r["action"] == "token.mint"][-1]
    assert mint["jti"] == minted["jti"] and minted["token"] not in json.dumps(records)
    retrieve = [r for r in records if r["action"] == "retrieve"][-1]
    assert (retrieve["token"], retrieve["workflow_id"], retrieve["act"]) == (
        minted["jti"],
        "wf-42",
        "triage-bot",
    )
    # The claims, verified with the published key.
    jwk = client.get("/.well-known/jwks.json").json()["keys"][0]
    assert jwk["kty"] == "OKP" and jwk["alg"] == "EdDSA" and "d" not in jwk
    public = jwt.PyJWK(jwk).key
    claims = jwt.decode(minted["token"], public, algorithms=["EdDSA"], audience="ragwall")
    assert claims["groups"] == ["eng"] and claims["wf"] == "wf-42" and claims["act"] == "triage-bot"
    assert claims["sub"] == keys["both"].split("_")[1] and claims["jti"] == minted["jti"]


def test_widening_and_bad_requests_are_refused(api):
    client, keys, _ = api
    for body, status in (
        ({"groups": ["eng", "hr"]}, 403),
        ({"scopes": ["admin"]}, 403),
        ({"ttl_s": 1201}, 422),
        ({"ttl_s": 0}, 422),
        ({"groups": []}, 422),
        ({"workflow_id": "x" * 129}, 422),
        ({"workflow_id": "tab\there"}, 422),
        ({"ttl_s": "60"}, 422),
        ({"lifetime": 60}, 422),
    ):
        got = client.post("/v1/tokens", json=body, headers=_h(keys["both"]))
        assert got.status_code == status, (body, got.text)
        assert got.json()["error"]["code"] in {"forbidden", "invalid_request"}
    # A token cannot mint another; an admin token with groups is refused.
    token = _mint(client, keys["both"])["token"]
    assert client.post("/v1/tokens", json={}, headers=_h(token)).status_code == 403
    got = client.post(
        "/v1/tokens", json={"groups": ["eng"], "scopes": ["admin"]}, headers=_h(keys["admin"])
    )
    assert got.status_code == 422
    assert client.post("/v1/tokens", json={}).status_code == 401


def test_an_admin_token_works_on_the_api_but_never_signs_in_to_the_console(api):
    client, keys, _ = api
    token = _mint(client, keys["admin"], scopes=["admin", "retrieve"], ttl_s=60)["token"]
    assert client.get("/v1/index", headers=_h(token)).status_code == 200
    narrow = _mint(client, keys["admin"], scopes=["retrieve"])["token"]
    assert client.get("/v1/index", headers=_h(narrow)).status_code == 403
    page = client.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    signed = client.post("/admin/login", data={"key": token, "csrf": csrf}, follow_redirects=False)
    assert signed.status_code == 403 and "not an access token" in signed.text
    assert "ragwall_console=" not in signed.headers.get("set-cookie", "")


def test_revoked_tokens_and_tokens_of_revoked_keys_die_at_once(api):
    client, keys, svc = api
    token = _mint(client, keys["both"])
    assert _status(client, token["token"]) == 200
    # Another key cannot revoke it (it reads as unknown); its own key can.
    other = svc.create_key("setup", "retrieve", ["fin"])[0]
    assert client.delete(f"/v1/tokens/{token['jti']}", headers=_h(other)).status_code == 404
    assert client.delete(f"/v1/tokens/{token['jti']}", headers=_h(keys["both"])).status_code == 204
    assert _status(client, token["token"]) == 401
    assert "token.revoke" in [r["action"] for r in _audit(svc)]
    # Revoking the parent key kills every token it minted, on their next use.
    parent, record = svc.create_key("setup", "retrieve", ["eng"])
    first, second = _mint(client, parent)["token"], _mint(client, parent, ttl_s=60)["token"]
    assert _status(client, first) == _status(client, second) == 200
    svc.revoke_key("setup", record.id)
    assert _status(client, first) == _status(client, second) == 401


def _forge(claims: dict, key, alg: str, headers: dict | None = None) -> str:  # noqa: ANN001
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def test_expired_forged_and_algorithm_confused_tokens_get_401(api):
    client, keys, svc = api
    real = _mint(client, keys["both"])
    claims = jwt.decode(real["token"], options={"verify_signature": False})
    signing = serialization.load_pem_private_key(svc.settings.token_key_path.read_bytes(), None)
    assert _status(client, _forge(claims, signing, "EdDSA")) == 200  # the real key, re-signed
    past = {**claims, "iat": int(time.time()) - 600, "exp": int(time.time()) - 60}
    assert _status(client, _forge(past, signing, "EdDSA")) == 401  # expired past the leeway
    assert _status(client, _forge({**claims, "aud": "other"}, signing, "EdDSA")) == 401
    assert _status(client, _forge({**claims, "iss": "other"}, signing, "EdDSA")) == 401
    wider = {**claims, "groups": ["eng", "fin", "hr"]}
    assert _status(client, _forge(wider, Ed25519PrivateKey.generate(), "EdDSA")) == 401

    # alg none: header and claims, no signature.
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert _status(client, unsigned) == 401
    # HS256 "signed" with the public key's bytes (the classic algorithm confusion).
    public = signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert _status(client, _hmac_token(claims, public)) == 401
    assert _status(client, "a.b.c") == 401 and _status(client, real["token"] + "x") == 401


def _hmac_token(claims: dict, secret: bytes) -> str:
    """An HS256 JWT keyed with ``secret``, built by hand (PyJWT refuses PEM keys as secrets)."""
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_a_token_is_accepted_at_the_mcp_endpoint(api):
    client, keys, _ = api
    token = _mint(client, keys["both"], groups=["fin"])["token"]
    got = client.post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "search", "arguments": {"query": "pump seal refunds"}},
        },
        headers={**_h(token), "Accept": "application/json, text/event-stream"},
    )
    assert got.status_code == 200, got.text
    hits = got.json()["result"]["structuredContent"]["hits"]
    assert hits and {h["source"] for h in hits} == {"fin"}
