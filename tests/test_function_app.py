"""The Functions app: it indexes with nothing configured, and its built functions answer per §8."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from sqlalchemy import event, insert, select, update

from cleversync import runtime
from cleversync.db.schema import School, SyncHistory
from cleversync.health import DEGRADED, HEALTHY, PENDING, UNHEALTHY
from cleversync.runtime import Runtime
from cleversync.sandbox import Sandbox
from cleversync.secrets import names
from cleversync.services import Services
from cleversync.settings import SCHEDULE_VARIABLE, Settings
from cleversync.timeutil import utcnow
from tests.fakes import FakeClock, InlineExecutor, MemorySecretStore, QueuedExecutor
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
        # The worker matches the trigger's name to the Python parameter, or indexes nothing.
        parameters = list(inspect.signature(function.get_user_function()).parameters)
        assert parameters == [function.get_trigger().name]


def test_the_app_indexes_in_a_process_with_an_empty_environment() -> None:
    code = (
        "import json, sys\n"
        "import function_app\n"
        "from cleversync import runtime\n"
        "found = {f.get_function_name(): [json.loads(b) for b in f.get_raw_bindings()]\n"
        "         for f in function_app.app.get_functions()}\n"
        "heavy = ('sqlalchemy', 'httpx', 'pydantic', 'alembic', 'opentelemetry')\n"
        "print(json.dumps({'functions': found, 'built': runtime._current is not None,\n"
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
    status, body, _ = get_health()
    assert status == 503 and body["checks"]["configuration"]["setting"] == (
        "CleverSync__Clever__ApiBaseUrl"
    )


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


@pytest.fixture
def installed(world: World) -> Runtime:
    """The World's installation as this process's runtime (what the host would build)."""
    installed = Runtime(world.make_services())
    runtime.reset(installed)
    return installed


def post_sync(params: dict[str, str] | None = None, headers: dict[str, str] | None = None):
    request = func.HttpRequest(
        method="POST",
        url="http://localhost/api/sync",
        params=params or {},
        headers=headers or {},
        body=b"",
    )
    response = functions()["sync"].get_user_function()(request)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body()), response.headers


def get_health():
    request = func.HttpRequest(
        method="GET", url="http://localhost/health/clever-auth", params={}, headers={}, body=b""
    )
    began = time.perf_counter()
    response = functions()["health_clever_auth"].get_user_function()(request)
    elapsed = time.perf_counter() - began
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, json.loads(response.get_body()), elapsed


def fire_timer(past_due: bool = False) -> None:
    functions()["scheduled_sync"].get_user_function()(TimerRequest(past_due=past_due))


def synced_school_ids(world: World) -> set[int]:
    return {row["SchoolId"] for row in world.history()}


def test_post_sync_answers_200_with_the_run(world: World, installed: Runtime) -> None:
    status, body, headers = post_sync({"schoolId": "1"}, {"x-correlation-id": "ops-2024-1"})
    assert status == 200
    assert body["correlationId"] == "ops-2024-1" == headers["x-correlation-id"]
    assert body["status"] == "Success" and isinstance(body["durationMs"], int)
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


def test_district_and_all_school_runs(world: World, installed: Runtime) -> None:
    status, body, _ = post_sync({"districtId": "2"})
    assert status == 200
    district_2 = {s.school_id for s in world.schools if s.district_id == 2}
    assert {s["schoolId"] for s in body["schools"]} == district_2 == synced_school_ids(world)
    with world.services.session_engine().begin() as conn:
        conn.execute(update(School).where(School.SchoolId == 1).values(IsActive=False))
    status, body, _ = post_sync({"full": "true"})
    assert status == 200
    assert {s["schoolId"] for s in body["schools"]} == {2, 3, 4}


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


def test_a_school_being_synced_is_a_409(world: World, installed: Runtime) -> None:
    lease = world.services.school_sync().leases.acquire(1, "another-instance:7:abc")
    try:
        status, body, _ = post_sync({"schoolId": "1"})
        assert status == 409 and "already being synced" in body["error"]
        status, body, _ = post_sync({"districtId": "1"})  # in a district run: Skipped, 200
        assert status == 200
        assert {s["schoolId"]: s["status"] for s in body["schools"]}[1] == "Skipped"
    finally:
        lease.release()
    assert post_sync({"schoolId": "1"})[0] == 200


def test_a_configuration_error_is_a_500_and_unhealthy_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CleverSync__Sync__PageSize", "0")
    status, body, _ = post_sync({"schoolId": "1"})
    assert status == 500
    assert body["setting"] == "CleverSync__Sync__PageSize"
    assert "CleverSync__Sync__PageSize" in body["error"]
    status, body, _ = get_health()
    assert status == 503 and body["status"] == UNHEALTHY
    assert body["checks"]["configuration"]["setting"] == "CleverSync__Sync__PageSize"


def test_session_db_unreachable_is_a_503(world: World, tmp_path: Path) -> None:
    store = MemorySecretStore(
        {names.SESSIONDB_CONNECTION_STRING: f"sqlite:///{tmp_path / 'gone' / 'session.sqlite'}"}
    )
    runtime.reset(Runtime(Services(Settings.load(world.env), secret_store=store)))
    status, body, headers = post_sync({"schoolId": "1"})
    assert status == 503 and "does not exist" in body["error"]
    assert headers["Retry-After"] == "30"
    status, body, _ = get_health()
    assert status == 503 and body["checks"]["sessionDb"]["reachable"] is False


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


def test_no_secret_leaves_in_a_sync_body(world: World, installed: Runtime) -> None:
    secret = world.secrets.get(names.client_secret("District-1"))
    engine = installed.services.school_engine(world.school(0))

    def leak(conn, cursor, statement, params, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            raise ValueError(f"client secret is {secret}")

    event.listen(engine, "before_cursor_execute", leak)
    try:
        status, body, _ = post_sync({"schoolId": "1"})
    finally:
        event.remove(engine, "before_cursor_execute", leak)
    assert status == 200 and body["status"] == "Failed"
    assert "client secret is ***" in json.dumps(body)
    assert secret not in json.dumps(body)


# --- the timer ----------------------------------------------------------------------------


def test_the_timer_syncs_every_active_school_then_purges_old_history(
    world: World, installed: Runtime, caplog: pytest.LogCaptureFixture
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


def test_health_after_a_sync_is_healthy(world: World, installed: Runtime) -> None:
    post_sync()
    status, body, elapsed = get_health()
    assert status == 200 and body["status"] == HEALTHY and elapsed < 0.1
    assert set(body["checks"]) == {"configuration", "secretStore", "sessionDb", "cleverAuth"}
    assert body["lastSuccessfulAuthentication"].endswith("Z") and body["lastError"] is None
    assert [d["hasToken"] for d in body["checks"]["cleverAuth"]["districts"]] == [True, True]


def test_health_degrades_then_fails_as_dependencies_go(world: World) -> None:
    clock = FakeClock()
    installed = Runtime(world.make_services(), clock=clock, executor=InlineExecutor())
    runtime.reset(installed)
    post_sync()
    assert get_health()[1]["status"] == HEALTHY
    world.secrets.down = True
    assert get_health()[1]["status"] == HEALTHY  # cached for 30 s
    clock.advance(31)
    status, body, _ = get_health()
    assert status == 200 and body["status"] == DEGRADED
    assert body["checks"]["secretStore"]["cachedValuesServe"] is True
    engine = installed.services.session_engine()

    def unreachable(conn, cursor, statement, params, context, executemany) -> None:
        raise engine.dialect.loaded_dbapi.OperationalError("unable to open database file")

    event.listen(engine, "before_cursor_execute", unreachable)
    clock.advance(31)
    try:
        status, body, _ = get_health()
    finally:
        event.remove(engine, "before_cursor_execute", unreachable)
    assert status == 503 and body["status"] == UNHEALTHY
    assert body["checks"]["sessionDb"]["reachable"] is False
    assert "unable to open database file" in body["checks"]["sessionDb"]["error"]


def test_an_expired_health_cache_starts_exactly_one_refresh(world: World) -> None:
    clock, executor = FakeClock(), QueuedExecutor()
    runtime.reset(Runtime(world.make_services(), clock=clock, executor=executor, first_wait=0))
    assert get_health()[1]["checks"]["sessionDb"]["status"] == PENDING
    executor.run_all()
    clock.advance(31)
    answers = [get_health() for _ in range(5)]
    assert len(executor.queue) == 1
    assert all(a[1]["status"] == HEALTHY and a[1]["ageSeconds"] == 31 for a in answers)


class HangingStore(MemorySecretStore):
    """A secret store whose reachability check hangs until ``release`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.hang = False

    def check(self) -> None:
        if self.hang:
            self.release.wait(10)
        super().check()


def test_health_answers_within_100_ms_while_the_secret_store_hangs(world: World) -> None:
    store = HangingStore(dict(world.secrets.values), redactor=world.redactor)
    services = Services(Settings.load(world.env), secret_store=store, redactor=world.redactor)
    services.session_engine()  # the SessionDb secret is read and cached
    store.hang = True
    runtime.reset(Runtime(services, refresh_timeout=0.3))
    try:
        status, body, elapsed = get_health()  # the first call waits about 80 ms, no more
        assert 0.07 <= elapsed < 0.1
        assert status == 200 and body["status"] == DEGRADED
        assert body["checks"]["configuration"]["status"] == HEALTHY
        assert body["checks"]["secretStore"]["status"] == PENDING
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            status, body, elapsed = get_health()
            assert elapsed < 0.1
            time.sleep(0.02)
        assert body["checks"]["secretStore"]["error"] == "no answer within 0.3 s"
        assert body["checks"]["secretStore"]["cachedValuesServe"] is True
        assert body["status"] == DEGRADED
    finally:
        store.release.set()


def test_health_is_unhealthy_when_session_db_hangs(world: World) -> None:
    installed = Runtime(world.make_services(), refresh_timeout=0.3)
    runtime.reset(installed)
    engine = installed.services.checked_session_engine()
    release = threading.Event()

    def hang(conn, cursor, statement, params, context, executemany) -> None:
        release.wait(10)

    event.listen(engine, "before_cursor_execute", hang)
    try:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            status, body, elapsed = get_health()
            assert elapsed < 0.1
            time.sleep(0.02)
        assert status == 503 and body["status"] == UNHEALTHY
        assert body["checks"]["sessionDb"] == {
            "status": UNHEALTHY,
            "reachable": False,
            "error": "no answer within 0.3 s",
        }
        assert body["refresh"]["abandoned"]["check"] == "sessionDb"
    finally:
        release.set()
        event.remove(engine, "before_cursor_execute", hang)


def test_no_secret_leaves_in_a_health_body(world: World) -> None:
    secret = world.secrets.get(names.client_secret("District-2"))
    world.secrets.set(names.client_secret("District-2"), secret + "-rotated-badly")
    installed = Runtime(world.make_services(), executor=InlineExecutor())
    runtime.reset(installed)
    post_sync()  # District-2 is refused: its error is in the body
    status, body, _ = get_health()
    assert status == 200 and body["status"] == DEGRADED
    text = json.dumps(body)
    assert "refused the credentials" in text
    assert secret not in text and world.secrets.get(names.client_secret("District-2")) not in text
