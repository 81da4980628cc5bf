"""The Clever client and token provider against the sandbox over real HTTP, with its faults.

The sandbox and the client share one fake clock: a wait the client asks for moves the
sandbox's rate-limit window too, so no test sleeps for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from cleversync.clever.client import CleverClient
from cleversync.clever.http import build_http_client
from cleversync.clever.ratelimit import RateLimitPacer
from cleversync.clever.tokens import DistrictRef, TokenProvider
from cleversync.errors import (
    CleverResponseError,
    CleverTransientError,
    EventCursorExpiredError,
    EventsNotEnabledError,
    SchoolNotSharedError,
)
from cleversync.redaction import Redactor
from cleversync.sandbox import Fault, Sandbox
from cleversync.secrets import names
from cleversync.settings import Settings
from tests.fakes import FakeClock, InlineExecutor, MemorySecretStore


@dataclass
class Setup:
    sandbox: Sandbox
    client: CleverClient
    clock: FakeClock
    school: str
    district: str
    http: httpx.Client


@pytest.fixture
def setup() -> Iterator[Setup]:
    clock = FakeClock(1_800_000_000.0)
    sandbox = Sandbox(
        seed=4,
        districts=1,
        schools=2,
        students=45,
        teachers=3,
        sections=4,
        clock=clock,
        rate_limit=10,
        rate_window_seconds=60,
        sleep=clock.sleep,
    )
    district = sandbox.districts[0]
    with sandbox.serve() as running:
        settings = Settings.load(
            {
                "CleverSync__Clever__ApiBaseUrl": running.api_base_url,
                "CleverSync__Clever__TokenUrl": running.token_url,
                "CleverSync__Retry__CleverApi__BackoffBase": "2",
            }
        )
        secrets = MemorySecretStore(
            {
                names.client_id("D"): district.client_id,
                names.client_secret("D"): district.client_secret,
            }
        )
        http = build_http_client(settings)
        tokens = TokenProvider(
            settings=settings,
            secret_store=secrets,
            http=http,
            district_count=lambda: 1,
            clock=clock,
            wall_clock=clock,
            executor=InlineExecutor(),
            redactor=Redactor(),
        )
        ref = DistrictRef(1, district.id, "D")
        client = CleverClient(
            http=http,
            settings=settings,
            tokens=tokens.for_district(ref),
            pacer=RateLimitPacer(clock=clock, sleep=clock.sleep),
            sleep=clock.sleep,
            clock=clock,
        )
        try:
            yield Setup(sandbox, client, clock, district.schools[0].id, district.id, http)
        finally:
            http.close()


def all_students(setup: Setup, page_size: int = 10) -> list[str]:
    return [
        u.id
        for page in setup.client.students(setup.school, page_size=page_size)
        for u in page.records
    ]


def expected(setup: Setup) -> list[str]:
    return sorted(s["id"] for s in setup.sandbox.students(setup.school))


def test_paging_reads_every_student_once_in_order(setup: Setup) -> None:
    ids = all_students(setup, page_size=7)
    assert ids == sorted(ids)
    assert ids == expected(setup)


def test_a_rate_limit_is_paced_not_collected(setup: Setup) -> None:
    # 10 requests a minute: the pages need more, so the client waits for the next window.
    ids = all_students(setup, page_size=2)
    assert ids == expected(setup)
    assert not [r for r in setup.sandbox.request_log if r.status == 429]
    assert any(wait > 30 for wait in setup.clock.sleeps)


def test_a_429_waits_for_the_reset_header(setup: Setup) -> None:
    setup.sandbox.faults.add(Fault("rate_limit", path="/v3.0/schools/*/users", after=1))
    assert all_students(setup, page_size=20) == expected(setup)
    assert [r.status for r in setup.sandbox.request_log if "/users" in r.target].count(429) == 1
    waits = setup.clock.sleeps
    assert waits
    assert 0 < waits[0] <= 61  # until the window named in X-Ratelimit-Reset


def test_5xx_then_success(setup: Setup) -> None:
    setup.sandbox.faults.add(
        Fault("status", path="/v3.0/schools/*/users", status=503, times=2, after=1)
    )
    assert all_students(setup) == expected(setup)
    assert [round(w) for w in setup.clock.sleeps[:2]] in ([2, 4], [2, 5], [3, 4], [3, 5])


def test_5xx_until_the_retries_run_out(setup: Setup) -> None:
    setup.sandbox.faults.add(Fault("status", path="/v3.0/schools/*/users", status=500, times=None))
    with pytest.raises(CleverTransientError, match="HTTP 500"):
        all_students(setup)
    assert [r.status for r in setup.sandbox.request_log if "/users" in r.target] == [500] * 6


def test_a_dropped_connection_is_retried(setup: Setup) -> None:
    setup.sandbox.faults.add(Fault("drop", path="/v3.0/schools/*/users", after=1))
    assert all_students(setup) == expected(setup)


def test_token_rotation_mid_paging(setup: Setup) -> None:
    pages = setup.client.students(setup.school, page_size=10)
    first = next(pages)
    setup.sandbox.rotate_token(setup.district)
    rest = [u.id for page in pages for u in page.records]
    assert [u.id for u in first.records] + rest == expected(setup)
    assert any(r.status == 401 for r in setup.sandbox.request_log)


def test_an_unshared_school_is_a_clear_404(setup: Setup) -> None:
    with pytest.raises(SchoolNotSharedError, match="5f0000000000000000000000"):
        list(setup.client.sections("5f0000000000000000000000", page_size=10))


def test_events_disabled(setup: Setup) -> None:
    setup.sandbox.set_events_enabled(setup.district, False)
    with pytest.raises(EventsNotEnabledError, match="403"):
        setup.client.latest_event_id()
    setup.sandbox.set_events_enabled(setup.district, False, status=404)
    with pytest.raises(EventsNotEnabledError, match="404"):
        list(setup.client.events(setup.school, after=None, page_size=10))


def test_an_expired_cursor(setup: Setup) -> None:
    first = setup.sandbox.add_student(setup.school, first_name="Old", last_name="Event")
    cursor = setup.client.latest_event_id()
    assert cursor
    setup.clock.advance(31 * 86400)  # the event drops out of Clever's 30-day feed
    setup.sandbox.add_student(setup.school, first_name="New", last_name="Event")
    # As recorded from real Clever: 200, the feed from its oldest kept event.
    events = [
        e
        for page in setup.client.events(setup.school, after=cursor, page_size=10)
        for e in page.records
    ]
    assert [e.object["name"]["first"] for e in events] == ["New"]
    assert first not in [e.object["id"] for e in events]
    # The 404 Clever may also answer (a sandbox fault) is the typed error the sync acts on.
    setup.sandbox.faults.add(Fault("expired_cursor_404"))
    with pytest.raises(EventCursorExpiredError):
        list(setup.client.events(setup.school, after=cursor, page_size=10))


def test_malformed_json(setup: Setup) -> None:
    setup.sandbox.faults.add(Fault("malformed_json", path="/v3.0/schools/*/users"))
    with pytest.raises(CleverResponseError, match="not JSON"):
        all_students(setup)
