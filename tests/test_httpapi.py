"""The framework-free handlers: parameters, correlation ids, the error mapping, nothing escapes."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from cleversync import httpapi
from cleversync.db.sessiondb.runs import RunRecord, RunSchool
from cleversync.errors import (
    CleverAuthError,
    ConfigurationError,
    DatabaseError,
    DatabaseTransientError,
    DatabaseUnavailableError,
    LeaseHeldError,
    NotFoundError,
    SecretStoreUnavailableError,
    UsageError,
)
from cleversync.queue import QueueUnavailableError
from cleversync.redaction import Redactor, mask_credentials

SECRET = "pa55w0rd-that-must-not-leak"


class FakeOrchestrator:
    def __init__(self) -> None:
        self.purged = 0
        self.closed = 0

    def targets(self, **kwargs: Any) -> list[tuple[int, Any]]:
        school = kwargs.get("school_id")
        return [(school or n, None) for n in ([1] if school else [1, 2])]

    def close_expired(self, correlation_id: str) -> None:
        self.closed += 1

    def purge_history(self) -> int:
        self.purged += 1
        return 0


# The composition root's Redactor, as the handlers receive it.
REDACTOR = Redactor()
redact = REDACTOR.redact
process_redactor = REDACTOR


class FakeQueued:
    """What the handlers use of QueuedRuns: queue a run (or fail to), check a lease."""

    def __init__(self, error: BaseException | None = None, held: bool = False) -> None:
        self.error = error
        self.held = held
        self.orchestrator = FakeOrchestrator()
        self.calls: list[dict[str, Any]] = []
        self.lease_checks: list[int] = []

    def check_not_leased(self, school_id: int) -> None:
        self.lease_checks.append(school_id)
        if self.held:
            raise LeaseHeldError(f"school {school_id} is already being synced (by host:1:abc)")

    def enqueue_run(self, targets: list[tuple[int, Any]], **kwargs: Any) -> RunRecord:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        now = datetime(2024, 1, 1)
        return RunRecord(
            7,
            kwargs.get("correlation_id") or "generated",
            kwargs["trigger"],
            now,
            False,
            False,
            None,
            None,
            [RunSchool(n, f"School {n}", "Queued", 0, now, None, None, None) for n, _ in targets],
        )

    def purge_runs(self) -> int:
        return 0


class FakeServices:
    def __init__(self, queued: FakeQueued | BaseException) -> None:
        self._queued = queued

    def queued_runs(self) -> FakeQueued:
        if isinstance(self._queued, BaseException):
            raise self._queued
        return self._queued


def factory(orchestrator: FakeOrchestrator | BaseException) -> Callable[[], FakeOrchestrator]:
    """An orchestrator factory, as the handlers receive it (raising what building one raises)."""

    def build() -> FakeOrchestrator:
        if isinstance(orchestrator, BaseException):
            raise orchestrator
        return orchestrator

    return build


class FakeRuntime:
    """What the queue handlers use of a Runtime: ``services`` and ``redact``."""

    def __init__(self, services: FakeServices | BaseException) -> None:
        self._services = services

    @property
    def services(self) -> FakeServices:
        if isinstance(self._services, BaseException):
            raise self._services
        return self._services

    def redact(self, text: str) -> str:
        return REDACTOR.redact(text)


def call_sync(queued: FakeQueued, params: dict[str, str], headers=None):
    return httpapi.sync(params, headers or {}, FakeRuntime(FakeServices(queued)))


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, httpapi.SyncParams()),
        ({"schoolId": "7"}, httpapi.SyncParams(school_id=7)),
        ({"districtid": "3", "FULL": "TRUE"}, httpapi.SyncParams(district_id=3, full=True)),
        (
            {"schoolId": "1", "allowMassDelete": "true", "full": "false"},
            httpapi.SyncParams(school_id=1, allow_mass_delete=True),
        ),
        ({"schoolId": "2", "code": "the-function-key"}, httpapi.SyncParams(school_id=2)),
    ],
)
def test_sync_parameters(params: dict[str, str], expected: httpapi.SyncParams) -> None:
    assert httpapi.parse_sync_params(params) == expected


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"schoolId": "abc"}, "schoolId"),
        ({"schoolId": "0"}, "schoolId"),
        ({"schoolId": "-4"}, "schoolId"),
        ({"schoolId": ""}, "schoolId"),
        ({"schoolId": " 5"}, "schoolId"),
        ({"districtId": "1.5"}, "districtId"),
        ({"districtId": "99999999999"}, "districtId"),
        ({"schoolId": "1", "districtId": "2"}, "districtId"),
        ({"full": "yes"}, "full"),
        ({"full": ""}, "full"),
        ({"allowMassDelete": "1"}, "allowMassDelete"),
        ({"schoolId": "1", "SchoolID": "2"}, "schoolId"),
        ({"school": "1"}, "school"),
    ],
)
def test_malformed_parameters_are_a_400_naming_the_parameter(
    params: dict[str, str], named: str
) -> None:
    with pytest.raises(UsageError, match=named):
        httpapi.parse_sync_params(params)
    queued = FakeQueued()
    status, body, _ = call_sync(queued, params)
    assert status == 400 and named in body["error"]
    assert queued.calls == []  # nothing ran


def test_input_echoed_in_an_error_is_shortened_and_plain() -> None:
    status, body, _ = call_sync(FakeQueued(), {"schoolId": "<script>" + "9" * 80})
    assert status == 400
    assert "<script>" not in body["error"] and "..." in body["error"]


# --- correlation ids ----------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Correlation-Id", "x-correlation-id"])
def test_a_sane_correlation_id_is_kept(header: str) -> None:
    queued = FakeQueued()
    status, body, headers = call_sync(queued, {"schoolId": "1"}, {header: "run-42-abc"})
    assert status == 202
    assert body["correlationId"] == "run-42-abc" == headers["x-correlation-id"]
    assert queued.calls[0]["correlation_id"] == "run-42-abc"
    assert queued.calls[0]["trigger"] == "http"


@pytest.mark.parametrize("value", ["", "a" * 65, "has space", "semi;colon", "ünïcode"])
def test_an_insane_correlation_id_is_replaced(value: str) -> None:
    new = httpapi.correlation_id_from({"x-correlation-id": value})
    assert new != value and len(new) == 32
    assert httpapi.correlation_id_from({}) != httpapi.correlation_id_from({})


# --- outcomes -----------------------------------------------------------------------------


def test_a_queued_run_is_a_202_with_its_status_url() -> None:
    status, body, headers = call_sync(FakeQueued(), {"districtId": "1", "full": "true"})
    assert status == 202
    assert body == {
        "runId": 7,
        "correlationId": headers["x-correlation-id"],
        "status": "Queued",
        "schools": [1, 2],
        "statusUrl": "/api/sync/runs/7",
    }
    assert headers["Location"] == "/api/sync/runs/7"


def test_a_single_school_being_synced_is_a_409() -> None:
    queued = FakeQueued(held=True)
    status, body, headers = call_sync(queued, {"schoolId": "1"})
    assert status == 409
    assert "already being synced" in body["error"]
    assert body["correlationId"] == headers["x-correlation-id"]
    assert queued.calls == []  # nothing queued


def test_a_district_run_is_queued_whatever_its_schools_leases() -> None:
    queued = FakeQueued(held=True)
    status, _, _ = call_sync(queued, {"districtId": "1"})
    assert status == 202 and queued.lease_checks == []


def test_a_queue_that_cannot_be_reached_is_a_503() -> None:
    error = QueueUnavailableError("sync run 7 could not be queued: could not write to queue")
    status, body, headers = call_sync(FakeQueued(error), {})
    assert status == 503 and "could not be queued" in body["error"]
    assert headers["Retry-After"] == "30"


def test_a_configuration_error_is_a_500_naming_the_setting() -> None:
    error = ConfigurationError("bad page size", setting="CleverSync__Sync__PageSize")
    status, body, _ = httpapi.sync({}, {}, FakeRuntime(error))
    assert status == 500
    assert body["setting"] == "CleverSync__Sync__PageSize" and body["error"] == "bad page size"


def test_an_unexpected_error_is_a_500_without_its_message(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="cleversync"):
        status, body, _ = call_sync(FakeQueued(RuntimeError(f"boom {SECRET}")), {})
    assert status == 500
    assert "RuntimeError" in body["error"] and SECRET not in str(body)
    assert any(r.exc_info for r in caplog.records)  # the details are in the logs


def test_no_registered_secret_leaves_in_a_body() -> None:
    process_redactor.register(SECRET)
    status, body, _ = call_sync(FakeQueued(DatabaseUnavailableError(f"no {SECRET}")), {})
    assert status == 503 and SECRET not in str(body)


# --- the error mapping --------------------------------------------------------------------


def sqlite_error(message: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UsageError("bad"), 400),
        (NotFoundError("no school 9"), 404),
        (LeaseHeldError("held"), 409),
        (ConfigurationError("bad"), 500),
        (SecretStoreUnavailableError("vault down"), 503),
        (DatabaseUnavailableError("SessionDb down"), 503),
        (DatabaseTransientError("busy"), 503),
        (sqlite_error("unable to open database file"), 503),
        (sqlite_error("database is locked"), 503),
        (DatabaseError("constraint"), 500),
        (CleverAuthError("refused"), 500),
        (KeyError("x"), 500),
    ],
)
def test_the_error_mapping(error: BaseException, status: int) -> None:
    got, body, headers = httpapi.error_response(error, redact=redact, correlation_id="c-1")
    assert got == status
    assert set(body) == {"error", "correlationId"} and body["error"]
    assert ("Retry-After" in headers) == (status == 503)


# --- health and the timer -----------------------------------------------------------------


def test_a_health_endpoint_that_breaks_still_answers() -> None:
    class BrokenHealth:
        def report(self) -> Any:
            raise RuntimeError("bug")

    broken: Any = BrokenHealth()
    status, body, headers = httpapi.health(broken, redact)
    assert status == 503 and body == {"status": "Unhealthy", "checkedAt": None, "checks": {}}
    assert headers["Cache-Control"] == "no-store"
    status, body, headers = httpapi.health_details(broken, redact)
    assert status == 503 and body["status"] == "Unhealthy"
    assert "RuntimeError" in body["error"] and headers["Cache-Control"] == "no-store"


def test_health_answers_starting_before_the_runtime_exists() -> None:
    status, body, headers = httpapi.health(None, mask_credentials)
    assert status == 200 and body["status"] == "Degraded" and body["checkedAt"] is None
    assert {check["status"] for check in body["checks"].values()} == {"Pending"}
    assert headers["Cache-Control"] == "no-store"
    status, details, _ = httpapi.health_details(None, mask_credentials)
    assert status == 200 and details["refresh"]["state"] == "Starting"


def test_the_timer_purges_even_when_the_run_fails(caplog: pytest.LogCaptureFixture) -> None:
    queued = FakeQueued(DatabaseUnavailableError("SessionDb is down"))
    with caplog.at_level(logging.INFO, logger="cleversync"):
        assert httpapi.scheduled_sync(FakeRuntime(FakeServices(queued)), past_due=True) is None
    assert queued.orchestrator.purged == 1 and queued.calls[0]["trigger"] == "timer"
    assert queued.orchestrator.closed == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("past due" in m for m in messages)
    assert any("SessionDb is down" in m for m in messages)


def test_the_timer_raises_nothing_when_it_cannot_start() -> None:
    runtime = FakeRuntime(ConfigurationError("bad", setting="CleverSync__Sync__PageSize"))
    assert httpapi.scheduled_sync(runtime, past_due=False) is None


@pytest.mark.parametrize(
    "params",
    [
        {"allowMassDelete": "true"},
        {"districtId": "1", "allowMassDelete": "true"},
        {"allowMassDelete": "TRUE", "full": "true"},
    ],
)
def test_allow_mass_delete_without_a_school_is_a_400(params: dict[str, str]) -> None:
    queued = FakeQueued()
    status, body, _ = call_sync(queued, params)
    assert status == 400
    assert "allowMassDelete" in body["error"] and "schoolId" in body["error"]
    assert queued.calls == []  # nothing ran, no school lost its guard
