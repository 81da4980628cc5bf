"""Queued runs end to end: the real Storage queue API (Azurite), the Clever sandbox over HTTP,
SessionDb and the school databases on SQLite and PostgreSQL, messages delivered as the
Functions host delivers them (tests/queue/driver.py)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from cleversync import httpapi
from cleversync.orchestrator import ALERT_EVENT
from cleversync.queue import QueueUnavailableError, StorageSyncQueue, SyncMessage
from cleversync.runs import DONE, DUPLICATE, QueuedRuns
from cleversync.runtime import Runtime
from cleversync.sandbox import Fault
from cleversync.services import Services
from cleversync.sync.school import Progress
from tests.azurite import Azurite
from tests.queue.driver import Driver
from tests.world import World


class Setup:
    def __init__(self, world: World, azurite: Azurite, services: Services) -> None:
        self.world = world
        self.name = f"sync-{uuid.uuid4().hex[:12]}"
        self.services = services
        self.queue = StorageSyncQueue.from_environment(
            self.name, {"AzureWebJobsStorage": azurite.connection_string}
        )
        services.use_sync_queue(self.queue)
        self.queued = services.queued_runs()
        self.outcomes: list[str] = []
        self.driver = Driver(azurite.connection_string, self.name, self.deliver, self.poison)

    def deliver(self, body: str, dequeue_count: int) -> None:
        self.outcomes.append(self.queued.process_message(body, dequeue_count))

    def poison(self, body: str) -> None:
        self.queued.process_poison(body)

    def status(self, run_id: int) -> dict[str, Any]:
        found = self.queued.run_status(run_id)
        assert found is not None
        return found


@pytest.fixture
def setup(world: World, azurite: Azurite) -> Setup:
    return Setup(world, azurite, world.services)


def test_the_timer_queues_one_message_per_school_and_each_syncs(setup: Setup) -> None:
    world = setup.world
    run = httpapi.scheduled_sync(Runtime(setup.services), past_due=False)
    assert run is not None and [s.school_id for s in run.schools] == [1, 2]
    assert setup.driver.queue.get_queue_properties().approximate_message_count == 2
    assert world.history() == []  # the timer syncs nothing itself
    setup.driver.drain()
    status = setup.status(run.run_id)
    assert status["status"] == "Success" and status["trigger"] == "timer"
    assert [(s["schoolId"], s["status"]) for s in status["schools"]] == [
        (1, "Success"),
        (2, "Success"),
    ]
    for school, index in zip(status["schools"], (0, 1), strict=True):
        assert {e["entityType"] for e in school["entities"]} == {"Student", "Teacher", "Section"}
        assert len(world.students(world.school(index))) == len(
            world.sandbox.students(world.schools[index].clever_school_id)
        )


def test_a_post_answers_202_and_its_status_goes_queued_running_success(setup: Setup) -> None:
    runtime = Runtime(setup.services)
    status, body, headers = httpapi.sync({"schoolId": "1"}, {}, runtime)
    assert status == 202
    assert body["status"] == "Queued" and body["schools"] == [1]
    assert headers["Location"] == body["statusUrl"] == f"/api/sync/runs/{body['runId']}"
    seen = [httpapi.run_status(str(body["runId"]), runtime)[1]["status"]]

    def progress(_: Progress) -> None:
        seen.append(setup.status(body["runId"])["status"])

    queued = setup.queued
    watching = QueuedRuns(
        orchestrator=queued.orchestrator,
        runs=queued.runs,
        leases=queued.leases,
        queue=setup.queue,
        school_sync=lambda owner: setup.services.school_sync(owner=owner, on_progress=progress),
    )
    setup.queued = watching
    setup.driver.drain()
    code, final, _ = httpapi.run_status(str(body["runId"]), runtime)
    assert code == 200 and final["status"] == "Success"
    assert seen[0] == "Queued" and "Running" in seen
    assert [e["status"] for e in final["schools"][0]["entities"]] == ["Success"] * 3
    assert httpapi.run_status("999999", runtime)[0] == 404
    assert httpapi.run_status("x", runtime)[0] == 404


def test_a_school_whose_clever_is_down_is_tried_three_times_then_given_up(
    world: World, azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    services = world.make_services(CleverSync__Monitoring__AlertAfterConsecutiveFailures="1")
    try:
        setup = Setup(world, azurite, services)
        world.sandbox.faults.add(Fault("status", path="/v3.0/*", status=503, times=None))
        orchestrator = setup.queued.orchestrator
        run = setup.queued.enqueue_run(orchestrator.targets(school_id=1), trigger="http")
        with caplog.at_level(logging.ERROR, logger="cleversync"):
            setup.driver.drain()
        deliveries = setup.driver.deliveries
        assert [d.dequeue_count for d in deliveries] == [1, 2, 3]
        assert all(d.error is not None for d in deliveries)
        assert len(setup.driver.poisoned) == 1
        status = setup.status(run.run_id)
        [school] = status["schools"]
        assert status["status"] == school["status"] == "Failed" and school["attempts"] == 3
        assert school["error"].startswith("gave up after 3 attempts: ")
        rows = world.history(school_id=1)
        assert rows and {r["Status"] for r in rows} == {"Failed"}
        # Three attempts of one queued run are one failed run: one alert at a threshold of 1.
        assert orchestrator.history.failure_streak(1) == 1
        alerts = [r for r in caplog.records if getattr(r, "EventName", None) == ALERT_EVENT]
        assert len(alerts) == 1
    finally:
        services.close()


def test_a_message_delivered_twice_syncs_once(setup: Setup) -> None:
    orchestrator = setup.queued.orchestrator
    run = setup.queued.enqueue_run(orchestrator.targets(school_id=1), trigger="http")
    setup.queue.send(
        SyncMessage(run.run_id, 1, False, False, run.correlation_id, "http")
    )  # the same message again
    setup.driver.drain()
    assert sorted(setup.outcomes) == sorted([DONE, DUPLICATE])
    rows = setup.world.history(school_id=1)
    assert len(rows) == 3 and {r["CorrelationId"] for r in rows} == {run.correlation_id}


def test_an_inactive_school_is_skipped_and_its_message_completed(setup: Setup) -> None:
    orchestrator = setup.queued.orchestrator
    run = setup.queued.enqueue_run(orchestrator.targets(school_id=2), trigger="http")
    setup.world.services.registry.set_active(2, False)
    setup.driver.drain()
    [school] = setup.status(run.run_id)["schools"]
    assert school["status"] == "Skipped" and "inactive" in school["error"]
    assert setup.world.history() == []


def test_two_instances_never_sync_one_school_twice_at_once(setup: Setup) -> None:
    orchestrator = setup.queued.orchestrator
    run = setup.queued.enqueue_run(orchestrator.targets(), trigger="timer")
    for school in run.schools:  # every message twice: two instances may take one each
        setup.queue.send(
            SyncMessage(run.run_id, school.school_id, False, False, run.correlation_id, "timer")
        )
    setup.driver.drain(instances=2)
    assert all(d.error is None for d in setup.driver.deliveries)
    assert setup.status(run.run_id)["status"] == "Success"
    for school in run.schools:
        rows = setup.world.history(school_id=school.school_id)
        # One attempt: one start time, one row per entity.
        assert len({r["SyncStartTime"] for r in rows}) == 1 and len(rows) == 3


def test_a_message_whose_deliveries_all_died_is_closed_by_the_poison_trigger(
    setup: Setup,
) -> None:
    # Every delivery was killed mid-sync (the instance stopped): none closed the school's
    # part, so the poison trigger does, with a Failed history row for the failure streak.
    orchestrator = setup.queued.orchestrator
    run = setup.queued.enqueue_run(orchestrator.targets(school_id=1), trigger="http")
    for _ in range(3):
        setup.queued.runs.start_school(run.run_id, 1)
    setup.queued.runs.note_error(run.run_id, 1, "the instance stopped")
    body = SyncMessage(run.run_id, 1, False, False, run.correlation_id, "http").to_json()
    assert setup.queued.process_poison(body) is True
    assert setup.queued.process_poison(body) is False  # already closed
    [school] = setup.status(run.run_id)["schools"]
    assert school["status"] == "Failed"
    assert school["error"] == "gave up after 3 attempts: the instance stopped"
    rows = setup.world.history(school_id=1)
    assert len(rows) == 3 and {r["Status"] for r in rows} == {"Failed"}
    assert orchestrator.history.failure_streak(1) == 1


class BrokenQueue:
    """Sends ``good`` messages, then fails as an unreachable Storage account does."""

    def __init__(self, good: int) -> None:
        self.good = good
        self.sent: list[SyncMessage] = []

    def send(self, message: SyncMessage) -> None:
        if len(self.sent) >= self.good:
            raise QueueUnavailableError("could not write to queue sync (ServiceRequestError)")
        self.sent.append(message)


@pytest.mark.parametrize("good", [0, 1])
def test_schools_that_could_not_be_queued_are_failed(world: World, good: int) -> None:
    queue = BrokenQueue(good)
    world.services.use_sync_queue(queue)
    queued = world.services.queued_runs()
    targets = queued.orchestrator.targets()
    if good == 0:
        with pytest.raises(QueueUnavailableError, match="could not be queued"):
            queued.enqueue_run(targets, trigger="timer")
        run_id = 1
    else:
        run_id = queued.enqueue_run(targets, trigger="timer").run_id
    status = queued.run_status(run_id)
    assert status is not None
    schools = {s["schoolId"]: s for s in status["schools"]}
    assert [m.school_id for m in queue.sent] == [1][:good]
    unsent = [schools[n] for n in (1, 2)[good:]]
    assert all(s["status"] == "Failed" for s in unsent)
    assert all(s["error"].startswith("could not be queued: ") for s in unsent)
