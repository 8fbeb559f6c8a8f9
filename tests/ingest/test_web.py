"""Web sites as sources (issue 29, part 4), against a real HTTP server on loopback that the test
starts (``tests.web_site``): a sitemap, a robots.txt, ETags, redirects and failing pages. The
real pipeline, parser workers, model and engine."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ragwall.api.app import create_app
from ragwall.errors import MassRemoval, SourceError, SourceOutsideRoots
from ragwall.ingest import Ingester, make_source
from ragwall.payload import Key
from ragwall.retrieval.store import Filter, Match
from ragwall.service import DEV_PRINCIPAL, RetrieveParams, Service
from tests.web_site import Page, Site, serve

TOPICS = {
    "/a.html": ("Pump seals", "The pump seal is replaced every six months by the day shift."),
    "/b.html": ("Valve checks", "Valves are checked for leaks on the first Monday of a month."),
    "/c.html": ("Boiler care", "The boiler is descaled twice a year with citric acid."),
    "/d.html": ("Fan belts", "Fan belts are tensioned when they squeal under load."),
}


@pytest.fixture
def site():
    site = Site()
    for path, (title, text) in TOPICS.items():
        site.html(path, title, text)
    site.html("/private/x.html", "Private", "Never to be read.")
    site.pages["/video.html"] = Page(b"\x00" * 100, content_type="video/mp4")
    site.pages["/big.html"] = Page(b"<html><body>" + b"x" * 30_000 + b"</body></html>")
    site.html("/slow.html", "Slow", "This page answers too late.")
    site.slow["/slow.html"] = 1.5
    site.redirects["/away.html"] = "http://other.invalid/landing.html"
    site.redirects["/moved.html"] = "/a.html"  # same host: followed
    server, _base = serve(site)
    site.listed = [
        *TOPICS,
        "/a.html#top",  # the same page again
        "http://other.invalid/page.html",
        "/private/x.html",
        "/video.html",
        "/big.html",
        "/slow.html",
        "/away.html",
        "/gone.html",
    ]
    yield site
    server.shutdown()


@pytest.fixture
def web(settings, encoder):
    conf = settings.model_copy(
        update={"web_delay_s": 0.0, "web_timeout_s": 0.5, "web_max_page_bytes": 20_000}
    )
    from ragwall.ingest import Registry
    from ragwall.retrieval.backends import open_store

    state = Registry(conf.state_path)
    store = open_store(conf, encoder.dim)
    yield Ingester(conf, state, store, encoder)
    store.close()
    state.close()


def _pages(site: Site) -> list[list]:
    """The page requests the site got (robots.txt and the sitemap left out)."""
    return [e for e in site.log if e[0] not in ("/robots.txt", "/sitemap.xml")]


def test_a_web_source_crawls_skips_unchanged_pages_and_reconciles(web, site):
    source = make_source("site", f"{site.base}/sitemap.xml", "external", [], kind="web")
    web.state.add_source(source)

    first = web.ingest(source)
    assert first.documents == 4, first.summary()
    failed = {f.path.removeprefix(site.base): f.reason for f in first.failed}
    assert failed == {
        "/away.html": "off_host_redirect",
        "/video.html": "not_html",
        "/big.html": "too_large",
        "/slow.html": "timeout",
        "/gone.html": "http_error",
    }
    skipped = {s.path.removeprefix(site.base): s.reason for s in first.skipped}
    assert skipped == {
        "http://other.invalid/page.html": "off_host",
        "/private/x.html": "robots_disallowed",
    }
    assert "/private/x.html" not in {e[0] for e in site.log}  # robots.txt was obeyed
    points, _ = web.store.scroll(Filter(must=(Match(Key.DOC_URI, f"{site.base}/a.html"),)))
    payload = points[0].payload
    assert payload["doc_name"] == f"{site.base}/a.html"
    assert payload["doc_modified_at"].startswith("2023-11-14")  # the HTTP Last-Modified
    assert "pump seal" in payload["text"].lower()

    # Unchanged: one conditional request per page, each a 304; nothing parsed or embedded.
    site.log.clear()
    second = web.ingest(source)
    assert (second.documents, second.unchanged, second.removed) == (0, 4, 0)
    fetched = {path: (conditional, status) for path, conditional, status in _pages(site)}
    assert all(fetched[p] == (True, 304) for p in TOPICS)
    assert second.requests == len(site.log)

    # One page changed, one gone from the sitemap: re-read and removed.
    site.html("/b.html", "Valve checks", "Valves are now checked every Friday afternoon.")
    site.listed.remove("/d.html")
    third = web.ingest(source)
    assert (third.documents, third.unchanged, third.removed) == (1, 2, 1)
    live = {p.payload["doc_uri"] for p in web.store.scroll(None, limit=100)[0]}
    assert live == {f"{site.base}{p}" for p in ("/a.html", "/b.html", "/c.html")}

    # A sitemap that is not XML is a failure that removes nothing.
    site.sitemap_body = b"<html><body>maintenance</body></html"
    broken = web.ingest(source)
    assert [(f.reason, f.path) for f in broken.failed] == [
        ("not_a_sitemap", f"{site.base}/sitemap.xml")
    ]
    assert broken.removed == 0
    # An empty sitemap would empty the source: a mass removal, refused.
    site.sitemap_body = None
    site.listed = []
    with pytest.raises(MassRemoval):
        web.ingest(source)
    assert len(web.state.documents("site", version=1)) == 3


def test_a_web_source_through_the_service(settings, encoder, site):
    conf = settings.model_copy(
        update={"web_delay_s": 0.0, "web_timeout_s": 0.5, "query_encoder": "torch"}
    )
    site.listed = ["/a.html", "/moved.html", "/c.html"]
    with Service(conf, encoder=encoder) as svc:
        with pytest.raises(SourceError, match="not a URL"):
            svc.add_source("admin", "x", "docs", "external", kind="web")
        with pytest.raises(SourceError, match="credentials"):
            svc.add_source("admin", "x", "https://u:p@example.com/sitemap.xml", "external")
        source = svc.add_source(
            "admin", "site", f"{site.base}/sitemap.xml", "external", max_pages=2
        )
        assert (source.kind, source.max_pages) == ("web", 2)
        report = svc.ingest("admin", "site")
        # /moved.html redirects to /a.html on the same host: read, under its listed URL.
        assert report.documents == 2
        assert [s.reason for s in report.skipped] == ["over_max_pages"]
        hits = svc.retrieve(DEV_PRINCIPAL, RetrieveParams(query="how often is the pump seal"))
        top = hits.result.hits[0]
        assert top.provenance["doc_uri"] in {f"{site.base}/a.html", f"{site.base}/moved.html"}
        with pytest.raises(SourceError, match="web source"):
            svc.ingest("admin", "site", paths=[conf.data_dir])
        admin, _ = svc.create_key("setup", scope="admin")
        headers = {"Authorization": f"Bearer {admin}"}
        with TestClient(create_app(conf, svc)) as client:  # the same over HTTP
            body = {"id": "site2", "path": f"{site.base}/sitemap.xml", "kind": "web"}
            made = client.post("/v1/sources", json={**body, "max_pages": 3}, headers=headers)
            assert made.status_code == 201, made.text
            assert (made.json()["kind"], made.json()["max_pages"]) == ("web", 3)
            body = {"id": "site3", "path": "https://u:p@docs.example.com/sitemap.xml"}
            bad = client.post("/v1/sources", json=body, headers=headers)
            assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_source")
    narrow = conf.model_copy(update={"web_hosts": ["docs.example.com"]})
    with Service(narrow, encoder=encoder) as svc, pytest.raises(SourceOutsideRoots):
        svc.ingest("admin", "site")  # the setting narrowed after the source was added


def _urlset(site: Site) -> bytes:
    body, site.sitemap_body = site.sitemap_body, None
    try:
        return site.sitemap()
    finally:
        site.sitemap_body = body


def test_listings_sitemap_indexes_gzip_text_lists_and_an_unreachable_robots_txt(web, site):
    """The three listing forms, and the two partial listings that remove nothing."""
    import gzip

    pages = ("/a.html", "/b.html", "/c.html")
    site.listed = list(pages)
    child = _urlset(site)
    site.pages["/pages.xml.gz"] = Page(gzip.compress(child), content_type="application/gzip")
    site.pages["/missing-child.xml"] = Page(b"", content_type="application/xml")
    site.statuses["/missing-child.xml"] = 404
    index = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{site.base}/pages.xml.gz</loc></sitemap></sitemapindex>"
    )
    site.sitemap_body = index.encode()
    source = make_source("site", f"{site.base}/sitemap.xml", "internal", [])
    web.state.add_source(source)
    assert web.ingest(source).documents == 3  # an index, and its gzipped sitemap

    # A text list: one URL per line; comments and blank lines ignored.
    listing = "# pages\n\n" + "\n".join(f"{site.base}{p}" for p in pages[:2]) + "\n"
    site.pages["/list.txt"] = Page(listing.encode(), content_type="text/plain")
    text = make_source("list", f"{site.base}/list.txt", "internal", [])
    web.state.add_source(text)
    assert web.ingest(text).documents == 2

    # One sitemap of an index that fails: a partial listing removes nothing.
    site.sitemap_body = index.replace(
        "</sitemapindex>",
        f"<sitemap><loc>{site.base}/missing-child.xml</loc></sitemap></sitemapindex>",
    ).encode()
    site.listed = ["/a.html"]
    site.pages["/pages.xml.gz"] = Page(gzip.compress(_urlset(site)), "application/gzip")
    partial = web.ingest(source)
    assert [f.reason for f in partial.failed] == ["http_error"] and partial.removed == 0
    # robots.txt unreachable (a 5xx): nothing is read, nothing removed (RFC 9309).
    site.statuses["/robots.txt"] = 503
    site.log.clear()
    blocked = web.ingest(source)
    assert [f.reason for f in blocked.failed] == ["robots_unavailable"]
    assert (blocked.removed, [e[0] for e in site.log]) == (0, ["/robots.txt"])
    assert len(web.state.documents("site", version=1)) == 3
