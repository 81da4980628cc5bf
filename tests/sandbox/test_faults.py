"""Every fault kind of the sandbox, and how faults pick their requests."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cleversync.sandbox import Fault, Sandbox
from tests.sandbox.helpers import START, FakeClock, client_for, follow, links_by_rel, next_link


def _school(sandbox: Sandbox) -> str:
    return sandbox.districts[0].schools[0].id


def test_status_fault_with_headers_fails_only_the_matching_page(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = _school(sandbox)
    sandbox.faults.add(
        Fault(
            "status",
            path="/v3.0/schools/*/users",
            status=503,
            after=2,
            headers={"Retry-After": "7"},
        )
    )
    uri = f"/v3.0/schools/{school}/users?role=student&limit=5"
    first = api.get(uri).json()
    second = api.get(next_link(first)).json()
    assert api.get("/v3.0/users").status_code == 200  # another path: not counted
    third = api.get(next_link(second))
    assert third.status_code == 503
    assert third.headers["retry-after"] == "7"
    assert third.json() == {"message": "Service Unavailable"}
    assert api.get(next_link(second)).status_code == 200  # times=1: the retry succeeds
    assert [r.faults for r in sandbox.request_log][-2:] == [("status",), ()]


def test_status_fault_body_query_method_and_times(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.faults.add(
        Fault(
            "status",
            method="GET",
            path="/v3.0/*",
            query="limit=2",
            status=502,
            times=2,
            body="<html>Bad Gateway</html>",
            headers={"Content-Type": "text/html"},
        )
    )
    assert api.get("/v3.0/schools").status_code == 200
    answers = [api.get("/v3.0/schools?limit=2") for _ in range(3)]
    assert [a.status_code for a in answers] == [502, 502, 200]
    assert answers[0].text == "<html>Bad Gateway</html>"
    assert answers[0].headers["content-type"] == "text/html"
    sandbox.faults.clear()
    assert len(sandbox.faults) == 0


def test_a_status_fault_can_hit_the_token_endpoint(sandbox: Sandbox) -> None:
    district = sandbox.districts[0]
    sandbox.faults.add(Fault("status", path="/oauth/tokens", status=500))
    with httpx.Client(
        transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://t"
    ) as c:
        auth = (district.client_id, district.client_secret)
        assert c.get("/oauth/tokens?owner_type=district", auth=auth).status_code == 500
        assert c.get("/oauth/tokens?owner_type=district", auth=auth).status_code == 200


def test_rate_limit_fault_answers_429_with_clevers_headers(
    sandbox: Sandbox, api: httpx.Client, clock: FakeClock
) -> None:
    api.get("/v3.0/schools")  # opens the token's window at START
    clock.advance(10)
    sandbox.faults.add(Fault("rate_limit", path="/v3.0/users"))
    response = api.get("/v3.0/users")
    assert response.status_code == 429
    assert response.headers["x-ratelimit-bucket"] == "bearer"
    assert response.headers["x-ratelimit-limit"] == "1200"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == str(int(START + 60))
    assert api.get("/v3.0/users").status_code == 200


def test_delay_fault_sleeps_then_answers_normally(clock: FakeClock) -> None:
    slept: list[float] = []
    sandbox = Sandbox(
        schools=1, students=3, teachers=1, sections=1, clock=clock, sleep=slept.append
    )
    sandbox.faults.add(Fault("delay", path="/v3.0/schools", seconds=2.5, times=None))
    with client_for(sandbox) as api:
        assert api.get("/v3.0/schools").status_code == 200
        assert api.get("/v3.0/schools").status_code == 200
    assert slept == [2.5, 2.5]


def test_delay_fault_really_waits_over_a_socket(sandbox: Sandbox) -> None:
    token = sandbox.district_token(sandbox.districts[0].id)
    sandbox.faults.add(Fault("delay", seconds=0.2))
    with sandbox.serve() as running:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=running.api_base_url, headers=headers) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                client.get("/v3.0/schools", timeout=0.05)
            assert client.get("/v3.0/schools").status_code == 200  # times=1 spent
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("partial", [True, False])
def test_drop_fault_cuts_the_connection_over_a_socket(sandbox: Sandbox, partial: bool) -> None:
    token = sandbox.district_token(sandbox.districts[0].id)
    sandbox.faults.add(Fault("drop", path="/v3.0/users", partial=partial))
    with sandbox.serve() as running:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=running.api_base_url, headers=headers) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.get("/v3.0/users")
            assert client.get("/v3.0/users").status_code == 200


def test_drop_fault_in_process_raises_from_the_app(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.faults.add(Fault("drop"))
    with pytest.raises(ConnectionResetError):
        api.get("/v3.0/users")
    sandbox.faults.add(Fault("drop", error=lambda: httpx.ReadError("dropped")))
    with pytest.raises(httpx.ReadError):
        api.get("/v3.0/users")
    assert api.get("/v3.0/users").status_code == 200


def test_malformed_json_fault(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.faults.add(Fault("malformed_json", path="/v3.0/schools"))
    response = api.get("/v3.0/schools")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert api.get("/v3.0/schools").json()["data"]


def test_extra_fields_fault_adds_unknown_fields_to_every_record(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = _school(sandbox)
    sandbox.add_student(school)
    sandbox.faults.add(Fault("extra_fields", times=3, fields={"shoe_size": 9, "lms": {"a": 1}}))
    users = api.get(f"/v3.0/schools/{school}/users?role=student&limit=5").json()["data"]
    single = api.get(f"/v3.0/schools/{school}").json()["data"]
    events = api.get("/v3.0/events").json()["data"]
    assert all(u["data"]["shoe_size"] == 9 and u["data"]["lms"] == {"a": 1} for u in users)
    assert single["shoe_size"] == 9
    assert events[0]["data"]["shoe_size"] == 9
    plain = api.get(f"/v3.0/schools/{school}/users?role=student&limit=5").json()["data"]
    assert all("shoe_size" not in u["data"] for u in plain)  # stored objects untouched
    assert all("shoe_size" not in s for s in sandbox.students(school))


def test_bad_value_fault_puts_a_value_into_one_records_field(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = _school(sandbox)
    target = sandbox.students(school)[7]  # on the second page of five
    sandbox.faults.add(
        Fault(
            "bad_value",
            path="/v3.0/schools/*/users",
            record_id=target["id"],
            record_field="name.last",
            value="Lima\x00",
        )
    )
    first = api.get(f"/v3.0/schools/{school}/users?role=student&limit=5")
    second = api.get(next_link(first.json()))
    assert "\\u0000" in second.text  # JSON's escape for NUL
    records = {u["data"]["id"]: u["data"] for u in second.json()["data"]}
    assert records[target["id"]]["name"] == {**target["name"], "last": "Lima\x00"}
    others = [r for i, r in records.items() if i != target["id"]]
    assert others and all("\x00" not in r["name"]["last"] for r in others)
    # Counted only where the record is: the first page left it unspent, the second spent it.
    again = api.get(next_link(first.json())).json()["data"]
    assert all("\x00" not in u["data"]["name"]["last"] for u in again)
    assert sandbox.user(target["id"]) == target  # the stored record is untouched


def test_bad_value_fault_escapes_a_lone_surrogate_in_lists_and_events(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = _school(sandbox)
    student = sandbox.add_student(school, first_name="Ana", last_name="Lima")
    sandbox.faults.add(Fault("bad_value", record_field="name.first", value="An\ud800a", times=2))
    users = api.get(f"/v3.0/schools/{school}/users?role=student&limit=100")
    assert users.status_code == 200
    assert b"\\ud800" in users.content  # an escape: a lone surrogate has no UTF-8 form
    assert {u["data"]["name"]["first"] for u in users.json()["data"]} == {"An\ud800a"}
    events = api.get("/v3.0/events").json()["data"]
    created = next(e["data"] for e in events if e["data"]["data"]["object"]["id"] == student)
    assert created["data"]["object"]["name"]["first"] == "An\ud800a"
    plain = api.get(f"/v3.0/schools/{school}/users?role=student&limit=100").json()["data"]
    assert "Ana" in {u["data"]["name"]["first"] for u in plain}  # times=2: spent


def test_drop_role_in_next_fault(sandbox: Sandbox, api: httpx.Client) -> None:
    school = _school(sandbox)
    sandbox.faults.add(Fault("drop_role_in_next", path="/v3.0/schools/*/users"))
    body = api.get(f"/v3.0/schools/{school}/users?role=student&limit=20").json()
    query = parse_qsl(urlsplit(next_link(body)).query)
    assert [key for key, _ in query] == ["limit", "starting_after"]
    assert "role=student" in links_by_rel(body)["self"]
    # a client that trusts the link now also gets the teachers (their ids come later)
    records, _ = follow(api, next_link(body))
    assert any("teacher" in record["roles"] for record in records)
    again = api.get(f"/v3.0/schools/{school}/users?role=student&limit=20").json()
    assert "role=student" in next_link(again)  # times=1 spent


def test_full_last_page_next_fault_leads_to_an_empty_page(sandbox: Sandbox, api: httpx.Client):
    total = len(api.get("/v3.0/schools").json()["data"])
    sandbox.faults.add(Fault("full_last_page_next", path="/v3.0/schools"))
    body = api.get(f"/v3.0/schools?limit={total}").json()
    assert len(body["data"]) == total
    empty = api.get(next_link(body)).json()
    assert empty["data"] == []
    assert next_link(empty) is None
    assert next_link(api.get(f"/v3.0/schools?limit={total}").json()) is None  # spent


def test_unknown_fault_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="teleport"):
        Fault("teleport")


def test_lose_next_fault_ends_a_list_early(sandbox: Sandbox, api: httpx.Client) -> None:
    school = _school(sandbox)
    sandbox.faults.add(Fault("lose_next", path="/v3.0/schools/*/users", after=1))
    first = api.get(f"/v3.0/schools/{school}/users?role=student&limit=5").json()
    second = api.get(next_link(first)).json()
    assert len(first["data"]) == len(second["data"]) == 5  # a full page...
    assert next_link(second) is None  # ...that says nothing follows
    assert "prev" in links_by_rel(second)  # the other links stay
    assert next_link(api.get(next_link(first)).json())  # times=1 spent


def test_empty_page_fault_answers_a_mid_list_page_with_no_records(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = _school(sandbox)
    sandbox.faults.add(Fault("empty_page", path="/v3.0/schools/*/users", after=1))
    first = api.get(f"/v3.0/schools/{school}/users?role=student&limit=5").json()
    empty = api.get(next_link(first)).json()
    assert empty["data"] == []
    assert [link["rel"] for link in empty["links"]] == ["self"]
    assert len(api.get(next_link(first)).json()["data"]) == 5  # times=1 spent
    sandbox.add_student(school)
    sandbox.faults.add(Fault("empty_page", path="/v3.0/events"))
    assert api.get("/v3.0/events?limit=3").json()["data"] == []
    assert len(api.get("/v3.0/events?limit=3").json()["data"]) == 1


def test_oversize_page_fault_sends_more_records_than_the_limit(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = _school(sandbox)
    sandbox.faults.add(Fault("oversize_page", path="/v3.0/schools/*/users"))
    big = api.get(f"/v3.0/schools/{school}/users?role=student&limit=4").json()
    assert len(big["data"]) == 8
    assert len(api.get(f"/v3.0/schools/{school}/users?role=student&limit=4").json()["data"]) == 4


def test_a_429_fault_carries_any_retry_after_value(sandbox: Sandbox, api: httpx.Client) -> None:
    for value in ("inf", "nan", "-5", "1e400", "Wed, 21 Oct 2015 07:28:00 GMT"):
        sandbox.faults.add(Fault("status", status=429, headers={"Retry-After": value}))
        response = api.get("/v3.0/schools")
        assert (response.status_code, response.headers["retry-after"]) == (429, value)


def test_trickle_fault_sends_the_body_a_byte_at_a_time(sandbox: Sandbox) -> None:
    slept: list[float] = []
    quiet = Sandbox(schools=1, students=3, teachers=1, sections=1, sleep=slept.append)
    quiet.faults.add(Fault("status", status=503, body="unavailable"))
    quiet.faults.add(Fault("trickle", seconds=0.25))
    with client_for(quiet) as api:
        assert api.get("/v3.0/schools").text == "unavailable"
    assert slept == [0.25] * (len("unavailable") - 1)

    token = sandbox.district_token(sandbox.districts[0].id)
    sandbox.faults.add(Fault("status", status=503, body="0123456789"))
    sandbox.faults.add(Fault("trickle", seconds=0.01))
    with sandbox.serve() as running:
        headers = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=running.api_base_url, headers=headers) as client,
            client.stream("GET", "/v3.0/schools", timeout=5) as response,
        ):
            chunks = list(response.iter_raw())
    assert b"".join(chunks) == b"0123456789"
    assert len(chunks) > 3  # it came in pieces, not as one write
