"""The Clever client under real-world faults: lists that end early, oversize pages, waits
Clever asks for that are too long or unreadable, a body trickled a byte at a time, and a
Clever that is down (the per-run breaker)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qs

import httpx
import pytest

from cleversync.clever.breaker import DistrictBreaker
from cleversync.clever.client import CleverClient
from cleversync.clever.http import build_http_client
from cleversync.clever.ratelimit import RateLimitPacer
from cleversync.clever.tokens import DistrictRef, TokenProvider
from cleversync.errors import (
    CleverIncompleteListError,
    CleverRateLimitedError,
    CleverTransientError,
    CleverUnreachableError,
)
from cleversync.redaction import Redactor
from cleversync.sandbox import Fault, Sandbox
from cleversync.secrets import names
from cleversync.settings import Settings
from tests.clever.test_client import Tokens
from tests.fakes import FakeClock, InlineExecutor, MemorySecretStore

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(
    handler: Handler,
    *,
    clock: FakeClock | None = None,
    breaker: DistrictBreaker | None = None,
    **env: str,
) -> tuple[CleverClient, FakeClock]:
    clock = clock or FakeClock()
    settings = Settings.load({"CleverSync__Retry__CleverApi__BackoffBase": "2", **env})
    client = CleverClient(
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        settings=settings,
        tokens=Tokens(),
        pacer=RateLimitPacer(
            clock=clock, sleep=clock.sleep, max_wait=settings.retry.max_wait_seconds
        ),
        sleep=clock.sleep,
        clock=clock,
        breaker=breaker,
    )
    return client, clock


class Roster:
    """A Clever list server honouring ``limit`` and ``starting_after``, with scripted lapses."""

    def __init__(self, count: int, *, path: str = "/v3.0/schools/s/users") -> None:
        self.ids = [f"{n:024x}" for n in range(1, count + 1)]
        self.path = path
        self.requests: list[dict[str, str]] = []
        self.lose_next_after: str | None = None  # the page ending with this id has no next
        self.fail_after: str | None = None  # requests starting after this id answer 500
        self.oversize = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        self.requests.append(query)
        after = query.get("starting_after")
        if after is not None and after == self.fail_after:
            return httpx.Response(500, json={"message": "down"})
        limit = int(query["limit"]) * (2 if self.oversize else 1)
        start = self.ids.index(after) + 1 if after else 0
        chosen = self.ids[start : start + limit]
        links = [{"rel": "self", "uri": request.url.raw_path.decode()}]
        more = start + limit < len(self.ids)
        if chosen and more and chosen[-1] != self.lose_next_after:
            links.append({"rel": "next", "uri": f"{self.path}?{_next_query(query, chosen[-1])}"})
        data = [
            {"data": {"id": i, "name": {"first": "A", "last": "B"}, "roles": {"student": {}}}}
            for i in chosen
        ]
        return httpx.Response(200, json={"data": data, "links": links})


def _next_query(query: dict[str, str], last: str) -> str:
    kept = [f"{k}={v}" for k, v in query.items() if k != "starting_after"]
    return "&".join([*kept, f"starting_after={last}"])


def ids_read(client: CleverClient, page_size: int) -> list[str]:
    return [u.id for p in client.students("s", page_size=page_size) for u in p.records]


# --- a list that ends early -----------------------------------------------------------------


def test_a_full_page_without_next_is_confirmed_and_paging_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    roster = Roster(35)
    roster.lose_next_after = roster.ids[19]  # page 2 of 4 is full and has no next
    client, _ = make_client(roster)
    with caplog.at_level(logging.WARNING):
        assert ids_read(client, 10) == roster.ids
    confirmation = roster.requests[2]
    assert confirmation == {"role": "student", "limit": "10", "starting_after": roster.ids[19]}
    assert "ended early" in caplog.text


def test_a_list_ending_on_a_full_page_costs_one_more_request() -> None:
    roster = Roster(20)
    client, _ = make_client(roster)
    assert ids_read(client, 10) == roster.ids
    assert [r.get("starting_after") for r in roster.requests] == [
        None,
        roster.ids[9],
        roster.ids[19],  # the confirmation: empty, so the list really ends
    ]


def test_a_short_last_page_or_an_empty_list_ends_without_confirmation() -> None:
    roster = Roster(15)
    client, _ = make_client(roster)
    assert ids_read(client, 10) == roster.ids
    assert len(roster.requests) == 2
    empty = Roster(0)
    client, _ = make_client(empty)
    assert ids_read(client, 10) == []
    assert len(empty.requests) == 1  # no id seen: nothing to confirm from


def test_a_failed_confirmation_is_an_incomplete_list() -> None:
    roster = Roster(35)
    roster.lose_next_after = roster.fail_after = roster.ids[19]
    client, _ = make_client(roster, CleverSync__Retry__CleverApi__BackoffBase="0")
    pages = client.students("s", page_size=10)
    assert len(next(pages).records) == len(next(pages).records) == 10
    with pytest.raises(CleverIncompleteListError, match=r"could not be confirmed.*HTTP 500"):
        next(pages)
    assert len(roster.requests) == 2 + 6  # the confirmation was retried like any request


def test_a_page_over_its_limit_is_a_protocol_error() -> None:
    roster = Roster(35)
    roster.oversize = True
    client, _ = make_client(roster)
    with pytest.raises(CleverIncompleteListError, match="20 students on a page asked for 10"):
        ids_read(client, 10)


def test_a_body_far_past_its_limit_is_refused_while_it_streams_in() -> None:
    huge = b'{"data": [' + b" " * (3 * 1024 * 1024) + b"]}"
    client, _ = make_client(lambda r: httpx.Response(200, content=huge))
    with pytest.raises(CleverIncompleteListError, match="larger than"):
        ids_read(client, 1)


def test_the_events_feed_ends_where_clever_says() -> None:
    # The stored cursor is the last event applied: an early end only leaves the rest for
    # the next run, so no confirmation is spent on it.
    event = {
        "data": {
            "id": "e1",
            "type": "users.created",
            "created": "2024-01-01T00:00:00.000Z",
            "data": {"object": {"id": "u1"}},
        }
    }
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"data": [event], "links": []})

    client, _ = make_client(handler)
    list(client.events("s", after=None, page_size=1))
    assert len(calls) == 1


# --- waits ----------------------------------------------------------------------------------


def _rate_limited_once(retry_after: str) -> Handler:
    answers = [httpx.Response(429, headers={"Retry-After": retry_after})]

    def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)
        return Roster(1)(request)

    return handler


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("3600", 120.0),  # obeyed, this killed a run with its rows InProgress
        ("inf", 120.0),  # this crashed the school with OverflowError
        ("nan", 120.0),
        ("-5", 120.0),
        ("1e400", 120.0),
        ("soon", 120.0),
        ("+30 ", 30.0),
    ],
)
def test_retry_after_is_capped_and_an_unusable_one_counts_as_the_cap(
    value: str, expected: float
) -> None:
    client, clock = make_client(_rate_limited_once(value))
    assert len(ids_read(client, 10)) == 1
    assert clock.sleeps == [expected]


def test_retry_after_as_an_http_date() -> None:
    clock = FakeClock()
    soon = format_datetime(datetime.fromtimestamp(clock.now + 30, UTC), usegmt=True)
    client, _ = make_client(_rate_limited_once(soon), clock=clock)
    ids_read(client, 10)
    past = format_datetime(datetime.fromtimestamp(clock.now - 30, UTC), usegmt=True)
    client, _ = make_client(_rate_limited_once(past), clock=clock)
    ids_read(client, 10)
    assert clock.sleeps == [30.0, 0.0]


def test_max_wait_seconds_caps_backoff_and_reset_waits() -> None:
    clock = FakeClock(1000.0)
    reset = {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "5000"}
    answers = [httpx.Response(503), httpx.Response(429, headers=reset)]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else Roster(1)(request)

    client, _ = make_client(
        handler,
        clock=clock,
        CleverSync__Retry__CleverApi__BackoffBase="100",
        CleverSync__Retry__MaxWaitSeconds="9",
    )
    ids_read(client, 10)
    # The 503's backoff (100 s), the 429's reset (4,000 s), then the pacer's own wait for
    # that reset before the next request: each at most 9 s.
    assert clock.sleeps == [9.0, 9.0, 9.0]


def test_the_pacer_waits_at_most_max_wait_per_request() -> None:
    clock = FakeClock(1000.0)
    pacer = RateLimitPacer(clock=clock, sleep=clock.sleep, max_wait=4)
    pacer.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1050"})
    waits: list[float] = []
    pacer.acquire(wait=lambda s: (waits.append(s), clock.sleep(s)))
    assert waits == [4.0]  # then the request goes; a 429 is the retry's business
    assert clock.sleeps == [4.0]
    pacer.observe({"x-ratelimit-remaining": "inf", "x-ratelimit-reset": "1e400"})  # ignored


def test_a_trickled_body_times_out_as_a_whole_over_real_http(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A byte every 0.2 s never trips a per-read timeout; the whole-request one ends it, on
    the token endpoint and on the API alike (each then retried, and answered at once)."""
    sandbox = Sandbox(seed=3, districts=1, schools=1, students=3, teachers=1, sections=1)
    district = sandbox.districts[0]
    school = district.schools[0].id
    sandbox.faults.add(Fault("trickle", path="/oauth/tokens", seconds=0.2))
    sandbox.faults.add(Fault("trickle", path="/v3.0/schools/*/users", seconds=0.2))
    with sandbox.serve() as running:
        settings = Settings.load(
            {
                "CleverSync__Clever__ApiBaseUrl": running.api_base_url,
                "CleverSync__Clever__TokenUrl": running.token_url,
                "CleverSync__Clever__TimeoutSeconds": "0.3",
                "CleverSync__Retry__CleverApi__BackoffBase": "0",
            }
        )
        secrets = MemorySecretStore(
            {
                names.client_id("D"): district.client_id,
                names.client_secret("D"): district.client_secret,
            }
        )
        clock = FakeClock()
        with build_http_client(settings) as http:
            tokens = TokenProvider(
                settings=settings,
                secret_store=secrets,
                http=http,
                district_count=lambda: 1,
                executor=InlineExecutor(),
                redactor=Redactor(),
            )
            client = CleverClient(
                http=http,
                settings=settings,
                tokens=tokens.for_district(DistrictRef(1, district.id, "D")),
                pacer=RateLimitPacer(clock=clock, sleep=clock.sleep),
                sleep=clock.sleep,
            )
            with caplog.at_level(logging.WARNING):
                ids = [u.id for p in client.students(school, page_size=10) for u in p.records]
    assert ids == sorted(s["id"] for s in sandbox.students(school))  # the retries got it all
    assert "token endpoint timed out" in caplog.text
    assert "no complete answer within CleverSync__Clever__TimeoutSeconds=0.3" in caplog.text
    assert [r.faults for r in sandbox.request_log] == [("trickle",), (), ("trickle",), ()]


