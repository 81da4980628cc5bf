"""The sandbox against the JSON examples of the team's Clever API notes.

Those notes live outside the repository, so the parts of their examples checked here are
copied in as literals, with ids replaced by ``{id}``.
"""

from __future__ import annotations

import re

import httpx

from cleversync.sandbox import Sandbox


def _template(uri: str) -> str:
    return re.sub(r"[0-9a-f]{24}", "{id}", uri)


def _links(body: dict) -> list[tuple[str, str]]:
    return [(link["rel"], _template(link["uri"])) for link in body["links"]]


def test_students_page_example(sandbox: Sandbox, api: httpx.Client) -> None:
    # GET /v3.0/users?role=student&limit=2
    body = api.get("/v3.0/users?role=student&limit=2").json()
    assert _links(body) == [
        ("self", "/v3.0/users?role=student&limit=2"),
        ("next", "/v3.0/users?role=student&limit=2&starting_after={id}"),
    ]
    assert [set(item) for item in body["data"]] == [{"data", "uri"}] * 2
    assert all("student" in item["data"]["roles"] for item in body["data"])


def test_sections_page_example(api: httpx.Client) -> None:
    # GET /v3.0/sections?limit=1
    body = api.get("/v3.0/sections?limit=1").json()
    assert _links(body) == [
        ("self", "/v3.0/sections?limit=1"),
        ("next", "/v3.0/sections?limit=1&starting_after={id}"),
    ]


def test_events_page_example(sandbox: Sandbox, api: httpx.Client) -> None:
    # GET /v3.0/events?starting_after={id}&limit=2, second item a sections.deleted
    school = sandbox.districts[0].schools[0].id
    student = sandbox.students(school)[0]["id"]
    section = sandbox.sections(school)[0]["id"]
    sandbox.update_user(student, {"roles": {"student": {"gender": "Q"}}})  # the cursor
    sandbox.update_user(student, {"roles": {"student": {"gender": "X"}}})
    sandbox.remove_section(section)
    sandbox.add_student(school)
    cursor = api.get("/v3.0/events?limit=1").json()["data"][0]["data"]["id"]
    body = api.get(f"/v3.0/events?starting_after={cursor}&limit=2").json()
    assert _links(body) == [
        ("self", "/v3.0/events?starting_after={id}&limit=2"),
        ("prev", "/v3.0/events?limit=2&ending_before={id}"),
        ("next", "/v3.0/events?limit=2&starting_after={id}"),
    ]
    updated, deleted = (item["data"] for item in body["data"])
    assert updated["type"] == "users.updated"
    assert updated["data"]["previous_attributes"] == {"roles": {"student": {"gender": "Q"}}}
    assert deleted["type"] == "sections.deleted"
    assert set(deleted["data"]) == {"object"}
    assert deleted["data"]["object"]["id"] == section


def test_token_list_example(sandbox: Sandbox) -> None:
    # GET https://clever.com/oauth/tokens?owner_type=district (Basic auth)
    district = sandbox.districts[0]
    transport = httpx.WSGITransport(app=sandbox.wsgi_app)
    with httpx.Client(transport=transport, base_url="http://sandbox.test") as client:
        auth = (district.client_id, district.client_secret)
        body = client.get("/oauth/tokens?owner_type=district", auth=auth).json()
    assert body["links"] == [{"rel": "self", "uri": "/oauth/tokens?owner_type=district"}]
    [token] = body["data"]
    assert list(token) == ["id", "created", "owner", "access_token", "scopes"]
    assert token["owner"] == {"type": "district", "id": district.id}


def test_baseline_example(sandbox: Sandbox, api: httpx.Client) -> None:
    # GET /v3.0/events?ending_before=last&limit=1: exactly the newest event (or [])
    assert api.get("/v3.0/events?ending_before=last&limit=1").json()["data"] == []
    school = sandbox.districts[0].schools[0].id
    sandbox.add_student(school)
    newest = sandbox.add_teacher(school)
    [item] = api.get("/v3.0/events?ending_before=last&limit=1").json()["data"]
    assert item["data"]["data"]["object"]["id"] == newest
