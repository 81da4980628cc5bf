"""Small fakes for tests: an in-memory secret store, clocks, executors, sleep recorders."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from cleversync.errors import SecretStoreUnavailableError
from cleversync.redaction import Redactor
from cleversync.secrets.base import SecretStore


class MemorySecretStore(SecretStore):
    """A secret store in a dict; ``down`` makes it unreachable."""

    description = "in-memory secret store"

    def __init__(
        self,
        values: dict[str, str] | None = None,
        *,
        redactor: Redactor | None = None,
        cache_seconds: float = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"clock": clock} if clock else {}
        super().__init__(cache_seconds=cache_seconds, redactor=redactor or Redactor(), **kwargs)
        self.values = dict(values or {})
        self.down = False
        self.reads: list[str] = []

    def check(self) -> None:
        if self.down:
            raise SecretStoreUnavailableError("the in-memory store is down")

    def _fetch(self, name: str) -> str | None:
        self.check()
        self.reads.append(name)
        return self.values.get(name)

    def _store(self, name: str, value: str) -> None:
        self.check()
        self.values[name] = value


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
