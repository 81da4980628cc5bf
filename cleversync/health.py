"""Health: checks served from a cache, refreshed once at a time in the background.

Statuses. Each check reports ``Healthy``, ``Degraded`` or ``Unhealthy`` (or ``Pending``: not
finished yet, ``Skipped``: not run, ``Unknown``: nothing known yet); the overall status is the
worst of them, with ``Pending`` counting as Degraded and ``Skipped``/``Unknown`` as Healthy:

- Unhealthy: the configuration is invalid; SessionDb cannot be reached (or did not answer in
  time, or its schema is not current); every registered district fails to authenticate; the
  secret store is unreachable with nothing cached to serve from.
- Degraded: the secret store is unreachable while cached secrets still serve; some districts
  fail to authenticate (or only serve a cached token whose refresh failed); a check is still
  pending (a first call that did not see the first check finish in time).

Clever is never called per probe: districts are judged by the token cache's own state
(``TokenProvider.states()``). A district this instance has not used yet is ``Unknown`` when
it has credentials in the secret store and ``Unhealthy`` when it has none.

Timing. ``report()`` never waits on a dependency: a call that finds the cache older than
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

Two views. ``HealthReport.body`` is the detailed report (district names, errors, secret
names): it is served behind a function key. ``HealthReport.public_body()`` is what an
anonymous caller sees: the overall status, ``checkedAt`` and each check's status, nothing
that names a district, a secret, a path or a host. ``starting_report()`` is the answer while
the process is still building its clients: Degraded, every check Pending, so a fresh instance
answers 200 at once instead of flapping to 503 (or making the probe wait) while it starts.

The module has two halves, kept together so the status rules and the timing rules read in one
place: ``HealthMonitor`` (when checks run, how long a caller may wait) and ``ServicesProbe``
(what is checked, and what each outcome means).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from cleversync.errors import CleverSyncError, ConfigurationError

if TYPE_CHECKING:
    from cleversync.clever.tokens import TokenState
    from cleversync.registry import DistrictRecord
    from cleversync.services import Services

logger = logging.getLogger(__name__)

HEALTHY, DEGRADED, UNHEALTHY = "Healthy", "Degraded", "Unhealthy"
PENDING, SKIPPED, UNKNOWN = "Pending", "Skipped", "Unknown"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
_COUNTS_AS = {
    HEALTHY: HEALTHY,
    UNKNOWN: HEALTHY,
    SKIPPED: HEALTHY,
    PENDING: DEGRADED,
    DEGRADED: DEGRADED,
    UNHEALTHY: UNHEALTHY,
}
FIRST_WAIT_SECONDS = 0.08
OVERRUN_GRACE_SECONDS = 0.05
REFRESH_TIMEOUT_SECONDS = 10.0
MAX_REFRESH_THREADS = 2

Check = dict[str, Any]
Record = Callable[[str, Check], None]
# wait(event, seconds): True when the event is set within that time (threading.Event.wait).
Wait = Callable[[threading.Event, float], bool]


class HealthProbe(Protocol):
    """The checks a HealthMonitor runs; each result is recorded as soon as it is known."""

    names: tuple[str, ...]

    def run(self, record: Record) -> None: ...

    def timed_out(self, name: str, seconds: float) -> Check: ...

    def summary(self, checks: Mapping[str, Check]) -> dict[str, Any]: ...


def overall(checks: Mapping[str, Check]) -> str:
    """The worst check status (Pending counts as Degraded; nothing known is Degraded)."""
    if not checks:
        return DEGRADED
    statuses = (_COUNTS_AS.get(check.get("status", ""), DEGRADED) for check in checks.values())
    return max(statuses, key=_RANK.__getitem__)


@dataclass(frozen=True)
class HealthReport:
    status: str
    body: dict[str, Any]

    @property
    def http_status(self) -> int:
        return 503 if self.status == UNHEALTHY else 200

    def public_body(self) -> dict[str, Any]:
        """The anonymous view: statuses and when they were checked, nothing else.

        Built by picking fields, not by removing them, so a detail added to a check later
        cannot reach an anonymous caller by accident.
        """
        checks = self.body.get("checks") or {}
        return {
            "status": self.status,
            "checkedAt": self.body.get("checkedAt"),
            "checks": {name: {"status": check.get("status")} for name, check in checks.items()},
        }


def starting_report(names: tuple[str, ...]) -> HealthReport:
    """The answer while the process is still building its clients: nothing is known yet.

    Degraded (200), like a first check that has not finished: a starting instance is not
    known to be broken, and a 503 here would make every cold start look like an outage.
    """
    checks: dict[str, Check] = {name: {"status": PENDING} for name in names}
    body: dict[str, Any] = {
        "status": DEGRADED,
        "checkedAt": None,
        "ageSeconds": None,
        "lastSuccessfulAuthentication": None,
        "lastError": None,
        "refresh": {
            "state": "Starting",
            "message": "CleverSync is still starting; the checks run once its clients are built",
        },
        "checks": checks,
    }
    return HealthReport(DEGRADED, body)


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
    """Answers at once from cached checks; see the module docstring for the timing rules."""

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
            self._executor.submit(self._run, refresh)
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
                missing = {"status": DEGRADED, "error": "not checked: the health check stopped"}
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
                    name, {"status": SKIPPED, "reason": "not reached: an earlier check hung"}
                )
        if snapshot is None:
            if self._current is not None:
                checks.update(self._current.results)
            for name in names:
                checks.setdefault(name, {"status": PENDING})
        checks = {name: copy.deepcopy(checks[name]) for name in names if name in checks}
        status = overall(checks)
        body: dict[str, Any] = {
            "status": status,
            "checkedAt": _iso(snapshot.wall) if snapshot else None,
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


class ServicesProbe:
    """What is checked, against the real Services (or a configuration error)."""

    names = ("configuration", "secretStore", "sessionDb", "cleverAuth")

    def __init__(
        self,
        services: Services | None,
        config_error: ConfigurationError | None,
        *,
        redact: Callable[[str], str],
    ) -> None:
        self._services = services
        self._config_error = config_error
        self._redact = redact

    def run(self, record: Record) -> None:
        services = self._services
        if services is None:
            error = self._config_error or ConfigurationError("no services")
            check: Check = {"status": UNHEALTHY, "error": self._redact(str(error))}
            if error.setting:
                check["setting"] = error.setting
            record("configuration", check)
            for name in self.names[1:]:
                record(name, {"status": SKIPPED, "reason": "the configuration is invalid"})
            return
        settings = services.settings
        unknown = list(settings.unknown_variables)
        record(
            "configuration",
            {"status": HEALTHY, "store": _store_kind(services), "unknownSettings": unknown},
        )
        record("secretStore", self._secret_store(services))
        database, districts = self._session_db(services)
        record("sessionDb", database)
        try:
            clever = self._clever_auth(services, districts)
        except Exception as exc:
            clever = {"status": DEGRADED, "error": self._message(exc)}
        record("cleverAuth", clever)

    def timed_out(self, name: str, seconds: float) -> Check:
        error = f"no answer within {seconds:g} s"
        if name == "sessionDb":
            return {"status": UNHEALTHY, "reachable": False, "error": error}
        if name == "secretStore" and self._services is not None:
            return _store_unreachable(self._services, error)
        return {"status": DEGRADED, "error": error}

    def summary(self, checks: Mapping[str, Check]) -> dict[str, Any]:
        clever = checks.get("cleverAuth", {})
        return {
            "lastSuccessfulAuthentication": clever.get("lastSuccessfulAuthentication"),
            "lastError": clever.get("lastError"),
        }

    # --- checks -------------------------------------------------------------------------

    def _secret_store(self, services: Services) -> Check:
        store = services.secret_store
        try:
            store.check()
        except Exception as exc:
            return _store_unreachable(services, self._message(exc))
        return {"status": HEALTHY, "store": _store_kind(services), "reachable": True}

    def _session_db(self, services: Services) -> tuple[Check, list[DistrictRecord] | None]:
        try:
            registry = services.registry  # connects, and checks the schema once
            districts = registry.list_districts()
            schools = len(registry.list_schools(active_only=True))
        except Exception as exc:
            return {"status": UNHEALTHY, "reachable": False, "error": self._message(exc)}, None
        check = {"status": HEALTHY, "reachable": True, "districts": len(districts)}
        return {**check, "activeSchools": schools}, districts

    def _clever_auth(self, services: Services, districts: list[DistrictRecord] | None) -> Check:
        from cleversync.clever.tokens import TokenState

        states = services.token_provider.states()  # the cache's state: no call to Clever
        if districts is None and not states:
            return {"status": SKIPPED, "reason": "the districts could not be read"}
        known: dict[int, DistrictRecord | None] = (
            {d.district_id: d for d in districts}
            if districts is not None
            else dict.fromkeys(sorted(states))
        )
        rows = [
            self._district(services, i, d, states.get(i) or TokenState(), len(known))
            for i, d in known.items()
        ]
        # ISO-8601 UTC strings of one format sort as the times they stand for.
        latest = max(
            (r for r in rows if r["lastError"]), key=lambda r: r["lastErrorAt"] or "", default=None
        )
        return {
            "status": districts_status([r["status"] for r in rows]),
            "lastSuccessfulAuthentication": max(
                (r["lastSuccessAt"] for r in rows if r["lastSuccessAt"]), default=None
            ),
            "lastError": (
                {k: latest[k] for k in ("districtId", "lastErrorAt", "lastError")}
                if latest
                else None
            ),
            "districts": rows,
        }

    def _district(
        self,
        services: Services,
        district_id: int,
        record: DistrictRecord | None,
        state: TokenState,
        count: int,
    ) -> Check:
        error = self._redact(state.last_error) if state.last_error else None
        expires = state.expires_in_seconds if state.has_token else None
        row: Check = {
            "districtId": district_id,
            "name": record.name if record else None,
            "status": district_status(state),
            "hasToken": state.has_token,
            "source": state.source,
            "lastSuccessAt": _iso(state.last_success_at),
            "lastError": error,
            "lastErrorAt": _iso(state.last_error_at) if error else None,
            "expiresInSeconds": round(expires) if expires is not None else None,
        }
        if row["status"] == UNKNOWN and record is not None:
            row.update(self._credentials(services, record, count))
        return row

    def _credentials(self, services: Services, district: DistrictRecord, count: int) -> Check:
        """Not used on this instance yet: are there credentials? (the secret store, not Clever)"""
        from cleversync.secrets import names

        own = (names.client_id(district.prefix), names.client_secret(district.prefix))
        shared = (names.client_id(None), names.client_secret(None))
        token = names.access_token(district.prefix)
        candidates = [(token,), *([(names.access_token(None),)] * (count == 1)), own, shared]
        store = services.secret_store
        try:
            found = next((c for c in candidates if all(store.get(n) for n in c)), None)
        except Exception as exc:
            return {"credentials": None, "error": self._message(exc)}
        if found is None:
            return {
                "status": UNHEALTHY,
                "credentials": None,
                "error": f"no Clever credentials: set {own[0]} and {own[1]}, or the global "
                f"{shared[0]} and {shared[1]}, or {token}",
            }
        return {"credentials": " and ".join(found)}

    def _message(self, exc: BaseException) -> str:
        if isinstance(exc, CleverSyncError):
            return self._redact(str(exc))
        if type(exc).__module__.startswith("sqlalchemy"):
            from cleversync.db.retry import translate

            translated = translate(exc, "SessionDb")
            if translated is not None:
                return self._redact(str(translated))
        logger.warning("Unexpected error in a health check", exc_info=exc)
        return f"unexpected {type(exc).__name__} (see the logs)"


def district_status(state: TokenState) -> str:
    """One district from its token cache state (Unknown: not used on this instance yet)."""
    if state.has_token:
        return DEGRADED if state.last_error else HEALTHY  # a failed refresh; the token serves
    if state.last_error:
        return UNHEALTHY
    return HEALTHY if state.last_success_at is not None else UNKNOWN  # aged out unused


def districts_status(statuses: list[str]) -> str:
    """Unhealthy when no district can authenticate, Degraded when some cannot."""
    if statuses and all(s == UNHEALTHY for s in statuses):
        return UNHEALTHY
    return DEGRADED if any(s in (UNHEALTHY, DEGRADED) for s in statuses) else HEALTHY


def _store_unreachable(services: Services, error: str) -> Check:
    store = services.secret_store
    cached = store.has_cached_values()
    return {
        "status": DEGRADED if cached else UNHEALTHY,
        "store": _store_kind(services),
        "reachable": False,
        "cachedValuesServe": cached,
        "error": error,
    }


def _store_kind(services: Services) -> str:
    # A health body leaves the process: say which kind of store, not the vault's URL or a path.
    return "Key Vault" if services.settings.uses_key_vault else "local file"


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
