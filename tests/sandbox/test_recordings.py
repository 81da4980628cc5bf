"""The sandbox against real recorded Clever answers: envelopes, links, headers, record shapes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from cleversync.sandbox import Sandbox
from tests.sandbox.helpers import RECORDINGS, FakeClock, client_for, recording

OBJECT_ID = re.compile(r"[0-9a-f]{24}")
RECORDED_SCHOOL = "58da8c58155b940248000007"
DAY = 86_400

LIST_CASSETTES = [
    "districts.json",
    "schools.json",
    "schools_with_limit.json",
    "schools_next.json",
    "schools_with_starting_after.json",
    "school_users.json",
    "schoool_users_next.json",
    "school_users_with_limit.json",
    "school_users_with_starting_after.json",
    "school_sections.json",
    "users.json",
    "users_with_limit.json",
    "users_next.json",
    "users_with_starting_after.json",
    "sections.json",
    "sections_with_limit.json",
    "sections_next.json",
    "sections_with_starting_after.json",
    "events.json",
    "events_with_limit.json",
    "events_next.json",
    "events_with_starting_after.json",
]


def _interactions(*names: str) -> Iterator[dict[str, Any]]:
    for name in names:
        yield from recording(name)


def _records(body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body["data"]
    return [item["data"] for item in data] if isinstance(data, list) else [data]


def _template(uri: str) -> str:
    return OBJECT_ID.sub("{id}", uri)


class Mirror:
    """A sandbox shaped like the recorded demo district (4 schools, big enough lists, an
    events feed whose oldest events have expired), and a map from recorded ids to its ids."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.sandbox = Sandbox(
            seed=3, schools=4, students=260, teachers=20, sections=110, clock=self.clock
        )
        school = self.sandbox.districts[0].schools[0].id
        students = self.sandbox.students(school)
        for student in students[:3]:  # recorded: {"roles": {"student": {"gender": "X"}}}
            gender = "F" if student["roles"]["student"]["gender"] == "X" else "X"
            self.sandbox.update_user(student["id"], {"roles": {"student": {"gender": gender}}})
        self.expired_cursor = self.sandbox.latest_event_id(self.sandbox.districts[0].id)
        self.clock.advance(31 * DAY)
        for student in students[3:253]:
            gifted = "N" if student["roles"]["student"]["ext"]["gifted_status"] == "Y" else "Y"
            change = {"roles": {"student": {"ext": {"gifted_status": gifted}}}}
            self.sandbox.update_user(student["id"], change)
        self.api = client_for(self.sandbox)
        self.school = school
        self._lists: dict[str, list[str]] = {}

    def path(self, recorded_path: str) -> str:
        return recorded_path.replace(RECORDED_SCHOOL, self.school)

    def ids(self, path: str) -> list[str]:
        if path not in self._lists:
            body = self.api.get(f"{path}?limit=10000").json()
            self._lists[path] = [record["id"] for record in _records(body)]
        return self._lists[path]

    def uri(self, recorded_uri: str) -> str:
        """The same request against the sandbox, cursors moved to the same list position."""
        parts = urlsplit(recorded_uri)
        recorded_ids = _recorded_ids(parts.path)
        path = self.path(parts.path)

        def move(match: re.Match[str]) -> str:
            cursor = match.group(2)
            if cursor in recorded_ids:
                return match.group(1) + self.ids(path)[recorded_ids.index(cursor)]
            assert cursor < recorded_ids[0], cursor  # a cursor older than the recorded feed
            return match.group(1) + self.expired_cursor

        query = re.sub(r"((?:starting_after|ending_before)=)([0-9a-f]{24})", move, parts.query)
        return path + ("?" + query if query else "")


def _recorded_ids(path: str) -> list[str]:
    """Every id the recordings show for one list endpoint, ascending."""
    found = set()
    for interaction in _interactions(*LIST_CASSETTES):
        if urlsplit(interaction["request"]["uri"]).path == path:
            found.update(record["id"] for record in _records(interaction["response"]["body"]))
    return sorted(found)


@pytest.fixture(scope="module")
def mirror() -> Mirror:
    return Mirror()


def _list_interactions() -> list[tuple[str, int]]:
    return [(name, index) for name in LIST_CASSETTES for index, _ in enumerate(recording(name))]


