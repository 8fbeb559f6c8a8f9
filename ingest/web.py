"""Web sites as sources: a sitemap (or a list of URLs) read into pages, each fetched with a
conditional GET, so that an unchanged page costs one 304.

One sync, in order (:class:`WebCrawl`):

1. **robots.txt** of the source's host. Missing (any 4xx, or not a text): everything may be
   read. Unreachable (a timeout, a 5xx): RFC 9309 says to assume a complete disallow, so the
   sync reads nothing. Its ``Crawl-delay`` raises the delay between requests (up to 60 s).
2. **The listing**: a sitemap (``<urlset>``), a sitemap index (its sitemaps on the same host,
   :data:`MAX_SITEMAPS` at most), or a plain-text list of URLs, one per line. Gzipped
   sitemaps are read within the same size limit.
3. **Each listed URL**, in order, without its fragment, once: on another host it is skipped
   (``off_host``), disallowed by robots.txt it is skipped (``robots_disallowed``), past the
   source's ``max_pages`` it is skipped (``over_max_pages``); else it is fetched, conditionally
   when the index holds the version its stored validators (ETag, Last-Modified) describe.

Invariants:

- **Every listed URL ends as exactly one** :class:`~ragwall.ingest.scan.Found` (a page read,
  its body saved under the crawl's folder for the parser), :class:`Unchanged` (a 304),
  :class:`~ragwall.ingest.report.Failure` or :class:`~ragwall.ingest.report.Skipped`; the
  iteration never raises for one URL's sake.
- **A partial listing removes nothing**: when robots.txt is unreachable, or the sitemap (or
  one sitemap of an index) cannot be read, :attr:`WebCrawl.complete` is false and the sync
  removes no page that the listing left out. A listing read whole that lacks pages removes
  them under the safe-reconcile rule (``ingest.pipeline``): an empty sitemap never empties the
  index.
- A **transient** failure (timeout, 429, 5xx) keeps the page's indexed version (``kept``); a
  lasting one (404, an off-host redirect, a type that is not HTML, a page over the limit)
  removes it, as a file that fails does.
- The saved bodies live in a temporary folder that :meth:`WebCrawl.close` deletes.
"""

from __future__ import annotations

import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from hashlib import sha256
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ragwall.durations import iso_epoch
from ragwall.errors import SourceOutsideRoots, WebPageError
from ragwall.ingest.registry import DocumentRecord
from ragwall.ingest.report import Failure, Skipped
from ragwall.ingest.scan import Found
from ragwall.ingest.sources import Source
from ragwall.ingest.web_fetch import ROBOTS_AGENT, WebClient, origin
from ragwall.ingest.web_state import Validators
from ragwall.settings import Settings

MAX_SITEMAPS = 50  # sitemaps of one sitemap index read per sync
MAX_CRAWL_DELAY_S = 60.0
HTML_TYPES = ("text/html", "application/xhtml+xml")
_GZIP = b"\x1f\x8b"


@dataclass(frozen=True)
class Unchanged:
    """A page the server says is unchanged (304): its indexed version stays."""

    uri: str


@dataclass(frozen=True)
class Listed:
    url: str
    lastmod: float | None = None  # the sitemap's <lastmod>, epoch seconds


Outcome = Found | Unchanged | Failure | Skipped


