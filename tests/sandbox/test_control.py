"""The control API (``/sandbox/...``) over real HTTP: each change emits Clever's events and
the Data API shows it; loopback only, JSON only, clear 4xx errors, nothing of Clever's API."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cleversync.sandbox import Fault, FaultKind, Sandbox
from cleversync.sandbox.control import ControlApi
from cleversync.sandbox.messages import Request


@pytest.fixture
def served(sandbox: Sandbox) -> Iterator[str]:
    with sandbox.serve() as running:
        yield running.api_base_url


@pytest.fixture
def control(served: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{served}/sandbox", trust_env=False) as client:
        yield client


@pytest.fixture
def data(served: str, sandbox: Sandbox) -> Iterator[httpx.Client]:
    """Clever's Data API as district 0 sees it, over the same socket."""
    token = sandbox.district_token(sandbox.districts[0].id)
    with httpx.Client(
        base_url=f"{served}/v3.0", headers={"Authorization": f"Bearer {token}"}, trust_env=False
    ) as client:
        yield client


def school(sandbox: Sandbox, index: int = 0, district: int = 0) -> str:
    return sandbox.districts[district].schools[index].id


def new_events(sandbox: Sandbox, after: str | None, district: int = 0) -> list[dict[str, Any]]:
    events = sandbox.events(sandbox.districts[district].id)
    ids = [e["id"] for e in events]
    return events[ids.index(after) + 1 :] if after in ids else events


def latest(sandbox: Sandbox, district: int = 0) -> str | None:
    return sandbox.latest_event_id(sandbox.districts[district].id)


def test_index_lists_districts_and_schools(control: httpx.Client, sandbox: Sandbox) -> None:
    answer = control.get("")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()["data"]
    assert [d["id"] for d in body] == [d.id for d in sandbox.districts]
    assert [s["id"] for s in body[1]["schools"]] == [s.id for s in sandbox.districts[1].schools]


def test_lists_are_those_of_the_data_api(control: httpx.Client, sandbox: Sandbox) -> None:
    first = school(sandbox)
    students = control.get("/students", params={"school": first}).json()["data"]
    assert students == sandbox.students(first)
    teachers = control.get("/teachers", params={"school": first}).json()["data"]
    assert teachers == sandbox.teachers(first)
    sections = control.get("/sections", params={"school": first}).json()["data"]
    assert sections == sandbox.sections(first)
    everyone = control.get("/students").json()["data"]
    assert {s["id"] for s in students} < {s["id"] for s in everyone}
    assert control.get(f"/students/{students[0]['id']}").json()["data"] == students[0]
    assert control.get(f"/sections/{sections[0]['id']}").json()["data"] == sections[0]