@pytest.mark.parametrize(("cassette", "index"), _list_interactions())
def test_list_answers_have_the_recorded_envelope_links_and_page_size(
    mirror: Mirror, cassette: str, index: int
) -> None:
    recorded = recording(cassette)[index]
    real = recorded["response"]
    response = mirror.api.get(mirror.uri(recorded["request"]["uri"]))
    assert response.status_code == real["status"] == 200
    assert response.headers["content-type"] == real["headers"]["content-type"]
    ours = response.json()
    assert set(ours) == set(real["body"]) == {"data", "links"}
    assert len(ours["data"]) == len(real["body"]["data"])
    for body in (real["body"], ours):
        for item in body["data"]:
            assert set(item) == {"data", "uri"}
            kind = urlsplit(item["uri"]).path.split("/")[2]
            assert item["uri"] == f"/v3.0/{kind}/{item['data']['id']}"
    ours_links = [(link["rel"], _template(link["uri"])) for link in ours["links"]]
    real_links = [(link["rel"], _template(link["uri"])) for link in real["body"]["links"]]
    assert ours_links == real_links
    assert ours["links"][0]["uri"] == mirror.uri(recorded["request"]["uri"]) or (
        ours["links"][0]["uri"] == "/v3.0/events?"  # Clever's quirk on the first events page
    )
    _check_cursor_links(real["body"])
    _check_cursor_links(ours)


def _check_cursor_links(body: dict[str, Any]) -> None:
    links = {link["rel"]: link["uri"] for link in body["links"]}
    ids = [item["data"]["id"] for item in body["data"]]
    if "next" in links:
        assert links["next"].endswith(f"starting_after={ids[-1]}")
    if "prev" in links:
        assert links["prev"].endswith(f"ending_before={ids[0]}")


def test_data_answers_carry_rate_limit_headers_as_recorded(mirror: Mirror) -> None:
    recorded = recording("users.json")[0]["response"]["headers"]
    ours = mirror.api.get("/v3.0/users").headers
    names = {name for name in recorded if name.startswith("x-ratelimit")}
    assert names == {name for name in ours if name.startswith("x-ratelimit")}
    assert ours["x-ratelimit-bucket"] == recorded["x-ratelimit-bucket"] == "bearer"
    assert ours["x-ratelimit-limit"] == recorded["x-ratelimit-limit"] == "1200"
    assert int(ours["x-ratelimit-reset"]) > mirror.clock.now


def _shapes(records: list[dict[str, Any]]) -> Counter[frozenset[tuple[str, str]]]:
    return Counter(
        frozenset((key, type(value).__name__) for key, value in r.items()) for r in records
    )


def _recorded_objects(kind: str) -> list[dict[str, Any]]:
    names = [p.name for p in RECORDINGS.glob("*.json")]
    found: dict[str, dict[str, Any]] = {}
    for interaction in _interactions(*names):
        if interaction["request"]["host"] != "api.clever.com":
            continue
        found.update(
            (record["id"], record)
            for record in _records(interaction["response"]["body"])
            if _KINDS[kind](record)
        )
    return list(found.values())


_KINDS = {
    "events": lambda record: "type" in record,
    "student": lambda record: "student" in record.get("roles", {}),
    "teacher": lambda record: "teacher" in record.get("roles", {}),
    "section": lambda record: "students" in record,
    "school": lambda record: "low_grade" in record and "type" not in record,
}


def _assert_same_shape(ours: list[dict[str, Any]], real: list[dict[str, Any]]) -> None:
    """Every key we send Clever also sent, with the same JSON type; our usual record has
    exactly the keys of Clever's usual record (some of ours leave optional ones out)."""
    assert ours and real
    real_types = {(key, type(value).__name__) for record in real for key, value in record.items()}
    for record in ours:
        assert {(key, type(value).__name__) for key, value in record.items()} <= real_types
    assert _shapes(ours).most_common(1)[0][0] == _shapes(real).most_common(1)[0][0]


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_users_have_the_recorded_keys_and_types(mirror: Mirror, role: str) -> None:
    real = _recorded_objects(role)
    ours = (
        mirror.sandbox.students(mirror.school)
        if role == "student"
        else mirror.sandbox.teachers(mirror.school)
    )
    _assert_same_shape(ours, real)
    _assert_same_shape([u["roles"][role] for u in ours], [u["roles"][role] for u in real])
    _assert_same_shape([u["name"] for u in ours], [u["name"] for u in real])
    for nested in ("credentials", "location", "ext"):
        real_nested = [u["roles"][role][nested] for u in real if nested in u["roles"][role]]
        if real_nested and any(real_nested):
            ours_nested = [u["roles"][role][nested] for u in ours if u["roles"][role].get(nested)]
            _assert_same_shape(ours_nested, [n for n in real_nested if n])


