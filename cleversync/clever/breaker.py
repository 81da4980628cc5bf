"""Whether a district's Clever is down, for the rest of one run (a fast fail, not a retry)."""

from __future__ import annotations

import threading

from cleversync.errors import CleverUnreachableError


class DistrictBreaker:
    """Whether this run already found the district's Clever down (thread-safe).

    Tripped when a request failed through every retry with a connection error, a timeout
    or a 5xx, and one more request to a district-wide endpoint fails the same way; from then
    on every request of the run fails at once, untried. One per run and district
    (``RunBreakers``): the next run tries again.
    """

    def __init__(self) -> None:
        self._error: str | None = None
        self._lock = threading.Lock()

    @property
    def error(self) -> str | None:
        return self._error

    def trip(self, error: str) -> None:
        with self._lock:
            if self._error is None:
                self._error = error

    def check(self) -> None:
        error = self._error
        if error is not None:
            raise CleverUnreachableError(f"Clever unreachable: {error}; not tried")


class RunBreakers:
    """One ``DistrictBreaker`` per district, for one run's schools (thread-safe)."""

    def __init__(self) -> None:
        self._breakers: dict[int, DistrictBreaker] = {}
        self._lock = threading.Lock()

    def district(self, district_id: int) -> DistrictBreaker:
        with self._lock:
            return self._breakers.setdefault(district_id, DistrictBreaker())
