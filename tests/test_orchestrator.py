"""The orchestrator: how many schools at once, failure isolation, targets, purge, alerts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update

from cleversync.db.schema import School, SyncHistory
from cleversync.db.sessiondb.registry import DistrictRecord, SchoolRecord
from cleversync.errors import NotFoundError, UsageError
from cleversync.orchestrator import ALERT_EVENT, Orchestrator, RunResult, overall_status
from cleversync.sandbox import Fault, Sandbox
from cleversync.secrets import names
from cleversync.services import Services
from cleversync.sync.school import SchoolResult, SchoolSync, SyncRequest
from tests.databases import inserting
from tests.world import World, make_world


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def world(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """Two districts of three schools: school ids 1-3 in district 1, 4-6 in district 2."""
    pg = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    sandbox = Sandbox(seed=21, districts=2, schools=3, students=6, teachers=2, sections=2)
    with make_world(backend, tmp_path, pg, sandbox=sandbox) as w:
        w.register_all()
        yield w


class InFlight:
    """The real SchoolSync, wrapped to count the schools running at once (and to crash one)."""

    def __init__(self, inner: SchoolSync, crash: int | None = None) -> None:
        self._inner = inner
        self.registry = inner.registry
        self.history = inner.history
        self.crash = crash
        self.running = 0
        self.most = 0
        self.seen: list[int] = []
        self._lock = threading.Lock()

    def run(
        self, school: SchoolRecord, district: DistrictRecord, request: SyncRequest
    ) -> SchoolResult:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.seen.append(school.school_id)
        try:
            if school.school_id == self.crash:
                raise RuntimeError("a bug in one school's run")
            return self._inner.run(school, district, request)
        finally:
            with self._lock:
                self.running -= 1


def orchestrator(services: Services, sync: Any = None, now: datetime | None = None) -> Orchestrator:
    kwargs = {"clock": lambda: now} if now else {}
    return Orchestrator(
        settings=services.settings, school_sync=sync or services.school_sync(), **kwargs
    )


def by_school(run: RunResult) -> dict[int, SchoolResult]:
    return {r.school_id: r for r in run.schools}


def set_active(world: World, school_id: int, active: bool) -> None:
    with world.services.session_engine().begin() as conn:
        conn.execute(update(School).where(School.SchoolId == school_id).values(IsActive=active))


# --- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_never_more_schools_at_once_than_max_schools_in_parallel(world: World, limit: int) -> None:
    # Every Clever answer takes 30 ms, so school runs overlap whenever they are allowed to.
    world.sandbox.faults.add(Fault("delay", path="/v3.0/*", seconds=0.03, times=None))
    services = world.make_services(CleverSync__Concurrency__MaxSchoolsInParallel=str(limit))
    counting = InFlight(services.school_sync())
    run = orchestrator(services, counting).run()
    assert sorted(counting.seen) == [1, 2, 3, 4, 5, 6]
    assert {r.status for r in run.schools} == {"Success"}
    assert counting.most == limit  # reached, never exceeded
    services.close()


# --- failure isolation --------------------------------------------------------------------


def test_one_schools_failure_never_stops_another(world: World) -> None:
    clever_1 = world.schools[0].clever_school_id
    world.sandbox.faults.add(Fault("status", path=f"/v3.0/schools/{clever_1}/*", times=None))
    del world.secrets.values[names.connection_string("School-1-2")]  # school 2: no database
    engine_5 = world.services.school_engine(world.schools[4])

    def broken(conn, cursor, statement, params, context, executemany) -> None:
        if inserting(statement):
            raise ValueError("unexpected trouble in school 5")

    event.listen(engine_5, "before_cursor_execute", broken)
    try:
        counting = InFlight(world.services.school_sync(), crash=4)  # school 4: a crash
        run = orchestrator(world.services, counting).run()
    finally:
        event.remove(engine_5, "before_cursor_execute", broken)
    results = by_school(run)
    assert [r.school_id for r in run.schools] == [1, 2, 3, 4, 5, 6]
    assert {i: r.status for i, r in results.items()} == {
        1: "Failed",
        2: "Failed",
        3: "Success",
        4: "Failed",
        5: "Failed",
        6: "Success",
    }
    assert run.status == "Failed"
    assert "500" in results[1].error
    assert names.connection_string("School-1-2") in results[2].error
    assert "RuntimeError" in results[4].error
    assert "ValueError" in results[5].error
    for index in (2, 5):  # schools 3 and 6 ran to the end
        stored = set(world.students(world.school(index)))
        expected = {s["id"] for s in world.sandbox.students(world.schools[index].clever_school_id)}
        assert stored == expected


# --- which schools ------------------------------------------------------------------------


def test_targets_pick_the_right_schools(world: World) -> None:
    set_active(world, 2, False)
    set_active(world, 5, False)
    o = orchestrator(world.services)
    assert [s.school_id for s, _ in o.targets()] == [1, 3, 4, 6]
    assert [s.school_id for s, _ in o.targets(district_id=2)] == [4, 6]
    assert [(s.school_id, d.district_id) for s, d in o.targets(school_id=6)] == [(6, 2)]
    with pytest.raises(UsageError, match="inactive"):
        o.targets(school_id=2)
    with pytest.raises(NotFoundError):
        o.targets(district_id=9)
    with pytest.raises(NotFoundError):
        o.targets(school_id=99)
    with pytest.raises(UsageError, match="not both"):
        o.targets(school_id=1, district_id=1)


def test_district_and_all_school_runs_sync_only_their_active_schools(world: World) -> None:
    set_active(world, 5, False)
    run = world.sync(district_id=2)
    assert sorted(by_school(run)) == [4, 6]
    assert {r["SchoolId"] for r in world.history()} == {4, 6}
    run = world.sync()
    assert sorted(by_school(run)) == [1, 2, 3, 4, 6]
    assert {r["SchoolId"] for r in world.history()} == {1, 2, 3, 4, 6}
    assert world.students(world.school(4)) == {}  # the inactive school was never touched


# --- retention ----------------------------------------------------------------------------


def test_purge_removes_old_finished_history_only(world: World) -> None:
    now = datetime(2025, 6, 1, 2, 0, 0)
    ages = {"old": (91, "Success"), "ancient": (400, "Failed"), "stuck": (400, "InProgress"),
            "recent": (89, "Partial"), "today": (0, "Success")}  # fmt: skip
    with world.services.session_engine().begin() as conn:
        for label, (days, status) in ages.items():
            conn.execute(
                insert(SyncHistory),
                {"SchoolId": 1, "EntityType": "Student", "SyncType": "Full", "Status": status,
                 "SyncStartTime": now - timedelta(days=days), "CorrelationId": label},
            )  # fmt: skip
    assert orchestrator(world.services, now=now).purge_history() == 2

    def left() -> set[str]:
        with world.services.session_engine().connect() as conn:
            return set(conn.scalars(select(SyncHistory.CorrelationId)))

    assert left() == {"stuck", "recent", "today"}
    shorter = world.make_services(CleverSync__History__RetentionDays="30")
    assert orchestrator(shorter, now=now).purge_history() == 1
    assert left() == {"stuck", "today"}
    shorter.close()


# --- the consecutive-failure alert --------------------------------------------------------


class School1:
    """Makes school 1's next run fail, succeed or be partial."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.secret = names.connection_string("School-1-1")
        self.url = world.secrets.values[self.secret]

    def run(self, outcome: str) -> list[int]:
        if outcome == "Failed":
            self.world.secrets.values.pop(self.secret, None)
        else:
            self.world.secrets.values[self.secret] = self.url
        if outcome == "Partial":  # a record that does not fit: skipped and counted
            clever_id = self.world.schools[0].clever_school_id
            self.world.sandbox.add_student(clever_id, first_name="x" * 150, last_name="Long")
        run = self.world.sync(school_id=1, full=True)
        assert run.schools[0].status == outcome
        return run.alerts


