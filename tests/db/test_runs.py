"""SyncRuns and SyncRunSchools on a real SessionDb (SQLite and PostgreSQL): a run's schools
from Queued to their outcome, duplicates refused, the run finished by exactly one caller."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from cleversync.db.engines import engine_for
from cleversync.db.schema import District, School, SyncHistory
from cleversync.db.sessiondb.runs import Runs
from cleversync.redaction import Redactor
from cleversync.settings import RetryPolicy

T0 = datetime(2024, 3, 1, 6, 0, 0)
POLICY = RetryPolicy(max_attempts=3, backoff_base=0)
SCHOOLS = (1, 2, 3)


@pytest.fixture
def engine(sessiondb_url: str) -> Iterator[Engine]:
    engine = engine_for(sessiondb_url)
    stamps = {"CreatedAt": T0, "UpdatedAt": T0}
    with engine.begin() as conn:
        conn.execute(
            insert(District),
            [{"CleverDistrictId": "d1", "Name": "D", "DistrictPrefix": "D1"} | stamps],
        )
        conn.execute(
            insert(School),
            [
                {
                    "DistrictId": 1,
                    "CleverSchoolId": f"s{n}",
                    "Name": f"School {n}",
                    "DatabaseName": f"S{n}",
                    "SchoolPrefix": f"S{n}",
                }
                | stamps
                for n in SCHOOLS
            ],
        )
    yield engine
    engine.dispose()


@pytest.fixture
def runs(engine: Engine) -> Runs:
    return Runs(engine, policy=POLICY, clock=lambda: T0)


def _new(runs: Runs, schools: tuple[int, ...] = SCHOOLS) -> int:
    return runs.create(
        correlation_id=uuid.uuid4().hex,
        trigger="http",
        full=False,
        allow_mass_delete=False,
        school_ids=schools,
    ).run_id


def test_a_new_run_has_every_school_queued(runs: Runs) -> None:
    run = runs.create(
        correlation_id="abc", trigger="timer", full=True, allow_mass_delete=False, school_ids=[1, 2]
    )
    assert (run.trigger, run.full, run.finished_at) == ("timer", True, None)
    assert [(s.school_id, s.name, s.status, s.attempts) for s in run.schools] == [
        (1, "School 1", "Queued", 0),
        (2, "School 2", "Queued", 0),
    ]


def test_a_run_of_no_school_is_finished_at_once(runs: Runs) -> None:
    run = runs.create(
        correlation_id="none", trigger="timer", full=False, allow_mass_delete=False, school_ids=[]
    )
    assert run.finished_at == T0 and run.schools == []


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (operation, school, status) -> (return value) ; then the school's status/attempts
        ([("start", 1, None)], [True]),
        ([("start", 1, None), ("start", 1, None)], [True, True]),  # a retry while running
        ([("start", 1, None), ("finish", 1, "Success"), ("start", 1, None)], [True, True, False]),
        ([("finish", 1, "Skipped"), ("finish", 1, "Failed")], [True, False]),  # duplicate
        ([("start", 9, None)], [False]),  # not part of the run
    ],
)
def test_start_and_finish_refuse_a_school_whose_part_is_over(
    runs: Runs, steps: list[tuple[str, int, str | None]], expected: list[bool]
) -> None:
    run_id = _new(runs)
    got = []
    for op, school, status in steps:
        if op == "start":
            got.append(runs.start_school(run_id, school))
        else:
            got.append(runs.finish_school(run_id, school, status or "")[0])
    assert got == expected


def test_attempts_are_counted_and_the_last_error_kept(runs: Runs) -> None:
    run_id = _new(runs)
    runs.start_school(run_id, 1)
    runs.note_error(run_id, 1, "Clever answered 503")
    runs.start_school(run_id, 1)
    school = runs.get(run_id)
    assert school is not None
    first = school.school(1)
    assert first is not None and (first.status, first.attempts, first.error) == (
        "Running",
        2,
        "Clever answered 503",
    )


def test_the_call_that_closes_the_last_school_finishes_the_run(runs: Runs) -> None:
    run_id = _new(runs)
    assert runs.finish_school(run_id, 1, "Success") == (True, False)
    assert runs.finish_school(run_id, 2, "Failed", "boom") == (True, False)
    assert runs.finish_school(run_id, 3, "Partial") == (True, True)
    assert runs.finish_school(run_id, 3, "Partial") == (False, False)
    run = runs.get(run_id)
    assert run is not None and run.finished_at == T0
    assert [s.status for s in run.schools] == ["Success", "Failed", "Partial"]


def test_exactly_one_of_many_concurrent_finishers_finishes_the_run(engine: Engine) -> None:
    # Each school finished by its own thread and Runs (as by separate instances), all at once.
    many = tuple(SCHOOLS)
    run_id = _new(Runs(engine, policy=POLICY), many)
    barrier = threading.Barrier(len(many))
    ended: list[bool] = []

    def finish(school: int) -> None:
        runs = Runs(engine, policy=RetryPolicy(max_attempts=10, backoff_base=0))
        barrier.wait()
        ended.append(runs.finish_school(run_id, school, "Success")[1])

    threads = [threading.Thread(target=finish, args=(s,)) for s in many]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ended) == [False] * (len(many) - 1) + [True]


def test_a_run_shows_each_school_its_own_history_rows(engine: Engine, runs: Runs) -> None:
    run = runs.create(
        correlation_id="corr", trigger="http", full=False, allow_mass_delete=False, school_ids=[1]
    )
    with engine.begin() as conn:
        conn.execute(
            insert(SyncHistory),
            [
                {
                    "SchoolId": school,
                    "EntityType": "Student",
                    "SyncType": "Full",
                    "SyncStartTime": T0,
                    "Status": "Success",
                    "CorrelationId": corr,
                }
                for school, corr in ((1, "corr"), (1, "other"), (2, "corr"))
            ],
        )
    found = runs.get(run.run_id)
    assert found is not None
    [school] = found.schools
    assert [(r["SchoolId"], r["CorrelationId"]) for r in school.history] == [(1, "corr")]
    assert runs.get(run.run_id + 100) is None


def test_purge_removes_finished_runs_older_than_the_cutoff(engine: Engine) -> None:
    now = [T0]
    runs = Runs(engine, policy=POLICY, clock=lambda: now[0])
    old_done = _new(runs, (1,))
    runs.finish_school(old_done, 1, "Success")
    old_open = _new(runs, (2,))
    now[0] = T0 + timedelta(days=100)
    recent = _new(runs, (3,))
    runs.finish_school(recent, 3, "Success")
    assert runs.purge(T0 + timedelta(days=10)) == 1
    assert runs.get(old_done) is None
    assert runs.get(old_open) is not None and runs.get(recent) is not None


def test_a_school_error_is_stored_without_the_secrets_the_root_has_read(engine: Engine) -> None:
    redactor = Redactor()
    redactor.register("s3cr3t-client-secret")
    runs = Runs(engine, policy=POLICY, redactor=redactor, clock=lambda: T0)
    run_id = _new(runs, (1,))
    runs.finish_school(run_id, 1, "Failed", "Clever refused s3cr3t-client-secret")
    run = runs.get(run_id, with_history=False)
    assert run is not None
    error = run.schools[0].error or ""
    assert "s3cr3t-client-secret" not in error and "Clever refused" in error
