"""The sandbox's token endpoints and bearer-token checks, including rotation and expiry."""

from __future__ import annotations

import re

import httpx
import pytest

from cleversync.sandbox import Sandbox
from tests.sandbox.helpers import FakeClock, client_for


@pytest.fixture
def oauth(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://sandbox.test"
    )


def test_district_token_listing_with_basic_auth(sandbox: Sandbox, oauth: httpx.Client) -> None:
    district = sandbox.districts[1]
    response = oauth.get(
        "/oauth/tokens?owner_type=district", auth=(district.client_id, district.client_secret)
    )
    assert response.status_code == 200
    assert not any(name.startswith("x-ratelimit") for name in response.headers)
    body = response.json()
    assert body["links"] == [{"rel": "self", "uri": "/oauth/tokens?owner_type=district"}]
    [token] = body["data"]
    assert token["owner"] == {"type": "district", "id": district.id}
    assert re.fullmatch(r"[0-9a-f]{40}", token["access_token"])
    assert token["access_token"] == sandbox.district_token(district.id)
    assert "expires_in" not in token


def test_district_filter(sandbox: Sandbox, oauth: httpx.Client) -> None:
    district = sandbox.districts[0]
    auth = (district.client_id, district.client_secret)
    # the request's parameter order does not change the self link (as recorded)
    body = oauth.get(f"/oauth/tokens?district={district.id}&owner_type=district", auth=auth).json()
    assert body["links"][0]["uri"] == f"/oauth/tokens?owner_type=district&district={district.id}"
    assert [t["owner"]["id"] for t in body["data"]] == [district.id]
    other = sandbox.districts[1].id
    assert oauth.get(f"/oauth/tokens?district={other}", auth=auth).json()["data"] == []


@pytest.mark.parametrize(
    "auth", [None, ("nobody", "nothing"), "wrong secret"], ids=["none", "unknown", "secret"]
)
def test_wrong_basic_credentials_answer_401_oauth_style(sandbox, oauth, auth) -> None:
    if auth == "wrong secret":
        auth = (sandbox.districts[0].client_id, "0" * 40)
    response = oauth.get("/oauth/tokens?owner_type=district", auth=auth)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_credentials_tokens_expire_by_the_clock(
    sandbox: Sandbox, oauth: httpx.Client, clock: FakeClock
) -> None:
    district = sandbox.districts[0]
    response = oauth.post(
        "/oauth/tokens",
        data={"grant_type": "client_credentials"},
        auth=(district.client_id, district.client_secret),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    with client_for(sandbox, token=body["access_token"]) as api:
        assert api.get("/v3.0/districts").json()["data"][0]["data"]["id"] == district.id
        clock.advance(3599)
        assert api.get("/v3.0/districts").status_code == 200
        clock.advance(1)
        response = api.get("/v3.0/districts")
    assert response.status_code == 401
    assert "message" in response.json()


def test_client_credentials_errors(sandbox: Sandbox, oauth: httpx.Client) -> None:
    district = sandbox.districts[0]
    auth = (district.client_id, district.client_secret)
    assert oauth.post("/oauth/tokens", data={}, auth=auth).json()["error"] == "invalid_request"
    wrong_grant = oauth.post("/oauth/tokens", data={"grant_type": "password"}, auth=auth)
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    bad = oauth.post("/oauth/tokens", data={"grant_type": "client_credentials"}, auth=("x", "y"))
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer " + "0" * 40, "Basic abc"])
def test_missing_or_wrong_bearer_token_answers_401(sandbox: Sandbox, header: str | None) -> None:
    client = httpx.Client(
        transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://sandbox.test"
    )
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/v3.0/schools", headers=headers)
    assert response.status_code == 401
    assert isinstance(response.json()["message"], str)
    assert response.headers["x-ratelimit-bucket"] == "bearer"


def test_a_rotated_token_answers_401_and_the_new_one_works(sandbox: Sandbox) -> None:
    district = sandbox.districts[0].id
    old = sandbox.district_token(district)
    with client_for(sandbox, token=old) as api:
        assert api.get("/v3.0/schools").status_code == 200
        new = sandbox.rotate_token(district)
        assert api.get("/v3.0/schools").status_code == 401
    assert new != old
    assert sandbox.district_token(district) == new
    with client_for(sandbox, token=new) as api:
        assert api.get("/v3.0/schools").status_code == 200
    log = [(record.token, record.status) for record in sandbox.request_log]
    assert log[-3:] == [(old, 200), (old, 401), (new, 200)]


def test_a_token_sees_only_its_own_district(sandbox: Sandbox) -> None:
    mine, theirs = sandbox.districts
    with client_for(sandbox, district=0) as api:
        schools = api.get("/v3.0/schools").json()["data"]
        assert {s["data"]["id"] for s in schools} == {s.id for s in mine.schools}
        assert [d["data"]["id"] for d in api.get("/v3.0/districts").json()["data"]] == [mine.id]
        other_school = theirs.schools[0].id
        assert api.get(f"/v3.0/schools/{other_school}").status_code == 404
        assert api.get(f"/v3.0/schools/{other_school}/users?role=student").status_code == 404
        other_user = sandbox.students(other_school)[0]["id"]
        assert api.get(f"/v3.0/users/{other_user}").status_code == 404
        users = api.get("/v3.0/users?limit=10000").json()["data"]
        assert all(u["data"]["district"] == mine.id for u in users)


def test_request_log_records_method_target_status_and_token(sandbox: Sandbox) -> None:
    token = sandbox.district_token(sandbox.districts[0].id)
    with client_for(sandbox) as api:
        api.get("/v3.0/schools?limit=1")
        api.get("/v3.0/nothing")
    first, second = sandbox.request_log[-2], sandbox.request_log[-1]
    assert (first.method, first.target, first.status, first.token) == (
        "GET",
        "/v3.0/schools?limit=1",
        200,
        token,
    )
    assert second.status == 404
    sandbox.request_log.clear()
    assert len(sandbox.request_log) == 0


def test_request_log_is_bounded(clock: FakeClock) -> None:
    sandbox = Sandbox(
        schools=1, students=2, teachers=1, sections=1, clock=clock, request_log_size=3
    )
    with client_for(sandbox) as api:
        for index in range(5):
            api.get(f"/v3.0/schools?limit={index + 1}")
    assert [r.target for r in sandbox.request_log] == [
        f"/v3.0/schools?limit={n}" for n in (3, 4, 5)
    ]
