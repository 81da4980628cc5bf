"""The per-school sync lease on a real SessionDb (SQLite and PostgreSQL), with a clock moved by
hand: taking it, refusing a live holder, taking over a dead one, renewing, releasing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from cleversync.db.engines import engine_for
from cleversync.db.schema import District, School
from cleversync.db.sessiondb.lease import Lease, Leases
from cleversync.errors import LeaseHeldError, LeaseLostError
from cleversync.settings import RetryPolicy

T0 = datetime(2024, 3, 1, 6, 0, 0)
DURATION = timedelta(minutes=5)
MIN = 60  # seconds


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)


@pytest.fixture
def engine(sessiondb_url: str) -> Iterator[Engine]:
    engine = engine_for(sessiondb_url)
    with engine.begin() as conn:
        conn.execute(
            insert(District),
            [{"CleverDistrictId": "d1", "Name": "D", "DistrictPrefix": "D1"} | _stamps()],
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
                | _stamps()
                for n in (1, 2)
            ],
        )
    yield engine
    engine.dispose()


def _stamps() -> dict[str, datetime]:
    return {"CreatedAt": T0, "UpdatedAt": T0}


def stored(engine: Engine, school_id: int = 1) -> tuple[str | None, float | None]:
    """(owner, seconds from T0 to the expiry) as SessionDb holds them."""
    with engine.connect() as conn:
        owner, expires = conn.execute(
            select(School.SyncLeaseOwner, School.SyncLeaseExpiresAt).where(
                School.SchoolId == school_id
            )
        ).one()
    return owner, (expires - T0).total_seconds() if expires else None


# Each step: (seconds since T0, action, owner, school, what happens, (owner, expiry) stored
# after it or None to skip that check). "ok<-A": taken over from A.
Step = tuple[float, str, str, int, str, tuple[str | None, float | None] | None]
SCENARIOS: list[tuple[str, list[Step]]] = [
    ("a free lease is taken", [(0, "acquire", "A", 1, "ok", ("A", 5 * MIN))]),
    (
        "a live lease refuses another run and stays as it was",
        [
            (0, "acquire", "A", 1, "ok", None),
            (4 * MIN, "acquire", "B", 1, "held", ("A", 5 * MIN)),
        ],
    ),
    (
        "the same run cannot take a lease it holds twice",
        [(0, "acquire", "A", 1, "ok", None), (1, "acquire", "A", 1, "held", ("A", 5 * MIN))],
    ),
    (
        "a lease not renewed in time is taken over",
        [
            (0, "acquire", "A", 1, "ok", None),
            (5 * MIN + 1, "acquire", "B", 1, "ok<-A", ("B", 10 * MIN + 1)),
        ],
    ),
    (
        "a released lease is free at once",
        [
            (0, "acquire", "A", 1, "ok", None),
            (10, "release", "A", 1, "ok", (None, None)),
            (11, "acquire", "B", 1, "ok", ("B", 11 + 5 * MIN)),
        ],
    ),
    (
        "renewing pushes the expiry out",
        [
            (0, "acquire", "A", 1, "ok", None),
            (4 * MIN, "renew", "A", 1, "ok", ("A", 9 * MIN)),
            (6 * MIN, "acquire", "B", 1, "held", None),
            (9 * MIN + 1, "acquire", "B", 1, "ok<-A", None),
        ],
    ),
    (
        "renewing often writes at most every 30 seconds",
        [
            (0, "acquire", "A", 1, "ok", None),
            (29, "renew", "A", 1, "ok", ("A", 5 * MIN)),
            (30, "renew", "A", 1, "ok", ("A", 30 + 5 * MIN)),
            (45, "renew", "A", 1, "ok", ("A", 30 + 5 * MIN)),
            (46, "renew!", "A", 1, "ok", ("A", 46 + 5 * MIN)),  # forced
        ],
    ),
    (
        "a run whose lease was taken over learns it when renewing",
        [
            (0, "acquire", "A", 1, "ok", None),
            (6 * MIN, "acquire", "B", 1, "ok<-A", None),
            (6 * MIN, "renew", "A", 1, "lost", ("B", 11 * MIN)),
        ],
    ),
    (
        "releasing a lease taken over leaves the new holder's",
        [
            (0, "acquire", "A", 1, "ok", None),
            (6 * MIN, "acquire", "B", 1, "ok<-A", None),
            (6 * MIN, "release", "A", 1, "ok", ("B", 11 * MIN)),
            (7 * MIN, "acquire", "C", 1, "held", None),
        ],
    ),
    (
        "each school has its own lease",
        [
            (0, "acquire", "A", 1, "ok", None),
            (1, "acquire", "B", 2, "ok", None),
            (2, "release", "A", 1, "ok", (None, None)),
            (3, "acquire", "C", 2, "held", None),
        ],
    ),
]


@pytest.mark.parametrize("steps", [s for _, s in SCENARIOS], ids=[n for n, _ in SCENARIOS])
def test_lease(engine: Engine, steps: list[Step]) -> None:
    clock = Clock()
    sleeps: list[float] = []
    leases = Leases(
        engine,
        policy=RetryPolicy(MaxAttempts=2, BackoffBase=0),
        clock=clock,
        sleep=sleeps.append,
        duration=DURATION,
    )
    held: dict[tuple[str, int], Lease] = {}
    for at, action, owner, school, expected, after in steps:
        clock.seconds = at
        what = f"{action} by {owner} at {at} s"
        outcome, message = "ok", ""
        try:
            if action == "acquire":
                lease = leases.acquire(school, owner)
                assert lease.school_id == school and lease.owner == owner, what
                if lease.taken_over_from:
                    outcome = f"ok<-{lease.taken_over_from}"
                held[owner, school] = lease
            elif action.startswith("renew"):
                held[owner, school].renew(force=action.endswith("!"))
            else:
                held[owner, school].release()
        except LeaseHeldError as error:
            outcome, message = "held", str(error)
        except LeaseLostError:
            outcome = "lost"
        assert outcome == expected, what
        if outcome == "held":  # the message names who holds it
            assert f"by {stored(engine, school)[0]}" in message, what
        if after is not None:
            assert stored(engine, school) == after, what
    assert sleeps == []
