"""The mutation API: records as tests want them, schema breakers included, seen by the API."""

from __future__ import annotations

import httpx
import pytest

from cleversync.sandbox import Sandbox
from tests.sandbox.helpers import follow


def _schools(sandbox: Sandbox) -> tuple[str, str]:
    first, second = sandbox.districts[0].schools
    return first.id, second.id


def _ids(api: httpx.Client, uri: str) -> list[str]:
    records, _ = follow(api, uri)
    return [record["id"] for record in records]


def test_records_that_break_a_consumers_schema(sandbox: Sandbox, api: httpx.Client) -> None:
    school, _ = _schools(sandbox)
    long_name = sandbox.add_student(school, first_name="Å" * 150, last_name="O'" + "x" * 160)
    long_grade = sandbox.add_student(school, grade="G" * 60)
    nameless = sandbox.add_student(school, name=None)
    no_email = sandbox.add_teacher(school, email=None, title="")
    records, _ = follow(api, f"/v3.0/schools/{school}/users")
    served = {record["id"]: record for record in records}
    assert served[long_name]["name"]["first"] == "Å" * 150
    assert len(served[long_name]["name"]["last"]) == 162
    assert served[long_grade]["roles"]["student"]["grade"] == "G" * 60
    assert "name" not in served[nameless]
    assert "email" not in served[no_email]
    assert served[no_email]["roles"]["teacher"]["title"] == ""


def test_added_users_follow_their_schools(sandbox: Sandbox, api: httpx.Client) -> None:
    first, second = _schools(sandbox)
    student = sandbox.add_student(first, schools=[first, second], email=None)
    teacher = sandbox.add_teacher(second, title="Band Director")
    assert student in _ids(api, f"/v3.0/schools/{second}/users?role=student")
    assert student not in _ids(api, f"/v3.0/schools/{second}/users?role=student&primary=true")
    assert teacher in _ids(api, f"/v3.0/schools/{second}/users?role=teacher")
    assert teacher not in _ids(api, f"/v3.0/schools/{first}/users")
    added = sandbox.user(student)
    assert "email" not in added and "email" not in added["roles"]["student"]
    assert sandbox.user(teacher)["roles"]["teacher"]["title"] == "Band Director"
    assert _ids(api, "/v3.0/users?role=teacher")[-1] == teacher  # newest id comes last


def test_moving_a_student_moves_them_between_school_lists(sandbox: Sandbox, api: httpx.Client):
    first, second = _schools(sandbox)
    student = next(
        s for s in sandbox.students(first) if s["roles"]["student"]["schools"] == [first]
    )["id"]
    sandbox.update_user(student, {"roles": {"student": {"school": second, "schools": [second]}}})
    assert student not in _ids(api, f"/v3.0/schools/{first}/users?role=student")
    assert student in _ids(api, f"/v3.0/schools/{second}/users?role=student&primary=true")


def test_sections_can_be_added_changed_and_removed(sandbox: Sandbox, api: httpx.Client) -> None:
    first, _ = _schools(sandbox)
    teacher = sandbox.teachers(first)[0]["id"]
    students = [s["id"] for s in sandbox.students(first)[:3]]
    section = sandbox.add_section(first, teacher_id=teacher, student_ids=students, name="Robotics")
    body = api.get(f"/v3.0/sections/{section}").json()["data"]
    assert (body["name"], body["teacher"], body["teachers"]) == ("Robotics", teacher, [teacher])
    assert body["students"] == sorted(students)
    assert section in _ids(api, f"/v3.0/schools/{first}/sections")
    assert _ids(api, f"/v3.0/sections/{section}/users") == sorted([*students, teacher])
    sandbox.update_section(section, {"students": students[:1]})
    assert _ids(api, f"/v3.0/sections/{section}/users?role=student") == students[:1]
    sandbox.remove_section(section)
    assert api.get(f"/v3.0/sections/{section}").status_code == 404
    assert section not in _ids(api, f"/v3.0/schools/{first}/sections")


def test_a_section_by_default_gets_a_teacher_and_students_of_the_school(sandbox: Sandbox) -> None:
    first, _ = _schools(sandbox)
    section = sandbox.section(sandbox.add_section(first))
    teachers = {t["id"] for t in sandbox.teachers(first)}
    students = {s["id"] for s in sandbox.students(first)}
    assert section["teacher"] in teachers
    assert len(section["students"]) == 20
    assert set(section["students"]) <= students


def test_mistakes_are_refused(sandbox: Sandbox) -> None:
    first, _ = _schools(sandbox)
    with pytest.raises(TypeError, match="favourite_colour"):
        sandbox.add_student(first, favourite_colour="green")
    with pytest.raises(TypeError, match="title"):
        sandbox.add_student(first, title="Student")  # a teacher's field
    with pytest.raises(KeyError):
        sandbox.add_student("0123456789abcdef01234567")
    with pytest.raises(KeyError):
        sandbox.update_user("0123456789abcdef01234567", {"email": "x@example.org"})
    student = sandbox.students(first)[0]["id"]
    with pytest.raises(ValueError, match="id"):
        sandbox.update_user(student, {"id": "0123456789abcdef01234567"})


def test_read_methods_return_copies(sandbox: Sandbox, api: httpx.Client) -> None:
    first, _ = _schools(sandbox)
    student = sandbox.students(first)[0]
    student["name"]["first"] = "Changed"
    sandbox.sections(first)[0]["students"].clear()
    assert sandbox.students(first)[0]["name"]["first"] != "Changed"
    assert sandbox.sections(first)[0]["students"]
    assert api.get(f"/v3.0/users/{student['id']}").json()["data"]["name"]["first"] != "Changed"


def test_move_user_is_a_transfer_within_the_district(sandbox: Sandbox) -> None:
    from cleversync.sandbox.store import UnknownRecordError

    here, there = _schools(sandbox)
    teacher = sandbox.sections(here)[0]["teacher"]
    district = sandbox.districts[0].id
    before = len(sandbox.events(district))
    sandbox.move_user(teacher, "teacher", there)
    moved = sandbox.user(teacher)
    assert moved is not None
    assert moved["roles"]["teacher"]["school"] == there
    assert moved["roles"]["teacher"]["schools"] == [there]
    assert all(teacher not in s["teachers"] for s in sandbox.sections(here))
    types = [e["type"] for e in sandbox.events(district)[before:]]
    assert types[-1] == "users.updated" and set(types[:-1]) == {"sections.updated"}
    with pytest.raises(UnknownRecordError):
        sandbox.move_user(teacher, "teacher", sandbox.districts[1].schools[0].id)
    with pytest.raises(ValueError, match="has no student role"):
        sandbox.move_user(teacher, "student", here)
    assert len(sandbox.events(district)) == before + len(types)