def test_add_student_emits_users_created_and_the_data_api_has_it(
    control: httpx.Client, data: httpx.Client, sandbox: Sandbox
) -> None:
    before = latest(sandbox)
    answer = control.post(
        "/students",
        json={
            "school": school(sandbox),
            "first_name": "Ada",
            "last_name": "Lovelace",
            "grade": "4",
            "email": "ada@example.net",
        },
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    student = body["data"]
    assert student["name"] == {"first": "Ada", "last": "Lovelace"}  # no made-up middle name
    assert student["roles"]["student"]["grade"] == "4"
    emitted = new_events(sandbox, before)
    assert [(e["id"], e["type"]) for e in emitted] == [(e["id"], e["type"]) for e in body["events"]]
    assert [e["type"] for e in emitted] == ["users.created"]
    assert emitted[0]["data"]["object"]["id"] == student["id"]
    assert data.get(f"/users/{student['id']}").json()["data"]["name"]["last"] == "Lovelace"


def test_add_teacher_with_a_title(control: httpx.Client, sandbox: Sandbox) -> None:
    answer = control.post(
        "/teachers",
        json={
            "school": school(sandbox),
            "first_name": "Alan",
            "last_name": "Turing",
            "title": "Dr",
        },
    )
    assert answer.status_code == 201, answer.text
    teacher = answer.json()["data"]
    assert teacher["roles"]["teacher"]["title"] == "Dr"
    assert [e["type"] for e in answer.json()["events"]] == ["users.created"]
    assert teacher["id"] in {t["id"] for t in sandbox.teachers(school(sandbox))}


def test_rename_emits_users_updated_with_previous_attributes(
    control: httpx.Client, data: httpx.Client, sandbox: Sandbox
) -> None:
    student = sandbox.students(school(sandbox))[0]
    before = latest(sandbox)
    answer = control.patch(f"/students/{student['id']}", json={"last_name": "Renamed"})
    assert answer.status_code == 200, answer.text
    [event] = new_events(sandbox, before)
    assert event["type"] == "users.updated"
    assert event["data"]["previous_attributes"]["name"]["last"] == student["name"]["last"]
    assert data.get(f"/users/{student['id']}").json()["data"]["name"]["last"] == "Renamed"
    assert answer.json()["data"]["name"]["first"] == student["name"]["first"]


def test_renaming_to_the_same_name_emits_nothing(control: httpx.Client, sandbox: Sandbox) -> None:
    student = sandbox.students(school(sandbox))[0]
    answer = control.patch(
        f"/students/{student['id']}", json={"first_name": student["name"]["first"]}
    )
    assert answer.status_code == 200
    assert answer.json()["events"] == []


def test_move_leaves_the_old_schools_sections_then_updates_the_user(
    control: httpx.Client, data: httpx.Client, sandbox: Sandbox
) -> None:
    old, new = school(sandbox, 0), school(sandbox, 1)
    enrolled = {s for section in sandbox.sections(old) for s in section["students"]}
    student = next(
        s
        for s in sandbox.students(old)
        if s["id"] in enrolled and s["roles"]["student"]["school"] == old
    )
    left = [
        section["id"] for section in sandbox.sections(old) if student["id"] in section["students"]
    ]
    before = latest(sandbox)
    answer = control.post(f"/students/{student['id']}/move", json={"school": new})
    assert answer.status_code == 200, answer.text
    emitted = new_events(sandbox, before)
    assert [e["type"] for e in emitted] == ["sections.updated"] * len(left) + ["users.updated"]
    assert sorted(e["data"]["object"]["id"] for e in emitted[:-1]) == sorted(left)
    role = data.get(f"/users/{student['id']}").json()["data"]["roles"]["student"]
    assert (role["school"], role["schools"]) == (new, [new])
    assert student["id"] in {s["id"] for s in sandbox.students(new)}
    assert student["id"] not in {s["id"] for s in sandbox.students(old)}
    for section_id in left:
        assert student["id"] not in data.get(f"/sections/{section_id}").json()["data"]["students"]


def test_remove_emits_sections_updated_then_users_deleted(
    control: httpx.Client, data: httpx.Client, sandbox: Sandbox
) -> None:
    teacher = sandbox.sections(school(sandbox))[0]["teacher"]
    before = latest(sandbox)
    answer = control.delete(f"/teachers/{teacher}")
    assert answer.status_code == 200, answer.text
    types = [e["type"] for e in new_events(sandbox, before)]
    assert types[-1] == "users.deleted"
    assert set(types[:-1]) == {"sections.updated"}
    assert data.get(f"/users/{teacher}").status_code == 404
    assert control.get(f"/teachers/{teacher}").status_code == 404


def test_section_rename_enrol_unenrol_and_teacher_in_one_event(
    control: httpx.Client, data: httpx.Client, sandbox: Sandbox
) -> None:
    here = school(sandbox)
    section = sandbox.sections(here)[0]
    outside = next(s["id"] for s in sandbox.students(here) if s["id"] not in section["students"])
    leaving = section["students"][0]
    teacher = next(t["id"] for t in sandbox.teachers(here) if t["id"] != section["teacher"])
    before = latest(sandbox)
    answer = control.patch(
        f"/sections/{section['id']}",
        json={
            "name": "Renamed Section",
            "add_students": [outside],
            "remove_students": [leaving],
            "teacher": teacher,
        },
    )
    assert answer.status_code == 200, answer.text
    [event] = new_events(sandbox, before)
    assert event["type"] == "sections.updated"
    assert set(event["data"]["previous_attributes"]) >= {"name", "students", "teacher"}
    shown = data.get(f"/sections/{section['id']}").json()["data"]
    assert shown["name"] == "Renamed Section"
    assert outside in shown["students"] and leaving not in shown["students"]
    assert shown["students"] == sorted(shown["students"])
    assert shown["teacher"] == teacher and shown["teachers"][0] == teacher
    assert section["teacher"] not in shown["teachers"]


# -- faults ----------------------------------------------------------------------------------


def test_a_non_loopback_host_header_is_refused(served: str, sandbox: Sandbox) -> None:
    before = latest(sandbox)
    for host in ("evil.example", "evil.example:80", "10.0.0.1", "127.0.0.1.evil.example"):
        answer = httpx.post(
            f"{served}/sandbox/students",
            json={"school": school(sandbox), "first_name": "A", "last_name": "B"},
            headers={"Host": host},
            trust_env=False,
        )
        assert answer.status_code == 403, host
        assert host in answer.json()["message"]
    assert latest(sandbox) == before


@pytest.mark.parametrize("host", ["localhost", "localhost:1234", "127.0.0.1", "[::1]:9"])
def test_loopback_host_names_are_served(served: str, host: str) -> None:
    answer = httpx.get(f"{served}/sandbox", headers={"Host": host}, trust_env=False)
    assert answer.status_code == 200


def test_a_foreign_origin_is_refused(served: str) -> None:
    answer = httpx.get(
        f"{served}/sandbox", headers={"Origin": "https://evil.example"}, trust_env=False
    )
    assert answer.status_code == 403
    assert "evil.example" in answer.json()["message"]
    ok = httpx.get(
        f"{served}/sandbox", headers={"Origin": "http://localhost:3000"}, trust_env=False
    )
    assert ok.status_code == 200


def test_a_non_loopback_client_is_refused(sandbox: Sandbox) -> None:
    # No non-loopback address reaches a loopback socket, so the WSGI app is asked directly
    # with the address a server on another interface would hand it.
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/sandbox",
        "QUERY_STRING": "",
        "REMOTE_ADDR": "192.0.2.7",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.input": None,
    }
    statuses: list[str] = []
    body = b"".join(sandbox.wsgi_app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["403 Forbidden"]
    assert "loopback clients" in json.loads(body)["message"]
    request = Request.build("GET", "/sandbox", "", {"host": "localhost"})
    assert ControlApi(sandbox).handle(request, "::1").status == 200
    assert ControlApi(sandbox).handle(request, "").status == 403


def test_a_non_json_body_is_415(control: httpx.Client, sandbox: Sandbox) -> None:
    form = control.post("/students", data={"school": school(sandbox), "first_name": "A"})
    assert form.status_code == 415
    assert "application/x-www-form-urlencoded" in form.json()["message"]
    text = control.post(
        "/students", content=b'{"school": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not list"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_json_is_400(control: httpx.Client, content: bytes, said: str) -> None:
    answer = control.post(
        "/students", content=content, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert said in answer.json()["message"]


def test_missing_body_is_400(control: httpx.Client) -> None:
    answer = control.post("/students")
    assert answer.status_code == 400
    assert "JSON object body" in answer.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "said"),
    [
        ("GET", "/students/000000000000000000000000", "no student 000000000000000000000000"),
        ("PATCH", "/teachers/nope", "no teacher nope"),
        ("DELETE", "/students/nope", "no student nope"),
        ("POST", "/students/nope/move", "no student nope"),
        ("PATCH", "/sections/nope", "no section nope"),
        ("GET", "/students?school=nope", "no school nope"),
        ("GET", "/courses", "no such control endpoint: /sandbox/courses"),
    ],
)
def test_unknown_ids_are_404_naming_them(
    control: httpx.Client, method: str, path: str, said: str
) -> None:
    body = {"first_name": "X"} if method == "PATCH" else {"school": "x"}
    kwargs: dict[str, Any] = {"json": body} if method in ("PATCH", "POST") else {}
    answer = control.request(method, path, **kwargs)
    assert answer.status_code == 404, answer.text
    assert answer.json()["message"] == said


def test_a_teacher_is_not_a_student(control: httpx.Client, sandbox: Sandbox) -> None:
    teacher = sandbox.teachers(school(sandbox))[0]["id"]
    answer = control.delete(f"/students/{teacher}")
    assert answer.status_code == 404
    assert sandbox.user(teacher) is not None


def test_moving_to_an_unknown_school_is_404_and_changes_nothing(
    control: httpx.Client, sandbox: Sandbox
) -> None:
    student = sandbox.students(school(sandbox))[0]
    before = latest(sandbox)
    answer = control.post(f"/students/{student['id']}/move", json={"school": "f" * 24})
    assert answer.status_code == 404
    assert answer.json()["message"] == f"no school {'f' * 24}"
    assert latest(sandbox) == before
    assert sandbox.user(student["id"]) == student


def test_moving_to_another_districts_school_is_400(control: httpx.Client, sandbox: Sandbox) -> None:
    student = sandbox.students(school(sandbox))[0]
    answer = control.post(
        f"/students/{student['id']}/move", json={"school": school(sandbox, 0, district=1)}
    )
    assert answer.status_code == 400
    assert "cannot move between districts" in answer.json()["message"]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"first_name": "A", "last_name": "B"}, "school is required"),
        ({"school": "S", "last_name": "B"}, "first_name is required"),
        ({"school": "S", "first_name": "A", "last_name": 7}, "last_name must be a string, not int"),
        ({"school": "S", "first_name": "A", "last_name": "B", "age": 9}, "unknown field(s)"),
        ({"school": "S", "first_name": "A", "last_name": "B", "title": "Dr"}, "title"),
    ],
)
def test_bad_fields_are_400_naming_them(
    control: httpx.Client, sandbox: Sandbox, body: dict[str, Any], said: str
) -> None:
    body = {**body, "school": school(sandbox)} if "school" in body else body
    answer = control.post("/students", json=body)
    assert answer.status_code == 400
    assert said in answer.json()["message"]


