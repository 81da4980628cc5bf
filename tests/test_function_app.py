"""The Functions app: it indexes with nothing configured, and its functions answer as the
README's "HTTP API" and "Timer" sections say."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from sqlalchemy import event, insert, select, update

from cleversync import runtime
from cleversync.db.schema import School, SyncHistory
from cleversync.errors import ConfigurationError
from cleversync.health.checks import ServicesProbe
from cleversync.queue import SyncMessage
from cleversync.runtime import Runtime
from cleversync.sandbox import Fault, Sandbox
from cleversync.secrets import names
from cleversync.services import Services
from cleversync.settings import SCHEDULE_VARIABLE, Settings
from cleversync.timeutil import utcnow
from cleversync.vocabulary import HealthStatus
from tests.azure_worker import invoke
from tests.databases import inserting
from tests.fakes import FakeClock, InlineExecutor, MemorySecretStore, QueuedExecutor
from tests.test_health import FakeWaits
from tests.world import World, make_world

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_BINDINGS = {
    "sync": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["POST"],
            "authLevel": "FUNCTION",
            "route": "api/sync",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "health_clever_auth": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "health/clever-auth",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "health": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "FUNCTION",
            "route": "api/health",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "scheduled_sync": [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%CleverSyncSchedule%",
            "runOnStartup": False,
            "useMonitor": True,
        }
    ],
    "sync_run_status": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "FUNCTION",
            "route": "api/sync/runs/{runId}",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "dashboard": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET", "POST"],
            "authLevel": "ANONYMOUS",
            "route": "dashboard/{*path}",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "sync_school": [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "%CleverSyncQueueName%",
            "connection": "AzureWebJobsStorage",
        }
    ],
    "sync_school_poison": [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "%CleverSyncQueueName%-poison",
            "connection": "AzureWebJobsStorage",
        }
    ],
}

ENTITY_FIELDS = {
    "entityType",
    "syncType",
    "status",
    "syncId",
    "processed",
    "inserted",
    "updated",
    "deleted",
    "failed",
    "retries",
    "rateLimitWaits",
    "rateLimitWaitSeconds",
    "error",
}


@functools.cache
def functions() -> dict[str, Any]:
    # get_functions() may be called once per app object (a second call sees duplicates).
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


# --- indexing -----------------------------------------------------------------------------


def test_every_function_trigger_route_method_and_auth_level() -> None:
    found = {name: [json.loads(b) for b in f.get_raw_bindings()] for name, f in functions().items()}
    assert found == EXPECTED_BINDINGS
    for function in functions().values():
        # The worker matches the trigger's name to the Python parameter, or indexes nothing;
        # it passes the invocation's Context to a parameter named context annotated with it.
        handler = function.get_user_function()
        parameters = list(inspect.signature(handler).parameters)
        assert parameters == [function.get_trigger().name, "context"]
        assert typing.get_type_hints(handler)["context"] is func.Context


def test_the_app_indexes_in_a_process_with_an_empty_environment() -> None:
    code = (
        "import json, sys\n"
        "import function_app\n"
        "from cleversync import runtime\n"
        "found = {f.get_function_name(): [json.loads(b) for b in f.get_raw_bindings()]\n"
        "         for f in function_app.app.get_functions()}\n"
        "heavy = ('sqlalchemy', 'httpx', 'pydantic', 'alembic', 'opentelemetry')\n"
        "print(json.dumps({'functions': found, 'built': runtime._process.built is not None,\n"
        "  'heavy': sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)})}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["functions"] == EXPECTED_BINDINGS
    assert out["built"] is False  # no settings read, no client built, at import
    assert out["heavy"] == []  # a light cold start: the database and HTTP stacks load on use


def test_routes_have_no_prefix_and_the_schedule_is_a_flat_app_setting() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""
    schedule = functions()["scheduled_sync"].get_trigger().schedule
    assert schedule == f"%{SCHEDULE_VARIABLE}%" and "__" not in schedule
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert example[SCHEDULE_VARIABLE] == "0 0 2 * * *"


# --- the runtime --------------------------------------------------------------------------


def test_the_runtime_is_built_once_on_first_use_and_reset_by_tests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime.reset()
    monkeypatch.setenv("CleverSync__Logging__LogLevel", "Warning")
    built: list[Runtime] = []
    threads = [threading.Thread(target=lambda: built.append(runtime.current())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(r) for r in built}) == 1 and built[0].config_error is None
    assert logging.getLogger("cleversync").level == logging.WARNING  # logging configured
    runtime.reset()
    assert runtime.current() is not built[0]


def test_a_plain_http_clever_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.reset()
    monkeypatch.setenv("CleverSync__Clever__ApiBaseUrl", "http://api.example.com")
    assert runtime.current().config_error.setting == "CleverSync__Clever__ApiBaseUrl"
    status, body = settled(get_health_details)
    assert status == 503 and body["checks"]["configuration"]["setting"] == (
        "CleverSync__Clever__ApiBaseUrl"
    )
    assert get_health() == (503, public_view(body))


def test_health_starts_one_build_in_the_background_and_never_runs_it_itself() -> None:
    closed: list[Runtime] = []

    class Built(Runtime):
        def close(self) -> None:
            closed.append(self)

    pending: list[Any] = []  # the background work, run when the test says
    lazy = runtime.LazyRuntime(
        lambda: Built(config_error=ConfigurationError("x")), start=pending.append
    )
    assert lazy.ready() is None and lazy.ready() is None
    assert len(pending) == 1 and lazy.built is None  # one build started, none run here
    pending.pop()()
    assert isinstance(lazy.ready(), Built) and lazy.get() is lazy.ready() and not pending
    lazy.close()
    assert closed == [lazy.built]
    late = runtime.LazyRuntime(
        lambda: Built(config_error=ConfigurationError("y")), start=pending.append
    )
    assert late.ready() is None
    late.close()  # dropped (a test's reset) while its build runs...
    pending.pop()()
    assert closed[1:] == [late.built]  # ...so the build's result is closed when it ends


def test_a_runtime_that_cannot_be_built_answers_unhealthy() -> None:
    def broken() -> Runtime:
        raise ImportError("a broken install")

    runtime.reset(build=broken)
    assert get_health()[0] == 200  # starting
    assert "could not start (ImportError)" in str(runtime.current().config_error)
    status, body = settled()
    assert status == 503 and body["status"] == HealthStatus.UNHEALTHY
    assert "could not start (ImportError)" in body["checks"]["configuration"]["error"]
    assert post_sync({"schoolId": "1"})[0] == 500


# --- a real installation behind the built functions ---------------------------------------


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    runtime.reset()
    yield
    runtime.reset()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    sandbox = Sandbox(seed=9, districts=2, schools=2, students=8, teachers=2, sections=2)
    with make_world("sqlite", tmp_path, None, sandbox=sandbox) as w:
        w.register_all()
        yield w


class ListQueue:
    """The sync queue as a list: what was sent, in order (Azurite in tests/queue)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, message: SyncMessage) -> None:
        self.messages.append(message.to_json())


