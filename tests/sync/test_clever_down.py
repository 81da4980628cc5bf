"""Clever down: once a district's requests failed through every retry, the rest of the run
fails at once ("Clever unreachable: ...; not tried") instead of each entity of each school
going through its own retries; the next run tries again.

Waits are recorded, not slept (the real backoff, 2 s doubling, on an injected sleep), so a
run's cost is measured in requests and in seconds it would have waited.
"""

from __future__ import annotations

import socket

import pytest

from cleversync.sandbox import Fault, Sandbox
from cleversync.services import Services
from cleversync.settings import Settings
from tests.world import World

# One entity's retry cycle at the default policy: 2, 4, 8, 16, 32 s plus up to 1 s jitter each.
CYCLE = (62.0, 67.0)


@pytest.fixture
def backend() -> str:
    return "sqlite"  # what matters here is requests and waits, not storage


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(seed=5, districts=1, schools=3, students=12, teachers=2, sections=2)


# The real backoff (its sleeps recorded), one school at a time: the count of requests is exact.
RECORDING = {
    "CleverSync__Retry__CleverApi__BackoffBase": "2",
    "CleverSync__Concurrency__MaxSchoolsInParallel": "1",
}


def run_district(world: World, sleeps: list[float], **env: str):
    settings = Settings.load({**world.env, **RECORDING, **env})
    services = Services(
        settings, secret_store=world.secrets, redactor=world.redactor, sleep=sleeps.append
    )
    try:
        return services.orchestrator().run(district_id=world.districts[0].district_id)
    finally:
        services.close()


def data_requests(world: World) -> list[str]:
    return [r.target for r in world.sandbox.request_log if r.target.startswith("/v3.0/")]


def untried(message: str | None) -> bool:
    return bool(message) and message.startswith("Clever unreachable: ") and "not tried" in message


def test_a_district_with_clever_answering_503_fails_within_one_retry_cycle(
    world: World,
) -> None:
    sleeps: list[float] = []
    # Clever goes down after the first school's event baseline: every request answers 503.
    world.sandbox.faults.add(Fault("status", path="/v3.0/*", status=503, times=None, after=1))
    world.sandbox.request_log.clear()
    run = run_district(world, sleeps)
    assert run.status == "Failed"
    first, second, third = run.schools
    # The first school: the event baseline worked, students failed through every retry...
    students, teachers, sections = first.entities
    assert "HTTP 503" in students.error and not untried(students.error)
    # ...and from then on nothing is tried: its other entities, and the other schools.
    assert untried(teachers.error) and untried(sections.error)
    assert "HTTP 503" in teachers.error
    for school in (second, third):
        assert school.status == "Failed"
        assert all(untried(o.error) for o in school.entities)
        rows = world.history(school_id=school.school_id)
        assert {r["Status"] for r in rows} == {"Failed"}
        assert all(untried(r["ErrorMessage"]) for r in rows)
    requests = data_requests(world)
    # The baseline, one entity's six tries, and one district-wide request confirming that
    # Clever is down (not just that school's pages); nothing after.
    assert len(requests) == 1 + 6 + 1
    assert sum("/users" in r for r in requests) == 6
    assert requests[-1].startswith("/v3.0/districts")
    assert CYCLE[0] <= sum(sleeps) <= CYCLE[1] <= 1.5 * CYCLE[0]

    world.sandbox.faults.clear()  # the next run tries again
    run = run_district(world, [])
    assert run.status == "Success"


def test_a_district_whose_clever_refuses_connections_fails_within_one_retry_cycle(
    world: World,
) -> None:
    sleeps: list[float] = []
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = run_district(world, sleeps, CleverSync__Clever__ApiBaseUrl=f"http://127.0.0.1:{port}")
    assert run.status == "Failed"
    first, *others = run.schools
    # The first school's event baseline failed through every retry: its whole run fails.
    assert all("could not be reached" in o.error for o in first.entities)
    for school in others:
        assert all(untried(o.error) for o in school.entities)
        assert "could not be reached" in school.entities[0].error
    assert CYCLE[0] <= sum(sleeps) <= CYCLE[1]  # one cycle, not one per school
