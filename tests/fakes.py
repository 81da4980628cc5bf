"""Small fakes for tests: an in-memory secret store, clocks, executors, sleep recorders."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from cleversync.redaction import Redactor
from cleversync.secrets.memory import MemorySecretStore as _ProductMemoryStore


class MemorySecretStore(_ProductMemoryStore):
    """The product's in-memory store, with its own redactor by default (tests stay apart)."""

    def __init__(
        self,
        values: dict[str, str] | None = None,
        *,
        redactor: Redactor | None = None,
        cache_seconds: float = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            values, redactor=redactor or Redactor(), cache_seconds=cache_seconds, clock=clock
        )


class FakeClock:
    """A clock tests move by hand; ``sleep`` advances it instead of waiting."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InlineExecutor(Executor):
    """Runs submitted work at once, in the caller's thread ("background" made deterministic)."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class QueuedExecutor(Executor):
    """Holds submitted work until the test runs it with ``run_all``."""

    def __init__(self) -> None:
        self.queue: list[Callable[[], Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.queue.append(lambda: fn(*args, **kwargs))
        return Future()

    def run_all(self) -> None:
        queue, self.queue = self.queue, []
        for work in queue:
            work()
