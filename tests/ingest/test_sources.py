"""Sources: validation, durable registry, file discovery."""

from __future__ import annotations

import time

import pytest

from ragwall.errors import SourceError, SourceExists, SourceNotFound
from ragwall.ingest.registry import Registry
from ragwall.ingest.sources import iter_source_files, make_source
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


def test_deep_folders_and_folder_links_do_not_stop_the_walk(tmp_path):
    """A folder nested 1,100 deep (Path.rglob and glob.glob raise RecursionError) and two links
    to their own folder (glob.glob's ``**`` walks them 2^40 times) cost a walk nothing."""
    deep = tmp_path
    for _ in range(1100):  # (Path.mkdir(parents=True) itself recurses)
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.md").write_text("x")
    (tmp_path / "top.md").write_text("y")
    (tmp_path / "loop").symlink_to(".")
    (tmp_path / "d" / "loop2").symlink_to("..")
    (tmp_path / "self.md").symlink_to("self.md")  # a loop of links is kept: it is reported
    try:
        started = time.monotonic()
        folder = iter_source_files(make_source("kb", str(tmp_path), "internal", []))
        assert [p.name for p in folder] == ["bottom.md", "self.md", "top.md"]
        assert folder[0] == deep / "bottom.md"
        globbed = iter_source_files(make_source("g", f"{tmp_path}/**/*.md", "internal", []))
        assert globbed == folder
        assert time.monotonic() - started < 10
    finally:
        # pytest's own cleanup recurses once per level: it cannot remove a tree this deep (a
        # later run's session would crash removing this one), so the test removes it, bottom up.
        (deep / "bottom.md").unlink()
        (tmp_path / "d" / "loop2").unlink()
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent


@pytest.mark.parametrize(
    ("sid", "path", "tier", "match"),
    [
        ("kb", "/definitely/not/here", "internal", "neither a folder, a glob pattern nor a URL"),
        ("kb", ".", "trusted-ish", "trust tier"),
        ("bad id!", ".", "internal", "source id"),
        ("kb", "https://user:secret@docs.example.com/sitemap.xml", "internal", "credentials"),
        ("kb", "http:///sitemap.xml", "internal", "with a host"),
        ("kb", "https://docs.example.com:99999/", "internal", "not a valid URL"),
    ],
)
def test_invalid_sources_are_refused(sid, path, tier, match):
    with pytest.raises(SourceError, match=match):
        make_source(sid, path, tier, [])


def test_a_kind_must_match_what_the_path_is(tmp_path):
    with pytest.raises(SourceError, match="not a URL"):
        make_source("kb", str(tmp_path), "internal", [], kind="web")
    with pytest.raises(SourceError, match="is a web source, not a folder"):
        make_source("kb", "https://docs.example.com/sitemap.xml", "internal", [], kind="folder")
    with pytest.raises(SourceError, match="web sources only"):
        make_source("kb", str(tmp_path), "internal", [], max_pages=5)
    web = make_source("kb", "https://Docs.example.com/sitemap.xml#x", "internal", [], max_pages=5)
    assert (web.kind, web.location, web.max_pages) == (
        "web",
        "https://Docs.example.com/sitemap.xml",
        5,
    )


def test_registry_is_durable(tmp_path):
    path = tmp_path / "state.sqlite3"
    state = Registry(path)
    state.add_source(make_source("kb", str(tmp_path), "untrusted", ["ops"]))
    with pytest.raises(SourceExists):
        state.add_source(make_source("kb", str(tmp_path), "untrusted", ["ops"]))
    state.close()
    reopened = Registry(path)
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