# --- Clever down ----------------------------------------------------------------------------


def test_a_request_failing_through_every_retry_trips_the_breaker() -> None:
    calls: list[httpx.Request] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"message": "down"})

    breaker = DistrictBreaker()
    first, _ = make_client(down, breaker=breaker)
    with pytest.raises(CleverTransientError, match="HTTP 503"):
        ids_read(first, 10)
    assert len(calls) == 6 + 1  # six tries, then is Clever down or only this list?
    assert calls[-1].url.path == "/v3.0/districts"
    second, clock = make_client(down, breaker=breaker)  # another school of the district
    with pytest.raises(CleverUnreachableError, match=r"Clever unreachable: .*HTTP 503.*not tried"):
        second.latest_event_id()
    assert len(calls) == 7 and clock.sleeps == []  # no request, no wait


def test_one_schools_failing_pages_do_not_trip_the_breaker() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v3.0/schools/"):
            return httpx.Response(500, json={"message": "this school's data is broken"})
        return httpx.Response(200, json={"data": [], "links": []})

    breaker = DistrictBreaker()
    client, _ = make_client(handler, breaker=breaker, CleverSync__Retry__CleverApi__BackoffBase="0")
    with pytest.raises(CleverTransientError, match="HTTP 500"):
        ids_read(client, 10)
    assert breaker.error is None  # Clever answered the district-wide request


def test_rate_limiting_does_not_trip_the_breaker() -> None:
    breaker = DistrictBreaker()
    client, _ = make_client(
        lambda r: httpx.Response(429, headers={"Retry-After": "0"}), breaker=breaker
    )
    with pytest.raises(CleverRateLimitedError):
        ids_read(client, 10)
    assert breaker.error is None
