"""The token provider: sources and precedence, refresh ahead of expiry, single flight, 401."""

from __future__ import annotations

import base64
import threading
import time
from urllib.parse import parse_qs

import httpx
import pytest

from cleversync.clever.tokens import DistrictRef, TokenProvider
from cleversync.errors import CleverAuthError, CleverTransientError, ConfigurationError
from cleversync.redaction import Redactor
from cleversync.settings import Settings
from tests.fakes import FakeClock, InlineExecutor, MemorySecretStore, QueuedExecutor

DISTRICT = DistrictRef(
    district_id=1, clever_district_id="58da8a43cc70ab00017a1a87", prefix="Demo-ISD"
)
OTHER = DistrictRef(
    district_id=2, clever_district_id="5b2ad81a709e300001e2cd7a", prefix="Other-ISD"
)


class FakeTokenEndpoint:
    """Clever's GET /oauth/tokens (district tokens) and an RFC 6749 POST, with counters."""

    def __init__(self) -> None:
        self.apps = {
            ("district-app", "district-secret"): {DISTRICT.clever_district_id: "tok-district-1"},
            ("global-app", "global-secret"): {
                DISTRICT.clever_district_id: "tok-global-1",
                OTHER.clever_district_id: "tok-global-2",
            },
        }
        self.calls: list[httpx.Request] = []
        self.fail_with: int | None = None
        self.delay = 0.0
        self.issued = 0
        self.expires_in = 3600

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_with:
            return httpx.Response(self.fail_with, json={"error": "server_error"})
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        user, _, password = (
            base64.b64decode(encoded).decode().partition(":") if scheme == "Basic" else ("", "", "")
        )
        tokens = self.apps.get((user, password))
        if tokens is None:
            return httpx.Response(401, json={"error": "invalid_client"})
        self.issued += 1
        if request.method == "POST":
            form = parse_qs(request.content.decode())
            assert form["grant_type"] == ["client_credentials"]
            return httpx.Response(
                200,
                json={
                    "access_token": f"cc-{self.issued}",
                    "token_type": "bearer",
                    "expires_in": self.expires_in,
                },
            )
        query = parse_qs(request.url.query.decode())
        assert query["owner_type"] == ["district"]
        district = query["district"][0]
        data = [
            {
                "id": f"t{n}",
                "owner": {"type": "district", "id": d},
                "access_token": f"{t}-{self.issued}",
                "scopes": ["read:students"],
            }
            for n, (d, t) in enumerate(tokens.items())
            if d == district
        ]
        return httpx.Response(
            200, json={"data": data, "links": [{"rel": "self", "uri": "/oauth/tokens"}]}
        )


@pytest.fixture
def endpoint() -> FakeTokenEndpoint:
    return FakeTokenEndpoint()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


def provider(
    endpoint: FakeTokenEndpoint,
    clock: FakeClock,
    secrets: dict[str, str],
    *,
    districts: int = 2,
    executor=None,
    mode: str = "district_tokens",
    redactor: Redactor | None = None,
) -> TokenProvider:
    settings = Settings.load(
        {
            "CleverSync__Clever__TokenUrl": "https://clever.example/oauth/tokens",
            "CleverSync__Clever__TokenMode": mode,
        }
    )
    return TokenProvider(
        settings=settings,
        secret_store=MemorySecretStore(secrets),
        http=httpx.Client(transport=httpx.MockTransport(endpoint)),
        district_count=lambda: districts,
        clock=clock,
        executor=executor or InlineExecutor(),
        redactor=redactor or Redactor(),
    )


DISTRICT_APP = {
    "CleverSyncSOS--Demo-ISD--ClientId": "district-app",
    "CleverSyncSOS--Demo-ISD--ClientSecret": "district-secret",
}
GLOBAL_APP = {
    "CleverSyncSOS--Clever--ClientId": "global-app",
    "CleverSyncSOS--Clever--ClientSecret": "global-secret",
}


def test_district_token_from_clevers_token_list(endpoint, clock) -> None:
    tokens = provider(endpoint, clock, DISTRICT_APP)
    assert tokens.token(DISTRICT) == "tok-district-1-1"
    request = endpoint.calls[0]
    assert request.method == "GET"
    assert parse_qs(request.url.query.decode()) == {
        "owner_type": ["district"],
        "district": [DISTRICT.clever_district_id],
    }
    assert (
        request.headers["authorization"]
        == "Basic " + base64.b64encode(b"district-app:district-secret").decode()
    )
    assert tokens.token(DISTRICT) == "tok-district-1-1"
    assert len(endpoint.calls) == 1  # cached


def test_district_app_falls_back_to_the_global_app(endpoint, clock) -> None:
    tokens = provider(endpoint, clock, GLOBAL_APP)
    assert tokens.token(DISTRICT) == "tok-global-1-1"
    assert tokens.token(OTHER) == "tok-global-2-2"
    assert tokens.states()[1].source.startswith("Clever's district token list, the global app")


def test_pre_issued_tokens_take_precedence(endpoint, clock) -> None:
    secrets = {**DISTRICT_APP, "CleverSyncSOS--Demo-ISD--AccessToken": "pre-issued-district"}
    assert provider(endpoint, clock, secrets).token(DISTRICT) == "pre-issued-district"
    assert endpoint.calls == []


def test_the_global_access_token_serves_only_a_single_district(endpoint, clock) -> None:
    secrets = {**DISTRICT_APP, "CleverSyncSOS--Clever--AccessToken": "pre-issued-global"}
    assert provider(endpoint, clock, secrets, districts=1).token(DISTRICT) == "pre-issued-global"
    assert provider(endpoint, clock, secrets, districts=2).token(DISTRICT) == "tok-district-1-1"


