"""NotifyOutbox and the report claim on a real SessionDb (SQLite and PostgreSQL): a finished
run's report is claimed once however many callers race for it, a kept message is taken by one
sender at a time, and the outbox stays bounded."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from cleversync.db.engines import engine_for
from cleversync.db.schema import District, School, SyncRun
from cleversync.db.sessiondb.outbox import Outbox, Pending
from cleversync.db.sessiondb.runs import Runs
from cleversync.redaction import Redactor
from cleversync.settings import RetryPolicy

T0 = datetime(2026, 12, 2, 2, 0)
POLICY = RetryPolicy(max_attempts=5, backoff_base=0)
T = TypeVar("T")


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
                    "Name": f"S{n}",
                    "DatabaseName": f"S{n}",
                    "SchoolPrefix": f"S{n}",
                }
                | stamps
                for n in (1, 2)
            ],
        )
    yield engine
    engine.dispose()


def _outbox(engine: Engine, clock: Callable[[], datetime] = lambda: T0) -> Outbox:
    return Outbox(engine, policy=POLICY, redactor=Redactor(), clock=clock)


def _run(engine: Engine, *, finished: bool) -> int:
    runs = Runs(engine, policy=POLICY, clock=lambda: T0)
    run = runs.create(
        correlation_id=uuid.uuid4().hex,
        trigger="timer",
        full=False,
        allow_mass_delete=False,
        school_ids=[1, 2],
    )
    if finished:
        runs.finish_school(run.run_id, 1, "Success")
        runs.finish_school(run.run_id, 2, "Failed", "boom")
    return run.run_id


def _race(n: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` on ``n`` threads released at the same moment."""
    barrier = threading.Barrier(n)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            barrier.wait()
            result = work(i)
            with lock:
                results.append(result)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_an_unfinished_run_cannot_be_claimed(engine: Engine) -> None:
    run_id = _run(engine, finished=False)
    assert not _outbox(engine).claim_report(run_id, Pending("report", "s", "m", run_id))
    assert _outbox(engine).pending() == []


def test_a_finished_run_is_claimed_once_with_its_message(engine: Engine) -> None:
    run_id = _run(engine, finished=True)
    outbox = _outbox(engine)
    assert outbox.claim_report(
        run_id, Pending("report", "CleverSync: 1 school synced, 1 failed", "MIME", run_id)
    )
    assert not outbox.claim_report(run_id, Pending("report", "again", "MIME", run_id))
    [kept] = outbox.pending()
    assert (kept.kind, kept.subject, kept.message, kept.attempts) == (
        "report",
        "CleverSync: 1 school synced, 1 failed",
        "MIME",
        0,
    )
    with engine.connect() as conn:
        assert conn.execute(select(SyncRun.ReportedAt)).scalar_one() == T0


def test_a_claim_without_a_message_still_marks_the_run_reported(engine: Engine) -> None:
    run_id = _run(engine, finished=True)
    assert _outbox(engine).claim_report(run_id, None)  # On=failures and nothing failed
    assert not _outbox(engine).claim_report(run_id, Pending("report", "s", "m", run_id))
    assert _outbox(engine).pending() == []


def test_instances_racing_for_a_report_claim_it_once(engine: Engine, sessiondb_url: str) -> None:
    run_id = _run(engine, finished=True)
    engines = [engine_for(sessiondb_url) for _ in range(4)]  # one per "instance"
    try:
        claims = _race(
            4,
            lambda i: _outbox(engines[i]).claim_report(
                run_id, Pending("report", f"by {i}", "m", run_id)
            ),
        )
    finally:
        for other in engines:
            other.dispose()
    assert sorted(claims) == [False, False, False, True]
    assert len(_outbox(engine).pending()) == 1


def test_senders_racing_take_each_message_once(engine: Engine, sessiondb_url: str) -> None:
    outbox = _outbox(engine)
    for n in range(6):
        outbox.add(Pending("alert", f"alert {n}", "m"))
    engines = [engine_for(sessiondb_url) for _ in range(3)]
    try:
        taken = _race(3, lambda i: _outbox(engines[i]).take(limit=10, hold_seconds=60))
    finally:
        for other in engines:
            other.dispose()
    subjects = [kept.subject for batch in taken for kept in batch]
    assert sorted(subjects) == [f"alert {n}" for n in range(6)]


def test_a_failed_message_is_released_with_its_error_and_retried_later(engine: Engine) -> None:
    now = [T0]
    outbox = _outbox(engine, clock=lambda: now[0])
    message_id = outbox.add(Pending("report", "r", "m"))
    [kept] = outbox.take(limit=5, hold_seconds=60)
    assert outbox.take(limit=5, hold_seconds=60) == []  # claimed meanwhile
    outbox.failed(kept.message_id, "refused the login; Password=hunter2xyz")
    [again] = outbox.take(limit=5, hold_seconds=60)
    assert again.attempts == 1 and again.last_error == "refused the login; Password=***"
    now[0] += timedelta(seconds=61)  # a sender that died: its claim runs out
    [late] = outbox.take(limit=5, hold_seconds=60)
    outbox.sent(late.message_id)
    assert outbox.pending() == [] and late.message_id == message_id


def test_the_outbox_is_bounded(engine: Engine) -> None:
    outbox = _outbox(engine)
    ids = [outbox.add(Pending("report", f"r{n}", "m")) for n in range(5)]
    for _ in range(3):
        outbox.failed(ids[1], "refused")
    dropped = outbox.drop_excess(keep=3, max_attempts=3)
    assert sorted(d.subject for d in dropped) == ["r0", "r1"]
    assert [k.subject for k in outbox.pending()] == ["r2", "r3", "r4"]
