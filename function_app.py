"""The Azure Functions app (Python v2 model): wiring only; the work is in the cleversync package.

Importing this module reads no setting and touches no network or database (the host indexes
it before anything is configured); the shared clients are built on the first invocation by
``cleversync.runtime``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import azure.functions as func

from cleversync import httpapi, runtime, threads
from cleversync.dashboard.hosted import HostedDashboard
from cleversync.redaction import mask_credentials

if TYPE_CHECKING:
    from cleversync.health.monitor import HealthMonitor

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Every handler takes the invocation's ``context`` (the worker passes it to a parameter of
# that name) and binds it: the host shows a log record in the invocation's log only when
# its thread carries the invocation id, and the threads the app starts get it from there.

# POST /api/sync?schoolId=N | districtId=N [&full=true] [&allowMassDelete=true]
sync_api = func.Blueprint()


@sync_api.function_name("sync")
@sync_api.route(
    route="api/sync", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION
)
def sync(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with threads.bind_invocation(context):
        return _render(httpapi.sync(req.params, req.headers, runtime.current()))


# GET /api/sync/runs/{runId}: a queued run's status (the 202's statusUrl).
@sync_api.function_name("sync_run_status")
@sync_api.route(
    route="api/sync/runs/{runId}", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION
)
def sync_run_status(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with threads.bind_invocation(context):
        return _render(httpapi.run_status(req.route_params.get("runId", ""), runtime.current()))


# One message per school of a run, on the queue named by the flat app setting
# CleverSyncQueueName; the host moves a message that failed maxDequeueCount (host.json) times
# to "<name>-poison". An app-setting expression may be part of a longer name.
sync_queue = func.Blueprint()


@sync_queue.function_name("sync_school")
@sync_queue.queue_trigger(
    arg_name="msg", queue_name="%CleverSyncQueueName%", connection="AzureWebJobsStorage"
)
def sync_school(msg: func.QueueMessage, context: func.Context) -> None:
    with threads.bind_invocation(context):
        httpapi.sync_school(msg.get_body(), msg.dequeue_count or 1, runtime.current())


@sync_queue.function_name("sync_school_poison")
@sync_queue.queue_trigger(
    arg_name="msg", queue_name="%CleverSyncQueueName%-poison", connection="AzureWebJobsStorage"
)
def sync_school_poison(msg: func.QueueMessage, context: func.Context) -> None:
    with threads.bind_invocation(context):
        httpapi.sync_school_poison(msg.get_body(), runtime.current())


# GET /health/clever-auth, for Azure Monitor's probes: statuses only, anonymous.
# GET /api/health: the same report with its details (districts, errors), function key.
# Neither waits for the clients to be built: a fresh process answers "starting" at once.
health_api = func.Blueprint()


@health_api.function_name("health_clever_auth")
@health_api.route(
    route="health/clever-auth", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS
)
def health_clever_auth(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with threads.bind_invocation(context):
        return _render(httpapi.health(*_health_parts()))


@health_api.function_name("health")
@health_api.route(
    route="api/health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION
)
def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with threads.bind_invocation(context):
        return _render(httpapi.health_details(*_health_parts()))


# The daily sync of every active school. The schedule is the flat app setting
# CleverSyncSchedule: names with "__" are not resolved reliably in binding expressions.
schedule = func.Blueprint()


@schedule.function_name("scheduled_sync")
@schedule.timer_trigger(
    arg_name="timer", schedule="%CleverSyncSchedule%", run_on_startup=False, use_monitor=True
)
def scheduled_sync(timer: func.TimerRequest, context: func.Context) -> None:
    with threads.bind_invocation(context):
        httpapi.scheduled_sync(runtime.current(), past_due=timer.past_due)


# The operator's dashboard: GET and POST under /dashboard (the host reserves /admin for its
# own API). Anonymous at the host: App Service Authentication (Entra ID) signs users in in
# front of it, and the app admits only CleverSync__Admin__AllowedUsers or the
# CleverSync__Admin__Role (cleversync.dashboard.auth); it fails closed without them.
dashboard_api = func.Blueprint()
_dashboard = HostedDashboard(runtime.current)


@dashboard_api.function_name("dashboard")
@dashboard_api.route(
    route="dashboard/{*path}",
    methods=[func.HttpMethod.GET, func.HttpMethod.POST],
    auth_level=func.AuthLevel.ANONYMOUS,
)
def dashboard(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with threads.bind_invocation(context):
        status, headers, body = _dashboard.handle(
            req.method, req.url, dict(req.headers), req.get_body() or b""
        )
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "text/html")
        mimetype, _, charset = content_type.partition(";")
        response = func.HttpResponse(
            body,
            status_code=status,
            mimetype=mimetype.strip(),
            charset=charset.partition("=")[2].strip() or "utf-8",
        )
        for name, value in headers:
            if name.lower() != "content-type":
                response.headers[name] = value
        return response


app.register_functions(sync_api)
app.register_functions(health_api)
app.register_functions(schedule)
app.register_functions(sync_queue)
app.register_functions(dashboard_api)


def _health_parts() -> tuple[HealthMonitor | None, Callable[[str], str]]:
    """The built Runtime's monitor and redaction; while it is being built, (None, the patterns)."""
    built = runtime.ready()
    if built is None:
        return None, mask_credentials
    return built.health, built.redact


def _render(response: tuple[int, dict[str, Any], dict[str, str]]) -> func.HttpResponse:
    status, body, headers = response
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        headers=headers,
        mimetype="application/json",
        charset="utf-8",
    )
