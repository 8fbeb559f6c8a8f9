"""HTTP for web sources: one request at a time, bounded, polite, and on one origin only.

Invariants:

- **One origin.** A request never follows a redirect to another origin (scheme, host and
  port): that URL fails with ``off_host_redirect``. At most :data:`MAX_REDIRECTS` hops on the
  origin, each checked by ``allowed`` (robots.txt) before it is requested.
- **Bounded.** A body is streamed and never read past its limit (``too_large``, decided from
  ``Content-Length`` when the server declares it, else while reading), and one request takes at
  most about twice the timeout however slowly a server drips its bytes. A page whose type is not
  accepted fails with ``not_html`` before its body is read.
- **Polite.** Two requests are at least ``delay`` seconds apart.
- **No surprises.** Every failure is a :class:`~ragwall.errors.WebPageError` with a reason;
  timeouts, connection errors, 429 and 5xx answers are ``transient``. Nothing else escapes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from urllib.parse import urljoin, urlsplit

import httpx

from ragwall.errors import WebPageError

MAX_REDIRECTS = 5
ROBOTS_AGENT = "Ragwall"
USER_AGENT = f"{ROBOTS_AGENT}/{version('ragwall')} (retrieval index; honours robots.txt)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Response:
    """A page as read: ``status`` 200 with its body, or 304 (unchanged, no body)."""

    url: str  # where it was read, after same-origin redirects
    status: int
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL, the port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def media_type(header: str) -> str:
    """``text/html`` of ``text/html; charset=utf-8``."""
    return header.split(";", 1)[0].strip().lower()


class WebClient:
    """Reads URLs of one origin (``base``'s) under the module's invariants."""

    def __init__(
        self,
        base: str,
        *,
        timeout: float,
        delay: float,
        cancel: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Parameters:
        base: any URL of the origin the client may read.
        timeout: seconds for connecting, and for each read of the body.
        delay: seconds between two requests (raise it with :attr:`delay` later: robots.txt).
        cancel: once set, a wait between requests ends at once (the caller checks it).
        transport: httpx's transport (the default one, unless a caller needs another).
        """
        self.origin = origin(base)
        self.timeout = timeout
        self.delay = delay
        self.requests = 0  # HTTP requests made, redirects and conditional ones included
        self.allowed: Callable[[str], bool] = lambda _url: True
        self._cancel = cancel or threading.Event()
        self._last = 0.0
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        url: str,
        *,
        limit: int,
        types: tuple[str, ...] = (),
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> Response:
        """GET ``url`` (conditional when ``etag`` or ``last_modified`` is given), following
        same-origin redirects. ``types``: the media types accepted (empty: any)."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            if origin(current) != self.origin:
                raise WebPageError(
                    f"{url} redirects to {current}, on another host; only "
                    f"{self.origin[0]}://{self.origin[1]}:{self.origin[2]} is read",
                    "off_host_redirect",
                )
            if current != url and not self.allowed(current):
                raise WebPageError(
                    f"{url} redirects to {current}, which robots.txt disallows", "robots_disallowed"
                )
            response = self._one(current, headers, limit, types)
            if isinstance(response, Response):
                return response
            current = response  # a redirect's target
        raise WebPageError(f"{url} redirects more than {MAX_REDIRECTS} times", "too_many_redirects")

    # -- one request -----------------------------------------------------------------------
    def _one(
        self, url: str, headers: dict[str, str], limit: int, types: tuple[str, ...]
    ) -> Response | str:
        self._pause()
        self.requests += 1
        deadline = time.monotonic() + self.timeout
        try:
            with self._client.stream("GET", url, headers=headers) as r:
                if r.status_code in _REDIRECTS:
                    location = r.headers.get("location")
                    if not location:
                        raise WebPageError(
                            f"{url}: HTTP {r.status_code} without a Location", "http_error"
                        )
                    return urljoin(url, location).split("#", 1)[0]
                _check_status(url, r.status_code)
                etag, modified = r.headers.get("etag"), r.headers.get("last-modified")
                if r.status_code == 304:
                    return Response(url, 304, etag=etag, last_modified=modified)
                kind = media_type(r.headers.get("content-type", ""))
                if types and kind not in types:
                    raise WebPageError(
                        f"{url} is {kind or 'of no declared type'}, not HTML "
                        f"({', '.join(types)}); it was not read",
                        "not_html",
                    )
                body = _read(r, url, limit, deadline)
                return Response(url, 200, body, kind, etag, modified)
        except httpx.TimeoutException as exc:
            raise WebPageError(
                f"{url}: no answer within {self.timeout:g} s ({type(exc).__name__})",
                "timeout",
                transient=True,
            ) from None
        except httpx.HTTPError as exc:
            raise WebPageError(
                f"{url}: {type(exc).__name__}: {exc}", "connection_error", transient=True
            ) from None

    def _pause(self) -> None:
        wait = self._last + self.delay - time.monotonic()
        if wait > 0:
            self._cancel.wait(wait)
        self._last = time.monotonic()


def _check_status(url: str, status: int) -> None:
    if status in (200, 304):
        return
    transient = status == 429 or status >= 500
    raise WebPageError(f"{url}: HTTP {status}", "http_error", transient=transient)


def _read(r: httpx.Response, url: str, limit: int, deadline: float) -> bytes:
    declared = r.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WebPageError(
            f"{url} has {declared} bytes, over the limit of {limit} (RAGWALL_WEB_MAX_PAGE_BYTES)",
            "too_large",
        )
    body = bytearray()
    for block in r.iter_bytes():
        body += block
        if len(body) > limit:
            raise WebPageError(
                f"{url} is over the limit of {limit} bytes (RAGWALL_WEB_MAX_PAGE_BYTES)",
                "too_large",
            )
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the body took too long")
    return bytes(body)
