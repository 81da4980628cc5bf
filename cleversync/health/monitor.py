"""When health checks run and how long a caller may wait for them.

``report()`` never waits on a dependency: a call that finds the cache older than
``Health__CacheDurationSeconds`` starts one refresh in the background and answers from what it
has. Only the first refresh is waited for, at most ``first_wait`` (80 ms) from its start; then
the answer shows the checks done so far and the others as Pending. A refresh that runs past
``timeout`` gets a last 50 ms (an instance frozen mid-refresh thaws with it overdue), then is
abandoned: its late result is dropped, the answer shows the check it was stuck in as failed
("no answer within N s"), and a new refresh may start. No call waits more than 80 ms in all.
Every wait goes through the injected ``wait`` and is measured on the injected ``clock``, so
tests drive the timing with a fake clock instead of real time.

At most ``max_threads`` refresh threads exist at once (abandoned ones included), so a hung
dependency cannot pile up threads; while they are all stuck no new refresh starts and the
answer says so. There is no permanent refresher: Functions instances freeze between calls.

``checks.py`` says what is checked and what each status means.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from cleversync.health.checks import (
    Check,
    HealthReport,
    Record,
    iso_utc,
    overall,
)
from cleversync.threads import bound
from cleversync.vocabulary import HealthStatus

logger = logging.getLogger(__name__)

FIRST_WAIT_SECONDS = 0.08
OVERRUN_GRACE_SECONDS = 0.05
REFRESH_TIMEOUT_SECONDS = 10.0
MAX_REFRESH_THREADS = 2

# wait(event, seconds): True when the event is set within that time (threading.Event.wait).
Wait = Callable[[threading.Event, float], bool]


class HealthProbe(Protocol):
    """The checks a HealthMonitor runs; each result is recorded as soon as it is known."""

    names: tuple[str, ...]

    def run(self, record: Record) -> None: ...

    def timed_out(self, name: str, seconds: float) -> Check: ...

    def summary(self, checks: Mapping[str, Check]) -> dict[str, Any]: ...


@dataclass(eq=False)
class _Refresh:
    started: float
    results: dict[str, Check] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False


@dataclass(frozen=True)
class _Snapshot:
    checks: dict[str, Check]
    at: float
    wall: float


@dataclass(frozen=True)
class _Overrun:
    """What an abandoned refresh had found, and the check it was stuck in."""

    results: dict[str, Check]
    check: str


class _DaemonThreads(Executor):
    """One daemon thread per task: a refresh stuck for good never blocks the process exit."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="health-check", daemon=True).start()
        return future


