"""Agents over the Model Context Protocol: ``/mcp`` on the HTTP server (``http``) and
``ragwall mcp`` over stdio (``stdio``), both serving the tools of ``tools``."""