@pytest.fixture
def queue() -> ListQueue:
    return ListQueue()


@pytest.fixture
def installed(world: World, queue: ListQueue) -> Runtime:
    """The World's installation as this process's runtime (what the host would build)."""
    services = world.make_services()
    services.use_sync_queue(queue)
    installed = Runtime(services)
    runtime.reset(installed)
    return installed


def deliver(queue: ListQueue, max_dequeue: int = 3) -> list[str]:
    """Each queued message to the sync_school function as the host would: again when it
    raises, to sync_school_poison after ``max_dequeue`` attempts. What was raised."""
    raised: list[str] = []
    while queue.messages:
        body = queue.messages.pop(0).encode()
        for attempt in range(1, max_dequeue + 1):
            message = QueueMessage(body=body, dequeue_count=attempt)
            try:
                invoke(functions()["sync_school"].get_user_function(), message)
                break
            except Exception as exc:  # the host logs it and delivers the message again
                raised.append(str(exc))
        else:
            invoke(functions()["sync_school_poison"].get_user_function(), QueueMessage(body=body))
    return raised


def get_run(run_id: object) -> tuple[int, dict[str, Any]]:
    request = func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/sync/runs/{run_id}",
        params={},
        headers={},
        route_params={"runId": str(run_id)},
        body=b"",
    )
    response = invoke(functions()["sync_run_status"].get_user_function(), request)
    return response.status_code, json.loads(response.get_body())


