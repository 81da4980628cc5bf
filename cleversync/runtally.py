"""What a school's run waited for: its retries and rate-limit waits, per entity.

A school's run opens a ``RunTally`` (``tally``); the layers that retry or wait count into
the tally of the run they work for, found through a context variable: the Clever client
(every retried request, every wait for Clever's rate limit: the pacer's and a 429's), and
the database retries (SessionDb and the school database). A count names its entity when the
request is for one entity's list (``Call.entity``) or happens inside that entity's pass
(``entity``); anything else (the event baseline, the events feed, the district check) is the
school's and counts on the run's first entity row. The run writes each entity's counts on
its SyncHistory row when it closes it.

Threads the app starts (``cleversync.threads.bound``/``start_thread``) carry the tally and
the entity of the thread that handed the work over, so a page fetched in another thread
counts for the right run. Counting is an attribute update under a lock, only on a retry or
a wait: nothing per request.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Waits:
    """One entity's retries and rate-limit waits."""

    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0


class RunTally:
    """One school run's counts; safe to count into from many threads."""

    def __init__(self, default_entity: str) -> None:
        self.default_entity = default_entity
        self._lock = threading.Lock()
        self._entities: dict[str, Waits] = {}

    def _for(self, entity: str | None) -> Waits:
        name = entity or self.default_entity
        found = self._entities.get(name)
        if found is None:
            found = self._entities[name] = Waits()
        return found

    def retry(self, entity: str | None) -> None:
        with self._lock:
            self._for(entity).retries += 1

    def rate_limit_wait(self, entity: str | None, seconds: float, waits: int = 1) -> None:
        with self._lock:
            counts = self._for(entity)
            counts.rate_limit_waits += waits
            counts.rate_limit_wait_seconds += max(0.0, seconds)

    def of(self, entity: str) -> Waits:
        """A copy of ``entity``'s counts (zeros when it had none)."""
        with self._lock:
            found = self._entities.get(entity) or Waits()
            return Waits(found.retries, found.rate_limit_waits, found.rate_limit_wait_seconds)


_tally: contextvars.ContextVar[RunTally | None] = contextvars.ContextVar(
    "cleversync_run_tally", default=None
)
_entity: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cleversync_run_entity", default=None
)


@contextlib.contextmanager
def tally(run: RunTally | None) -> Iterator[RunTally | None]:
    """Count what happens inside the block (in this thread and the threads it hands work
    to through ``cleversync.threads``) into ``run``."""
    token = _tally.set(run)
    try:
        yield run
    finally:
        _tally.reset(token)


@contextlib.contextmanager
def entity(name: str | None) -> Iterator[None]:
    """Count what happens inside the block for entity ``name`` (one entity's pass)."""
    token = _entity.set(name)
    try:
        yield
    finally:
        _entity.reset(token)


def current() -> tuple[RunTally | None, str | None]:
    """The tally and entity counted into now (for handing over to another thread)."""
    return _tally.get(), _entity.get()


def count_retry(entity_name: str | None = None) -> None:
    """A retried request or transaction (no-op outside a school's run)."""
    run = _tally.get()
    if run is not None:
        run.retry(entity_name or _entity.get())


def count_rate_limit_wait(
    seconds: float, entity_name: str | None = None, *, waits: int = 1
) -> None:
    """``waits`` waits for Clever's rate limit, ``seconds`` in all (no-op outside a run)."""
    run = _tally.get()
    if run is not None:
        run.rate_limit_wait(entity_name or _entity.get(), seconds, waits)