class HealthMonitor:
    """Answers at once from cached checks; the module docstring has the timing rules."""

    def __init__(
        self,
        probe: HealthProbe,
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
        wait: Wait | None = None,
        first_wait: float = FIRST_WAIT_SECONDS,
        timeout: float = REFRESH_TIMEOUT_SECONDS,
        max_threads: int = MAX_REFRESH_THREADS,
    ) -> None:
        self._probe = probe
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._wait: Wait = wait or threading.Event.wait
        self._executor = executor or _DaemonThreads()
        self._first_wait = first_wait
        self._timeout = timeout
        self._max_threads = max(1, max_threads)
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._current: _Refresh | None = None
        self._stuck: list[_Refresh] = []
        self._overrun: _Overrun | None = None
        self._blocked = False
        self.refreshes_started = 0
        self.refreshes_abandoned = 0

    def report(self) -> HealthReport:
        # All waiting in one call shares one budget of first_wait.
        deadline = self._clock() + self._first_wait
        with self._lock:
            current = self._current
            overdue = current if current and self._overdue(current, self._clock()) else None
        if overdue is not None:
            # An instance that was frozen mid-refresh thaws with the refresh "overdue": give
            # the thread a moment to finish before calling its dependency hung.
            grace = min(OVERRUN_GRACE_SECONDS, deadline - self._clock())
            if grace > 0:
                self._wait(overdue.done, grace)
        now = self._clock()
        with self._lock:
            self._abandon_overdue(now)
            refresh = self._begin(now) if self._needs_refresh(now) else None
            first = self._current if self._snapshot is None else None
        if refresh is not None:
            self._submit(refresh)
        if first is not None:
            now = self._clock()
            remaining = min(first.started + self._first_wait, deadline) - now
            if remaining > 0:
                self._wait(first.done, remaining)
        with self._lock:
            return self._answer(self._clock())

    def start(self) -> None:
        """Start a refresh in the background if one is due, without waiting for it."""
        with self._lock:
            refresh = self._begin(self._clock()) if self._needs_refresh(self._clock()) else None
        if refresh is not None:
            self._submit(refresh)

    # --- refresh ------------------------------------------------------------------------

    def _needs_refresh(self, now: float) -> bool:
        if self._current is not None:
            return False
        return self._snapshot is None or now - self._snapshot.at >= self._cache_seconds

    def _begin(self, now: float) -> _Refresh | None:
        if len(self._stuck) >= self._max_threads:
            self._blocked = True  # every thread we allow is stuck in a dependency
            return None
        self._blocked = False
        self._current = _Refresh(started=now)
        self.refreshes_started += 1
        return self._current

    def _submit(self, refresh: _Refresh) -> None:
        try:
            self._executor.submit(bound(self._run), refresh)
        except Exception:  # no thread to run it: answer from what we have, try next time
            logger.exception("Could not start a health check")
            with self._lock:
                if self._current is refresh:
                    self._current = None
            refresh.done.set()

    def _run(self, refresh: _Refresh) -> None:
        def record(name: str, check: Check) -> None:
            with self._lock:
                refresh.results[name] = check

        try:
            self._probe.run(record)
        except Exception:  # the probe guards each check; this is a bug, not a dependency
            logger.exception("The health check failed")
        finally:
            self._finish(refresh)

    def _finish(self, refresh: _Refresh) -> None:
        now, wall = self._clock(), self._wall_clock()
        with self._lock:
            late = refresh.abandoned
            if late:
                if refresh in self._stuck:
                    self._stuck.remove(refresh)
            else:
                missing = {
                    "status": HealthStatus.DEGRADED,
                    "error": "not checked: the health check stopped",
                }
                checks = {n: refresh.results.get(n, missing) for n in self._probe.names}
                self._snapshot = _Snapshot(checks, now, wall)
                self._overrun = None
                if self._current is refresh:
                    self._current = None
        refresh.done.set()
        if late:
            logger.info(
                "An abandoned health check finished after %.1f s; its result was dropped",
                now - refresh.started,
            )

    def _overdue(self, refresh: _Refresh, now: float) -> bool:
        return now - refresh.started >= self._timeout

    def _abandon_overdue(self, now: float) -> None:
        current = self._current
        if current is None or not self._overdue(current, now):
            return
        names = self._probe.names
        stuck_in = next((n for n in names if n not in current.results), names[-1])
        current.abandoned = True
        self._current = None
        self._stuck.append(current)
        self._overrun = _Overrun(dict(current.results), stuck_in)
        self.refreshes_abandoned += 1
        logger.warning(
            "A health check did not finish within %g s (no answer from %s); abandoned",
            self._timeout,
            stuck_in,
            extra={"HealthCheck": stuck_in},
        )

    # --- answer -------------------------------------------------------------------------

    def _answer(self, now: float) -> HealthReport:
        names = self._probe.names
        snapshot = self._snapshot
        checks: dict[str, Check] = dict(snapshot.checks) if snapshot else {}
        overrun = self._overrun
        if overrun is not None:
            checks.update(overrun.results)
            checks[overrun.check] = self._probe.timed_out(overrun.check, self._timeout)
            for name in names[names.index(overrun.check) + 1 :]:
                checks.setdefault(
                    name,
                    {
                        "status": HealthStatus.SKIPPED,
                        "reason": "not reached: an earlier check hung",
                    },
                )
        if snapshot is None:
            if self._current is not None:
                checks.update(self._current.results)
            for name in names:
                checks.setdefault(name, {"status": HealthStatus.PENDING})
        checks = {name: copy.deepcopy(checks[name]) for name in names if name in checks}
        status = overall(checks)
        body: dict[str, Any] = {
            "status": status,
            "checkedAt": iso_utc(snapshot.wall) if snapshot else None,
            "ageSeconds": round(now - snapshot.at, 1) if snapshot else None,
            **self._probe.summary(checks),
            "refresh": self._refresh_state(),
            "checks": checks,
        }
        return HealthReport(status, body)

    def _refresh_state(self) -> dict[str, Any]:
        if self._blocked and self._current is None:
            return {
                "state": "Blocked",
                "message": f"{len(self._stuck)} earlier health check(s) are still waiting on a "
                "dependency; no new check starts until one returns",
            }
        state: dict[str, Any] = {"state": "Running" if self._current is not None else "Idle"}
        if self._overrun is not None:
            state["abandoned"] = {
                "check": self._overrun.check,
                "message": f"the last health check did not finish within {self._timeout:g} s "
                f"(no answer from {self._overrun.check}) and was abandoned",
            }
        return state
