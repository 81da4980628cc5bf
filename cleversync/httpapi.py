"""The Functions app's handlers, free of azure.functions: POST /api/sync and its run status,
the two health routes, the timer, the sync queue's triggers.

HTTP handlers take plain mappings and the parts of the Runtime they use (an orchestrator
factory, the health monitor, the composition root's ``redact``) and return ``(status,
json_body, headers)``; nothing they call can make them raise, and every string in a body
passes through ``redact``. One
helper, ``error_response``, maps our error types to status codes and JSON bodies::

    UsageError 400 · NotFoundError 404 · LeaseHeldError 409 · ConfigurationError 500 (names
    the setting) · SessionDb, secret store or sync queue unreachable 503 · anything else 500
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cleversync.db.errors import database_error
from cleversync.errors import (
    CleverSyncError,
    ConfigurationError,
    DatabaseTransientError,
    DatabaseUnavailableError,
    LeaseHeldError,
    NotFoundError,
    SecretStoreUnavailableError,
    UsageError,
)
from cleversync.health.checks import ServicesProbe, starting_report
from cleversync.queue import QueueUnavailableError
from cleversync.vocabulary import HealthStatus

if TYPE_CHECKING:
    from cleversync.db.sessiondb.runs import RunRecord
    from cleversync.health.monitor import HealthMonitor
    from cleversync.runtime import Runtime

logger = logging.getLogger(__name__)

Response = tuple[int, dict[str, Any], dict[str, str]]
Redact = Callable[[str], str]

CORRELATION_HEADER = "x-correlation-id"
_SANE_CORRELATION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_MAX_ID = 2**31 - 1  # SQL int keys
RETRY_AFTER_SECONDS = 30
RUNS_ROUTE = "/api/sync/runs"  # GET {RUNS_ROUTE}/{runId}: a queued run's status
# Query parameters of POST /api/sync, matched ignoring case; `code` is the function key.
_PARAMETERS = {
    "schoolid": "schoolId",
    "districtid": "districtId",
    "full": "full",
    "allowmassdelete": "allowMassDelete",
}
_HOST_PARAMETERS = frozenset({"code"})

_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (NotFoundError, 404),
    (UsageError, 400),
    (LeaseHeldError, 409),
    (ConfigurationError, 500),
    (SecretStoreUnavailableError, 503),
    (DatabaseTransientError, 503),
    (DatabaseUnavailableError, 503),
    (QueueUnavailableError, 503),
)


@dataclass(frozen=True)
class SyncParams:
    school_id: int | None = None
    district_id: int | None = None
    full: bool = False
    allow_mass_delete: bool = False


# --- POST /api/sync -----------------------------------------------------------------------


def sync(params: Mapping[str, str], headers: Mapping[str, str], runtime: Runtime) -> Response:
    """Queue a sync run: 202 with the run's id and status URL (also in ``Location``), 409 when
    the one school asked for is being synced right now, else an error response."""
    redact = runtime.redact
    correlation_id = correlation_id_from(headers)
    response_headers = {CORRELATION_HEADER: correlation_id}
    try:
        request = parse_sync_params(params)
        queued = runtime.services.queued_runs()
        targets = queued.orchestrator.targets(
            school_id=request.school_id, district_id=request.district_id
        )
        if request.school_id is not None:
            queued.check_not_leased(request.school_id)
        run = queued.enqueue_run(
            targets,
            full=request.full,
            allow_mass_delete=request.allow_mass_delete,
            trigger="http",
            correlation_id=correlation_id,
        )
        status_url = f"{RUNS_ROUTE}/{run.run_id}"
        response_headers["Location"] = status_url
        status, body = (
            202,
            {
                "runId": run.run_id,
                "correlationId": run.correlation_id,
                "status": "Queued",
                "schools": [school.school_id for school in run.schools],
                "statusUrl": status_url,
            },
        )
    except Exception as exc:
        status, body, extra = error_response(exc, redact=redact, correlation_id=correlation_id)
        response_headers.update(extra)
    return status, _scrub(body, redact), response_headers


def parse_sync_params(params: Mapping[str, str]) -> SyncParams:
    """The query string of POST /api/sync; UsageError naming the parameter at fault."""
    values: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in params.items():
        name = _PARAMETERS.get(key.lower())
        if name is None:
            if key.lower() not in _HOST_PARAMETERS:
                unknown.append(_shown(key))
            continue
        if name in values:
            raise UsageError(f"{name} is given twice")
        values[name] = value
    if unknown:
        raise UsageError(
            f"unknown parameter {', '.join(sorted(unknown))}: POST /api/sync takes schoolId or "
            "districtId, full=true|false and allowMassDelete=true|false"
        )
    school_id = _positive_int(values, "schoolId")
    district_id = _positive_int(values, "districtId")
    if school_id is not None and district_id is not None:
        raise UsageError("give schoolId or districtId, not both (neither: every active school)")
    allow_mass_delete = _boolean(values, "allowMassDelete")
    if allow_mass_delete and school_id is None:
        raise UsageError(
            "allowMassDelete=true applies to exactly one school: give it with schoolId "
            "(e.g. ?schoolId=7&allowMassDelete=true)"
        )
    return SyncParams(
        school_id=school_id,
        district_id=district_id,
        full=_boolean(values, "full"),
        allow_mass_delete=allow_mass_delete,
    )


def correlation_id_from(headers: Mapping[str, str]) -> str:
    """The caller's ``x-correlation-id`` when it is sane (<= 64 of [A-Za-z0-9-]), else a new one."""
    try:
        value = next((v for k, v in headers.items() if k.lower() == CORRELATION_HEADER), None)
    except Exception:  # a header mapping we cannot read is no reason to fail the request
        value = None
    value = (value or "").strip()
    return value if _SANE_CORRELATION_ID.fullmatch(value) else uuid.uuid4().hex