def test_sections_schools_and_the_district_have_the_recorded_keys(mirror: Mirror) -> None:
    ours_sections = [s["data"] for s in mirror.api.get("/v3.0/sections?limit=500").json()["data"]]
    _assert_same_shape(ours_sections, _recorded_objects("section"))
    ours_schools = [s["data"] for s in mirror.api.get("/v3.0/schools").json()["data"]]
    _assert_same_shape(ours_schools, _recorded_objects("school"))
    for nested in ("principal", "location"):
        _assert_same_shape(
            [s[nested] for s in ours_schools], [s[nested] for s in _recorded_objects("school")]
        )
    [ours_district] = _records(mirror.api.get("/v3.0/districts").json())
    [real_district] = _records(recording("districts.json")[0]["response"]["body"])
    _assert_same_shape([ours_district], [real_district])
    _assert_same_shape([ours_district["district_contact"]], [real_district["district_contact"]])


def test_events_have_the_recorded_shape(mirror: Mirror) -> None:
    real = _recorded_objects("events")
    ours = _records(mirror.api.get("/v3.0/events?limit=300").json())
    _assert_same_shape(ours, real)
    real_updates = [e for e in real if e["type"] == "users.updated"]
    ours_updates = [e for e in ours if e["type"] == "users.updated"]
    _assert_same_shape([e["data"] for e in ours_updates], [e["data"] for e in real_updates])
    _assert_same_shape(
        [e["data"]["object"] for e in ours_updates], [e["data"]["object"] for e in real_updates]
    )
    created = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z")
    assert all(created.fullmatch(e["created"]) for e in [*real, *ours])
    # previous_attributes: a nested partial of old values, like {"roles": {"student": {...}}}
    assert {tuple(e["data"]["previous_attributes"]) for e in ours_updates} == {("roles",)}
    assert {tuple(e["data"]["previous_attributes"]["roles"]) for e in real_updates} == {
        ("student",)
    }
    assert {tuple(e["data"]["previous_attributes"]["roles"]) for e in ours_updates} == {
        ("student",)
    }


@pytest.mark.parametrize("cassette", ["school.json", "section.json", "user.json", "event.json"])
def test_single_objects_have_the_recorded_envelope(mirror: Mirror, cassette: str) -> None:
    real = recording(cassette)[0]
    kind = urlsplit(real["request"]["uri"]).path.split("/")[2]
    some_id = {
        "schools": mirror.school,
        "sections": mirror.sandbox.sections(mirror.school)[0]["id"],
        "users": mirror.sandbox.students(mirror.school)[0]["id"],
        "events": mirror.sandbox.latest_event_id(mirror.sandbox.districts[0].id),
    }[kind]
    ours = mirror.api.get(f"/v3.0/{kind}/{some_id}").json()
    assert set(ours) == set(real["response"]["body"]) == {"data", "links"}
    assert ours["links"][0] == {"rel": "self", "uri": f"/v3.0/{kind}/{some_id}"}
    real_links = {
        (link["rel"], _template(link["uri"])) for link in real["response"]["body"]["links"]
    }
    assert {(link["rel"], _template(link["uri"])) for link in ours["links"]} <= real_links


@pytest.mark.parametrize("cassette", ["tokens.json", "token.json"])
def test_token_listing_has_the_recorded_shape(cassette: str) -> None:
    sandbox = Sandbox(schools=1, students=2, teachers=1, sections=1)
    district = sandbox.districts[0]
    real = recording(cassette)[0]
    uri = real["request"]["uri"].replace("58da8a43cc70ab00017a1a87", district.id)
    transport = httpx.WSGITransport(app=sandbox.wsgi_app)
    with httpx.Client(transport=transport, base_url="http://sandbox.test") as client:
        response = client.get(uri, auth=(district.client_id, district.client_secret))
    body, real_body = response.json(), real["response"]["body"]
    assert response.headers["content-type"] == real["response"]["headers"]["content-type"]
    assert list(body) == list(real_body)
    assert [_template(link["uri"]) for link in body["links"]] == [
        _template(link["uri"]) for link in real_body["links"]
    ]
    [token] = body["data"]
    real_token = real_body["data"][0]
    assert list(token) == list(real_token)
    assert list(token["owner"]) == list(real_token["owner"])
    assert len(token["access_token"]) == len(real_token["access_token"]) == 40
    assert OBJECT_ID.fullmatch(token["id"])
    assert all(scope.startswith("read:") for scope in token["scopes"])
