"""Cursor paging of the sandbox's Data API: round trips, links, limits and errors."""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cleversync.sandbox import Sandbox
from tests.sandbox.helpers import FakeClock, client_for, follow, links_by_rel, next_link


def _ids(records: list[dict]) -> list[str]:
    return [record["id"] for record in records]


def _expected(sandbox: Sandbox, what: str) -> tuple[str, list[str]]:
    district = sandbox.districts[0]
    school = district.schools[0].id
    if what == "school students":
        return f"/v3.0/schools/{school}/users?role=student", _ids(sandbox.students(school))
    if what == "school teachers":
        return f"/v3.0/schools/{school}/users?role=teacher", _ids(sandbox.teachers(school))
    if what == "school sections":
        return f"/v3.0/schools/{school}/sections", _ids(sandbox.sections(school))
    everyone = sorted(
        {u for s in district.schools for u in _ids(sandbox.students(s.id) + sandbox.teachers(s.id))}
    )
    if what == "users":
        return "/v3.0/users", everyone
    if what == "sections":
        return "/v3.0/sections", sorted(
            sec for s in district.schools for sec in _ids(sandbox.sections(s.id))
        )
    return "/v3.0/schools", sorted(s.id for s in district.schools)


WHATS = ["school students", "school teachers", "school sections", "users", "sections", "schools"]


@pytest.mark.parametrize("what", WHATS)
def test_in_process_paging_returns_every_record_once_in_id_order(
    sandbox: Sandbox, api: httpx.Client, what: str
) -> None:
    uri, expected = _expected(sandbox, what)
    separator = "&" if "?" in uri else "?"
    records, pages = follow(api, f"{uri}{separator}limit=3")
    assert _ids(records) == expected
    assert len(expected) > 0
    assert all(len(page["data"]) <= 3 for page in pages)


