"""Health: the status rules, the cache, the first-call wait, time-boxed refreshes, the checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest

from cleversync.clever.tokens import TokenState
from cleversync.errors import ConfigurationError, SecretStoreUnavailableError
from cleversync.health.checks import (
    ProbeTargets,
    ServicesProbe,
    district_status,
    districts_status,
    overall,
    starting_report,
)
from cleversync.health.monitor import HealthMonitor
from cleversync.sandbox import Sandbox
from cleversync.secrets import names
from cleversync.services import Services
from cleversync.settings import Settings
from cleversync.vocabulary import HealthStatus
from tests.fakes import FakeClock, InlineExecutor, MemorySecretStore, QueuedExecutor
from tests.world import World, make_world


class ScriptedProbe:
    """Two checks; ``gate`` (if set) holds the run before ``block_on``; ``blocked`` tells
    that the run has reached it."""

    names = ("first", "second")

    def __init__(self) -> None:
        self.results = {
            "first": {"status": HealthStatus.HEALTHY},
            "second": {"status": HealthStatus.HEALTHY},
        }
        self.block_on: str | None = None
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.runs = 0

    def run(self, record: Callable[[str, dict[str, Any]], None]) -> None:
        self.runs += 1
        for name in self.names:
            if name == self.block_on:
                self.blocked.set()
                self.gate.wait(10)
            record(name, dict(self.results[name]))

    def timed_out(self, name: str, seconds: float) -> dict[str, Any]:
        return {"status": HealthStatus.UNHEALTHY, "error": f"no answer within {seconds:g} s"}

    def summary(self, checks: Any) -> dict[str, Any]:
        return {}


class CountingThreads(Executor):
    """Real daemon threads, counted."""

    def __init__(self) -> None:
        self.started = 0
        self.threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.started += 1
        thread = threading.Thread(target=fn, args=args, kwargs=kwargs, daemon=True)
        self.threads.append(thread)
        thread.start()
        return Future()


class FakeWaits:
    """The monitor's waits on a FakeClock: a wait its event does not end moves the clock on
    by the whole timeout, at once. ``first`` runs before each wait (to let a check thread
    reach a known point); ``instead`` (if set) replaces the wait (a thread that finishes
    while the caller waits)."""

    def __init__(self, clock: FakeClock, first: Callable[[], object] | None = None) -> None:
        self.clock = clock
        self.first = first
        self.instead: Callable[[threading.Event], bool] | None = None
        self.asked: list[float] = []

    def __call__(self, event: threading.Event, timeout: float) -> bool:
        self.asked.append(timeout)
        if self.first is not None:
            self.first()
        if self.instead is not None:
            return self.instead(event)
        if event.is_set():
            return True
        self.clock.advance(timeout)
        return False


def waited(clock: FakeClock, monitor: HealthMonitor):
    """A report, and how long (on the fake clock) the call spent waiting."""
    began = clock()
    report = monitor.report()
    return report, clock() - began


def join(executor: CountingThreads) -> None:
    for thread in executor.threads:
        thread.join(10)
        assert not thread.is_alive()


# --- status rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([HealthStatus.HEALTHY, HealthStatus.HEALTHY], HealthStatus.HEALTHY),
        ([HealthStatus.HEALTHY, HealthStatus.DEGRADED], HealthStatus.DEGRADED),
        (
            [HealthStatus.DEGRADED, HealthStatus.UNHEALTHY, HealthStatus.HEALTHY],
            HealthStatus.UNHEALTHY,
        ),
        ([HealthStatus.HEALTHY, HealthStatus.PENDING], HealthStatus.DEGRADED),
        ([HealthStatus.HEALTHY, "Skipped", HealthStatus.UNKNOWN], HealthStatus.HEALTHY),
        ([], HealthStatus.DEGRADED),
    ],
)
def test_the_overall_status_is_the_worst_check(statuses: list[str], expected: str) -> None:
    assert overall({str(i): {"status": s} for i, s in enumerate(statuses)}) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (TokenState(has_token=True, last_success_at=1.0), HealthStatus.HEALTHY),
        (
            TokenState(has_token=True, last_error="refresh failed", last_error_at=2.0),
            HealthStatus.DEGRADED,
        ),
        (TokenState(last_error="refused", last_error_at=2.0), HealthStatus.UNHEALTHY),
        (TokenState(last_success_at=1.0), HealthStatus.HEALTHY),
        (TokenState(), HealthStatus.UNKNOWN),
    ],
)
def test_a_district_is_judged_by_its_token_cache(state: TokenState, expected: str) -> None:
    assert district_status(state) == expected


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], HealthStatus.HEALTHY),
        ([HealthStatus.HEALTHY, HealthStatus.UNKNOWN], HealthStatus.HEALTHY),
        ([HealthStatus.HEALTHY, HealthStatus.UNHEALTHY], HealthStatus.DEGRADED),
        ([HealthStatus.DEGRADED], HealthStatus.DEGRADED),
        ([HealthStatus.UNHEALTHY, HealthStatus.UNHEALTHY], HealthStatus.UNHEALTHY),
        ([HealthStatus.UNKNOWN, HealthStatus.UNHEALTHY], HealthStatus.DEGRADED),
    ],
)
def test_no_district_able_to_authenticate_is_unhealthy(statuses: list[str], expected: str) -> None:
    assert districts_status(statuses) == expected


# --- the monitor --------------------------------------------------------------------------


def test_the_first_call_gets_a_fast_first_check() -> None:
    clock = FakeClock(1000.0)
    waits = FakeWaits(clock)
    monitor = HealthMonitor(
        ScriptedProbe(), cache_seconds=30, clock=clock, wait=waits, executor=InlineExecutor()
    )
    report, spent = waited(clock, monitor)
    assert spent == 0 and waits.asked == pytest.approx([0.08])  # the check was done: no time waited
    assert report.status == HealthStatus.HEALTHY and report.http_status == 200
    assert report.body["checks"] == {
        "first": {"status": HealthStatus.HEALTHY},
        "second": {"status": HealthStatus.HEALTHY},
    }
    assert report.body["checkedAt"].endswith("Z")


def test_the_first_call_waits_at_most_80_ms_then_reports_what_it_knows() -> None:
    probe, clock, executor = ScriptedProbe(), FakeClock(1000.0), CountingThreads()
    probe.block_on = "second"
    waits = FakeWaits(clock, first=lambda: probe.blocked.wait(10))
    monitor = HealthMonitor(probe, cache_seconds=30, clock=clock, wait=waits, executor=executor)
    try:
        report, spent = waited(clock, monitor)
        assert spent == pytest.approx(0.08) and waits.asked == pytest.approx([0.08])
        assert report.status == HealthStatus.DEGRADED and report.http_status == 200
        assert report.body["checks"] == {
            "first": {"status": HealthStatus.HEALTHY},
            "second": {"status": HealthStatus.PENDING},
        }
        assert report.body["checkedAt"] is None
        assert report.body["refresh"]["state"] == "Running"
        report, spent = waited(clock, monitor)  # later calls wait only what is left: none
        assert spent == 0 and waits.asked == pytest.approx([0.08])
        assert report.status == HealthStatus.DEGRADED
    finally:
        probe.gate.set()
    join(executor)
    assert monitor.report().status == HealthStatus.HEALTHY
    assert probe.runs == 1


def test_an_expired_cache_starts_exactly_one_background_refresh() -> None:
    probe, clock, executor = ScriptedProbe(), FakeClock(1000.0), QueuedExecutor()
    monitor = HealthMonitor(probe, cache_seconds=30, clock=clock, executor=executor, first_wait=0)
    assert monitor.report().status == HealthStatus.DEGRADED  # nothing known yet
    executor.run_all()
    for _ in range(5):
        clock.advance(5)
        assert monitor.report().status == HealthStatus.HEALTHY
    assert monitor.refreshes_started == 1 and not executor.queue
    probe.results["second"] = {"status": HealthStatus.UNHEALTHY, "error": "down"}
    clock.advance(6)  # 31 s old
    answers = [monitor.report() for _ in range(5)]
    assert len(executor.queue) == 1 and monitor.refreshes_started == 2
    # ...and the callers are answered at once from the cache
    assert {a.status for a in answers} == {HealthStatus.HEALTHY}
    assert answers[0].body["ageSeconds"] == 31 and answers[0].body["refresh"]["state"] == "Running"
    executor.run_all()
    report = monitor.report()
    assert report.status == HealthStatus.UNHEALTHY and report.http_status == 503
    assert report.body["ageSeconds"] == 0 and monitor.refreshes_started == 2


def test_a_refresh_that_overruns_is_abandoned_and_threads_do_not_pile_up() -> None:
    probe, clock, executor = ScriptedProbe(), FakeClock(1000.0), QueuedExecutor()
    monitor = HealthMonitor(
        probe, cache_seconds=0, clock=clock, executor=executor, first_wait=0, timeout=10
    )
    monitor.report()
    executor.run_all()  # a first good snapshot
    monitor.report()  # stale at once (cache 0 s): refresh 2 starts, and hangs
    assert monitor.refreshes_started == 2
    clock.advance(11)
    report = monitor.report()
    assert monitor.refreshes_abandoned == 1 and monitor.refreshes_started == 3
    assert report.status == HealthStatus.UNHEALTHY
    assert report.body["checks"]["first"] == {
        "status": HealthStatus.UNHEALTHY,
        "error": "no answer within 10 s",
    }
    assert report.body["refresh"]["abandoned"]["check"] == "first"
    clock.advance(11)
    report = monitor.report()  # refresh 3 abandoned too: both threads stuck, no fourth
    assert monitor.refreshes_abandoned == 2 and monitor.refreshes_started == 3
    assert report.body["refresh"]["state"] == "Blocked"
    for _ in range(5):
        clock.advance(11)
        monitor.report()
    assert monitor.refreshes_started == 3
    executor.run_all()  # the stuck checks return late: their results are dropped...
    assert monitor.report().status == HealthStatus.UNHEALTHY
    assert monitor.refreshes_started == 4  # ...and their threads are free again
    executor.run_all()
    assert monitor.report().status == HealthStatus.HEALTHY
    assert "abandoned" not in monitor.report().body["refresh"]


def test_a_refresh_overdue_only_because_the_instance_was_frozen_is_kept() -> None:
    probe, clock, executor = ScriptedProbe(), FakeClock(1000.0), CountingThreads()
    probe.block_on = "second"
    waits = FakeWaits(clock, first=lambda: probe.blocked.wait(10))
    monitor = HealthMonitor(
        probe, cache_seconds=30, clock=clock, wait=waits, executor=executor, timeout=10
    )
    try:
        assert monitor.report().status == HealthStatus.DEGRADED  # the first check, still running
        clock.advance(600)  # frozen for ten minutes mid-check...
        # ...and once thawed, it finishes while the caller gives it its last moment
        waits.instead = lambda event: probe.gate.set() or event.wait(10)
        report = monitor.report()
    finally:
        probe.gate.set()
    assert waits.asked[1:] == pytest.approx([0.05])  # the grace, within the call's 80 ms
    assert report.status == HealthStatus.HEALTHY and monitor.refreshes_abandoned == 0
    join(executor)


def test_an_overdue_refresh_that_does_not_finish_in_its_grace_is_abandoned() -> None:
    probe, clock, executor = ScriptedProbe(), FakeClock(1000.0), CountingThreads()
    probe.block_on = "second"
    waits = FakeWaits(clock, first=lambda: probe.blocked.wait(10))
    monitor = HealthMonitor(
        probe, cache_seconds=30, clock=clock, wait=waits, executor=executor, timeout=10
    )
    try:
        monitor.report()
        clock.advance(600)
        report, spent = waited(clock, monitor)
        assert waits.asked[1] == pytest.approx(0.05) and spent <= 0.08
        assert monitor.refreshes_abandoned == 1
        assert report.body["checks"]["first"] == {"status": HealthStatus.HEALTHY}
        assert report.body["checks"]["second"] == {
            "status": HealthStatus.UNHEALTHY,
            "error": "no answer within 10 s",
        }
    finally:
        probe.gate.set()
    join(executor)


def test_no_call_waits_more_than_80_ms_while_a_dependency_hangs() -> None:
    probe, clock, executor = ScriptedProbe(), FakeClock(1000.0), CountingThreads()
    probe.block_on = "first"
    waits = FakeWaits(clock)
    monitor = HealthMonitor(
        probe, cache_seconds=0, clock=clock, wait=waits, executor=executor, timeout=0.2
    )
    try:
        spent = []
        for _ in range(50):  # one simulated second, a call every 20 ms
            report, took = waited(clock, monitor)
            spent.append(took)
            clock.advance(0.02)
        assert max(spent) <= 0.08 + 1e-9 and spent[0] == pytest.approx(0.08)
        assert executor.started == 2  # one, then one more after it was abandoned; no more
        assert monitor.refreshes_abandoned == 2
        assert (
            report.status == HealthStatus.UNHEALTHY and report.body["refresh"]["state"] == "Blocked"
        )
        assert report.body["checks"]["first"]["error"] == "no answer within 0.2 s"
    finally:
        probe.gate.set()
    join(executor)


def test_a_hanging_dependency_still_answers_within_a_second_in_real_time() -> None:
    # The one test on the real clock and real waits: the defaults, end to end.
    probe, executor = ScriptedProbe(), CountingThreads()
    probe.block_on = "first"
    monitor = HealthMonitor(probe, cache_seconds=0, executor=executor, timeout=0.2)
    try:
        began = time.monotonic()
        first = monitor.report()
        assert time.monotonic() - began < 1.0
        assert first.status == HealthStatus.DEGRADED and first.body["checks"]["first"] == {
            "status": HealthStatus.PENDING
        }
        time.sleep(0.25)
        began = time.monotonic()
        later = monitor.report()
        assert time.monotonic() - began < 1.0
        assert later.status == HealthStatus.UNHEALTHY
        assert later.body["checks"]["first"]["error"] == "no answer within 0.2 s"
    finally:
        probe.gate.set()
    join(executor)


def test_a_probe_that_crashes_is_reported_not_raised() -> None:
    class Broken(ScriptedProbe):
        def run(self, record: Callable[[str, dict[str, Any]], None]) -> None:
            record("first", {"status": HealthStatus.HEALTHY})
            raise RuntimeError("bug")

    monitor = HealthMonitor(Broken(), cache_seconds=30, executor=InlineExecutor())
    report = monitor.report()
    assert report.status == HealthStatus.DEGRADED
    assert "stopped" in report.body["checks"]["second"]["error"]


# --- the checks against a real installation -----------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    sandbox = Sandbox(seed=5, districts=2, schools=1, students=6, teachers=2, sections=2)
    with make_world("sqlite", tmp_path, None, sandbox=sandbox) as w:
        w.register_all()
        yield w


def probe(services: Services | None, error: ConfigurationError | None = None):
    checks: dict[str, Any] = {}
    redactor = services.redactor if services else None
    targets = ProbeTargets.of(services) if services else None
    redact = redactor.redact if redactor else (lambda t: t)
    ServicesProbe(targets, error, redact=redact).run(checks.__setitem__)
    return overall(checks), checks


def test_a_synced_installation_is_healthy(world: World) -> None:
    world.sync()
    status, checks = probe(world.services)
    assert status == HealthStatus.HEALTHY
    assert checks["secretStore"]["reachable"] is True
    assert checks["sessionDb"] == {
        "status": HealthStatus.HEALTHY,
        "reachable": True,
        "districts": 2,
        "activeSchools": 2,
    }
    clever = checks["cleverAuth"]
    assert [d["status"] for d in clever["districts"]] == [
        HealthStatus.HEALTHY,
        HealthStatus.HEALTHY,
    ]
    assert all(d["hasToken"] and d["lastSuccessAt"] for d in clever["districts"])
    assert clever["lastSuccessfulAuthentication"].endswith("Z") and clever["lastError"] is None


def test_districts_not_used_yet_are_judged_by_their_credentials(world: World) -> None:
    status, checks = probe(world.make_services())  # a fresh instance: nothing cached
    assert status == HealthStatus.HEALTHY
    rows = checks["cleverAuth"]["districts"]
    assert [r["status"] for r in rows] == [HealthStatus.UNKNOWN, HealthStatus.UNKNOWN]
    assert rows[0]["credentials"] == (
        f"{names.client_id('District-1')} and {names.client_secret('District-1')}"
    )
    world.secrets.values.pop(names.client_secret("District-2"))
    status, checks = probe(world.make_services())
    assert status == HealthStatus.DEGRADED
    assert checks["cleverAuth"]["districts"][1]["status"] == HealthStatus.UNHEALTHY
    assert "no Clever credentials" in checks["cleverAuth"]["districts"][1]["error"]
    world.secrets.values.pop(names.client_secret("District-1"))
    status, checks = probe(world.make_services())
    assert (
        status == HealthStatus.UNHEALTHY
        and checks["cleverAuth"]["status"] == HealthStatus.UNHEALTHY
    )


def test_districts_failing_to_authenticate(world: World) -> None:
    secret = names.client_secret("District-2")
    world.secrets.set(secret, "not-the-right-secret")
    world.sync()
    status, checks = probe(world.services)
    assert status == HealthStatus.DEGRADED
    rows = checks["cleverAuth"]["districts"]
    assert [r["status"] for r in rows] == [HealthStatus.HEALTHY, HealthStatus.UNHEALTHY]
    assert "refused the credentials" in rows[1]["lastError"]
    assert checks["cleverAuth"]["lastError"]["districtId"] == rows[1]["districtId"]
    world.secrets.set(names.client_secret("District-1"), "not-the-right-secret-either")
    services = world.make_services()
    world.sync(services)
    status, checks = probe(services)
    assert (
        status == HealthStatus.UNHEALTHY
        and checks["cleverAuth"]["status"] == HealthStatus.UNHEALTHY
    )
    assert "not-the-right-secret" not in str(checks)


def test_an_unreachable_secret_store_degrades_while_cached_values_serve(world: World) -> None:
    world.sync()
    world.secrets.down = True
    status, checks = probe(world.services)
    assert status == HealthStatus.DEGRADED
    assert checks["secretStore"]["status"] == HealthStatus.DEGRADED
    assert checks["secretStore"]["cachedValuesServe"] is True
    assert checks["sessionDb"]["status"] == HealthStatus.HEALTHY


def test_an_unreachable_secret_store_with_nothing_cached_is_unhealthy(world: World) -> None:
    store = MemorySecretStore()
    store.down = True
    services = Services(Settings.load(world.env), secret_store=store)
    status, checks = probe(services)
    assert status == HealthStatus.UNHEALTHY
    assert checks["secretStore"]["status"] == HealthStatus.UNHEALTHY
    assert checks["sessionDb"]["status"] == HealthStatus.UNHEALTHY


def test_an_unreachable_session_db_is_unhealthy(world: World, tmp_path: Path) -> None:
    store = MemorySecretStore(
        {names.SESSIONDB_CONNECTION_STRING: f"sqlite:///{tmp_path / 'gone' / 'x.sqlite'}"}
    )
    status, checks = probe(Services(Settings.load(world.env), secret_store=store))
    assert status == HealthStatus.UNHEALTHY
    assert checks["sessionDb"]["reachable"] is False
    assert "does not exist" in checks["sessionDb"]["error"]
    assert checks["cleverAuth"]["status"] == "Skipped"


def test_a_configuration_error_is_unhealthy_and_names_the_setting() -> None:
    try:
        Settings.load({"CleverSync__Sync__PageSize": "0"})
    except ConfigurationError as exc:
        error = exc
    status, checks = probe(None, error)
    assert status == HealthStatus.UNHEALTHY
    assert checks["configuration"]["setting"] == "CleverSync__Sync__PageSize"
    assert "CleverSync__Sync__PageSize" in checks["configuration"]["error"]
    assert checks["sessionDb"]["status"] == "Skipped"


def test_no_secret_reaches_a_check(world: World) -> None:
    world.sync()
    leaked = world.secrets.get(names.client_secret("District-1"))
    assert leaked

    class LeakyStore(MemorySecretStore):
        def check(self) -> None:
            if self.down:
                raise SecretStoreUnavailableError(f"the vault answered with {leaked}")

    store = LeakyStore(dict(world.secrets.values), redactor=world.redactor)
    store.get(names.SESSIONDB_CONNECTION_STRING)
    store.down = True
    services = Services(Settings.load(world.env), secret_store=store, redactor=world.redactor)
    status, checks = probe(services)
    assert (
        status == HealthStatus.DEGRADED and checks["secretStore"]["status"] == HealthStatus.DEGRADED
    )
    assert leaked not in str(checks) and "***" in checks["secretStore"]["error"]


# --- the two views ------------------------------------------------------------------------


def test_the_anonymous_view_picks_the_statuses_and_nothing_else() -> None:
    clock = FakeClock(1000.0)
    probe = ScriptedProbe()
    probe.results["second"] = {
        "status": HealthStatus.DEGRADED,
        "error": "no Clever credentials: set CleverSyncSOS--North--ClientSecret",
        "districts": [{"name": "North District"}],
    }
    monitor = HealthMonitor(probe, cache_seconds=30, clock=clock, executor=InlineExecutor())
    report = monitor.report()
    assert report.body["checks"]["second"]["districts"]  # the detailed view has it all
    public = report.public_body()
    assert public == {
        "status": HealthStatus.DEGRADED,
        "checkedAt": report.body["checkedAt"],
        "checks": {
            "first": {"status": HealthStatus.HEALTHY},
            "second": {"status": HealthStatus.DEGRADED},
        },
    }


def test_a_starting_process_is_degraded_with_every_check_pending() -> None:
    report = starting_report(ServicesProbe.names)
    assert report.status == HealthStatus.DEGRADED and report.http_status == 200
    assert report.public_body() == {
        "status": HealthStatus.DEGRADED,
        "checkedAt": None,
        "checks": {name: {"status": HealthStatus.PENDING} for name in ServicesProbe.names},
    }
    assert report.body["refresh"]["state"] == "Starting"
