"""Safety: database failures mid-batch, leases, a killed run recovered, the time budget."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, func, select, update

from cleversync.db.schema import School, Student
from cleversync.sandbox import Fault
from cleversync.vocabulary import RunStatus
from tests.databases import inserting
from tests.world import World, expected_students, stored_students


def entity(result, name: str):
    return next(o for o in result.entities if o.entity == name)


def test_a_database_failure_mid_batch_loses_nothing_committed(world: World) -> None:
    school = world.school()
    engine = world.engine(school)
    # A batch is a transaction, of one or more INSERTs. The transactions themselves are
    # kept, not their id(): a finished transaction's id may be given to the next one.
    batches: list[object] = []

    def fail_third_batch(conn, cursor, statement, params, context, executemany) -> None:
        # The disk fills up at the third batch and stays full (not a data error: the batch
        # is not split, it fails). After its INSERT ran: the batch's rows are in its open
        # transaction, and only a rollback keeps them out.
        if inserting(statement) and "Students" in statement:
            transaction = conn.get_transaction()
            if not any(seen is transaction for seen in batches):
                batches.append(transaction)
            if len(batches) >= 3:
                raise engine.dialect.loaded_dbapi.OperationalError("injected: disk full")

    event.listen(engine, "after_cursor_execute", fail_third_batch)
    try:
        run = world.sync(school_id=1)
    finally:
        event.remove(engine, "after_cursor_execute", fail_third_batch)
    [result] = run.schools
    assert result.status == "Failed"
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Student)) == 14  # two batches of 7
    rows = world.history(school_id=1)
    assert {r["Status"] for r in rows} == {"Failed"}
    assert "injected: disk full" in entity(result, "Student").error
    assert world.school().requires_full_sync
    run = world.sync(school_id=1)  # the next run starts over and completes
    assert run.schools[0].status == "Success"
    assert stored_students(world) == expected_students(world)


def test_transient_database_errors_are_retried(world: World) -> None:
    school = world.school()
    engine = world.engine(school)
    state = {"failures": 2}

    def busy(conn, cursor, statement, params, context, executemany) -> None:
        if inserting(statement) and state["failures"]:
            state["failures"] -= 1
            raise engine.dialect.loaded_dbapi.OperationalError(
                "database is locked"
                if engine.dialect.name == "sqlite"
                else "server closed the connection unexpectedly"
            )

    event.listen(engine, "before_cursor_execute", busy)
    try:
        run = world.sync(school_id=1)
    finally:
        event.remove(engine, "before_cursor_execute", busy)
    assert run.schools[0].status == "Success"
    assert state["failures"] == 0
    assert stored_students(world) == expected_students(world)


def test_a_school_being_synced_is_skipped(world: World) -> None:
    sync = world.services.school_sync()
    lease = sync.leases.acquire(1, "another-instance:42:abc")
    try:
        run = world.sync()
    finally:
        lease.release()
    by_id = {r.school_id: r for r in run.schools}
    assert by_id[1].status == "Skipped"
    assert "already being synced" in by_id[1].error
    assert by_id[2].status == "Success"
    assert run.status == "Success"  # skipped is not a failure
    assert world.history(school_id=1) == []  # and writes no history


def test_a_killed_run_is_recovered_by_the_next(world: World) -> None:
    sync = world.services.school_sync()
    # A run starts, takes the lease, opens its history, writes part of the data... and the
    # process is killed: no finally block runs, the lease is not released.
    lease = sync.leases.acquire(1, "dead-host:1234:deadbeef")
    started = world.services.utc_clock() - timedelta(minutes=10)
    sync.history.open_run(
        school_id=1,
        entities=["Student", "Teacher", "Section"],
        sync_type="Full",
        started_at=started,
        correlation_id="killed-run",
    )
    # While its lease is live, another run leaves the school alone.
    assert world.sync(school_id=1).schools[0].status == "Skipped"
    # The lease is not renewed: after it expires, the next run takes over.
    with world.services.session_engine().begin() as conn:
        conn.execute(update(School).where(School.SchoolId == 1).values(SyncLeaseExpiresAt=started))
    run = world.sync(school_id=1)
    assert (run.schools[0].status, run.schools[0].mode) == ("Success", "full")
    dead = [r for r in world.history(school_id=1) if r["CorrelationId"] == "killed-run"]
    assert len(dead) == 3
    for row in dead:
        assert row["Status"] == "Failed"
        assert "abandoned" in row["ErrorMessage"]
        assert "dead-host:1234:deadbeef" in row["ErrorMessage"]
    assert not [r for r in world.history(school_id=1) if r["Status"] == RunStatus.IN_PROGRESS]
    with world.services.session_engine().connect() as conn:
        assert conn.scalar(select(School.SyncLeaseOwner).where(School.SchoolId == 1)) is None
    del lease


def test_the_lease_is_released_after_a_failed_run(world: World) -> None:
    world.sandbox.faults.add(Fault("status", path="/v3.0/schools/*", status=500, times=None))
    run = world.sync(school_id=1)
    assert run.schools[0].status == "Failed"
    world.sandbox.faults.clear()
    assert world.sync(school_id=1).schools[0].status == "Success"


def test_a_run_longer_than_the_time_budget_stops(world: World) -> None:
    services = world.make_services(CleverSync__Sync__TimeoutMinutes="0.0001")
    clock = {"t": world.services.utc_clock()}

    def slow_clock():
        clock["t"] += timedelta(seconds=1)
        return clock["t"]

    services.utc_clock = slow_clock
    run = services.orchestrator().run(school_id=1)
    [result] = run.schools
    assert result.status == "Failed"
    assert "CleverSync__Sync__TimeoutMinutes" in result.error


def test_no_connection_stays_open_to_a_school_database_after_its_run(world: World) -> None:
    world.sync(school_id=1)
    engine = world.services.school_engine(world.school())
    assert engine.pool.checkedin() == 0
    assert engine.pool.checkedout() == 0


def test_a_history_row_that_cannot_be_closed_does_not_hide_the_first_error(
    world: World,
) -> None:
    school_engine = world.engine(world.school())
    session_engine = world.services.session_engine()
    dbapi = school_engine.dialect.loaded_dbapi

    def disk_full(conn, cursor, statement, params, context, executemany) -> None:
        if inserting(statement) and "Students" in statement:
            raise dbapi.OperationalError("injected: disk full")

    def closing_fails(conn, cursor, statement, params, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE") and "RecordsFailed" in statement:
            raise session_engine.dialect.loaded_dbapi.OperationalError("injected: SessionDb gone")

    event.listen(school_engine, "before_cursor_execute", disk_full)
    event.listen(session_engine, "before_cursor_execute", closing_fails)
    try:
        run = world.sync(school_id=1)
    finally:
        event.remove(session_engine, "before_cursor_execute", closing_fails)
        event.remove(school_engine, "before_cursor_execute", disk_full)
    [result] = run.schools
    assert result.status == "Failed"
    assert result.error.startswith("writing 7 student rows"), result.error
    assert "injected: disk full" in result.error
    assert "SyncHistory" in result.error  # what else went wrong is said too, after it
