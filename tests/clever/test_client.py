"""The Clever client: real recorded payloads, paging, retries, token refresh, error types."""

from __future__ import annotations

import copy
import json
import logging
import ssl
import threading
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from cleversync.clever.client import CleverClient
from cleversync.clever.http import build_http_client
from cleversync.clever.models import CleverModel, Section, User, unknown_in
from cleversync.clever.pages import FieldReport
from cleversync.clever.ratelimit import RateLimitPacer
from cleversync.errors import (
    CleverAuthError,
    CleverRequestError,
    CleverResponseError,
    CleverTransientError,
    ConfigurationError,
    EventCursorExpiredError,
    EventsNotEnabledError,
    SchoolNotSharedError,
)
from cleversync.settings import Settings
from tests.fakes import FakeClock
from tests.recordings import SCHOOL_07, body, interactions

BASE = "https://api.clever.com"


class Tokens:
    def __init__(self) -> None:
        self.current = "token-1"
        self.invalidated: list[str] = []
        self.issued = 1

    def token(self) -> str:
        return self.current

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)
        self.issued += 1
        self.current = f"token-{self.issued}"


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    clock: FakeClock | None = None,
    *,
    prefetch: bool = False,
    **env: str,
) -> tuple[CleverClient, Tokens, FakeClock]:
    clock = clock or FakeClock()
    settings = Settings.load({"CleverSync__Retry__CleverApi__BackoffBase": "2", **env})
    tokens = Tokens()
    client = CleverClient(
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        settings=settings,
        tokens=tokens,
        pacer=RateLimitPacer(clock=clock, sleep=clock.sleep),
        sleep=clock.sleep,
        clock=clock,
        prefetch=prefetch,
    )
    return client, tokens, clock


def replay(
    *names: str, missing: Callable[[httpx.Request], httpx.Response] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """Serve recorded answers by path and starting_after (the recordings used no role/limit)."""
    served: dict[tuple[str, str | None], dict] = {}
    for name in names:
        for item in interactions(name):
            uri = item["request"]["uri"]
            path, _, query = uri.partition("?")
            served[(path, parse_qs(query).get("starting_after", [None])[0])] = item["response"]

    def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.url.query.decode())
        key = (request.url.path, query.get("starting_after", [None])[0])
        if key not in served:
            if missing:
                return missing(request)
            return httpx.Response(404, text="<pre>Cannot GET</pre>")
        recorded = served[key]
        return httpx.Response(
            recorded["status"],
            headers=recorded["headers"],
            content=json.dumps(recorded["body"]).encode(),
        )

    return handler


def empty_page(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={"data": [], "links": [{"rel": "self", "uri": request.url.raw_path.decode()}]}
    )


# --- the real recordings -------------------------------------------------------------------


def test_reads_the_real_school_user_pages() -> None:
    # Page 3 was not recorded: answer it with an empty page.
    client, _, _ = make_client(replay("schoool_users_next", missing=empty_page))
    pages = list(client.students(SCHOOL_07, page_size=100))
    students = [u for p in pages for u in p.records]
    assert [len(p.records) for p in pages] == [100, 100, 0]
    assert len({u.id for u in students}) == 200
    assert all(u.roles.student is not None for u in students)
    assert not any(p.failures for p in pages)
    # A real fact: school user lists hold students whose primary school is another one.
    assert sum(1 for u in students if u.roles.student.school != SCHOOL_07) == 58
    assert all(SCHOOL_07 in u.roles.student.schools for u in students)
    assert client.field_report.fields("Student") == set()


