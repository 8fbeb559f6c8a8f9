"""Sources: validation, durable registry, file discovery."""

from __future__ import annotations

import pytest

from ragwall.errors import SourceError, SourceExists, SourceNotFound
from ragwall.ingest.sources import iter_source_files, make_source
from ragwall.ingest.state import State
from ragwall.settings import Settings


def test_folder_and_glob_sources(tmp_path):
    (tmp_path / "a.md").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("y")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("z")
    (tmp_path / ".hidden.md").write_text("z")
    folder = make_source("kb", str(tmp_path), "verified", ["b", "a", "a"])
    assert folder.kind == "folder" and folder.groups == ["a", "b"]
    assert [p.name for p in iter_source_files(folder)] == ["a.md", "b.txt"]
    pattern = make_source("md", str(tmp_path / "**" / "*.md"), "internal", [])
    assert pattern.kind == "glob"
    assert [p.name for p in iter_source_files(pattern)] == ["a.md"]


@pytest.mark.parametrize(
    ("sid", "path", "tier", "match"),
    [
        ("kb", "/definitely/not/here", "internal", "neither a folder nor a glob"),
        ("kb", ".", "trusted-ish", "trust tier"),
        ("bad id!", ".", "internal", "source id"),
    ],
)
def test_invalid_sources_are_refused(sid, path, tier, match):
    with pytest.raises(SourceError, match=match):
        make_source(sid, path, tier, [])


def test_registry_is_durable(tmp_path):
    path = tmp_path / "state.sqlite3"
    state = State(path)
    state.add_source(make_source("kb", str(tmp_path), "untrusted", ["ops"]))
    with pytest.raises(SourceExists):
        state.add_source(make_source("kb", str(tmp_path), "untrusted", ["ops"]))
    state.close()
    reopened = State(path)
    source = reopened.get_source("kb")
    assert (source.trust_tier, source.groups) == ("untrusted", ["ops"])
    with pytest.raises(SourceNotFound, match="kb"):
        reopened.get_source("nope")
    reopened.remove_source("kb")
    assert reopened.list_sources() == []


def test_trust_priors_are_configurable(monkeypatch):
    monkeypatch.setenv(
        "RAGWALL_TRUST_PRIORS",
        '{"verified": 1.0, "internal": 0.9, "external": 0.4, "untrusted": 0.0}',
    )
    assert Settings().trust_priors["external"] == 0.4
    monkeypatch.setenv("RAGWALL_TRUST_PRIORS", '{"verified": 1.0}')
    with pytest.raises(ValueError, match="lacks tiers"):
        Settings()
