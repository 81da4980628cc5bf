"""Pacing from Clever's ``X-Ratelimit-Remaining``/``X-Ratelimit-Reset`` headers.

Clever allows a fixed number of requests per minute per token, and every school of a
district shares that token, so one pacer per token is shared by every thread using it.
When the window's allowance is used up, callers wait for its reset instead of collecting
429s. Requests in flight are counted down locally, so concurrent threads do not all pass on
the last request of a window.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

LONG_WAIT_SECONDS = 5.0  # waits this long or longer are logged as warnings

# The reset is the server's clock; never wait longer than a window plus some skew.
MAX_WAIT_SECONDS = 75.0
# Requests kept in hand: another instance of the app may share the district's token.
RESERVE = 1


class RateLimitPacer:
    """One per token. ``acquire`` before a request, ``observe`` the response's headers."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        reserve: int = RESERVE,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._max_wait = min(max_wait, MAX_WAIT_SECONDS)  # CleverSync__Retry__MaxWaitSeconds
        self._reserve = reserve
        self._remaining: int | None = None
        self._reset: float | None = None
        self._lock = threading.Lock()

    def acquire(self, *, wait: Callable[[float], None] | None = None) -> tuple[int, float]:
        """Return when a request may go; ``wait(seconds)`` does the waiting (the caller's
        own, which may renew a lease or stop the run; the pacer's ``sleep`` by default).
        One call waits at most ``max_wait`` in all; then the request goes, and a 429 is
        the retry's business. Returns the waits made and their seconds (0, 0.0: none)."""
        waited = 0.0
        waits = 0
        while True:
            with self._lock:
                now = self._clock()
                if self._reset is not None and now >= self._reset:
                    self._remaining = self._reset = None  # a new window
                if self._remaining is None or self._remaining > self._reserve:
                    if self._remaining is not None:
                        self._remaining -= 1
                    return waits, waited
                seconds = min(max(self._reset - now, 0.0) + 0.05, self._max_wait - waited)  # type: ignore[operator]
                if seconds <= 0:
                    return waits, waited
            waited += seconds
            waits += 1
            # A long wait is told at the CLI's default verbosity (warnings): a run that goes
            # quiet for half a minute otherwise looks hung.
            logger.log(
                logging.WARNING if seconds >= LONG_WAIT_SECONDS else logging.INFO,
                "Clever rate limit: waiting %.1f s for the next window instead of being refused "
                "(this district's requests for the current window are used up)",
                seconds,
                extra={"WaitSeconds": round(seconds, 2)},
            )
            (wait or self._sleep)(seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        if remaining is None or reset is None:
            return
        with self._lock:
            if self._reset is None or reset > self._reset:
                self._reset, self._remaining = reset, int(remaining)
            elif reset == self._reset:
                current = self._remaining if self._remaining is not None else int(remaining)
                self._remaining = min(current, int(remaining))

    def seconds_until_reset(self, headers: Mapping[str, str]) -> float | None:
        """For a 429: how long until the window named in its headers resets."""
        reset = _number(headers.get("x-ratelimit-reset"))
        if reset is None:
            return None
        return min(max(reset - self._clock(), 0.0) + 0.05, self._max_wait)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        # Several buckets may come as repeated headers joined by commas: the tightest wins.
        number = min(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None  # "inf" or "1e400" is no reset time