def test_reads_real_sections_events_and_schools() -> None:
    client, _, _ = make_client(replay("school_sections", missing=empty_page))
    sections = [s for p in client.sections(SCHOOL_07, page_size=100) for s in p.records]
    assert len(sections) == 100
    assert all(s.section_number == "" for s in sections)
    assert all(s.teacher in s.teachers for s in sections)
    assert client.field_report.fields("Section") == set()

    client, _, _ = make_client(replay("schools_next"))
    pages = list(client.schools(page_size=3))
    assert [len(p.records) for p in pages] == [3, 1]  # the last page has no `next`

    client, _, _ = make_client(replay("events_next", missing=empty_page))
    events = [e for p in client.events(SCHOOL_07, after=None, page_size=100) for e in p.records]
    assert len(events) == 200
    assert [e.id for e in events] == sorted(e.id for e in events)
    updated = next(e for e in events if e.type == "users.updated")
    assert updated.object["id"] and updated.previous_attributes  # nested inside "data"
    assert {e.record_type for e in events} == {"users", "schools", "districts"}


def test_reads_real_teachers_with_an_email_without_at() -> None:
    teacher = parse_user(body("user_myteachers")["data"][0]["data"])
    assert teacher.email == "seth_schoen.example.org"
    assert teacher.roles.teacher.title == "Kindergarten Teacher"


def parse_user(raw: dict) -> User:
    from cleversync.clever.models import parse

    return parse(User, raw)


def test_observes_real_rate_limit_headers() -> None:
    clock = FakeClock(1682376200.0)
    client, _, _ = make_client(replay("school_users_with_limit", missing=empty_page), clock=clock)
    list(client.students(SCHOOL_07, page_size=25))
    recorded = interactions("school_users_with_limit")[-1]["response"]["headers"]
    # The recorded X-Ratelimit-Remaining, less the requests made since (counted locally):
    # the empty page 2, and the one confirming that the list really ends there.
    assert client._pacer._remaining == int(recorded["x-ratelimit-remaining"]) - 2
    assert client._pacer._reset == int(recorded["x-ratelimit-reset"])


# --- paging ---------------------------------------------------------------------------------


def page(ids: list[str], next_uri: str | None = None, role: str = "student") -> dict:
    links = [{"rel": "self", "uri": "/v3.0/x"}]
    if next_uri:
        links.append({"rel": "next", "uri": next_uri})
    return {
        "data": [
            {
                "data": {
                    "id": i,
                    "name": {"first": "A", "last": "B"},
                    "roles": {role: {"schools": ["s"]}},
                },
                "uri": f"/v3.0/users/{i}",
            }
            for i in ids
        ],
        "links": links,
    }


def test_a_repeated_cursor_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=page(["a"], "/v3.0/schools/s/users?starting_after=a"))

    client, _, _ = make_client(handler)
    with pytest.raises(CleverResponseError, match="repeats itself"):
        list(client.students("s", page_size=1))


def test_a_next_link_to_another_host_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json=page(["a"], "https://evil.example/v3.0/schools/s/users?starting_after=a")
        )

    client, _, _ = make_client(handler)
    pages = client.students("s", page_size=1)
    next(pages)
    with pytest.raises(CleverResponseError, match="another host"):
        next(pages)


def _three_pages(requested: list[str], *, fail_at: str | None = None):
    """A list of pages a, b, c (one record each); ``fail_at``: that page answers 400."""

    def handler(request: httpx.Request) -> httpx.Response:
        after = parse_qs(request.url.query.decode()).get("starting_after", [""])[0]
        requested.append(after)
        following = {"": "a", "a": "b", "b": "c", "c": None}[after]
        if following is not None and following == fail_at:
            return httpx.Response(400, json={"message": "bad"})
        if following is None:
            return httpx.Response(200, json=page([]))
        return httpx.Response(
            200, json=page([following], f"/v3.0/schools/s/users?starting_after={following}")
        )

    return handler


def test_prefetch_reads_the_same_pages_in_the_same_order() -> None:
    plain: list[str] = []
    ahead: list[str] = []
    client, _, _ = make_client(_three_pages(plain))
    expected = [[u.id for u in p.records] for p in client.students("s", page_size=1)]
    client, _, _ = make_client(_three_pages(ahead), prefetch=True)
    got = [[u.id for u in p.records] for p in client.students("s", page_size=1)]
    assert got == expected
    assert got[:3] == [["a"], ["b"], ["c"]]
    assert ahead == plain  # one request at a time, in order, none twice