def alert_events(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "EventName", None) == ALERT_EVENT]


def test_the_alert_fires_once_when_the_streak_reaches_the_threshold(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    school = School1(world)
    with caplog.at_level(logging.ERROR, logger="cleversync"):
        assert school.run("Failed") == []
        assert school.run("Failed") == []
        assert alert_events(caplog) == []
        assert school.run("Failed") == [1]
        [alert] = alert_events(caplog)
        assert alert.SchoolId == 1 and alert.ConsecutiveFailures == 3
        assert school.run("Failed") == []  # not again at 4
        assert len(alert_events(caplog)) == 1
        assert school.run("Success") == []  # the streak resets...
        assert school.run("Failed") == []
        assert school.run("Failed") == []
        assert school.run("Failed") == [1]  # ...and a new one alerts again
        assert len(alert_events(caplog)) == 2


def test_partial_and_skipped_runs_neither_count_nor_reset(world: World) -> None:
    school = School1(world)
    assert school.run("Failed") == []
    assert school.run("Failed") == []
    lease = world.services.school_sync().leases.acquire(1, "another-instance:1:abc")
    try:
        run = world.sync(school_id=1)
    finally:
        lease.release()
    assert run.schools[0].status == "Skipped" and run.alerts == []
    assert school.run("Partial") == []
    assert school.run("Failed") == [1]  # the third Failed run, with a Partial between


def test_the_threshold_is_a_setting(world: World) -> None:
    services = world.make_services(CleverSync__Monitoring__AlertAfterConsecutiveFailures="1")
    del world.secrets.values[names.connection_string("School-1-1")]
    assert world.sync(services, school_id=1).alerts == [1]
    assert world.sync(services, school_id=1).alerts == []
    services.close()


# --- runs in which nothing ran ------------------------------------------------------------


def school_result(status: str) -> SchoolResult:
    return SchoolResult(1, "One", 1, status)


@pytest.mark.parametrize(
    ("statuses", "overall"),
    [
        (["Skipped"], "Skipped"),
        (["Skipped", "Skipped"], "Skipped"),
        (["Skipped", "Success"], "Success"),
        (["Skipped", "Partial"], "Partial"),
        (["Success", "Skipped", "Failed"], "Failed"),
        (["Success"], "Success"),
        ([], "Success"),  # no school to sync: nothing failed, nothing was skipped
    ],
)
def test_overall_status(statuses: list[str], overall: str) -> None:
    assert overall_status([school_result(s) for s in statuses]) == overall


def test_a_run_in_which_every_school_was_skipped_is_skipped(world: World) -> None:
    leases = world.services.school_sync().leases
    held = [leases.acquire(i, "another-instance:1:abc") for i in (1, 2, 3)]
    try:
        district = world.sync(district_id=1)
        single = world.sync(school_id=2)
    finally:
        for lease in held:
            lease.release()
    assert [s.status for s in district.schools] == ["Skipped"] * 3
    assert (district.status, single.status) == ("Skipped", "Skipped")
    assert world.history() == []
    lease = leases.acquire(1, "another-instance:1:abc")
    try:
        assert world.sync(district_id=1).status == "Success"  # two of three ran
    finally:
        lease.release()


# --- rows left InProgress ------------------------------------------------------------------


def test_multi_school_runs_first_close_expired_in_progress_rows_of_every_school(
    world: World,
) -> None:
    sync = world.services.school_sync()
    started = world.services.utc_clock() - timedelta(hours=1)
    for school_id in (1, 2, 3):  # three runs that stopped without closing their rows
        sync.history.open_run(
            school_id=school_id,
            entities=["Student", "Teacher", "Section"],
            sync_type="Full",
            started_at=started,
            correlation_id=f"crashed-{school_id}",
        )
    live = sync.leases.acquire(1, "live-host:1:abc")  # school 1's run is still going
    sync.leases.acquire(2, "dead-host:2:abc")  # school 2's run died: its lease runs out
    with world.services.session_engine().begin() as conn:
        conn.execute(update(School).where(School.SchoolId == 2).values(SyncLeaseExpiresAt=started))
    set_active(world, 3, False)  # school 3 was deactivated after its crash: no run comes
    try:
        run = world.sync(district_id=2)  # another district's run still sweeps every school
    finally:
        live.release()
    assert run.status == "Success"
    rows = [r for r in world.history() if r["CorrelationId"].startswith("crashed-")]
    by_run: dict[str, set[str]] = {}
    for row in rows:
        by_run.setdefault(row["CorrelationId"], set()).add(row["Status"])
    assert by_run == {"crashed-1": {"InProgress"}, "crashed-2": {"Failed"}, "crashed-3": {"Failed"}}
    for row in rows:
        if row["Status"] == "Failed":
            assert "abandoned" in row["ErrorMessage"] and run.correlation_id in row["ErrorMessage"]
            assert row["SyncEndTime"] is not None


# --- the run deadline ---------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class TakesMinutes:
    """The real SchoolSync; each school's run moves the injected clock on by ``minutes``."""

    def __init__(self, inner: SchoolSync, clock: Clock, minutes: float) -> None:
        self._inner = inner
        self.registry = inner.registry
        self.history = inner.history
        self._clock = clock
        self._minutes = minutes

    def run(
        self, school: SchoolRecord, district: DistrictRecord, request: SyncRequest
    ) -> SchoolResult:
        try:
            return self._inner.run(school, district, request)
        finally:
            self._clock.now += timedelta(minutes=self._minutes)


def test_a_run_starts_no_school_once_its_deadline_is_reached(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    services = world.make_services(
        CleverSync__Concurrency__MaxSchoolsInParallel="1",
        CleverSync__Sync__RunDeadlineMinutes="25",
        CleverSync__Monitoring__AlertAfterConsecutiveFailures="1",  # a Failed school alerts
    )
    clock = Clock(datetime(2026, 1, 5, 2, 0))
    slow = TakesMinutes(services.school_sync(), clock, minutes=10)
    runs = Orchestrator(settings=services.settings, school_sync=slow, clock=clock)
    with caplog.at_level(logging.WARNING, logger="cleversync"):
        run = runs.run()  # schools start at 0, 10 and 20 minutes; at 30 the deadline has passed
    assert [(r.school_id, r.status) for r in run.schools] == [
        (1, "Success"),
        (2, "Success"),
        (3, "Success"),
        (4, "Skipped"),
        (5, "Skipped"),
        (6, "Skipped"),
    ]
    assert by_school(run)[4].error == (
        "not run: the run deadline (CleverSync__Sync__RunDeadlineMinutes=25) was reached "
        "before its turn; a later run syncs it"
    )
    assert run.status == "Partial"  # not every school was synced
    assert run.alerts == []  # not run is not a failure
    assert {r["SchoolId"] for r in world.history()} == {1, 2, 3}  # no history for the rest
    [warning] = [r for r in caplog.records if "deadline" in r.getMessage()]
    assert "3 school(s) not run: 4, 5, 6" in warning.getMessage()
    # The CLI's runs have no host timeout: they run every school whatever the clock says.
    cli = runs.run(within_deadline=False)
    assert {r.status for r in cli.schools} == {"Success"} and len(cli.schools) == 6
    # 0 is no deadline.
    unbounded = world.make_services(CleverSync__Sync__RunDeadlineMinutes="0")
    slow = TakesMinutes(unbounded.school_sync(), clock, minutes=60)
    run = Orchestrator(settings=unbounded.settings, school_sync=slow, clock=clock).run()
    assert {r.status for r in run.schools} == {"Success"} and len(run.schools) == 6
    services.close()
    unbounded.close()
