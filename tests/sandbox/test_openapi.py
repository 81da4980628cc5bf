"""Every kind of answer the sandbox serves agrees with Clever's published API description
(Swagger 2.0, ``tests/fixtures/clever_openapi``); so do Clever's real recorded answers,
which checks the validator; and the validator does catch an answer that breaks it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cleversync.sandbox import Fault, FaultKind, Sandbox
from tests.openapi import CLEVER_API, ApiDescription
from tests.sandbox.helpers import RECORDINGS, FakeClock, next_link, recording

# Clever's v3.0 paths the sandbox serves (README: the sandbox's HTTP surface).
SERVED = {
    "/districts",
    "/districts/{id}",
    "/schools",
    "/schools/{id}",
    "/schools/{id}/users",
    "/schools/{id}/sections",
    "/schools/{id}/district",
    "/users",
    "/users/{id}",
    "/users/{id}/sections",
    "/users/{id}/schools",
    "/users/{id}/district",
    "/sections",
    "/sections/{id}",
    "/sections/{id}/users",
    "/sections/{id}/school",
    "/sections/{id}/district",
    "/events",
    "/events/{id}",
}


class Checked:
    """A client that validates every answer and remembers which described paths it saw."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.templates: set[str] = set()
        self.statuses: set[int] = set()

    def get(self, uri: str, status: int = 200) -> Any:
        answer = self.client.get(uri)
        assert answer.status_code == status, (uri, answer.text)
        body = answer.json()
        path = uri.split("?", 1)[0]
        problems = CLEVER_API.errors("GET", uri, status, body)
        assert problems == [], (uri, problems[:5])
        self.templates.add(CLEVER_API.template("GET", path))
        self.statuses.add(status)
        return body

    def crawl(self, uri: str) -> list[dict[str, Any]]:
        """Every page of a list, each validated; the records."""
        records: list[dict[str, Any]] = []
        next_uri: str | None = uri
        while next_uri is not None:
            body = self.get(next_uri)
            records += [item["data"] for item in body["data"]]
            next_uri = next_link(body)
        return records


@pytest.fixture
def changed(sandbox: Sandbox, clock: FakeClock) -> Sandbox:
    """The sandbox after one change of every kind, so the feed holds every event type."""
    school = sandbox.districts[0].schools[0].id
    student = sandbox.add_student(school, first_name="Ada", last_name="Lovelace", grade="4")
    clock.advance(1)
    teacher = sandbox.add_teacher(school, first_name="Alan", last_name="Turing", title="Dr")
    sandbox.update_user(student, {"name": {"last": "King"}})
    section = sandbox.add_section(school, teacher_id=teacher, student_ids=[student])
    sandbox.update_section(section, {"name": "Renamed"})
    sandbox.remove_user(sandbox.students(school)[0]["id"])
    sandbox.remove_section(sandbox.sections(school)[1]["id"])
    sandbox.move_user(
        sandbox.students(school)[2]["id"], "student", sandbox.districts[0].schools[1].id
    )
    return sandbox


@pytest.fixture
def checked(changed: Sandbox) -> Iterator[Checked]:
    token = changed.district_token(changed.districts[0].id)
    with (
        changed.serve() as running,
        httpx.Client(
            base_url=running.api_base_url,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        ) as client,
    ):
        yield Checked(client)


def test_every_answer_of_the_data_and_events_api_is_as_clever_describes(
    changed: Sandbox, checked: Checked
) -> None:
    district = changed.districts[0]
    checked.crawl("/v3.0/districts")
    checked.get(f"/v3.0/districts/{district.id}")
    schools = checked.crawl("/v3.0/schools?limit=1")
    assert len(schools) == 2
    for school in schools:
        sid = school["id"]
        checked.get(f"/v3.0/schools/{sid}")
        checked.get(f"/v3.0/schools/{sid}/district")
        checked.crawl(f"/v3.0/schools/{sid}/users?limit=7")
        checked.crawl(f"/v3.0/schools/{sid}/users?role=teacher&primary=true")
        checked.crawl(f"/v3.0/schools/{sid}/sections?limit=2")
    users = checked.crawl("/v3.0/users?limit=13")
    checked.crawl("/v3.0/users?role=student&limit=50")
    teachers = checked.crawl("/v3.0/users?role=teacher")
    for user in [*users[:3], *teachers[:3]]:
        uid = user["id"]
        checked.get(f"/v3.0/users/{uid}")
        checked.get(f"/v3.0/users/{uid}/district")
        checked.crawl(f"/v3.0/users/{uid}/sections")
        checked.crawl(f"/v3.0/users/{uid}/schools")
    sections = checked.crawl("/v3.0/sections?limit=3")
    for section in sections[:4]:
        sec = section["id"]
        checked.get(f"/v3.0/sections/{sec}")
        checked.get(f"/v3.0/sections/{sec}/school")
        checked.get(f"/v3.0/sections/{sec}/district")
        checked.crawl(f"/v3.0/sections/{sec}/users?limit=5")
        checked.crawl(f"/v3.0/sections/{sec}/users?role=student")
    # A page reached backwards, as Clever's ending_before pages are.
    back = checked.get(f"/v3.0/users?ending_before={users[-1]['id']}&limit=4")
    assert len(back["data"]) == 4
    events = checked.crawl("/v3.0/events?limit=3")
    assert {e["type"] for e in events} >= {
        "users.created",
        "users.updated",
        "users.deleted",
        "sections.created",
        "sections.updated",
        "sections.deleted",
    }
    checked.crawl(f"/v3.0/events?school={district.schools[0].id}")
    checked.crawl("/v3.0/events?record_type=sections")
    for event in events:
        checked.get(f"/v3.0/events/{event['id']}")
    assert checked.templates == SERVED