def test_prefetch_fetches_the_next_page_while_the_caller_works() -> None:
    requested: list[str] = []
    client, _, _ = make_client(_three_pages(requested), prefetch=True)
    pages = client.students("s", page_size=1)
    next(pages)  # page a in hand: page b is being fetched meanwhile
    for _ in range(100):
        if len(requested) == 2:
            break
        threading.Event().wait(0.01)
    assert requested == ["", "a"]
    pages.close()  # the caller stops: nothing further is asked for, no thread is left
    assert requested == ["", "a"]
    assert not [t for t in threading.enumerate() if t.name.startswith("clever-prefetch")]


def test_prefetch_raises_a_failed_page_where_it_is_asked_for() -> None:
    requested: list[str] = []
    client, _, _ = make_client(_three_pages(requested, fail_at="b"), prefetch=True)
    pages = client.students("s", page_size=1)
    assert [u.id for u in next(pages).records] == ["a"]  # page b's failure is not page a's
    with pytest.raises(CleverRequestError):
        next(pages)


def unknown_fields(record: CleverModel, prefix: str = "") -> set[str]:
    """The oracle: the fields a parsed record's models hold beyond the schema, walked."""
    found = {f"{prefix}{key}" for key in record.model_extra or {}}
    for name in type(record).model_fields:
        value = getattr(record, name)
        if isinstance(value, CleverModel):
            found |= unknown_fields(value, f"{prefix}{name}.")
    return found


@pytest.mark.parametrize(
    ("name", "model"), [("schoool_users_next", User), ("school_sections", Section)]
)
def test_unknown_fields_of_a_page_are_those_of_its_records(name: str, model: type) -> None:
    # A page's unknown fields are read from the dicts at once (unknown_in): the same set as
    # walking each parsed record's models (unknown_fields), on real payloads with fields
    # added at every level, and with nested objects missing or null.
    raws = [copy.deepcopy(item["data"]) for item in body(name)["data"]]  # recordings are shared
    assert raws
    for n, raw in enumerate(raws):
        raw[f"top_{n % 3}"] = 1
        if model is User:
            raw["name"] = {**(raw.get("name") or {}), f"nick_{n % 2}": "x"} if n % 4 else None
            student = raw["roles"].get("student")
            if student is not None and n % 5 == 0:
                student["new_flag"] = True
        elif n % 2:
            raw["term"] = {"id": "t"}
    expected: set[str] = set()
    for raw in raws:
        expected |= unknown_fields(model.model_validate(raw))
    assert unknown_in(model, raws) == expected
    assert "top_0" in expected and ("roles.student.new_flag" in expected or model is Section)


def test_records_without_the_role_asked_for_are_skipped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        data = page(["a", "b"])
        data["data"][1]["data"]["roles"] = {"teacher": {"schools": ["s"]}}
        return httpx.Response(200, json=data)

    client, _, _ = make_client(handler)
    [result] = list(client.students("s", page_size=10))
    assert [u.id for u in result.records] == ["a"]
    assert result.off_role == 1


def test_bad_records_are_reported_not_fatal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        data = page(["a", "b"])
        data["data"][1]["data"]["name"] = {"first": 42}
        data["data"].append({"data": "not an object"})
        return httpx.Response(200, json=data)

    client, _, _ = make_client(handler)
    [result] = list(client.students("s", page_size=10))
    assert [u.id for u in result.records] == ["a"]
    assert sorted(f.clever_id for f in result.failures) == ["", "b"]
    assert "name.first" in next(f for f in result.failures if f.clever_id == "b").problem


