"""The sandbox's seeded data generator: determinism, realism, and speed."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from cleversync.sandbox import Sandbox
from cleversync.sandbox.ids import object_id_seconds
from tests.sandbox.helpers import FakeClock, client_for

GRADES = {
    "InfantToddler",
    "Preschool",
    "PreKindergarten",
    "TransitionalKindergarten",
    "Kindergarten",
    *(str(n) for n in range(1, 14)),
    "PostGraduate",
    "Ungraded",
    "Other",
    "",
}
MS_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def district() -> Sandbox:
    return Sandbox(seed=11)  # the defaults: 3 schools of 300 students, 20 teachers, 15 sections


def _everyone(sandbox: Sandbox) -> tuple[list[dict], list[dict], list[dict]]:
    schools = [s.id for s in sandbox.districts[0].schools]
    students = {u["id"]: u for s in schools for u in sandbox.students(s)}
    teachers = {u["id"]: u for s in schools for u in sandbox.teachers(s)}
    sections = [sec for s in schools for sec in sandbox.sections(s)]
    return list(students.values()), list(teachers.values()), sections


def _snapshot(sandbox: Sandbox) -> object:
    return sandbox.districts, _everyone(sandbox), sandbox.district_token(sandbox.districts[0].id)


def test_the_same_seed_gives_the_same_district() -> None:
    first = Sandbox(seed=4, schools=2, students=30, teachers=3, sections=4)
    second = Sandbox(seed=4, schools=2, students=30, teachers=3, sections=4, clock=FakeClock())
    other = Sandbox(seed=5, schools=2, students=30, teachers=3, sections=4)
    assert _snapshot(first) == _snapshot(second)
    assert _snapshot(first) != _snapshot(other)


def test_mutations_are_deterministic_too() -> None:
    made = []
    for _ in range(2):
        sandbox = Sandbox(seed=4, schools=1, students=5, teachers=2, sections=1, clock=FakeClock())
        school = sandbox.districts[0].schools[0].id
        student = sandbox.add_student(school)
        made.append((sandbox.user(student), sandbox.section(sandbox.add_section(school))))
    assert made[0] == made[1]


def test_counts_and_shape_of_the_default_district(district: Sandbox) -> None:
    [info] = district.districts
    assert len(info.schools) == 3
    assert len({s.name for s in info.schools}) == 3
    for school in info.schools:
        primary = [
            u for u in district.students(school.id) if u["roles"]["student"]["school"] == school.id
        ]
        assert len(primary) == 300
        assert (
            len(
                [
                    t
                    for t in district.teachers(school.id)
                    if t["roles"]["teacher"]["school"] == school.id
                ]
            )
            == 20
        )
        assert len(district.sections(school.id)) == 15


def test_ids_are_object_ids_ascending_in_creation_order(district: Sandbox) -> None:
    students, teachers, sections = _everyone(district)
    for record in [*students, *teachers, *sections]:
        assert re.fullmatch(r"[0-9a-f]{24}", record["id"])
        assert MS_TIMESTAMP.fullmatch(record["created"]) and MS_TIMESTAMP.fullmatch(
            record["last_modified"]
        )
        created = datetime.strptime(record["created"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert object_id_seconds(record["id"]) == int(created.timestamp())
    assert max(s["id"] for s in students) < min(t["id"] for t in teachers)  # made first


def test_students_look_like_clevers(district: Sandbox) -> None:
    students, _, _ = _everyone(district)
    roles = [s["roles"]["student"] for s in students]
    assert {r["grade"] for r in roles} <= GRADES
    assert {"Kindergarten", "5", "8", "12"} <= {r["grade"] for r in roles}
    assert all(r["student_number"] == r["sis_id"] for r in roles)
    assert all(re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", r["dob"]) for r in roles)
    assert {r["gender"] for r in roles} <= {"M", "F", "X", ""}
    assert all(r.get("email") == s.get("email") for s, r in zip(students, roles, strict=True))
    assert sum(len(r["schools"]) >= 2 for r in roles) > 50  # many students at two schools
    assert any(len(r["schools"]) == 3 for r in roles)
    assert all(r["school"] == r["schools"][0] for r in roles)
    names = [f"{s['name']['first']} {s['name']['last']}" for s in students]
    assert any(not name.isascii() for name in names)
    assert any("'" in name for name in names)
    # optional fields: some empty, some absent
    assert any("email" not in s for s in students)
    assert any("middle" not in s["name"] for s in students)
    assert any(s["name"].get("middle") == "" for s in students)
    assert any("state_id" not in r for r in roles)
    assert all(r["graduation_year"] in ("", "2025", "2026", "2027", "2028") for r in roles)


def test_teachers_have_titles_and_some_have_no_email(district: Sandbox) -> None:
    _, teachers, _ = _everyone(district)
    roles = [t["roles"]["teacher"] for t in teachers]
    assert sum(bool(r["title"]) for r in roles) > len(roles) * 0.8
    assert any("email" not in t for t in teachers)
    assert all(re.fullmatch(r"[0-9a-f]{24}", r["legacy_id"]) for r in roles)


def test_sections_hold_teachers_and_students(district: Sandbox) -> None:
    students, teachers, sections = _everyone(district)
    teacher_ids = {t["id"] for t in teachers}
    student_ids = {s["id"] for s in students}
    cross_school = 0
    for section in sections:
        assert section["teacher"] in section["teachers"]
        assert set(section["teachers"]) <= teacher_ids
        assert 16 <= len(section["students"]) <= 36
        assert set(section["students"]) <= student_ids
        assert section["students"] == sorted(section["students"])
        assert section["grade"] in GRADES
        by_id = {s["id"]: s for s in students}
        cross_school += any(
            section["school"] not in by_id[s]["roles"]["student"]["schools"]
            for s in section["students"]
        )
    assert cross_school >= 1  # like real Clever, a few links to users of another school
    assert any(len(section["teachers"]) > 1 for section in sections)


def test_one_school_of_50000_students_is_made_and_paged() -> None:
    started = time.perf_counter()
    sandbox = Sandbox(seed=2, schools=1, students=50_000, teachers=5, sections=3)
    assert time.perf_counter() - started < 60  # a hang, not a speed test (make bench is)
    school = sandbox.districts[0].schools[0].id
    with client_for(sandbox) as api:
        body = api.get(f"/v3.0/schools/{school}/users?role=student&limit=100").json()
        cursor = body["data"][50]["data"]["id"]
        for _ in range(20):  # deep pages of a big school (their speed is make bench's case 5)
            response = api.get(f"/v3.0/schools/{school}/users?role=student&starting_after={cursor}")
            assert len(response.json()["data"]) == 100
