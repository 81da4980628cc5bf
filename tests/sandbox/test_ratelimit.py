"""The sandbox's per-token fixed-window rate limit and its X-Ratelimit-* headers."""

from __future__ import annotations

import math

import httpx
import pytest

from cleversync.sandbox import Sandbox
from tests.sandbox.helpers import START, FakeClock, client_for

HEADERS = ("x-ratelimit-bucket", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture
def limited(clock: FakeClock) -> Sandbox:
    return Sandbox(
        schools=1,
        students=5,
        teachers=1,
        sections=1,
        clock=clock,
        districts=2,
        rate_limit=3,
        rate_window_seconds=60,
    )


def _rate(response: httpx.Response) -> tuple[str, int, int, int]:
    headers = response.headers
    return (
        headers["x-ratelimit-bucket"],
        int(headers["x-ratelimit-limit"]),
        int(headers["x-ratelimit-remaining"]),
        int(headers["x-ratelimit-reset"]),
    )


def test_every_data_answer_carries_the_headers(sandbox: Sandbox, api: httpx.Client, clock) -> None:
    clock.advance(0.25)
    answers = [
        api.get("/v3.0/schools"),  # 200
        api.get("/v3.0/users?limit=0"),  # 400
        api.get("/v3.0/users/0123456789abcdef01234567"),  # 404 JSON
        api.get("/v3.0/terms"),  # 404 HTML
    ]
    assert [a.status_code for a in answers] == [200, 400, 404, 404]
    reset = math.ceil(START + 0.25 + 60)
    assert [_rate(a) for a in answers] == [
        ("bearer", 1200, 1199, reset),
        ("bearer", 1200, 1198, reset),
        ("bearer", 1200, 1197, reset),
        ("bearer", 1200, 1196, reset),
    ]


def test_over_the_limit_is_429_until_the_window_resets(limited: Sandbox, clock: FakeClock) -> None:
    with client_for(limited) as api:
        statuses = [api.get("/v3.0/schools").status_code for _ in range(3)]
        clock.advance(59)
        refused = api.get("/v3.0/schools")
        assert statuses == [200, 200, 200]
        assert refused.status_code == 429
        assert _rate(refused) == ("bearer", 3, 0, int(START + 60))
        clock.advance(1)  # the window started at the first request and lasts 60 s
        again = api.get("/v3.0/schools")
    assert again.status_code == 200
    assert _rate(again) == ("bearer", 3, 2, int(START + 120))


def test_each_token_has_its_own_bucket(limited: Sandbox) -> None:
    with client_for(limited, district=0) as first, client_for(limited, district=1) as second:
        for _ in range(4):
            first.get("/v3.0/schools")
        assert first.get("/v3.0/schools").status_code == 429
        response = second.get("/v3.0/schools")
    assert response.status_code == 200
    assert _rate(response)[2] == 2


def test_a_rejected_request_does_not_reach_the_api(limited: Sandbox) -> None:
    with client_for(limited, token="0" * 40) as stranger:
        statuses = [stranger.get("/v3.0/schools").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_the_oauth_endpoints_carry_no_rate_limit_headers(limited: Sandbox) -> None:
    district = limited.districts[0]
    transport = httpx.WSGITransport(app=limited.wsgi_app)
    with httpx.Client(transport=transport, base_url="http://sandbox.test") as client:
        auth = (district.client_id, district.client_secret)
        for _ in range(5):  # not limited either
            response = client.get("/oauth/tokens?owner_type=district", auth=auth)
            assert response.status_code == 200
    assert not any(name in response.headers for name in HEADERS)