@pytest.mark.parametrize(
    "path",
    [
        "/v3.0/districts/{missing}",
        "/v3.0/schools/{missing}",
        "/v3.0/schools/{missing}/users",
        "/v3.0/schools/{missing}/sections",
        "/v3.0/schools/{missing}/district",
        "/v3.0/users/{missing}",
        "/v3.0/users/{missing}/sections",
        "/v3.0/users/{missing}/schools",
        "/v3.0/users/{missing}/district",
        "/v3.0/sections/{missing}",
        "/v3.0/sections/{missing}/users",
        "/v3.0/sections/{missing}/school",
        "/v3.0/sections/{missing}/district",
        "/v3.0/events/{missing}",
    ],
)
def test_not_found_answers_are_as_clever_describes(checked: Checked, path: str) -> None:
    checked.get(path.format(missing="0" * 24), status=404)


def test_an_expired_event_cursor_answer_is_as_clever_describes(
    changed: Sandbox, checked: Checked, clock: FakeClock
) -> None:
    first = changed.events(changed.districts[0].id)[0]["id"]
    clock.advance(31 * 86_400)  # past the feed's retention
    changed.add_student(changed.districts[0].schools[0].id)
    changed.faults.add(Fault(FaultKind.EXPIRED_CURSOR_404))
    checked.get(f"/v3.0/events?starting_after={first}", status=404)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in RECORDINGS.glob("*.json") if p.name != "README.md")
)
def test_clevers_recorded_answers_are_as_clever_describes(name: str) -> None:
    checked = 0
    for interaction in recording(name):
        request, response = interaction["request"], interaction["response"]
        path = request["uri"].split("?", 1)[0]
        if not CLEVER_API.describes(request["method"], path):
            assert path.startswith("/oauth/"), path  # token endpoints are not in the spec
            continue
        problems = CLEVER_API.errors(
            request["method"], request["uri"], response["status"], response["body"]
        )
        assert problems == [], problems[:5]
        checked += 1
    assert checked or name in {"token.json", "tokens.json"}


# -- the validator is not vacuous ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("roles.student.grade", "Fourteen", "roles/student/grade"),
        ("roles.student.dob", "2015-04-03", "roles/student/dob"),
        ("roles.student.gender", "Q", "roles/student/gender"),
    ],
)
def test_a_value_clever_does_not_allow_is_caught(
    changed: Sandbox, checked: Checked, field: str, value: str, said: str
) -> None:
    student = changed.students(changed.districts[0].schools[0].id)[0]["id"]
    changed.faults.add(Fault(FaultKind.BAD_VALUE, record_field=field, value=value, times=1))
    body = checked.client.get(f"/v3.0/users/{student}").json()
    problems = CLEVER_API.errors("GET", f"/v3.0/users/{student}", 200, body)
    assert any(p.startswith(f"data/{said}") for p in problems), problems


def test_wrong_shapes_are_caught() -> None:
    assert CLEVER_API.errors("GET", "/v3.0/users", 200, {"data": {"id": "x"}})
    assert CLEVER_API.errors("GET", "/v3.0/users", 200, {"data": [{"data": {"name": "Ada"}}]})
    assert CLEVER_API.errors("GET", "/v3.0/schools/x", 404, {"message": 7})
    assert CLEVER_API.errors("GET", "/v3.0/users/x/courses", 200, {}) == [
        "GET /v3.0/users/x/courses is not described"
    ]
    assert CLEVER_API.errors("GET", "/v3.0/users", 404, {}) == [
        "GET /users documents no 404 answer"
    ]
    # An event is checked against its own type's definition (Swagger's discriminator).
    event = {"id": "e", "type": "users.created", "data": {"object": {"name": "Ada"}}}
    problems = CLEVER_API.errors("GET", "/v3.0/events/e", 200, {"data": event})
    assert problems and problems[0].startswith("event e (users.created): data/object/name")
    unknown = {"id": "e", "type": "users.renamed", "data": {"object": {}}}
    assert CLEVER_API.errors("GET", "/v3.0/events/e", 200, {"data": unknown}) == [
        "event e: type 'users.renamed' is not described"
    ]


def test_x_nullable_allows_null_and_nothing_else() -> None:
    api = ApiDescription("v3.0.json")
    assert (
        api.errors("GET", "/v3.0/users/x", 200, {"data": {"roles": {"student": {"grade": None}}}})
        == []
    )
    assert api.errors("GET", "/v3.0/users/x", 200, {"data": {"roles": {"student": {"grade": 3}}}})
    # Not nullable in Clever's description: a null there is an error.
    assert api.errors("GET", "/v3.0/users/x", 200, {"data": {"id": None}})
