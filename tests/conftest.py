from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # `make test` runs one worker per core (pytest-xdist): each worker, and the servers and
    # parser processes it starts, gets its share of the cores instead of all of them.
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_share))

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


#: The longest test files (about a minute or more each on the 2-core box), longest first.
LONG_FILES = (
    "ingest/test_shared_corpus.py",
    "service/test_drift.py",
    "api/test_index_routes.py",
    "eval/test_retrieval.py",
    "eval/test_defenses.py",
    "api/test_cli_drift.py",
    "api/test_cli.py",
    "test_readme.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, then the other files with slow tests, then the rest, each
    file's tests in their order: with one file per worker (``--dist loadfile``), the long files
    start at once and the short ones fill in, so no worker is left alone with a long file at
    the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    tests = Path(__file__).parent

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = str(item.path.relative_to(tests)) if item.path.is_relative_to(tests) else ""
        if name in LONG_FILES:
            return 0, LONG_FILES.index(name)
        return (1 if item.path in slow_files else 2), 0

    items.sort(key=rank)


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