def post_and_run(queue: ListQueue, params: dict[str, str] | None = None, headers=None):
    """POST /api/sync, deliver its messages, then GET its status: (202's body, run status)."""
    status, body, _ = post_sync(params, headers)
    assert status == 202, body
    deliver(queue)
    code, run = get_run(body["runId"])
    assert code == 200
    return body, run


def post_sync(params: dict[str, str] | None = None, headers: dict[str, str] | None = None):
    request = func.HttpRequest(
        method="POST",
        url="http://localhost/api/sync",
        params=params or {},
        headers=headers or {},
        body=b"",
    )
    response = invoke(functions()["sync"].get_user_function(), request)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body()), response.headers


def get_health(function: str = "health_clever_auth", path: str = "health/clever-auth"):
    """GET /health/clever-auth (anonymous): (status, body)."""
    request = func.HttpRequest(
        method="GET", url=f"http://localhost/{path}", params={}, headers={}, body=b""
    )
    response = invoke(functions()[function].get_user_function(), request)
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, json.loads(response.get_body())


def get_health_details():
    """GET /api/health (function key): (status, body)."""
    return get_health("health", "api/health")


def settled(get=get_health_details):
    """The first answer whose checks have all run (the Runtime's own background thread)."""
    deadline = time.monotonic() + 10
    while True:
        status, body = get()
        if body["checkedAt"] is not None or time.monotonic() > deadline:
            return status, body
        time.sleep(0.01)


def public_view(details: dict[str, Any]) -> dict[str, Any]:
    """What the anonymous route may show of a detailed body."""
    return {
        "status": details["status"],
        "checkedAt": details["checkedAt"],
        "checks": {name: {"status": c["status"]} for name, c in details["checks"].items()},
    }


def fire_timer(past_due: bool = False) -> None:
    invoke(functions()["scheduled_sync"].get_user_function(), TimerRequest(past_due=past_due))


def synced_school_ids(world: World) -> set[int]:
    return {row["SchoolId"] for row in world.history()}


def test_the_run_status_shows_each_entitys_retries_and_rate_limit_waits(
    world: World, installed: Runtime, queue: ListQueue
) -> None:
    clever_id = world.schools[0].clever_school_id
    world.sandbox.faults.add(
        Fault("status", path=f"/v3.0/schools/{clever_id}/users", query="role=student", times=2)
    )
    world.sandbox.faults.add(
        Fault(
            "status",
            path=f"/v3.0/schools/{clever_id}/sections",
            status=429,
            headers={"Retry-After": "0.3"},
            times=1,
        )
    )
    status, body, _ = post_sync({"schoolId": "1"})
    assert status == 202
    deliver(queue)
    code, run = get_run(body["runId"])
    assert code == 200 and run["status"] == "Success"
    waits = {
        e["entityType"]: (e["retries"], e["rateLimitWaits"], e["rateLimitWaitSeconds"])
        for e in run["schools"][0]["entities"]
    }
    assert waits == {"Student": (2, 0, 0), "Teacher": (0, 0, 0), "Section": (1, 1, 0.3)}


def test_post_sync_answers_202_and_the_queue_runs_it(
    world: World, installed: Runtime, queue: ListQueue
) -> None:
    status, body, headers = post_sync({"schoolId": "1"}, {"x-correlation-id": "ops-2024-1"})
    assert status == 202
    assert body["correlationId"] == "ops-2024-1" == headers["x-correlation-id"]
    assert body["status"] == "Queued" and body["schools"] == [1]
    assert headers["Location"] == body["statusUrl"] == f"/api/sync/runs/{body['runId']}"
    assert get_run(body["runId"])[1]["status"] == "Queued" and world.history() == []
    deliver(queue)
    code, body = get_run(body["runId"])
    assert code == 200 and body["correlationId"] == "ops-2024-1"
    assert body["status"] == "Success" and body["trigger"] == "http" and body["requestedAt"]
    [school] = body["schools"]
    assert school["schoolId"] == 1 and school["status"] == "Success" and school["name"]
    assert {e["entityType"] for e in school["entities"]} == {"Student", "Teacher", "Section"}
    for entity in school["entities"]:
        assert set(entity) == ENTITY_FIELDS
        assert entity["syncType"] == "Full" and entity["status"] == "Success"
        assert entity["inserted"] == entity["processed"] > 0 and entity["error"] is None
    assert len(world.students(world.school(0))) == len(
        world.sandbox.students(world.schools[0].clever_school_id)
    )
    assert {r["CorrelationId"] for r in world.history()} == {"ops-2024-1"}


