"""A real web site on loopback for the web-source tests and bench: pages with ETags and
Last-Modified dates, a sitemap, a robots.txt, redirects, slow and failing pages. It answers a
conditional GET with 304 as a real server does, and logs every request it gets."""

from __future__ import annotations

import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from email.utils import formatdate
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    modified: float = 1_700_000_000.0

    @property
    def etag(self) -> str:
        return '"' + sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class Site:
    pages: dict[str, Page] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)  # paths (or absolute URLs) in the sitemap
    robots: str | None = "User-agent: *\nDisallow: /private/\n"
    redirects: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    sitemap_body: bytes | None = None  # overrides the generated sitemap
    log: list[list] = field(default_factory=list)  # [path, conditional, status] per request
    base: str = ""

    def html(self, path: str, title: str, text: str) -> None:
        body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p>"
        self.pages[path] = Page((body + "</body></html>").encode())

    def sitemap(self) -> bytes:
        if self.sitemap_body is not None:
            return self.sitemap_body
        urls = "".join(
            f"<url><loc>{escape(u if '://' in u else self.base + u)}</loc></url>"
            for u in self.listed
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
        ).encode()


def serve(site: Site) -> tuple[ThreadingHTTPServer, str]:
    """Start ``site`` on a free loopback port; returns the server and its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path
            conditional = "If-None-Match" in self.headers or "If-Modified-Since" in self.headers
            entry = [path, conditional, 0]  # logged on arrival; its status once answered
            site.log.append(entry)
            entry[2] = self._answer(path)

        def _answer(self, path: str) -> int:
            if path in site.slow:
                time.sleep(site.slow[path])
            if path in site.statuses:
                return self._send(site.statuses[path], b"error", "text/plain")
            if path in site.redirects:
                self.send_response(302)
                self.send_header("Location", site.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 302
            if path == "/robots.txt":
                if site.robots is None:
                    return self._send(404, b"none", "text/plain")
                return self._send(200, site.robots.encode(), "text/plain")
            if path == "/sitemap.xml":
                return self._send(200, site.sitemap(), "application/xml")
            page = site.pages.get(path)
            if page is None:
                return self._send(404, b"not found", "text/plain")
            if self.headers.get("If-None-Match") == page.etag:
                self.send_response(304)
                self.send_header("ETag", page.etag)
                self.end_headers()
                return 304
            extra = {"ETag": page.etag, "Last-Modified": formatdate(page.modified, usegmt=True)}
            return self._send(200, page.body, page.content_type, extra)

        def _send(
            self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None
        ) -> int:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                self.wfile.write(body)
            return status

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    return server, site.base
