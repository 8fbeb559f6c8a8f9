"""The README's MCP client configurations parse and point at what exists: the HTTP one at the
route the app serves, the stdio one at a `ragwall` command that runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from ragwall.api.app import create_app
from tests.conftest import ROOT

RAGWALL = str(Path(sys.executable).with_name("ragwall"))


def _snippets() -> list[dict]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Agents over MCP", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def test_the_readme_client_configurations_point_at_real_endpoints_and_commands():
    servers = [cfg["mcpServers"]["ragwall"] for cfg in _snippets()]
    http = [s for s in servers if s.get("type") == "http"]
    stdio = [s for s in servers if "command" in s]
    assert len(http) == 1 and len(stdio) == 1
    url = urlparse(http[0]["url"])
    assert url.path in {getattr(r, "path", None) for r in create_app().routes}
    assert http[0]["headers"]["Authorization"].startswith("Bearer ")
    assert stdio[0]["command"] == "ragwall" and Path(RAGWALL).exists()
    args = stdio[0]["args"]
    assert args[0] == "mcp" and "--key-file" in args
    helped = subprocess.run([RAGWALL, *args[:1], "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--key-file" in helped.stdout
    assert set(stdio[0]["env"]) <= {"RAGWALL_DATA_DIR", "RAGWALL_API_KEY"}


def test_the_readme_first_screen_names_the_mcp_endpoint():
    first = (ROOT / "README.md").read_text(encoding="utf-8").split("\n---\n", 1)[0]
    assert "`/mcp`" in first and "ragwall mcp" in first