def test_district_and_all_school_runs(world: World, installed: Runtime, queue: ListQueue) -> None:
    _, run = post_and_run(queue, {"districtId": "2"})
    district_2 = {s.school_id for s in world.schools if s.district_id == 2}
    assert {s["schoolId"] for s in run["schools"]} == district_2 == synced_school_ids(world)
    with world.services.session_engine().begin() as conn:
        conn.execute(update(School).where(School.SchoolId == 1).values(IsActive=False))
    _, run = post_and_run(queue, {"full": "true"})
    assert {s["schoolId"] for s in run["schools"]} == {2, 3, 4}


def test_an_unknown_run_is_a_404(installed: Runtime) -> None:
    for run_id in (999, "abc", 0):
        status, body = get_run(run_id)
        assert status == 404 and "no sync run" in body["error"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"schoolId": "one"}, "schoolId"),
        ({"schoolId": "0"}, "schoolId"),
        ({"districtId": "-2"}, "districtId"),
        ({"schoolId": "1", "districtId": "1"}, "districtId"),
        ({"schoolId": "1", "full": "yes"}, "full"),
        ({"schoolId": "1", "allowMassDelete": "please"}, "allowMassDelete"),
        ({"allowMassDelete": "true"}, "schoolId"),
        ({"districtId": "1", "allowMassDelete": "true"}, "schoolId"),
        ({"schoolID": "1", "schoolId": "1"}, "schoolId"),
        ({"shcoolId": "1"}, "shcoolId"),
    ],
)
def test_malformed_input_is_a_400(
    world: World, installed: Runtime, params: dict[str, str], named: str
) -> None:
    status, body, headers = post_sync(params)
    assert status == 400 and named in body["error"]
    assert body["correlationId"] == headers["x-correlation-id"]
    assert world.history() == []


@pytest.mark.parametrize("params", [{"schoolId": "999"}, {"districtId": "999"}])
def test_unknown_ids_are_a_404(world: World, installed: Runtime, params: dict[str, str]) -> None:
    status, body, _ = post_sync(params)
    assert status == 404 and "999" in body["error"]


def test_a_school_being_synced_is_a_409(world: World, installed: Runtime, queue: ListQueue) -> None:
    lease = world.services.school_sync().leases.acquire(1, "another-instance:7:abc")
    try:
        status, body, _ = post_sync({"schoolId": "1"})
        assert status == 409 and "already being synced" in body["error"]
        assert queue.messages == []
        _, run = post_and_run(queue, {"districtId": "1"})  # in a district run: Skipped
        assert {s["schoolId"]: s["status"] for s in run["schools"]}[1] == "Skipped"
    finally:
        lease.release()
    assert post_sync({"schoolId": "1"})[0] == 202


def test_a_configuration_error_is_a_500_and_unhealthy_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CleverSync__Sync__PageSize", "0")
    status, body, _ = post_sync({"schoolId": "1"})
    assert status == 500
    assert body["setting"] == "CleverSync__Sync__PageSize"
    assert "CleverSync__Sync__PageSize" in body["error"]
    status, body = settled()
    assert status == 503 and body["status"] == HealthStatus.UNHEALTHY
    assert body["checks"]["configuration"]["setting"] == "CleverSync__Sync__PageSize"
    assert get_health() == (503, public_view(body))


def test_session_db_unreachable_is_a_503(world: World, tmp_path: Path) -> None:
    store = MemorySecretStore(
        {names.SESSIONDB_CONNECTION_STRING: f"sqlite:///{tmp_path / 'gone' / 'session.sqlite'}"}
    )
    services = Services(Settings.load(world.env), secret_store=store)
    runtime.reset(Runtime(services, executor=InlineExecutor()))
    status, body, headers = post_sync({"schoolId": "1"})
    assert status == 503 and "does not exist" in body["error"]
    assert headers["Retry-After"] == "30"
    status, body = get_health_details()
    assert status == 503 and body["checks"]["sessionDb"]["reachable"] is False
    assert get_health() == (503, public_view(body))