def test_paging_over_a_real_socket_matches_the_in_process_answers(sandbox: Sandbox) -> None:
    uri, expected = _expected(sandbox, "school students")
    token = sandbox.district_token(sandbox.districts[0].id)
    with sandbox.serve() as running:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=running.api_base_url, headers=headers) as client:
            records, pages = follow(client, f"{uri}&limit=7")
    assert _ids(records) == expected
    assert len(pages) == -(-len(expected) // 7)


def test_a_last_page_that_is_exactly_full_has_no_next_link(sandbox: Sandbox, api: httpx.Client):
    school = sandbox.districts[0].schools[0].id
    while len(sandbox.students(school)) % 5:
        sandbox.add_student(school)
    total = len(sandbox.students(school))
    records, pages = follow(api, f"/v3.0/schools/{school}/users?role=student&limit=5")
    assert len(records) == total
    assert len(pages) == total // 5  # no extra empty page was needed
    assert len(pages[-1]["data"]) == 5
    assert next_link(pages[-1]) is None


def test_next_carries_the_request_parameters_and_appends_the_cursor(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = sandbox.districts[0].schools[0].id
    path = f"/v3.0/schools/{school}/users"
    body = api.get(f"{path}?role=student&limit=4").json()
    last = body["data"][-1]["data"]["id"]
    assert links_by_rel(body) == {
        "self": f"{path}?role=student&limit=4",
        "next": f"{path}?role=student&limit=4&starting_after={last}",
    }
    second = api.get(links_by_rel(body)["next"]).json()
    first_id, last_id = second["data"][0]["data"]["id"], second["data"][-1]["data"]["id"]
    assert links_by_rel(second) == {
        "self": f"{path}?role=student&limit=4&starting_after={last}",
        "prev": f"{path}?role=student&limit=4&ending_before={first_id}",
        "next": f"{path}?role=student&limit=4&starting_after={last_id}",
    }
    assert [link["rel"] for link in second["links"]] == ["self", "prev", "next"]


def test_default_page_is_100_and_links_are_relative(clock: FakeClock) -> None:
    sandbox = Sandbox(seed=3, schools=1, students=130, teachers=2, sections=1, clock=clock)
    with client_for(sandbox) as api:
        body = api.get("/v3.0/users").json()
    assert len(body["data"]) == 100
    last = body["data"][-1]["data"]["id"]
    assert links_by_rel(body) == {
        "self": "/v3.0/users",
        "next": f"/v3.0/users?starting_after={last}",
    }


def test_limit_10000_is_allowed_and_above_it_is_413(api: httpx.Client) -> None:
    assert api.get("/v3.0/users?limit=10000").status_code == 200
    response = api.get("/v3.0/users?limit=10001")
    assert response.status_code == 413
    assert "message" in response.json()


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=-3", "limit=ten", "starting_after=nope", "ending_before=12", "role=parent"],
)
def test_bad_parameters_answer_400(api: httpx.Client, query: str) -> None:
    response = api.get(f"/v3.0/users?{query}")
    assert response.status_code == 400
    assert isinstance(response.json()["message"], str)


def test_ending_before_pages_backwards_oldest_first(sandbox: Sandbox, api: httpx.Client) -> None:
    uri, expected = _expected(sandbox, "school students")
    pages = []
    body = api.get(f"{uri}&limit=6&ending_before=last").json()
    while True:
        pages.append([item["data"]["id"] for item in body["data"]])
        prev = links_by_rel(body).get("prev")
        if prev is None:
            break
        body = api.get(prev).json()
    assert pages[0] == expected[-6:]
    assert [record for page in reversed(pages) for record in page] == expected


def test_ending_before_an_id_gives_the_records_just_below_it(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    uri, expected = _expected(sandbox, "users")
    body = api.get(f"{uri}?ending_before={expected[10]}&limit=4").json()
    assert [item["data"]["id"] for item in body["data"]] == expected[6:10]
    links = links_by_rel(body)
    assert links["prev"] == f"{uri}?limit=4&ending_before={expected[6]}"
    assert links["next"] == f"{uri}?limit=4&starting_after={expected[9]}"


def test_a_cursor_past_the_end_gives_an_empty_page_without_next(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    uri, expected = _expected(sandbox, "users")
    body = api.get(f"{uri}?starting_after={expected[-1]}").json()
    assert body["data"] == []
    assert links_by_rel(body) == {"self": f"{uri}?starting_after={expected[-1]}"}


def test_school_users_include_students_whose_primary_school_is_another(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = sandbox.districts[0].schools[1].id
    everyone, _ = follow(api, f"/v3.0/schools/{school}/users?role=student&limit=100")
    primary, _ = follow(api, f"/v3.0/schools/{school}/users?role=student&primary=true")
    visitors = [u for u in everyone if u["roles"]["student"]["school"] != school]
    assert visitors, "some students list this school only as a second school"
    assert all(school in u["roles"]["student"]["schools"] for u in everyone)
    assert {u["id"] for u in primary} == {u["id"] for u in everyone} - {u["id"] for u in visitors}


def test_unknown_paths_and_versions_answer_expresss_html_404(api: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v3.0/resources"),
        ("GET", "/v9.9/users"),
        ("POST", "/v3.0/users"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert f"<pre>Cannot {method} {path}</pre>" in response.text


def test_single_objects_and_sub_resources(sandbox: Sandbox, api: httpx.Client) -> None:
    district = sandbox.districts[0]
    school = district.schools[0].id
    section = sandbox.sections(school)[0]
    body = api.get(f"/v3.0/sections/{section['id']}").json()
    assert body["data"] == section
    assert body["links"][0] == {"rel": "self", "uri": f"/v3.0/sections/{section['id']}"}
    members, _ = follow(api, f"/v3.0/sections/{section['id']}/users?role=student")
    assert {m["id"] for m in members} <= set(section["students"])
    student = members[0]
    schools, _ = follow(api, f"/v3.0/users/{student['id']}/schools")
    assert [s["id"] for s in schools] == sorted(student["roles"]["student"]["schools"])
    sections, _ = follow(api, f"/v3.0/users/{student['id']}/sections")
    assert section["id"] in {s["id"] for s in sections}
    district_body = api.get(f"/v3.0/schools/{school}/district").json()
    assert district_body["data"]["id"] == district.id
    missing = api.get("/v3.0/users/0123456789abcdef01234567")
    assert missing.status_code == 404
    assert "message" in missing.json()


def test_five_concurrent_clients_over_a_socket_while_records_change(sandbox: Sandbox) -> None:
    uri, expected = _expected(sandbox, "users")
    token = sandbox.district_token(sandbox.districts[0].id)
    here = sandbox.districts[0].schools[0].id  # updated while crawled: same ids
    elsewhere = sandbox.districts[1].schools[0].id  # grows while crawled
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def crawl(base_url: str) -> None:
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
                records, _ = follow(client, f"{uri}?limit=5")
            results.append(_ids(records))
        except BaseException as error:  # reported below
            errors.append(error)

    with sandbox.serve() as running:
        threads = [threading.Thread(target=crawl, args=(running.api_base_url,)) for _ in range(5)]
        for thread in threads:
            thread.start()
        for index in range(20):
            student = sandbox.students(here)[index]
            sandbox.update_user(student["id"], {"name": {"middle": f"Q{index}"}})
            sandbox.add_student(elsewhere)
        for thread in threads:
            thread.join(timeout=30)
    assert not errors
    assert results == [expected] * 5


def test_self_link_echoes_the_request(api: httpx.Client) -> None:
    body = api.get("/v3.0/schools?limit=1&count=true").json()
    assert body["links"][0] == {"rel": "self", "uri": "/v3.0/schools?limit=1&count=true"}
    query = dict(parse_qsl(urlsplit(links_by_rel(body)["next"]).query))
    assert query["limit"] == "1"
    assert query["count"] == "true"