def test_unknown_fields_are_reported_once_per_run(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        data = page(["a", "b"], None)
        for item in data["data"]:
            item["data"]["pronouns"] = "they/them"
            item["data"]["roles"]["student"]["new_thing"] = 1
        return httpx.Response(200, json=data)

    report = FieldReport()
    client, _, _ = make_client(handler)
    client.field_report = report
    with caplog.at_level(logging.WARNING):
        list(client.students("s", page_size=10))
        list(client.students("s", page_size=10))
    assert report.fields("Student") == {"pronouns", "roles.student.new_thing"}
    warnings = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert len(warnings) == 1
    assert "they/them" not in caplog.text


# --- retries and errors ---------------------------------------------------------------------


def test_5xx_then_success_waits_with_exponential_backoff() -> None:
    answers = [503, 502, 200]

    def handler(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0)
        return httpx.Response(status, json=page(["a"]) if status == 200 else {"message": "oops"})

    client, _, clock = make_client(handler)
    [result] = list(client.students("s", page_size=10))
    assert [u.id for u in result.records] == ["a"]
    assert len(clock.sleeps) == 2
    assert 2 <= clock.sleeps[0] <= 3 and 4 <= clock.sleeps[1] <= 5  # 2, 4 s plus jitter


def test_5xx_until_the_retries_run_out() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500, json={"message": "down"})

    client, _, clock = make_client(handler)
    with pytest.raises(CleverTransientError, match="HTTP 500"):
        list(client.students("s", page_size=1))
    assert len(calls) == 6  # the first call and MaxAttempts=5 retries
    # 2, 4, 8, 16, 32 s, each plus up to half the base (1 s) of jitter
    assert all(lo <= s <= lo + 1 for s, lo in zip(clock.sleeps, [2, 4, 8, 16, 32], strict=True))


def test_timeouts_and_dropped_connections_are_retried() -> None:
    failures: list[Exception] = [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json=page(["a"]))

    client, _, clock = make_client(handler, **{"CleverSync__Retry__CleverApi__BackoffBase": "0"})
    assert len(list(client.students("s", page_size=10))) == 1
    assert clock.sleeps == [0.0, 0.0]


def test_429_honours_retry_after() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json=page(["a"])),
    ]
    client, _, clock = make_client(lambda r: answers.pop(0))
    list(client.students("s", page_size=10))
    assert clock.sleeps == [7.0]


def test_429_waits_for_clevers_reset_header() -> None:
    clock = FakeClock(1000.0)
    answers = [
        httpx.Response(
            429,
            headers={
                "X-Ratelimit-Remaining": "0",
                "X-Ratelimit-Reset": "1012",
                "X-Ratelimit-Limit": "1200",
            },
        ),
        httpx.Response(200, json=page(["a"])),
    ]
    client, _, _ = make_client(lambda r: answers.pop(0), clock=clock)
    list(client.students("s", page_size=10))
    assert clock.sleeps == [pytest.approx(12.05)]


def test_the_pacer_waits_instead_of_collecting_429s() -> None:
    clock = FakeClock(1000.0)
    state = {"remaining": 3, "reset": 1060, "served": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if "starting_after=id8" in str(request.url):
            return httpx.Response(200, json=page([]))  # the list ends after id8
        if clock.now >= state["reset"]:
            state["remaining"], state["reset"] = 3, state["reset"] + 60
        if state["remaining"] == 0:
            return httpx.Response(
                429,
                headers={"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(state["reset"])},
            )
        state["remaining"] -= 1
        state["served"] += 1
        n = state["served"]
        headers = {
            "X-Ratelimit-Remaining": str(state["remaining"]),
            "X-Ratelimit-Reset": str(state["reset"]),
        }
        return httpx.Response(
            200,
            headers=headers,
            json=page([f"id{n}"], f"/v3.0/schools/s/users?starting_after=id{n}" if n < 8 else None),
        )

    client, _, _ = make_client(handler, clock=clock)
    pages = list(client.students("s", page_size=1))
    assert len(pages) >= 5
    # No 429 was collected; one more request confirmed that the list ends after the full
    # last page.
    assert client.requests == len(pages) + 1
    assert any(s > 50 for s in clock.sleeps)


def test_401_drops_the_token_and_retries_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer token-1":
            return httpx.Response(401, json={"message": "invalid token"})
        return httpx.Response(200, json=page(["a"]))

    client, tokens, _ = make_client(handler)
    assert len(list(client.students("s", page_size=10))) == 1
    assert tokens.invalidated == ["token-1"]


def test_401_with_a_fresh_token_is_an_auth_error() -> None:
    client, tokens, clock = make_client(lambda r: httpx.Response(401, json={"message": "no"}))
    with pytest.raises(CleverAuthError):
        list(client.students("s", page_size=1))
    assert tokens.invalidated == ["token-1"]
    assert clock.sleeps == []  # not retried beyond the one refresh


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, CleverRequestError),
        (413, CleverRequestError),
        (501, CleverRequestError),
        (403, CleverAuthError),
    ],
)
def test_answers_a_retry_cannot_fix_are_not_retried(status: int, error: type[Exception]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, text="<pre>Cannot GET</pre>")

    client, _, _ = make_client(handler)
    with pytest.raises(error):
        list(client.students("s", page_size=1))
    assert len(calls) == 1


