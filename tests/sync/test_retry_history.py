"""Retry history: each run's retries and rate-limit waits, counted per entity and stored on
its SyncHistory rows (Retries, RateLimitWaits, RateLimitWaitSeconds).

The Clever sandbox over real HTTP injects 500s and 429s; waits run on an injected clock
(``Clock`` of test_clever_faults) so a 429's Retry-After costs no real time and its seconds
are exact.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cleversync import runtally
from cleversync.clever.client import CleverClient
from cleversync.clever.pages import RawPage
from cleversync.sandbox import Fault, Sandbox
from cleversync.services import Services
from cleversync.settings import Settings
from cleversync.threads import bound, start_thread
from tests.sync.test_clever_faults import Clock
from tests.world import World, clever_school_id


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> Sandbox:
    return Sandbox(
        seed=5,
        districts=1,
        schools=2,
        students=30,
        teachers=4,
        sections=4,
        sleep=clock.pass_time,
        clock=clock.wall,  # rate-limit windows move with the sync's sleeps
    )


def services_on(world: World, clock: Clock, cls: type[Services] = Services, **env: str) -> Services:
    return cls(
        Settings.load({**world.env, **env}),
        secret_store=world.secrets,
        redactor=world.redactor,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        utc_clock=clock.utc,
    )


@pytest.fixture
def on_clock(world: World, clock: Clock) -> Iterator[Callable[..., Services]]:
    made: list[Services] = []

    def make(cls: type[Services] = Services, **env: str) -> Services:
        made.append(services_on(world, clock, cls, **env))
        return made[-1]

    yield make
    for services in made:
        services.close()


def users_path(world: World, index: int = 0) -> str:
    return f"/v3.0/schools/{clever_school_id(world, index)}/users"


def sections_path(world: World, index: int = 0) -> str:
    return f"/v3.0/schools/{clever_school_id(world, index)}/sections"


def waits_by_entity(world: World, correlation_id: str, school_id: int) -> dict[str, tuple]:
    rows = world.history(school_id=school_id)
    return {
        r["EntityType"]: (r["Retries"], r["RateLimitWaits"], r["RateLimitWaitSeconds"])
        for r in rows
        if r["CorrelationId"] == correlation_id
    }


def test_500s_and_429s_are_counted_on_their_entitys_row_and_nowhere_else(
    world: World, clock: Clock, on_clock: Callable[..., Services]
) -> None:
    world.sync(school_id=1)
    services = on_clock()
    # Teachers: two 500s (two retries). Sections: one 429 asking for 7 s (a retry and a
    # rate-limit wait of 7 s), then a 500. Students: nothing.
    world.sandbox.faults.add(
        Fault("status", path=users_path(world), query="role=teacher", status=500, times=2)
    )
    world.sandbox.faults.add(
        Fault(
            "status", path=sections_path(world), status=429, headers={"Retry-After": "7"}, times=1
        )
    )
    world.sandbox.faults.add(
        Fault("status", path=sections_path(world), status=500, times=1, after=1)
    )
    run = services.orchestrator().run(school_id=1, full=True)
    assert run.schools[0].status == "Success", run.schools[0].error
    assert waits_by_entity(world, run.correlation_id, 1) == {
        "Student": (0, 0, 0),
        "Teacher": (2, 0, 0),
        "Section": (2, 1, pytest.approx(7.0)),
    }
    # The run's result (the CLI's and HTTP answer's entities) says the same.
    assert {o.entity: o.waits for o in run.schools[0].entities} == {
        "Student": runtally.Waits(),
        "Teacher": runtally.Waits(retries=2),
        "Section": runtally.Waits(2, 1, 7.0),
    }
    # The other school, not synced in that run, and the earlier run: nothing recorded.
    earlier = [r for r in world.history(school_id=1) if r["CorrelationId"] != run.correlation_id]
    assert earlier and all(
        (r["Retries"], r["RateLimitWaits"], r["RateLimitWaitSeconds"]) == (0, 0, 0) for r in earlier
    )


def test_a_failed_entity_keeps_its_retries(
    world: World, clock: Clock, on_clock: Callable[..., Services]
) -> None:
    services = on_clock()
    # Students fail through every retry (1 + MaxAttempts requests, 5 retries by default).
    world.sandbox.faults.add(
        Fault("status", path=users_path(world), query="role=student", status=503, times=None)
    )
    run = services.orchestrator().run(school_id=1, full=True)
    counts = waits_by_entity(world, run.correlation_id, 1)
    attempts = services.settings.retry.clever_api.max_attempts
    assert counts["Student"][0] >= attempts  # its own retries, and the district check's none
    assert counts["Teacher"] == counts["Section"] == (0, 0, 0)
    student = next(
        r
        for r in world.history(school_id=1)
        if r["CorrelationId"] == run.correlation_id and r["EntityType"] == "Student"
    )
    assert student["Status"] == "Failed"


def test_pacing_waits_for_the_rate_limit_are_counted_with_their_seconds(
    world: World, clock: Clock, on_clock: Callable[..., Services]
) -> None:
    world.sandbox.rate_limiter.limit = 4  # a window's allowance runs out every few pages
    services = on_clock()
    run = services.orchestrator().run(school_id=1, full=True)
    assert run.schools[0].status == "Success", run.schools[0].error
    counts = waits_by_entity(world, run.correlation_id, 1)
    waits = sum(c[1] for c in counts.values())
    seconds = sum(c[2] for c in counts.values())
    assert waits >= 2
    assert sum(c[0] for c in counts.values()) == 0  # paced, never refused
    # Every sleep of the run was a wait for the rate limit, each counted with its seconds.
    assert seconds == pytest.approx(sum(clock.sleeps), abs=0.01)
    assert counts["Student"][1] >= 1  # the students' pages, most of the requests, waited


def test_two_schools_synced_at_once_do_not_mix_their_counts(
    world: World, clock: Clock, on_clock: Callable[..., Services]
) -> None:
    services = on_clock(CleverSync__Concurrency__MaxSchoolsInParallel="2")

    def rate_limited(path: str, seconds: str, times: int, **match: Any) -> Fault:
        return Fault(
            "status", path=path, status=429, headers={"Retry-After": seconds}, times=times, **match
        )

    # School one: its students are refused once (2 s), then fail twice. School two: its
    # students are refused once (4 s), its sections twice (4 s each).
    world.sandbox.faults.add(rate_limited(users_path(world, 0), "2", 1, query="role=student"))
    world.sandbox.faults.add(
        Fault(
            "status", path=users_path(world, 0), query="role=student", status=500, times=2, after=1
        )
    )
    world.sandbox.faults.add(rate_limited(users_path(world, 1), "4", 1, query="role=student"))
    world.sandbox.faults.add(rate_limited(sections_path(world, 1), "4", 2))
    # Each school's first wait holds until the other school waits too: the two runs are
    # retrying at the same time (a sequential run would break the barrier).
    barrier = threading.Barrier(2, timeout=20)
    first: set[str] = set()
    met: list[bool] = []

    def meet() -> None:
        name = threading.current_thread().name
        if name in first:
            return
        first.add(name)
        try:
            barrier.wait()
            met.append(True)
        except threading.BrokenBarrierError:
            met.append(False)

    clock.on_sleep = meet
    run = services.orchestrator().run(full=True)
    assert [s.status for s in run.schools] == ["Success", "Success"]
    assert met == [True, True]
    one, two = (s.school_id for s in world.schools)
    assert waits_by_entity(world, run.correlation_id, one) == {
        "Student": (3, 1, pytest.approx(2.0)),
        "Teacher": (0, 0, 0),
        "Section": (0, 0, 0),
    }
    assert waits_by_entity(world, run.correlation_id, two) == {
        "Student": (1, 1, pytest.approx(4.0)),
        "Teacher": (0, 0, 0),
        "Section": (2, 2, pytest.approx(8.0)),
    }


class Prefetching:
    """A Clever client whose pages are fetched ahead in a thread of their own (started
    through ``cleversync.threads``, as the app's threads are, or a bare one)."""

    def __init__(self, client: CleverClient, *, bare: bool) -> None:
        self._client = client
        self._bare = bare
        self.threads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def raw_pages(self, kind: str, school_id: str, *, page_size: int) -> Iterator[RawPage]:
        pages: queue.Queue[Any] = queue.Queue(maxsize=2)
        done = object()

        def fetch() -> None:
            self.threads.append(threading.current_thread().name)
            try:
                for page in self._client.raw_pages(kind, school_id, page_size=page_size):
                    pages.put(page)
            except BaseException as exc:
                pages.put(exc)
            pages.put(done)

        if self._bare:
            threading.Thread(target=fetch, name=f"bare-{kind}", daemon=True).start()
        else:
            start_thread(fetch, name=f"prefetch-{kind}")
        while (item := pages.get(timeout=30)) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item


@pytest.mark.parametrize("bare", [False, True], ids=["started-by-the-app", "bare-thread"])
def test_retries_in_a_prefetch_thread_count_for_the_run_that_started_it(
    world: World, clock: Clock, on_clock: Callable[..., Services], bare: bool
) -> None:
    made: list[Prefetching] = []

    class PrefetchingServices(Services):
        def clever_client(self, *args: Any, **kwargs: Any) -> Any:
            made.append(Prefetching(super().clever_client(*args, **kwargs), bare=bare))
            return made[-1]

    services = on_clock(PrefetchingServices)
    world.sandbox.faults.add(
        Fault("status", path=users_path(world), query="role=teacher", status=502, times=2)
    )
    world.sandbox.faults.add(
        Fault(
            "status", path=sections_path(world), status=429, headers={"Retry-After": "3"}, times=1
        )
    )
    main = threading.current_thread().name
    run = services.orchestrator().run(school_id=1, full=True)
    assert run.schools[0].status == "Success", run.schools[0].error
    threads = [t for client in made for t in client.threads]
    assert threads and main not in threads  # the pages really came from other threads
    counts = waits_by_entity(world, run.correlation_id, 1)
    if bare:
        # A thread the app did not start through cleversync.threads carries no run: what it
        # retries is counted nowhere (this is why the app's threads go through it).
        assert counts == dict.fromkeys(("Student", "Teacher", "Section"), (0, 0, 0))
    else:
        assert counts == {
            "Student": (0, 0, 0),
            "Teacher": (2, 0, 0),
            "Section": (1, 1, pytest.approx(3.0)),
        }


def test_nothing_is_counted_outside_a_run_and_a_pool_thread_forgets_its_run() -> None:
    tally = runtally.RunTally("Student")
    runtally.count_retry()  # outside any run: a no-op
    with runtally.tally(tally):
        runtally.count_retry()
        with runtally.entity("Teacher"):
            runtally.count_rate_limit_wait(2.5)
            runtally.count_retry("Section")  # a request names its entity: that wins
    runtally.count_retry()
    assert runtally.current() == (None, None)
    assert (tally.of("Student").retries, tally.of("Teacher").rate_limit_waits) == (1, 1)
    assert tally.of("Teacher").rate_limit_wait_seconds == 2.5
    assert tally.of("Section").retries == 1
    # A pool thread that ran a run's work (handed over through ``bound``) keeps nothing of
    # it for the next task, which counts nowhere.
    with ThreadPoolExecutor(max_workers=1) as pool:
        with runtally.tally(tally), runtally.entity("Section"):
            seen = pool.submit(bound(runtally.current)).result()
        assert seen == (tally, "Section")
        assert pool.submit(runtally.current).result() == (None, None)
        pool.submit(runtally.count_retry).result()
    assert tally.of("Section").retries == 1


def test_a_previews_dry_run_rows_record_its_retries_too(
    world: World, clock: Clock, on_clock: Callable[..., Services]
) -> None:
    world.sync(school_id=1)
    services = on_clock()
    world.sandbox.faults.add(
        Fault("status", path=users_path(world), query="role=teacher", status=500, times=1)
    )
    world.sandbox.faults.add(
        Fault(
            "status", path=sections_path(world), status=429, headers={"Retry-After": "5"}, times=1
        )
    )
    preview = services.preview_full_sync(1)
    rows = {r["SyncId"]: r for r in world.history(school_id=1, status="DryRun")}
    got = {
        entity: (rows[i]["Retries"], rows[i]["RateLimitWaits"], rows[i]["RateLimitWaitSeconds"])
        for entity, i in preview.history_ids.items()
    }
    assert got == {"Student": (0, 0, 0), "Teacher": (1, 0, 0), "Section": (1, 1, 5.0)}


def test_retries_in_the_clients_own_prefetch_thread_count_on_their_entitys_row(
    world: World,
    clock: Clock,
    on_clock: Callable[..., Services],
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = on_clock()
    # The students' first page is fetched where it is asked for; the later ones ahead, on
    # the list's prefetch thread: the 500s and the 429 meet that thread.
    students = {"path": users_path(world), "query": "role=student"}
    world.sandbox.faults.add(Fault("status", status=500, times=2, after=1, **students))
    world.sandbox.faults.add(
        Fault("status", status=429, headers={"Retry-After": "6"}, times=1, after=4, **students)
    )
    with caplog.at_level(logging.WARNING, logger="cleversync.clever"):
        run = services.orchestrator().run(school_id=1, full=True)
    assert run.schools[0].status == "Success", run.schools[0].error
    retried = [r for r in caplog.records if r.getMessage().startswith("Retrying students")]
    assert len(retried) == 3
    assert all(r.threadName.startswith("clever-prefetch") for r in retried)
    assert waits_by_entity(world, run.correlation_id, 1) == {
        "Student": (3, 1, pytest.approx(6.0)),
        "Teacher": (0, 0, 0),
        "Section": (0, 0, 0),
    }
