from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DOCS = SHARED / "docs"


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook
    """Say plainly, even under ``-q``, whether the browser tests could run here."""
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        line = f"browser tests: ran with {found}"
    elif os.environ.get("RAGWALL_REQUIRE_BROWSER"):
        line = "browser tests: chromium is NOT installed and RAGWALL_REQUIRE_BROWSER is set: failed"
    else:
        line = "browser tests: chromium is NOT installed: skipped (apt-get install -y chromium)"
    terminalreporter.write_line(line, yellow=not found, bold=not found)


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data missing: {path} (clone ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def encoder():
    from ragwall.embed import DenseEncoder

    enc = DenseEncoder()
    _ = enc.dim
    return enc


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from ragwall.settings import Settings

    monkeypatch.setenv("RAGWALL_DATA_DIR", str(tmp_path / "data"))
    return Settings(embed_buffer_chunks=64)


@pytest.fixture
def ingester(settings, encoder):
    """An Ingester on the embedded store, in a temporary data dir, sharing the session's model."""
    from ragwall.ingest import Ingester, Registry
    from ragwall.retrieval.backends import open_store

    state = Registry(settings.state_path)
    store = open_store(settings, encoder.dim)
    yield Ingester(settings, state, store, encoder)
    store.close()
    state.close()