def test_session_db_failing_mid_request_is_a_503(world: World, installed: Runtime) -> None:
    engine = installed.services.session_engine()

    def unreachable(conn, cursor, statement, params, context, executemany) -> None:
        raise engine.dialect.loaded_dbapi.OperationalError("unable to open database file")

    event.listen(engine, "before_cursor_execute", unreachable)
    try:
        status, body, _ = post_sync({"schoolId": "1"})
    finally:
        event.remove(engine, "before_cursor_execute", unreachable)
    assert status == 503 and "SessionDb" in body["error"]


def test_no_secret_leaves_in_a_sync_body(
    world: World, installed: Runtime, queue: ListQueue
) -> None:
    secret = world.secrets.get(names.client_secret("District-1"))
    engine = installed.services.school_engine(world.school(0))

    def leak(conn, cursor, statement, params, context, executemany) -> None:
        if inserting(statement):
            raise ValueError(f"client secret is {secret}")

    event.listen(engine, "before_cursor_execute", leak)
    try:
        _, body = post_and_run(queue, {"schoolId": "1"})
    finally:
        event.remove(engine, "before_cursor_execute", leak)
    assert body["status"] == "Failed"
    assert "client secret is ***" in json.dumps(body)
    assert secret not in json.dumps(body)


# --- the timer ----------------------------------------------------------------------------


