"""Budgets per key: at most ``rpm`` calls in any 60 s and ``daily_requests`` in any 24 h.

Invariants:

- **Per server process.** The windows live in this process's memory (the ``limits`` library's
  moving window over ``MemoryStorage``): a server run as N processes allows N times a budget, and
  a restart starts every window afresh. The README says so.
- **A call is charged once, after it authenticated and passed its scope check**, so 401 and 403
  never count. The front doors call :meth:`Budgets.charge` at that point (the routes' scope
  dependency, the guard for ``/mcp``).
- **All or nothing.** A call is charged to both windows or to neither: one refused by the daily
  window does not spend a minute slot, and a refused call (429) spends nothing, so a client
  retrying too fast does not push its own window further out.
- **A token spends its parent key's budget**: the windows are keyed by the key id, which a
  token's principal carries. Identity-provider subjects each get ``RAGWALL_OIDC_RPM`` and
  ``RAGWALL_OIDC_DAILY_REQUESTS``.
- A changed budget starts fresh windows at the key's next call (the windows are keyed by their
  quota too).

The numbers are reported in the IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-
headers): ``RateLimit-Policy: "minute";q=60;w=60, "day";q=5000;w=86400`` and
``RateLimit: "minute";r=59;t=60, "day";r=4999;t=86400`` (``r``: calls left, ``t``: seconds until
the oldest call in the window leaves it).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.storage import memory as _memory_storage
from limits.strategies import MovingWindowRateLimiter

from ragwall.errors import RateLimited
from ragwall.service.keys import Budget, Principal


@dataclass(frozen=True)
class Window:
    """One policy's reading: its name, quota and length, calls left, seconds to the next slot."""

    name: str
    quota: int
    window_s: int
    remaining: int
    reset_s: int


@dataclass(frozen=True)
class BudgetState:
    """A key's windows after (or without) a call."""

    windows: tuple[Window, ...]

    @property
    def retry_after_s(self) -> int:
        """Seconds until every spent window has a slot again (at least 1)."""
        spent = [w.reset_s for w in self.windows if w.remaining == 0]
        return max([1, *spent])

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-Policy`` and ``RateLimit`` fields."""
        return {
            "RateLimit-Policy": ", ".join(
                f'"{w.name}";q={w.quota};w={w.window_s}' for w in self.windows
            ),
            "RateLimit": ", ".join(
                f'"{w.name}";r={w.remaining};t={w.reset_s}' for w in self.windows
            ),
        }


def _now() -> float:
    """The limiter's clock: the storage's own, so "now" and its reset times always agree."""
    return _memory_storage.time.time()


class Budgets:
    """The moving windows of every key with a budget, in this process.

    Parameters:
        on_refused: called with the key id of each call refused for a spent budget (metrics).
    """

    def __init__(self, on_refused: Callable[[str], None] | None = None) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()
        self._on_refused = on_refused

    def charge(self, who: Principal) -> dict[str, str] | None:
        """Charge one call to ``who``'s key; the response's RateLimit fields after the call,
        ``None`` for a key without a budget. Raises :class:`RateLimited` (charging nothing; its
        ``headers`` add ``Retry-After``) when a window is spent."""
        items = _items(who.budget)
        if not items:
            return None
        with self._lock:
            admitted = all(self._limiter.test(item, who.key_id) for _, item in items)
            if admitted:
                for _, item in items:
                    self._limiter.hit(item, who.key_id)
            state = self._state(who.key_id, items)
        if not admitted:
            if self._on_refused is not None:
                self._on_refused(who.key_id)
            spent = [w.name for w in state.windows if w.remaining == 0]
            raise RateLimited(
                f"key {who.key_id} spent its budget for this {' and '.join(spent)} "
                f"({_describe(who.budget)}); retry in {state.retry_after_s} s, or ask an admin "
                "for a larger budget (`ragwall keys set`)",
                state.retry_after_s,
                {**state.headers(), "Retry-After": str(state.retry_after_s)},
            )
        return state.headers()

    def peek(self, who: Principal) -> dict[str, str] | None:
        """``who``'s RateLimit fields without charging a call (a response that did not count:
        a 403, an unknown route)."""
        items = _items(who.budget)
        if not items:
            return None
        with self._lock:
            return self._state(who.key_id, items).headers()

    def _state(self, key_id: str, items: list[tuple[str, RateLimitItem]]) -> BudgetState:
        now = _now()
        windows = []
        for name, item in items:
            stats = self._limiter.get_window_stats(item, key_id)
            wait = stats.reset_time - now if stats.reset_time > now else item.get_expiry()
            windows.append(
                Window(name, item.amount, item.get_expiry(), max(0, stats.remaining),
                       max(0, math.ceil(wait)))
            )  # fmt: skip
        return BudgetState(tuple(windows))


def _items(budget: Budget) -> list[tuple[str, RateLimitItem]]:
    items: list[tuple[str, RateLimitItem]] = []
    if budget.rpm is not None:
        items.append(("minute", RateLimitItemPerMinute(budget.rpm)))
    if budget.daily_requests is not None:
        items.append(("day", RateLimitItemPerDay(budget.daily_requests)))
    return items


def _describe(budget: Budget) -> str:
    parts = []
    if budget.rpm is not None:
        parts.append(f"{budget.rpm} calls a minute")
    if budget.daily_requests is not None:
        parts.append(f"{budget.daily_requests} a day")
    return ", ".join(parts)
