"""``ragwall mcp``: the MCP tools over stdio, for a local client (a desktop assistant, an IDE
agent) that starts Ragwall as a subprocess.

The process serves the local data dir as the principal of one API key, so the key's groups,
policy and the audit trail apply exactly as over HTTP. Standard output carries the protocol
alone; logs go to standard error.
"""

from __future__ import annotations

import anyio

from ragwall.api.mcp.tools import CALLER, build_server
from ragwall.service import Principal, Service


def serve_stdio(svc: Service, who: Principal) -> None:
    """Answer MCP messages on stdin/stdout as ``who`` until the client closes the stream."""
    server = build_server()
    CALLER.set((svc, who))  # the event loop's tasks, and the tools' threads, inherit it
    anyio.run(server.run_stdio_async)