def test_bad_section_changes_are_400(control: httpx.Client, sandbox: Sandbox) -> None:
    here, there = school(sandbox, 0), school(sandbox, 1)
    section = sandbox.sections(here)[0]
    path = f"/sections/{section['id']}"
    elsewhere = next(
        s["id"] for s in sandbox.students(there) if here not in s["roles"]["student"]["schools"]
    )
    cases = [
        ({}, "needs one of"),
        ({"add_students": [section["students"][0]]}, "already in section"),
        ({"remove_students": [elsewhere]}, "is not in section"),
        ({"add_students": [elsewhere]}, f"is not at school {here}"),
        ({"add_students": "abc"}, "must be a list of ids"),
        ({"teacher": section["students"][0]}, f"no teacher {section['students'][0]}"),
        ({"name": ""}, "name is required"),
    ]
    before = latest(sandbox)
    for body, said in cases:
        answer = control.patch(path, json=body)
        assert answer.status_code in (400, 404), body
        assert said in answer.json()["message"], body
    assert latest(sandbox) == before
    assert sandbox.section(section["id"]) == section


def test_wrong_methods_are_405(control: httpx.Client, sandbox: Sandbox) -> None:
    assert control.put("/students", json={}).status_code == 405
    answer = control.post("/sections", json={"name": "x"})
    assert answer.status_code == 405
    assert "use GET" in answer.json()["message"]


