"""A whole sync under Clever's real-world faults: lists that end early, oversize pages, long
waits and slow answers.

A scaled-down version of a 2,000-student school (60 students, pages of 10): one mid-list
page loses its ``next`` link or comes back empty. The list's end is confirmed with one more
request, so the later pages are still read and nothing real is deleted; when that request
fails, the entity is Partial, nothing is deleted and the school is flagged for a full sync.

Waits run on an injected clock that moves only when the sync sleeps (or when the sandbox
"takes" time to answer), so an hour of Retry-After costs no real time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from cleversync.db.sessiondb.lease import Leases
from cleversync.errors import LeaseHeldError
from cleversync.sandbox import Fault, Sandbox
from cleversync.services import Services
from cleversync.settings import Settings
from tests.world import World, clever_school_id, expected_students, stored_students


class Clock:
    """Wall and UTC time that move only when someone sleeps; sleeps of the sync are kept."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def wall(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC).replace(tzinfo=None)

    def sleep(self, seconds: float) -> None:
        """The sync's waits."""
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
        if self.on_sleep:
            self.on_sleep()

    def pass_time(self, seconds: float) -> None:
        """The sandbox taking ``seconds`` to answer (a ``delay`` fault)."""
        with self._lock:
            self.now += seconds


# Where storage does not matter (what a wait or a protocol error does), SQLite alone.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> Sandbox:
    return Sandbox(
        seed=11, districts=1, schools=1, students=60, teachers=3, sections=3, sleep=clock.pass_time
    )


@pytest.fixture
def on_clock(world: World, clock: Clock) -> Iterator[Callable[..., Services]]:
    """Services for the same installation whose sleeps and clocks are ``clock``."""
    made: list[Services] = []

    def make(**env: str) -> Services:
        settings = Settings.load({**world.env, **env})
        services = Services(
            settings,
            secret_store=world.secrets,
            redactor=world.redactor,
            sleep=clock.sleep,
            wall_clock=clock.wall,
            utc_clock=clock.utc,
        )
        made.append(services)
        return services

    yield make
    for services in made:
        services.close()


def entity(result, name: str):
    return next(o for o in result.entities if o.entity == name)


def students_path(world: World) -> str:
    return f"/v3.0/schools/{clever_school_id(world)}/users"


def student_ids(world: World) -> list[str]:
    return sorted(s["id"] for s in world.sandbox.students(clever_school_id(world)))


def remove_two_students(world: World) -> list[str]:
    """Two students really leave Clever: a full sync must still remove exactly them."""
    gone = student_ids(world)[:2]
    for clever_id in gone:
        world.sandbox.remove_user(clever_id)
    return gone


def page_requests(world: World) -> list[str]:
    return [
        r.target
        for r in world.sandbox.request_log
        if r.target.startswith(students_path(world)) and "role=student" in r.target
    ]


@pytest.mark.parametrize("fault", ["lose_next", "empty_page"])
def test_a_list_that_ends_early_is_confirmed_and_read_to_its_end(
    world: World, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(student_ids(world)) == 60
    world.sync(school_id=1)
    gone = remove_two_students(world)
    # Page 4 of 6 comes back full without `next`, or page 4 comes back empty: trusting it
    # would drop the last 18-20 students (about 30 %, under the mass-delete guard).
    world.sandbox.faults.add(Fault(fault, path=students_path(world), query="role=student", after=3))
    world.sandbox.request_log.clear()
    with caplog.at_level(logging.WARNING, logger="cleversync"):
        run = world.sync(school_id=1, full=True)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status) == ("Success", "Success"), students.error
    assert students.counts.deleted == len(gone)  # only the students really gone
    assert stored_students(world) == expected_students(world)
    assert not world.school().requires_full_sync
    # The end is confirmed from the last student seen: page 4's last one when page 4 lost
    # its link; page 3's when page 4 came back empty (that page was asked for with it too).
    ids = student_ids(world)
    cursor, asked = (ids[39], 1) if fault == "lose_next" else (ids[29], 2)
    assert sum(f"starting_after={cursor}" in t for t in page_requests(world)) == asked
    assert any(
        r.levelno == logging.WARNING and "ended early" in r.getMessage() for r in caplog.records
    )


def test_a_failed_confirmation_leaves_the_entity_partial_and_deletes_nothing(
    world: World,
) -> None:
    world.sync(school_id=1)
    gone = remove_two_students(world)
    ids = student_ids(world)
    world.sandbox.faults.add(
        Fault("lose_next", path=students_path(world), query="role=student", after=3)
    )
    # The request confirming the end (after page 4's last student) fails through every retry.
    world.sandbox.faults.add(
        Fault("status", path=students_path(world), query=f"starting_after={ids[39]}", times=None)
    )
    run = world.sync(school_id=1, full=True)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status) == ("Partial", "Partial")
    assert students.counts.deleted == 0
    assert set(gone) <= set(stored_students(world))  # nothing deleted
    assert entity(result, "Teacher").status == entity(result, "Section").status == "Success"
    row = next(r for r in world.history(school_id=1) if r["SyncId"] == students.sync_id)
    assert row["Status"] == "Partial"
    assert row["RecordsDeleted"] == 0
    assert "could not be confirmed" in row["ErrorMessage"]
    assert "HTTP 500" in row["ErrorMessage"]
    assert world.school().requires_full_sync
    world.sandbox.faults.clear()
    run = world.sync(school_id=1)  # the flag makes the next run full: it completes the job
    assert (run.schools[0].mode, run.schools[0].status) == ("full", "Success")
    assert stored_students(world) == expected_students(world)
    assert not world.school().requires_full_sync