def test_404_on_a_school_is_not_shared() -> None:
    client, _, _ = make_client(lambda r: httpx.Response(404, text="<pre>Cannot GET</pre>"))
    with pytest.raises(SchoolNotSharedError, match="school s"):
        list(client.sections("s", page_size=1))


def test_malformed_json_is_a_response_error() -> None:
    client, _, _ = make_client(lambda r: httpx.Response(200, content=b'{"data": [ {"data"'))
    with pytest.raises(CleverResponseError, match="not JSON"):
        list(client.students("s", page_size=1))


@pytest.mark.parametrize("status", [403, 404])
def test_events_not_enabled(status: int) -> None:
    client, _, _ = make_client(
        lambda r: httpx.Response(status, json={"message": "events disabled"})
    )
    with pytest.raises(EventsNotEnabledError):
        client.latest_event_id()
    with pytest.raises(EventsNotEnabledError):
        list(client.events("s", after=None, page_size=10))


def test_404_on_a_stored_cursor_is_an_expired_cursor() -> None:
    client, _, _ = make_client(lambda r: httpx.Response(404, json={"message": "not found"}))
    with pytest.raises(EventCursorExpiredError, match="abc"):
        list(client.events("s", after="abc", page_size=10))


def test_latest_event_id_and_an_empty_feed() -> None:
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            return httpx.Response(200, json=body("events_with_limit"))
        return httpx.Response(200, json={"data": [], "links": []})

    client, _, _ = make_client(handler)
    assert client.latest_event_id() == body("events_with_limit")["data"][-1]["data"]["id"]
    assert parse_qs(requests[0].url.query.decode()) == {"ending_before": ["last"], "limit": ["1"]}
    assert client.latest_event_id() == ""


def test_event_requests_carry_school_cursor_and_record_types() -> None:
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"data": [], "links": []})

    client, _, _ = make_client(handler)
    list(client.events("school-1", after="e1", page_size=50))
    query = parse_qs(requests[0].url.query.decode())
    assert query == {
        "school": ["school-1"],
        "limit": ["50"],
        "starting_after": ["e1"],
        "record_type": ["users", "sections"],
    }


def test_a_different_api_version_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    data = page(["a"])
    data["links"][0]["uri"] = "/v3.1/schools/s/users"
    client, _, _ = make_client(lambda r: httpx.Response(200, json=data))
    with caplog.at_level(logging.WARNING):
        list(client.students("s", page_size=10))
    assert "v3.1" in caplog.text and "v3.0" in caplog.text


def test_plain_http_only_to_loopback() -> None:
    with pytest.raises(ConfigurationError, match="CleverSync__Clever__ApiBaseUrl"):
        Settings.load({"CleverSync__Clever__ApiBaseUrl": "http://api.clever.com"})
    local = Settings.load(
        {
            "CleverSync__Clever__ApiBaseUrl": "http://127.0.0.1:8080",
            "CleverSync__Clever__TokenUrl": "http://localhost:8080/oauth/tokens",
        }
    )
    build_http_client(local).close()


def test_tls_1_2_is_the_minimum() -> None:
    client = build_http_client(Settings.load({}))
    context = client._transport._pool._ssl_context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    client.close()