class WebCrawl:
    """One sync's reading of a web source (see the module's doc). Iterate it once, then read
    :attr:`complete` and :attr:`requests`; use it as a context manager."""

    def __init__(
        self,
        source: Source,
        settings: Settings,
        known: dict[str, DocumentRecord],
        validators: dict[str, Validators],
        *,
        cancel: threading.Event | None = None,
        check: Callable[[], None] = lambda: None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """Parameters:
        source: the web source (its location is the sitemap's or the list's URL).
        settings: the ``RAGWALL_WEB_*`` limits.
        known: the documents the index version holds, by URL.
        validators: the stored ETag and Last-Modified per URL, with the sha256 they describe.
        cancel: ends a wait between requests at once.
        check: called before each request; raises to stop the crawl (a cancel).
        progress: ``progress("fetch", done, total)`` as pages are read.
        """
        self.source, self.settings, self.known = source, settings, known
        self.validators = validators
        self.check, self.progress = check, progress
        self.complete = True
        self.max_pages = source.max_pages or settings.web_max_pages
        self.client = WebClient(
            source.location,
            timeout=settings.web_timeout_s,
            delay=settings.web_delay_s,
            cancel=cancel,
        )
        self._folder = tempfile.TemporaryDirectory(prefix="ragwall-web-")

    @property
    def requests(self) -> int:
        return self.client.requests

    def close(self) -> None:
        self.client.close()
        self._folder.cleanup()

    def __enter__(self) -> WebCrawl:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the sync --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Outcome]:
        robots = yield from self._robots()
        if robots is None:
            return
        listed = yield from self._listing()
        seen: set[str] = set()
        pages: list[Listed] = []
        for item in listed:
            url = item.url.split("#", 1)[0]
            if url in seen:
                continue
            seen.add(url)
            if origin(url) != self.client.origin:
                yield Skipped(url, "off_host", f"{url} is not on the source's host; not read")
            elif not robots.can_fetch(ROBOTS_AGENT, url):
                yield Skipped(url, "robots_disallowed", "robots.txt disallows it; not read")
            elif len(pages) >= self.max_pages:
                yield Skipped(
                    url, "over_max_pages", f"the source reads {self.max_pages} pages at most"
                )
            else:
                pages.append(Listed(url, item.lastmod))
        self.client.allowed = lambda url: robots.can_fetch(ROBOTS_AGENT, url)
        for n, page in enumerate(pages):
            self.check()
            yield self._page(n, page)
            if self.progress:
                self.progress("fetch", n + 1, len(pages))

    def _robots(self) -> Iterator[Outcome]:
        """The host's robots.txt (``None``, after a failure, when it cannot be reached)."""
        parts = urlsplit(self.source.location)
        url = parts._replace(path="/robots.txt", query="", fragment="").geturl()
        parser = RobotFileParser(url)
        self.check()
        try:
            got = self.client.get(url, limit=self.settings.web_max_page_bytes)
            text = got.body.decode("utf-8", errors="replace")
        except WebPageError as exc:
            if not exc.transient:  # none there (RFC 9309: a 4xx allows everything)
                parser.parse([])
                return parser
            self.complete = False
            yield Failure(
                url,
                "robots_unavailable",
                f"robots.txt could not be read ({exc}); as RFC 9309 asks, nothing was read and "
                "nothing removed; the next sync tries again",
            )
            return None
        parser.parse(text.splitlines())
        delay = parser.crawl_delay(ROBOTS_AGENT)
        if delay:
            self.client.delay = max(self.client.delay, min(float(delay), MAX_CRAWL_DELAY_S))
        return parser

    def _listing(self) -> Iterator[Outcome]:
        """The listed URLs; a sitemap that cannot be read is a failure, and the listing is
        then partial (nothing is removed)."""
        listed: list[Listed] = []
        queue, read, seen = [self.source.location], 0, {self.source.location}
        while queue:
            url = queue.pop(0)
            if read == MAX_SITEMAPS:
                self.complete = False
                yield Failure(url, "too_many_sitemaps", f"over {MAX_SITEMAPS} sitemaps; not read")
                continue
            read += 1
            self.check()
            try:
                if origin(url) != self.client.origin:
                    raise WebPageError(f"{url} is a sitemap on another host", "off_host")
                urls, nested = self._read_listing(url)
            except WebPageError as exc:
                self.complete = False
                yield Failure(url, exc.reason, f"the listing was not read: {exc}")
                continue
            listed += urls
            fresh = [u for u in dict.fromkeys(nested) if u not in seen]  # an index's loops
            seen.update(fresh)
            queue += fresh
        return listed

    def _read_listing(self, url: str) -> tuple[list[Listed], list[str]]:
        """A sitemap's (or a list's) URLs, and an index's sitemaps."""
        limit = self.settings.web_max_page_bytes
        got = self.client.get(url, limit=limit)
        body = _gunzip(got.body, limit, url) if got.body[:2] == _GZIP else got.body
        if got.content_type == "text/plain":
            lines = body.decode("utf-8", errors="replace").splitlines()
            return [Listed(u) for raw in lines if (u := raw.strip()) and not u.startswith("#")], []
        try:
            root = ElementTree.fromstring(body, forbid_dtd=True)
        except (ElementTree.ParseError, DefusedXmlException, ValueError) as exc:
            raise WebPageError(f"{url} is not an XML sitemap: {exc}", "not_a_sitemap") from None
        kind = _local(root.tag)
        if kind not in ("urlset", "sitemapindex"):
            raise WebPageError(
                f"{url} is XML but not a sitemap (its root is <{kind}>)", "not_a_sitemap"
            )
        entries = [e for e in root if _local(e.tag) in ("url", "sitemap")]
        found = []
        for entry in entries:
            fields = {_local(f.tag): (f.text or "").strip() for f in entry}
            if fields.get("loc"):
                found.append(Listed(fields["loc"], _lastmod(fields.get("lastmod"))))
        if kind == "sitemapindex":
            return [], [item.url for item in found]
        return found, []

    def _page(self, n: int, page: Listed) -> Outcome:
        """One page read: a Found, an Unchanged or a Failure (never raises for its sake)."""
        record = self.known.get(page.url)
        stored = self.validators.get(page.url)
        if stored is not None and (record is None or stored.sha256 != record.sha256):
            stored = None  # they describe a body the version being synced does not hold
        try:
            got = self.client.get(
                page.url,
                limit=self.settings.web_max_page_bytes,
                types=HTML_TYPES,
                etag=stored.etag if stored else None,
                last_modified=stored.last_modified if stored else None,
            )
        except WebPageError as exc:
            return Failure(page.url, exc.reason, str(exc), kept=exc.transient and bool(record))
        if got.status == 304:
            if stored is not None:
                return Unchanged(page.url)
            return Failure(page.url, "http_error", f"{page.url}: HTTP 304 to a plain GET")
        path = Path(self._folder.name) / f"{n:06d}.html"
        path.write_bytes(got.body)
        modified = _http_date(got.last_modified) or page.lastmod or 0.0
        return Found(
            path,
            page.url,
            sha256(got.body).hexdigest(),
            len(got.body),
            modified,
            etag=got.etag,
            last_modified=got.last_modified,
        )


def _local(tag: object) -> str:
    """``urlset`` of ``{http://www.sitemaps.org/schemas/sitemap/0.9}urlset``."""
    return str(tag).rsplit("}", 1)[-1]


def _gunzip(body: bytes, limit: int, url: str) -> bytes:
    try:
        out = zlib.decompressobj(wbits=31).decompress(body, limit + 1)
    except zlib.error as exc:
        raise WebPageError(f"{url} is not a valid gzip file: {exc}", "not_a_sitemap") from None
    if len(out) > limit:
        raise WebPageError(f"{url} inflates to over {limit} bytes", "too_large")
    return out


def _lastmod(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return iso_epoch(value)
    except ValueError:
        return None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def check_web_host(source: Source, hosts: list[str]) -> None:
    """Raise :class:`SourceOutsideRoots` unless ``RAGWALL_WEB_HOSTS`` (``hosts``; empty: any)
    lets the web source read its host."""
    host = (urlsplit(source.location).hostname or "").lower()
    if hosts and host not in hosts:
        raise SourceOutsideRoots(
            f"web source {source.id!r} reads {host}, which is not one of RAGWALL_WEB_HOSTS "
            f"({', '.join(hosts)}); add the host there to allow it"
        )