@SQLITE_ONLY
def test_an_incomplete_list_flags_a_full_sync_in_an_incremental_run_too(world: World) -> None:
    world.sync(school_id=1)
    world.sandbox.set_events_enabled(world.districts[0].clever_district_id, False)
    world.sandbox.faults.add(
        Fault("oversize_page", path=students_path(world), query="role=student", after=1)
    )
    run = world.sync(school_id=1)
    [result] = run.schools
    assert result.mode == "data"
    students = entity(result, "Student")
    assert students.status == "Partial"
    assert "on a page asked for 10" in students.message()
    assert world.school().requires_full_sync


@SQLITE_ONLY
def test_an_oversize_page_is_a_protocol_error_that_deletes_nothing(world: World) -> None:
    world.sync(school_id=1)
    gone = remove_two_students(world)
    world.sandbox.faults.add(
        Fault("oversize_page", path=students_path(world), query="role=student", after=2)
    )
    run = world.sync(school_id=1, full=True)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status) == ("Partial", "Partial")
    assert students.counts.deleted == 0
    assert set(gone) <= set(stored_students(world))
    assert "20 students on a page asked for 10" in students.message()
    assert world.school().requires_full_sync


# --- waits and slow answers -------------------------------------------------------------


@SQLITE_ONLY
def test_long_waits_are_capped_and_keep_the_lease(
    world: World, clock: Clock, on_clock: Callable[..., Services]
) -> None:
    world.sync(school_id=1)
    services = on_clock()
    world.sandbox.faults.add(
        Fault(
            "status",
            path=students_path(world),
            status=429,
            headers={"Retry-After": "3600"},
            times=3,
        )
    )
    # Three waits of 120 s are longer than the 5-minute lease: a run that did not renew it
    # while waiting would be taken over by the next one.
    intruder = Leases(
        services.session_engine(), policy=services.settings.retry.database, clock=clock.utc
    )
    start, tries = clock.now, []

    def take_over() -> None:
        if clock.now - start > 330 and not tries:
            try:
                intruder.acquire(1, "intruder")
                tries.append("taken over")
            except LeaseHeldError:
                tries.append("held")

    clock.on_sleep = take_over
    run = services.orchestrator().run(school_id=1, full=True)
    assert run.schools[0].status == "Success", run.schools[0].error
    assert tries == ["held"]
    assert sum(clock.sleeps) == pytest.approx(3 * 120)  # not 3 hours
    assert max(clock.sleeps) <= 10  # in slices, renewing the lease between them


@SQLITE_ONLY
def test_a_wait_past_the_time_budget_fails_at_once_and_deletes_nothing(
    world: World, clock: Clock, on_clock: Callable[..., Services]
) -> None:
    world.sync(school_id=1)
    gone = remove_two_students(world)
    services = on_clock(CleverSync__Sync__TimeoutMinutes="1")
    world.sandbox.faults.add(
        Fault(
            "status",
            path=students_path(world),
            query="role=student",
            status=429,
            headers={"Retry-After": "100"},
            after=2,
        )
    )
    run = services.orchestrator().run(school_id=1, full=True)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status) == ("Failed", "Failed")
    assert "time budget exceeded" in students.error
    assert clock.sleeps == []  # no point waiting 100 s of a 60 s budget
    assert set(gone) <= set(stored_students(world))
    rows = [r for r in world.history(school_id=1) if r["CorrelationId"] == run.correlation_id]
    assert {r["Status"] for r in rows} == {"Failed"}
    assert all("time budget exceeded" in r["ErrorMessage"] for r in rows)
    assert sum(r["RecordsDeleted"] for r in rows) == 0


@SQLITE_ONLY
def test_slow_answers_stop_the_run_at_its_time_budget(
    world: World, on_clock: Callable[..., Services]
) -> None:
    world.sync(school_id=1)
    gone = remove_two_students(world)
    # One batch for the whole list: no write (and so no check between batches) before
    # the end; the budget must hold between requests too.
    services = on_clock(CleverSync__Sync__TimeoutMinutes="1", CleverSync__Sync__BatchSize="500")
    world.sandbox.faults.add(Fault("delay", path=students_path(world), seconds=25, times=None))
    world.sandbox.request_log.clear()
    run = services.orchestrator().run(school_id=1, full=True)
    students = entity(run.schools[0], "Student")
    assert students.status == "Failed"
    assert "time budget exceeded" in students.error
    assert len(page_requests(world)) == 3  # 25 s each: a fourth would start past 60 s
    assert set(gone) <= set(stored_students(world))