# --- GET /api/sync/runs/{runId} -----------------------------------------------------------


def run_status(run_id: str, runtime: Runtime) -> Response:
    """200 with the run and its schools' progress, 404 for an unknown run."""
    try:
        if not re.fullmatch(r"[0-9]{1,10}", run_id or "") or not 1 <= int(run_id) <= _MAX_ID:
            raise NotFoundError(f"no sync run has id {_shown(run_id or '')!r}")
        body = runtime.services.queued_runs().run_status(int(run_id))
        if body is None:
            raise NotFoundError(f"no sync run has id {run_id}")
        return 200, _scrub(body, runtime.redact), {"Cache-Control": "no-store"}
    except Exception as exc:
        return error_response(exc, redact=runtime.redact)


# --- the sync queue -------------------------------------------------------------------------


def sync_school(body: str | bytes, dequeue_count: int, runtime: Runtime) -> None:
    """One school's message: sync it here. Raises only when the host must deliver the
    message again (a failure that may pass, or SessionDb unreachable), with a clean error."""
    try:
        runtime.services.queued_runs().process_message(body, dequeue_count)
    except Exception as exc:
        # Whatever it is (Clever or SessionDb down, a setting, a bug), the host tries again
        # and, after its last attempt, the poison trigger closes the school's part Failed.
        ours = _translate(exc)
        if ours is None:
            _log_failure("A school's sync message failed", exc, {}, runtime.redact)
            raise RetryMessageError(f"unexpected {type(exc).__name__}; see the logs") from None
        raise RetryMessageError(runtime.redact(str(ours))) from None


def sync_school_poison(body: str | bytes, runtime: Runtime) -> None:
    """A message the host gave up on: its school's part of the run closes Failed."""
    try:
        runtime.services.queued_runs().process_poison(body)
    except Exception as exc:
        _log_failure("Recording a poison sync message failed", exc, {}, runtime.redact)


class RetryMessageError(Exception):
    """What the queue trigger raises so the host delivers the message again (redacted)."""


def _positive_int(values: Mapping[str, str], name: str) -> int | None:
    raw = values.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", raw) or not 1 <= int(raw) <= _MAX_ID:
        raise UsageError(f"{name} must be a positive integer, not {_shown(raw)!r}")
    return int(raw)


