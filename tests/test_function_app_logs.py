"""Every log record the app writes during an invocation reaches that invocation's log, from
whichever thread the app wrote it: the handlers take the invocation ``context`` and every
thread the app starts sets ``context.thread_local_storage.invocation_id``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import azure.functions as func
import httpx
import pytest
from azure.functions.queue import QueueMessage

from cleversync import runtime, threads
from cleversync.clever.tokens import TokenProvider
from cleversync.redaction import Redactor
from cleversync.runtime import Runtime
from cleversync.sandbox import Sandbox
from cleversync.services import Services
from cleversync.settings import Settings
from tests.azure_worker import FakeContext, InvocationLog, invocation_log, invoke
from tests.clever.test_tokens import DISTRICT, DISTRICT_APP, FakeTokenEndpoint
from tests.fakes import FakeClock, MemorySecretStore
from tests.test_function_app import ListQueue, functions
from tests.world import World, make_world


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    runtime.reset()
    yield
    runtime.reset()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    sandbox = Sandbox(seed=9, districts=2, schools=3, students=8, teachers=2, sections=2)
    with make_world("sqlite", tmp_path, None, sandbox=sandbox) as w:
        w.register_all()
        yield w


def request(method: str, path: str, params: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(
        method=method, url=f"http://localhost/{path}", params=params or {}, headers={}, body=b""
    )


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def assert_all_reach_the_invocation(log: InvocationLog, from_threads: set[str]) -> None:
    assert from_threads <= log.threads(), log.threads()  # the threads under test did log
    assert log.dropped() == []
    assert {r.invocation_id for r in log.records} == {"inv-1"}


def test_a_queued_district_run_logs_every_school_to_its_invocation(world: World) -> None:
    services = world.make_services()
    queue = ListQueue()
    services.use_sync_queue(queue)
    runtime.reset(Runtime(services))
    with invocation_log() as log:
        response = invoke(
            functions()["sync"].get_user_function(),
            request("POST", "api/sync", {"districtId": "1"}),
        )
    assert response.status_code == 202
    assert_all_reach_the_invocation(log, {threading.current_thread().name})
    assert len(queue.messages) == 3
    for body in queue.messages:  # each school in its own invocation, as the host runs them
        with invocation_log() as log:
            invoke(
                functions()["sync_school"].get_user_function(),
                QueueMessage(body=body.encode(), dequeue_count=1),
            )
        assert_all_reach_the_invocation(log, {threading.current_thread().name})


def test_an_in_process_district_run_logs_its_pool_threads_to_the_invocation(
    world: World,
) -> None:
    services = world.make_services()
    context = FakeContext("inv-1")

    def run() -> None:
        with threads.bind_invocation(context):
            services.orchestrator().run(district_id=1, trigger="http")

    with invocation_log() as log:
        invoke(lambda context: run())
    pool = {f"school-sync_{n}" for n in range(3)}  # three schools, three at once
    assert_all_reach_the_invocation(log, {threading.current_thread().name, *pool})


class BrokenStore(MemorySecretStore):
    def check(self) -> None:
        raise RuntimeError("the store's client is broken")


@pytest.mark.parametrize("fails", ["build", "check"])
def test_the_first_health_call_logs_its_background_work_to_the_invocation(
    world: World, fails: str
) -> None:
    """The build runs on a thread the call starts, and the first check on one the build
    starts: a record from either (here, each one's failure) belongs to the call."""

    def build() -> Runtime:
        if fails == "build":
            raise ImportError("a broken install")
        store = BrokenStore(dict(world.secrets.values), redactor=world.redactor)
        return Runtime(Services(Settings.load(world.env), secret_store=store))

    runtime.reset(build=build)
    thread = {"build": "cleversync-startup", "check": "health-check"}[fails]
    with invocation_log() as log:
        response = invoke(functions()["health"].get_user_function(), request("GET", "api/health"))
        assert response.status_code == 200
        wait_for(lambda: thread in log.threads())
    assert_all_reach_the_invocation(log, {thread})


def test_a_background_token_refresh_logs_to_the_invocation_that_started_it() -> None:
    endpoint, clock = FakeTokenEndpoint(), FakeClock(0.0)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-refresh")
    settings = Settings.load(
        {"CleverSync__Clever__TokenUrl": "https://clever.example/oauth/tokens"}
    )
    tokens = TokenProvider(
        settings=settings,
        secret_store=MemorySecretStore(DISTRICT_APP),
        http=httpx.Client(transport=httpx.MockTransport(endpoint)),
        district_count=lambda: 1,
        clock=clock,
        redactor=Redactor(),
        executor=pool,
    )
    try:
        tokens.token(DISTRICT)
        clock.advance(0.8 * 3600)  # past the refresh threshold
        with invocation_log() as log:

            def handler(context: FakeContext) -> str:
                with threads.bind_invocation(context):
                    return tokens.token(DISTRICT)

            assert invoke(handler) == "tok-district-1-1"  # served now, refreshed behind
            wait_for(lambda: tokens.token(DISTRICT) == "tok-district-1-2")
        assert_all_reach_the_invocation(log, {"token-refresh_0"})
    finally:
        pool.shutdown()
