"""HTTP to Clever: the status table, one request within its deadline, Retry-After values."""

from __future__ import annotations

import httpx
import pytest

from cleversync.clever.deadline import BodyTooLargeError
from cleversync.clever.http import Call, error_for, retry_after_seconds, send
from cleversync.errors import (
    CleverAuthError,
    CleverError,
    CleverNotFoundError,
    CleverRateLimitedError,
    CleverRequestError,
    CleverTransientError,
    EventCursorExpiredError,
    EventsNotEnabledError,
    SchoolNotSharedError,
)

DATA = Call("the district's schools")
SCHOOL = Call("students of Clever school s1", school_id="s1")
EVENTS = Call("events of Clever school s1", events=True)
EVENTS_AFTER = Call("events of Clever school s1", events=True, cursor="e9")


@pytest.mark.parametrize(
    ("status", "call", "error", "says"),
    [
        (200, DATA, None, ""),
        (401, DATA, CleverAuthError, "freshly fetched token"),
        (429, DATA, CleverRateLimitedError, "rate-limited the district's schools"),
        (500, DATA, CleverTransientError, "HTTP 500"),
        (502, SCHOOL, CleverTransientError, "HTTP 502"),
        (503, EVENTS, CleverTransientError, "HTTP 503"),
        (599, DATA, CleverTransientError, "HTTP 599"),
        (501, DATA, CleverRequestError, "with HTTP 501"),
        (400, DATA, CleverRequestError, "with HTTP 400"),
        (413, SCHOOL, CleverRequestError, "CleverSync__Sync__PageSize"),
        (403, DATA, CleverAuthError, "may lack a scope"),
        (403, SCHOOL, CleverAuthError, "may lack a scope"),
        (404, DATA, CleverNotFoundError, "has no the district's schools"),
        (404, SCHOOL, SchoolNotSharedError, "does not share school s1"),
        (403, EVENTS, EventsNotEnabledError, "HTTP 403 on events"),
        (404, EVENTS, EventsNotEnabledError, "HTTP 404 on events"),
        (403, EVENTS_AFTER, EventsNotEnabledError, "not enabled"),
        (404, EVENTS_AFTER, EventCursorExpiredError, "no longer has event e9"),
        (418, EVENTS, CleverRequestError, "with HTTP 418"),
    ],
)
def test_error_for_maps_each_status_to_its_typed_error(
    status: int, call: Call, error: type[CleverError] | None, says: str
) -> None:
    found = error_for(status, call)
    if error is None:
        assert found is None
        return
    assert type(found) is error
    assert found is not None and says in str(found)
    assert found.status == status


def test_error_for_a_429_carries_the_wait_clever_asked_for() -> None:
    error = error_for(429, DATA, retry_after=7.0)
    assert isinstance(error, CleverRateLimitedError) and error.retry_after == 7.0
    assert error_for(503, DATA, retry_after=7.0).retryable  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("500", 60.0),  # capped
        ("-1", 60.0),  # unusable: the cap
        ("inf", 60.0),
        ("nan", 60.0),
        ("1e400", 60.0),
        ("soon", 60.0),
        ("Thu, 01 Jan 1970 00:16:50 GMT", 10.0),  # 1010 s after the epoch; now is 1000
        ("Thu, 01 Jan 1970 00:16:00 GMT", 0.0),  # in the past
        ("Thu, 01 Jan 1970 00:16:50 -0000", 10.0),
    ],
)
def test_retry_after_values(value: str, expected: float) -> None:
    assert retry_after_seconds(value, now=1000.0, cap=60.0) == expected


def client(handler: object) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_send_returns_the_whole_answer() -> None:
    with client(lambda request: httpx.Response(200, content=b"{}")) as http:
        response = send(http, "GET", "http://clever.test/x", what="x", seconds=5, max_bytes=10)
    assert response.status_code == 200 and response.content == b"{}"


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        (httpx.ReadTimeout("slow"), "Clever timed out answering the schools (no complete answer "),
        (
            httpx.ConnectError("refused"),
            "Clever could not be reached for the schools (ConnectError)",
        ),
        (httpx.RemoteProtocolError("dropped"), "could not be reached for the schools"),
    ],
)
def test_send_turns_timeouts_and_connection_errors_transient(failure: Exception, says: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    with client(handler) as http, pytest.raises(CleverTransientError) as raised:
        send(http, "GET", "http://clever.test/x", what="the schools", seconds=5, max_bytes=10)
    assert says in str(raised.value)


def test_send_names_who_did_not_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    with client(handler) as http, pytest.raises(CleverTransientError) as raised:
        send(
            http,
            "POST",
            "http://clever.test/t",
            what="a token",
            who="The endpoint",
            seconds=2,
            max_bytes=10,
        )
    assert "The endpoint timed out answering a token" in str(raised.value)
    assert "CleverSync__Clever__TimeoutSeconds=2)" in str(raised.value)


def test_send_refuses_a_body_over_its_cap() -> None:
    big = client(lambda request: httpx.Response(200, content=b"x" * 11))
    with big as http, pytest.raises(BodyTooLargeError):
        send(http, "GET", "http://clever.test/x", what="x", seconds=5, max_bytes=10)