def _boolean(values: Mapping[str, str], name: str) -> bool:
    raw = values.get(name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise UsageError(f"{name} must be true or false, not {_shown(raw)!r}")
    return raw.lower() == "true"


def _shown(text: str, width: int = 40) -> str:
    """Caller input as it may appear in a message: short, plain characters only."""
    cleaned = re.sub(r"[^A-Za-z0-9 _.:-]", "?", text)
    return cleaned if len(cleaned) <= width else cleaned[: width - 3] + "..."


# --- GET /health/clever-auth (anonymous) and GET /api/health (function key) ----------------


def health(monitor: HealthMonitor | None, redact: Redact) -> Response:
    """The anonymous probe: the overall status, ``checkedAt`` and each check's status only.

    200 Healthy or Degraded, 503 Unhealthy. ``monitor`` is None while the process is still
    building its clients: the answer is then "starting" (Degraded, every check Pending), at
    once (no secret has been read yet: the credential patterns are all ``redact`` needs).
    """
    return _health(monitor, redact, detailed=False)


def health_details(monitor: HealthMonitor | None, redact: Redact) -> Response:
    """The same report with everything behind it (districts, errors); for function-key callers."""
    return _health(monitor, redact, detailed=True)


def _health(monitor: HealthMonitor | None, redact: Redact, *, detailed: bool) -> Response:
    headers = {"Cache-Control": "no-store"}
    try:
        report = starting_report(ServicesProbe.names) if monitor is None else monitor.report()
        body = report.body if detailed else report.public_body()
        return report.http_status, _scrub(body, redact), headers
    except Exception as exc:
        logger.exception("The health endpoint failed")
        failed: dict[str, Any] = {"status": HealthStatus.UNHEALTHY, "checkedAt": None, "checks": {}}
        if detailed:
            failed["error"] = f"the health check itself failed ({type(exc).__name__}); see the logs"
        return 503, failed, headers


# --- the timer ----------------------------------------------------------------------------


def scheduled_sync(runtime: Runtime, *, past_due: bool) -> RunRecord | None:
    """Queue a run of every active school, close abandoned InProgress rows, purge old history
    and runs; syncs nothing itself. Logs every failure, raises none."""
    redact = runtime.redact
    correlation_id = uuid.uuid4().hex
    dims = {"CorrelationId": correlation_id, "Trigger": "timer", "PastDue": past_due}
    if past_due:
        logger.warning(
            "The sync timer is past due (a scheduled run was missed); running now", extra=dims
        )
    else:
        logger.info("Scheduled sync starting", extra=dims)
    try:
        queued = runtime.services.queued_runs()
    except Exception as exc:
        _log_failure("The scheduled sync could not start", exc, dims, redact)
        return None
    run = None
    try:
        targets = queued.orchestrator.targets()
        run = queued.enqueue_run(targets, trigger="timer", correlation_id=correlation_id)
    except Exception as exc:
        _log_failure("The scheduled sync could not be queued", exc, dims, runtime.redact)
    try:
        queued.orchestrator.close_expired(correlation_id)
    except Exception as exc:
        _log_failure("Closing expired SyncHistory rows failed", exc, dims, runtime.redact)
    try:
        queued.orchestrator.purge_history()
        queued.purge_runs()
    except Exception as exc:
        _log_failure("Purging old sync history failed", exc, dims, redact)
    return run


# --- errors -------------------------------------------------------------------------------


def error_response(
    exc: BaseException, *, redact: Redact, correlation_id: str | None = None
) -> Response:
    """The one mapping of errors to HTTP: status, ``{"error", "setting"?, "correlationId"?}``."""
    ours = _translate(exc)
    status = next((code for kind, code in _STATUS if isinstance(ours, kind)), 500)
    dims = {"CorrelationId": correlation_id, "StatusCode": status}
    if ours is None:
        logger.error("Unexpected error handling a request", exc_info=exc, extra=dims)
        message = f"internal error ({type(exc).__name__}); the details are in the logs"
    else:
        message = redact(str(ours))
        level = logging.ERROR if status >= 500 else logging.INFO
        logger.log(level, "Request answered %d: %s", status, message, extra=dims)
    body: dict[str, Any] = {"error": message}
    if isinstance(ours, ConfigurationError) and ours.setting:
        body["setting"] = ours.setting
    if correlation_id:
        body["correlationId"] = correlation_id
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else {}
    return status, body, headers


def _translate(exc: BaseException) -> CleverSyncError | None:
    """Our error for ``exc`` (SQLAlchemy errors escaping from SessionDb are translated)."""
    if isinstance(exc, CleverSyncError):
        return exc
    return database_error(exc, "SessionDb")


def _log_failure(what: str, exc: BaseException, dims: dict[str, Any], redact: Redact) -> None:
    ours = _translate(exc)
    if ours is None:
        logger.error("%s: unexpected %s", what, type(exc).__name__, exc_info=exc, extra=dims)
    else:
        logger.error("%s: %s", what, redact(str(ours)), extra=dims)


def _scrub(value: Any, redact: Redact) -> Any:
    """A copy of a JSON value with every string redacted: no secret leaves in a body."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _scrub(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, redact) for item in value]
    return value
