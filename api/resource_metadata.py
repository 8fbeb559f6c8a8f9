"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for ``/mcp``, served when an identity
provider is configured (``RAGWALL_OIDC_ISSUER``), as the MCP authorization profile asks.

``GET /.well-known/oauth-protected-resource/mcp`` names the resource (``<public URL>/mcp``), the
provider that issues its tokens, the scopes Ragwall reads (``ragwall:retrieve``,
``ragwall:admin``) and that tokens travel in the ``Authorization`` header. A 401 from ``/mcp``
then points to it: ``WWW-Authenticate: Bearer resource_metadata="…"``, so an MCP client can find
the provider on its own.

The public URL is ``RAGWALL_PUBLIC_URL`` when set (a server behind a proxy must set it); else the
URL the request came to. Without a provider the route is 404: Ragwall's own tokens are minted
with a key, not through an authorization server.
"""

from __future__ import annotations

from typing import Any

from ragwall.settings import Settings

MCP_RESOURCE_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource" + MCP_RESOURCE_PATH
SCOPES = ["ragwall:retrieve", "ragwall:admin"]


def base_url(settings: Settings, scope: dict[str, Any]) -> str:
    """``RAGWALL_PUBLIC_URL``, or the scheme and host the request came to."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def metadata(settings: Settings, scope: dict[str, Any]) -> dict[str, Any]:
    """The metadata document (RFC 9728, section 2)."""
    return {
        "resource": base_url(settings, scope) + MCP_RESOURCE_PATH,
        "authorization_servers": [settings.oidc_issuer],
        "scopes_supported": SCOPES,
        "bearer_methods_supported": ["header"],
        "resource_name": "Ragwall MCP",
    }


def challenge(settings: Settings, scope: dict[str, Any]) -> str:
    """The ``WWW-Authenticate`` value of a 401 from ``/mcp``."""
    if not settings.oidc_issuer:
        return "Bearer"
    return f'Bearer resource_metadata="{base_url(settings, scope)}{METADATA_PATH}"'