def test_it_is_not_part_of_clevers_api(
    served: str, control: httpx.Client, sandbox: Sandbox
) -> None:
    token = sandbox.district_token(sandbox.districts[0].id)
    bearer = {"Authorization": f"Bearer {token}"}
    # A Clever token does not open it: the control API takes no credentials at all.
    refused = control.get("", headers=bearer)
    assert refused.status_code == 400
    assert "not part of Clever's API" in refused.json()["message"]
    assert token not in refused.text
    # Nor is it under Clever's API: /v3.0/sandbox is Express's 404 like any unknown path.
    under_api = httpx.get(f"{served}/v3.0/sandbox/students", headers=bearer, trust_env=False)
    assert under_api.status_code == 404
    assert under_api.headers["content-type"].startswith("text/html")


def test_faults_rate_limit_and_request_log_leave_it_alone(
    control: httpx.Client, data: httpx.Client, sandbox: Sandbox
) -> None:
    sandbox.faults.add(Fault(FaultKind.STATUS, status=503, times=1))
    sandbox.rate_limiter.limit = 1  # the 503 fault answers before the limit counts
    logged = len(sandbox.request_log)
    for _ in range(3):
        assert control.get("").status_code == 200
    assert len(sandbox.request_log) == logged
    assert data.get("/districts").status_code == 503  # the fault was left for Clever's API
    assert data.get("/districts").status_code == 200
    assert data.get("/districts").status_code == 429  # the control calls were not counted


def test_a_control_request_over_a_raw_socket_without_host_is_refused(served: str) -> None:
    host, port = served.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /sandbox HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 403") or answer.startswith(b"HTTP/1.1 403")
    assert b"needs a Host header" in answer
