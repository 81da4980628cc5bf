"""Clever's per-token fixed-window rate limit and its ``X-Ratelimit-*`` headers."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateState:
    """The bucket after one request: whether it was allowed, and the header values."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # Unix seconds at which the window ends

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("X-Ratelimit-Bucket", "bearer"),
            ("X-Ratelimit-Limit", str(self.limit)),
            ("X-Ratelimit-Remaining", str(self.remaining)),
            ("X-Ratelimit-Reset", str(self.reset)),
        ]


class RateLimiter:
    """Fixed windows per token, each starting at the token's first request after the last.

    The recordings show one reset time shared by every request of a minute, counted from
    the first request, not from the top of the clock's minute.
    """

    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float]) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("rate limit and window must be positive")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window end, count)

    def hit(self, key: str) -> RateState:
        """Count one request against ``key``'s bucket."""
        now = self._clock()
        with self._lock:
            end, count = self._windows.get(key, (0.0, 0))
            if now >= end:
                if len(self._windows) > 10_000:  # keep memory bounded under junk tokens
                    self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
                end, count = now + self.window_seconds, 0
            count += 1
            self._windows[key] = (end, count)
        return RateState(
            count <= self.limit, self.limit, max(0, self.limit - count), math.ceil(end)
        )

    def exhausted(self, key: str) -> RateState:
        """The state a forced 429 reports: nothing left until the current window ends."""
        now = self._clock()
        with self._lock:
            end, _ = self._windows.get(key, (0.0, 0))
        if now >= end:
            end = now + self.window_seconds
        return RateState(False, self.limit, 0, math.ceil(end))
