"""The framework-free handlers: parameters, correlation ids, the error mapping, nothing escapes."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from cleversync import httpapi
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
from cleversync.orchestrator import RunResult
from cleversync.redaction import Redactor, mask_credentials
from cleversync.sync.school import SchoolResult

SECRET = "pa55w0rd-that-must-not-leak"


class FakeOrchestrator:
    def __init__(self, result: RunResult | BaseException) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []
        self.purged = 0

    def run(self, **kwargs: Any) -> RunResult:
        self.calls.append(kwargs)
        if isinstance(self.result, BaseException):
            raise self.result
        self.result.correlation_id = kwargs.get("correlation_id") or "generated"
        return self.result

    def purge_history(self) -> int:
        self.purged += 1
        return 0


# The composition root's Redactor, as the handlers receive it.
REDACTOR = Redactor()
redact = REDACTOR.redact


def factory(orchestrator: FakeOrchestrator | BaseException) -> Callable[[], FakeOrchestrator]:
    """An orchestrator factory, as the handlers receive it (raising what building one raises)."""

    def build() -> FakeOrchestrator:
        if isinstance(orchestrator, BaseException):
            raise orchestrator
        return orchestrator

    return build


def run_of(*statuses: str, error: str | None = None) -> RunResult:
    schools = [
        SchoolResult(n, f"School {n}", 1, status, error=error)
        for n, status in enumerate(statuses, 1)
    ]
    overall = "Failed" if "Failed" in statuses else "Success"
    return RunResult("", overall, 12, schools)


def call_sync(orchestrator: FakeOrchestrator, params: dict[str, str], headers=None):
    return httpapi.sync(params, headers or {}, factory(orchestrator), redact)


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
    orchestrator = FakeOrchestrator(run_of("Success"))
    status, body, _ = call_sync(orchestrator, params)
    assert status == 400 and named in body["error"]
    assert orchestrator.calls == []  # nothing ran


def test_input_echoed_in_an_error_is_shortened_and_plain() -> None:
    status, body, _ = call_sync(FakeOrchestrator(run_of()), {"schoolId": "<script>" + "9" * 80})
    assert status == 400
    assert "<script>" not in body["error"] and "..." in body["error"]


# --- correlation ids ----------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Correlation-Id", "x-correlation-id"])
def test_a_sane_correlation_id_is_kept(header: str) -> None:
    orchestrator = FakeOrchestrator(run_of("Success"))
    status, body, headers = call_sync(orchestrator, {"schoolId": "1"}, {header: "run-42-abc"})
    assert status == 200
    assert body["correlationId"] == "run-42-abc" == headers["x-correlation-id"]
    assert orchestrator.calls[0]["correlation_id"] == "run-42-abc"
    assert orchestrator.calls[0]["trigger"] == "http"


@pytest.mark.parametrize("value", ["", "a" * 65, "has space", "semi;colon", "ünïcode"])
def test_an_insane_correlation_id_is_replaced(value: str) -> None:
    new = httpapi.correlation_id_from({"x-correlation-id": value})
    assert new != value and len(new) == 32
    assert httpapi.correlation_id_from({}) != httpapi.correlation_id_from({})


# --- outcomes -----------------------------------------------------------------------------


def test_a_failed_run_is_still_a_200() -> None:
    status, body, _ = call_sync(FakeOrchestrator(run_of("Failed", "Success")), {})
    assert status == 200 and body["status"] == "Failed"
    assert [s["status"] for s in body["schools"]] == ["Failed", "Success"]


def test_a_single_school_skipped_for_its_lease_is_a_409() -> None:
    result = run_of("Skipped", error="school 1 is already being synced (by host:1:abc)")
    status, body, headers = call_sync(FakeOrchestrator(result), {"schoolId": "1"})
    assert status == 409
    assert "already being synced" in body["error"]
    assert body["correlationId"] == headers["x-correlation-id"]


def test_a_skipped_school_in_a_district_run_is_a_200() -> None:
    status, body, _ = call_sync(FakeOrchestrator(run_of("Skipped", "Success")), {"districtId": "1"})
    assert status == 200 and [s["status"] for s in body["schools"]] == ["Skipped", "Success"]


def test_a_configuration_error_is_a_500_naming_the_setting() -> None:
    error = ConfigurationError("bad page size", setting="CleverSync__Sync__PageSize")
    status, body, _ = httpapi.sync({}, {}, factory(error), redact)
    assert status == 500
    assert body["setting"] == "CleverSync__Sync__PageSize" and body["error"] == "bad page size"


def test_an_unexpected_error_is_a_500_without_its_message(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="cleversync"):
        status, body, _ = call_sync(FakeOrchestrator(RuntimeError(f"boom {SECRET}")), {})
    assert status == 500
    assert "RuntimeError" in body["error"] and SECRET not in str(body)
    assert any(r.exc_info for r in caplog.records)  # the details are in the logs


def test_no_registered_secret_leaves_in_a_body() -> None:
    REDACTOR.register(SECRET)
    result = run_of("Failed", error=f"could not connect with {SECRET}")
    status, body, _ = call_sync(FakeOrchestrator(result), {})
    assert status == 200 and SECRET not in str(body)
    status, body, _ = call_sync(FakeOrchestrator(DatabaseUnavailableError(f"no {SECRET}")), {})
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
    orchestrator = FakeOrchestrator(DatabaseUnavailableError("SessionDb is down"))
    with caplog.at_level(logging.INFO, logger="cleversync"):
        assert httpapi.scheduled_sync(factory(orchestrator), redact, past_due=True) is None
    assert orchestrator.purged == 1 and orchestrator.calls[0]["trigger"] == "timer"
    messages = [r.getMessage() for r in caplog.records]
    assert any("past due" in m for m in messages)
    assert any("SessionDb is down" in m for m in messages)


def test_the_timer_raises_nothing_when_it_cannot_start() -> None:
    unbuildable = factory(ConfigurationError("bad", setting="CleverSync__Sync__PageSize"))
    assert httpapi.scheduled_sync(unbuildable, redact, past_due=False) is None


@pytest.mark.parametrize(
    "params",
    [
        {"allowMassDelete": "true"},
        {"districtId": "1", "allowMassDelete": "true"},
        {"allowMassDelete": "TRUE", "full": "true"},
    ],
)
def test_allow_mass_delete_without_a_school_is_a_400(params: dict[str, str]) -> None:
    orchestrator = FakeOrchestrator(run_of("Success"))
    status, body, _ = call_sync(orchestrator, params)
    assert status == 400
    assert "allowMassDelete" in body["error"] and "schoolId" in body["error"]
    assert orchestrator.calls == []  # nothing ran, no school lost its guard
