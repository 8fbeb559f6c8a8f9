"""Tokens from an identity provider (issue 28, part 2): a real discovery document and JWKS served
on loopback by a test provider with keys it generates; the app in process with the real service."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from ragwall.api.app import create_app
from ragwall.service import Service
from ragwall.service import oidc as oidc_module
from ragwall.settings import Settings
from tests.api.helpers import ingest_group_sources

AUDIENCE = "ragwall-test"


class Provider:
    """A minimal identity provider: discovery document, JWKS (rotatable), request counts."""

    def __init__(self) -> None:
        self.keys: dict[str, object] = {}
        self.requests = {"discovery": 0, "jwks": 0}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/.well-known/openid-configuration":
                    provider.requests["discovery"] += 1
                    body = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/jwks"}
                elif self.path == "/jwks":
                    provider.requests["jwks"] += 1
                    body = {"keys": [provider.jwk(k, v) for k, v in provider.keys.items()]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwk(self, kid: str, private) -> dict:  # noqa: ANN001 - a cryptography private key
        if isinstance(private, rsa.RSAPrivateKey):
            found = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
            alg = "RS256"
        else:
            found = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
            alg = "ES256"
        return {**found, "kid": kid, "alg": alg, "use": "sig"}

    def token(self, kid: str, lifetime: int = 600, **claims: object) -> str:
        private = self.keys[kid]
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "alice@example.com",
            "iat": now,
            "exp": now + lifetime,
            "scope": "openid ragwall:retrieve",
            "groups": ["eng"],
            **claims,
        }
        alg = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(body, private, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def idp():
    provider = Provider()
    provider.keys["rsa-1"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.keys["ec-1"] = ec.generate_private_key(ec.SECP256R1())
    yield provider
    provider.server.shutdown()


@pytest.fixture(scope="module")
def api(tmp_path_factory, encoder, idp):
    root = tmp_path_factory.mktemp("oidc")
    settings = Settings(
        data_dir=root / "data",
        oidc_issuer=idp.issuer,
        oidc_audience=AUDIENCE,
        oidc_rpm=1000,
        query_encoder="torch",
    )
    svc = Service(settings, encoder=encoder)
    ingest_group_sources(svc, root)
    with TestClient(create_app(settings, svc)) as client:
        yield client, svc
    svc.close()


def _retrieve(client: TestClient, token: str):  # noqa: ANN202
    return client.post(
        "/v1/retrieve",
        json={"query": "pump seal refunds director", "top_k": 10},
        headers={"Authorization": f"Bearer {token}"},
    )


def test_a_providers_token_binds_its_groups_like_a_key(api, idp):
    client, svc = api
    for kid in ("rsa-1", "ec-1"):
        got = _retrieve(client, idp.token(kid))
        assert got.status_code == 200, got.text
        assert {h["provenance"]["source_id"] for h in got.json()["hits"]} == {"eng"}
    fin = _retrieve(client, idp.token("rsa-1", groups=["fin"], jti="abc"))
    assert {h["provenance"]["source_id"] for h in fin.json()["hits"]} == {"fin"}
    record = [
        json.loads(line)
        for line in svc.runtime.audit.path.read_text().splitlines()
        if '"retrieve"' in line
    ][-1]
    assert record["key_id"] == "oidc:alice@example.com" and record["token"] == "abc"
    # Admin needs ragwall:admin and no groups; with groups it acts as a retrieve caller.
    admin = idp.token("ec-1", scope="ragwall:admin", groups=None)
    assert client.get("/v1/index", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    bound = idp.token("ec-1", scope="ragwall:admin")
    assert client.get("/v1/index", headers={"Authorization": f"Bearer {bound}"}).status_code == 403


def test_bad_provider_tokens_get_401(api, idp):
    client, _ = api
    now = int(time.time())
    for token in (
        idp.token("rsa-1", aud="someone-else"),
        idp.token("rsa-1", iss="http://127.0.0.1:1"),  # routed to Ragwall's own tokens: refused
        idp.token("rsa-1", lifetime=2 * 3600),  # over an hour
        idp.token("rsa-1", iat=now - 900, exp=now - 60),  # expired past the leeway
        idp.token("rsa-1", nbf=now + 600),  # not yet valid
        idp.token("rsa-1", scope="openid profile"),  # no Ragwall scope
        idp.token("rsa-1", groups="eng"),  # groups must be a list
    ):
        got = _retrieve(client, token)
        assert got.status_code == 401, jwt.decode(token, options={"verify_signature": False})
    # A token signed by a key the provider does not publish, under a published kid.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(idp.token("rsa-1"), options={"verify_signature": False})
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "rsa-1"})
    assert _retrieve(client, forged).status_code == 401
    # The algorithm the key declares, not the token's: an ES256 key named in an RS256 header.
    confused = jwt.encode(claims, idp.keys["rsa-1"], algorithm="RS256", headers={"kid": "ec-1"})
    assert _retrieve(client, confused).status_code == 401
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"})
    assert _retrieve(client, unsigned).status_code == 401


def test_a_rotated_key_is_fetched_once_and_unknown_kids_do_not_hammer_the_provider(
    api, idp, monkeypatch
):
    client, _ = api
    assert _retrieve(client, idp.token("rsa-1")).status_code == 200
    fetched = idp.requests["jwks"]
    # The provider rotates: a new key, a token under its kid. Accepted after one refresh.
    monkeypatch.setattr(oidc_module, "REFRESH_COOLDOWN_S", 0.0)
    idp.keys["rsa-2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _retrieve(client, idp.token("rsa-2")).status_code == 200
    assert idp.requests["jwks"] == fetched + 1
    # A flood of made-up kids within the cooldown: at most one more fetch.
    monkeypatch.setattr(oidc_module, "REFRESH_COOLDOWN_S", 300.0)
    claims = jwt.decode(idp.token("rsa-1"), options={"verify_signature": False})
    before = idp.requests["jwks"]
    for i in range(200):
        bogus = jwt.encode(claims, idp.keys["rsa-1"], algorithm="RS256", headers={"kid": f"x{i}"})
        assert _retrieve(client, bogus).status_code == 401
    assert idp.requests["jwks"] <= before + 1


def test_mcp_clients_find_the_provider_in_the_resource_metadata(api, idp):
    """RFC 9728: the metadata names the resource and its provider, and a 401 from /mcp points to
    it; the provider's callers each get the RAGWALL_OIDC_* budget."""
    client, _ = api
    meta = client.get("/.well-known/oauth-protected-resource/mcp")
    assert meta.status_code == 200
    assert meta.json()["resource"] == "http://testserver/mcp"
    assert meta.json()["authorization_servers"] == [idp.issuer]
    assert "ragwall:retrieve" in meta.json()["scopes_supported"]
    refused = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == (
        'Bearer resource_metadata="http://testserver/.well-known/oauth-protected-resource/mcp"'
    )
    got = _retrieve(client, idp.token("rsa-1"))
    assert got.status_code == 200 and got.headers["RateLimit-Policy"] == '"minute";q=1000;w=60'