def test_no_credentials_names_the_secrets_to_set(endpoint, clock) -> None:
    with pytest.raises(ConfigurationError) as info:
        provider(endpoint, clock, {}).token(DISTRICT)
    for name in (
        "CleverSyncSOS--Demo-ISD--ClientId",
        "CleverSyncSOS--Clever--ClientSecret",
        "CleverSyncSOS--Demo-ISD--AccessToken",
    ):
        assert name in str(info.value)


def test_wrong_secret_is_an_auth_error_without_the_secret(endpoint, clock) -> None:
    secrets = {**DISTRICT_APP, "CleverSyncSOS--Demo-ISD--ClientSecret": "wrong-secret-value"}
    tokens = provider(endpoint, clock, secrets)
    with pytest.raises(CleverAuthError) as info:
        tokens.token(DISTRICT)
    assert "wrong-secret-value" not in str(info.value)
    assert "CleverSyncSOS--Demo-ISD--ClientId" in str(info.value)
    assert tokens.states()[1].last_error is not None


def test_an_app_without_a_token_for_the_district(endpoint, clock) -> None:
    secrets = {
        "CleverSyncSOS--Other-ISD--ClientId": "district-app",
        "CleverSyncSOS--Other-ISD--ClientSecret": "district-secret",
    }
    tokens = provider(endpoint, clock, secrets)
    with pytest.raises(CleverAuthError, match="has not authorized the app"):
        tokens.token(OTHER)


def test_refresh_in_the_background_at_75_percent(endpoint, clock) -> None:
    executor = QueuedExecutor()
    tokens = provider(endpoint, clock, DISTRICT_APP, executor=executor)  # lifetime 60 min
    assert tokens.token(DISTRICT) == "tok-district-1-1"
    clock.advance(0.74 * 3600)
    assert tokens.token(DISTRICT) == "tok-district-1-1"
    assert executor.queue == []
    clock.advance(0.02 * 3600)
    assert tokens.token(DISTRICT) == "tok-district-1-1"  # served at once, refresh queued
    assert len(executor.queue) == 1
    assert tokens.token(DISTRICT) == "tok-district-1-1"
    assert len(executor.queue) == 1  # one refresh at a time
    executor.run_all()
    assert tokens.token(DISTRICT) == "tok-district-1-2"
    assert len(endpoint.calls) == 2


def test_background_failure_then_on_demand_success(endpoint, clock) -> None:
    executor = QueuedExecutor()
    tokens = provider(endpoint, clock, DISTRICT_APP, executor=executor)
    tokens.token(DISTRICT)
    clock.advance(0.8 * 3600)
    tokens.token(DISTRICT)
    endpoint.fail_with = 503
    executor.run_all()  # the background refresh fails
    assert tokens.states()[1].last_error is not None
    endpoint.fail_with = None
    assert tokens.token(DISTRICT) == "tok-district-1-2"  # refreshed on demand, synchronously
    assert tokens.states()[1].last_error is None


def test_a_failed_refresh_keeps_serving_a_valid_token(endpoint, clock) -> None:
    executor = QueuedExecutor()
    tokens = provider(endpoint, clock, DISTRICT_APP, executor=executor)
    tokens.token(DISTRICT)
    clock.advance(0.8 * 3600)
    tokens.token(DISTRICT)
    endpoint.fail_with = 503
    executor.run_all()
    assert tokens.token(DISTRICT) == "tok-district-1-1"  # on-demand refresh failed too
    calls = len(endpoint.calls)
    assert tokens.token(DISTRICT) == "tok-district-1-1"
    assert len(endpoint.calls) == calls  # not hammering the endpoint on every call
    clock.advance(0.25 * 3600)  # past the lifetime: no more serving
    with pytest.raises(CleverTransientError):
        tokens.token(DISTRICT)


def test_concurrent_callers_trigger_one_fetch(endpoint, clock) -> None:
    endpoint.delay = 0.2
    tokens = provider(endpoint, clock, DISTRICT_APP)
    barrier = threading.Barrier(8)
    results: list[str] = []

    def call() -> None:
        barrier.wait()
        results.append(tokens.token(DISTRICT))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["tok-district-1-1"] * 8
    assert len(endpoint.calls) == 1


def test_invalidate_after_a_401_fetches_a_new_token(endpoint, clock) -> None:
    tokens = provider(endpoint, clock, DISTRICT_APP)
    first = tokens.token(DISTRICT)
    tokens.invalidate(DISTRICT, "some-other-token")
    assert tokens.token(DISTRICT) == first  # only the refused token is dropped
    tokens.invalidate(DISTRICT, first)
    assert tokens.token(DISTRICT) == "tok-district-1-2"


def test_client_credentials_mode_honours_expires_in(endpoint, clock) -> None:
    endpoint.expires_in = 100
    executor = QueuedExecutor()
    tokens = provider(endpoint, clock, DISTRICT_APP, mode="client_credentials", executor=executor)
    assert tokens.token(DISTRICT) == "cc-1"
    assert endpoint.calls[0].method == "POST"
    clock.advance(76)
    tokens.token(DISTRICT)
    assert len(executor.queue) == 1  # 75 % of 100 s
    clock.advance(30)  # expired before the refresh ran: fetched on demand
    assert tokens.token(DISTRICT) == "cc-2"


def test_tokens_and_credentials_are_registered_for_redaction(endpoint, clock) -> None:
    redactor = Redactor()
    tokens = provider(endpoint, clock, DISTRICT_APP, redactor=redactor)
    token = tokens.token(DISTRICT)
    basic = base64.b64encode(b"district-app:district-secret").decode()
    text = redactor.redact(f"{token} district-secret {basic}")
    assert token not in text
    assert "district-secret" not in text
    assert basic not in text