def test_the_timer_queues_every_active_school_then_purges_old_history(
    world: World, installed: Runtime, queue: ListQueue, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow()
    rows = [
        {"SchoolId": 1, "EntityType": "Student", "SyncType": "Full", "Status": "Failed",
         "SyncStartTime": now - timedelta(days=days)}
        for days in (200, 91, 30)
    ]  # fmt: skip
    with world.services.session_engine().begin() as conn:
        conn.execute(insert(SyncHistory), rows)
        conn.execute(update(School).where(School.SchoolId == 4).values(IsActive=False))
    with caplog.at_level(logging.INFO, logger="cleversync"):
        fire_timer(past_due=True)
    assert any("past due" in r.getMessage() for r in caplog.records)
    assert len(queue.messages) == 3 and synced_school_ids(world) == {1}  # only the old rows
    deliver(queue)
    assert synced_school_ids(world) == {1, 2, 3}
    new_rows = [r for r in world.history() if r["CorrelationId"]]
    assert {r["Status"] for r in new_rows} == {"Success"} and len(new_rows) == 9
    with world.services.session_engine().connect() as conn:
        kept = conn.scalars(
            select(SyncHistory.SyncStartTime).where(SyncHistory.CorrelationId.is_(None))
        ).all()
    assert kept == [rows[2]["SyncStartTime"]]


def test_the_timer_survives_an_unreachable_session_db(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemorySecretStore({names.SESSIONDB_CONNECTION_STRING: "sqlite:////nonexistent/x.db"})
    runtime.reset(Runtime(Services(Settings.load(world.env), secret_store=store)))
    with caplog.at_level(logging.ERROR, logger="cleversync"):
        fire_timer()
    assert any("could not start" in r.getMessage() for r in caplog.records)


# --- health -------------------------------------------------------------------------------


def test_health_after_a_sync_is_healthy(world: World, queue: ListQueue) -> None:
    services = world.make_services()
    services.use_sync_queue(queue)
    runtime.reset(Runtime(services, executor=InlineExecutor()))
    post_and_run(queue)
    status, body = get_health_details()
    assert status == 200 and body["status"] == HealthStatus.HEALTHY
    assert set(body["checks"]) == {"configuration", "secretStore", "sessionDb", "cleverAuth"}
    assert body["lastSuccessfulAuthentication"].endswith("Z") and body["lastError"] is None
    assert [d["hasToken"] for d in body["checks"]["cleverAuth"]["districts"]] == [True, True]
    status, public = get_health()
    assert status == 200 and public == {
        "status": HealthStatus.HEALTHY,
        "checkedAt": body["checkedAt"],
        "checks": {name: {"status": HealthStatus.HEALTHY} for name in body["checks"]},
    }


def test_the_first_health_call_answers_while_the_runtime_is_still_being_built(
    world: World,
) -> None:
    entered, release = threading.Event(), threading.Event()
    builders: list[threading.Thread] = []

    def slow_build() -> Runtime:  # reading the settings and building the clients, held up
        builders.append(threading.current_thread())
        entered.set()
        release.wait(10)
        return Runtime(world.make_services(), executor=InlineExecutor())

    runtime.reset(build=slow_build)
    try:
        # A call that waited for the build would sit out the 10 s and answer from it.
        answers = [get_health(), get_health_details(), get_health()]
        assert entered.wait(10)  # the build did start, elsewhere
        assert not release.is_set()
    finally:
        release.set()
    starting = {
        "status": HealthStatus.DEGRADED,
        "checkedAt": None,
        "checks": {name: {"status": HealthStatus.PENDING} for name in ServicesProbe.names},
    }
    assert answers[0] == answers[2] == (200, starting)
    status, details = answers[1]
    assert status == 200 and public_view(details) == starting
    assert details["refresh"]["state"] == "Starting"
    built = runtime.current()  # waits for the build under way rather than starting another
    assert len(builders) == 1 and builders[0] is not threading.current_thread()
    # The first check ran as soon as the Runtime was built: the next probe has it.
    assert get_health() == (200, public_view(built.health.report().body))
    assert get_health()[1]["status"] == HealthStatus.HEALTHY


def test_the_anonymous_health_body_names_no_district_secret_path_or_host(
    world: World, tmp_path: Path
) -> None:
    world.secrets.values.pop(names.client_secret("District-2"))
    broken_file = tmp_path / "data"
    broken_file.mkdir()
    (broken_file / "secrets.json").write_text("{not json")
    unreachable = MemorySecretStore(
        {names.SESSIONDB_CONNECTION_STRING: "postgresql+psycopg://sync:pw@127.0.0.1:1/nowhere"}
    )
    scenarios = [
        # districts with names; one with credentials, one without (secret names in errors)
        (
            world.make_services(),
            [
                *(d.name for d in world.districts),
                names.client_id("District-1"),
                names.client_secret("District-2"),
            ],
        ),
        # a secrets file that is not JSON: its absolute path is in the errors
        (
            Services(
                Settings.load({**world.env, "CleverSync__DataDir": str(broken_file)}),
                redactor=world.redactor,
            ),
            [str(broken_file)],
        ),
        # SessionDb's server refuses: its host and port are in the error
        (
            Services(Settings.load(world.env), secret_store=unreachable),
            ["127.0.0.1", "port 1"],
        ),
    ]
    for services, needles in scenarios:
        runtime.reset(Runtime(services, executor=InlineExecutor()))
        status, details = get_health_details()
        for needle in needles:  # the detailed view shows what this scenario is about
            assert needle in json.dumps(details)
        assert get_health() == (status, public_view(details))
        text = json.dumps(get_health()[1])
        for needle in [*needles, "District-", "CleverSyncSOS", "/", "127.0.0.1"]:
            assert needle not in text
        assert "error" not in text and "name" not in text


class HangingStore(MemorySecretStore):
    """A secret store whose reachability check hangs (``hanging`` is set) until ``release``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.hanging = threading.Event()
        self.hang = False

    def check(self) -> None:
        if self.hang:
            self.hanging.set()
            self.release.wait(10)
        super().check()


def test_health_degrades_then_fails_as_dependencies_go(world: World) -> None:
    clock = FakeClock()
    installed = Runtime(world.make_services(), clock=clock, executor=InlineExecutor())
    runtime.reset(installed)
    post_sync()
    assert get_health()[1]["status"] == HealthStatus.HEALTHY
    world.secrets.down = True
    assert get_health()[1]["status"] == HealthStatus.HEALTHY  # cached for 30 s
    clock.advance(31)
    status, body = get_health_details()
    assert status == 200 and body["status"] == HealthStatus.DEGRADED
    assert body["checks"]["secretStore"]["cachedValuesServe"] is True
    engine = installed.services.session_engine()

    def unreachable(conn, cursor, statement, params, context, executemany) -> None:
        raise engine.dialect.loaded_dbapi.OperationalError("unable to open database file")

    event.listen(engine, "before_cursor_execute", unreachable)
    clock.advance(31)
    try:
        status, body = get_health_details()
    finally:
        event.remove(engine, "before_cursor_execute", unreachable)
    assert status == 503 and body["status"] == HealthStatus.UNHEALTHY
    assert body["checks"]["sessionDb"]["reachable"] is False
    assert "unable to open database file" in body["checks"]["sessionDb"]["error"]
    assert get_health() == (503, public_view(body))


def test_an_expired_health_cache_starts_exactly_one_refresh(world: World) -> None:
    clock, executor = FakeClock(), QueuedExecutor()
    runtime.reset(Runtime(world.make_services(), clock=clock, executor=executor, first_wait=0))
    assert get_health()[1]["checks"]["sessionDb"]["status"] == HealthStatus.PENDING
    executor.run_all()
    clock.advance(31)
    answers = [get_health_details() for _ in range(5)]
    assert len(executor.queue) == 1
    assert all(a[1]["status"] == HealthStatus.HEALTHY and a[1]["ageSeconds"] == 31 for a in answers)


def test_health_answers_at_once_while_the_secret_store_hangs(world: World) -> None:
    store = HangingStore(dict(world.secrets.values), redactor=world.redactor)
    services = Services(Settings.load(world.env), secret_store=store, redactor=world.redactor)
    services.session_engine()  # the SessionDb secret is read and cached
    store.hang = True
    clock = FakeClock(1000.0)
    waits = FakeWaits(clock, first=lambda: store.hanging.wait(10))
    runtime.reset(Runtime(services, clock=clock, wait=waits, refresh_timeout=0.3))
    try:
        status, body = get_health_details()  # the first call waits its 80 ms, no more
        assert clock() - 1000.0 == pytest.approx(0.08)
        assert status == 200 and body["status"] == HealthStatus.DEGRADED
        assert body["checks"]["configuration"]["status"] == HealthStatus.HEALTHY
        assert body["checks"]["secretStore"]["status"] == HealthStatus.PENDING
        for _ in range(20):  # 0.4 s more, a call every 20 ms
            clock.advance(0.02)
            before = clock()
            status, body = get_health_details()
            assert clock() - before <= 0.08 + 1e-9
        assert body["checks"]["secretStore"]["error"] == "no answer within 0.3 s"
        assert body["checks"]["secretStore"]["cachedValuesServe"] is True
        assert status == 200 and body["status"] == HealthStatus.DEGRADED
    finally:
        store.release.set()


def test_health_is_unhealthy_when_session_db_hangs(world: World) -> None:
    hanging, release = threading.Event(), threading.Event()
    clock = FakeClock(1000.0)
    waits = FakeWaits(clock, first=lambda: hanging.wait(10))
    installed = Runtime(world.make_services(), clock=clock, wait=waits, refresh_timeout=0.3)
    runtime.reset(installed)
    engine = installed.services.checked_session_engine()

    def hang(conn, cursor, statement, params, context, executemany) -> None:
        hanging.set()
        release.wait(10)

    event.listen(engine, "before_cursor_execute", hang)
    try:
        assert get_health()[0] == 200  # the first call: still checking SessionDb
        clock.advance(0.3)
        status, body = get_health_details()
        assert status == 503 and body["status"] == HealthStatus.UNHEALTHY
        assert body["checks"]["sessionDb"] == {
            "status": HealthStatus.UNHEALTHY,
            "reachable": False,
            "error": "no answer within 0.3 s",
        }
        assert body["refresh"]["abandoned"]["check"] == "sessionDb"
        assert get_health() == (503, public_view(body))
    finally:
        release.set()
        event.remove(engine, "before_cursor_execute", hang)


def test_no_secret_leaves_in_a_health_body(world: World, queue: ListQueue) -> None:
    secret = world.secrets.get(names.client_secret("District-2"))
    world.secrets.set(names.client_secret("District-2"), secret + "-rotated-badly")
    services = world.make_services()
    services.use_sync_queue(queue)
    installed = Runtime(services, executor=InlineExecutor())
    runtime.reset(installed)
    post_and_run(queue)  # District-2 is refused: its error is in the body
    status, body = get_health_details()
    assert status == 200 and body["status"] == HealthStatus.DEGRADED
    text = json.dumps(body)
    assert "refused the credentials" in text
    assert secret not in text and world.secrets.get(names.client_secret("District-2")) not in text


def test_a_run_in_which_every_school_was_skipped_says_skipped(
    world: World, installed: Runtime, queue: ListQueue
) -> None:
    leases = world.services.school_sync().leases
    held = [leases.acquire(s.school_id, "another-instance:7:abc") for s in world.schools[:2]]
    try:
        _, body = post_and_run(queue, {"districtId": "1"})
    finally:
        for lease in held:
            lease.release()
    assert body["status"] == "Skipped"
    assert [s["status"] for s in body["schools"]] == ["Skipped", "Skipped"]
