"""Deterministic generator of Clever-shaped districts, schools, users and sections."""

from __future__ import annotations

import functools
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cleversync.sandbox import names
from cleversync.sandbox.ids import IdFactory, hex_string, iso_ms

# Generated rosters are dated from the start of a school year, whatever the clock says, so
# the same seed always gives the same ids and timestamps.
GENERATED_EPOCH = 1_719_792_000.0  # 2024-07-01T00:00:00Z
_DAY = 86_400.0
_T = TypeVar("_T")


@functools.cache
def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


@dataclass
class GeneratedDistrict:
    """One district's generated objects, each list in ascending id order."""

    district: dict[str, Any]
    schools: list[dict[str, Any]]
    users: list[dict[str, Any]]
    sections: list[dict[str, Any]]


@dataclass
class _SchoolPlan:
    school: dict[str, Any]
    kind: int
    members: list[dict[str, Any]] = field(default_factory=list)
    teachers: list[dict[str, Any]] = field(default_factory=list)


class RosterGenerator:
    """Makes Clever objects from one seeded random stream.

    The sandbox keeps using the same generator for the mutation API, so records added later
    get fresh, unique, deterministic values and ids above every generated one.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"cleversync-sandbox:{seed}:data")
        self.ids = IdFactory(random.Random(f"cleversync-sandbox:{seed}:ids"))
        self._at = GENERATED_EPOCH
        self._users_made = 0
        self._sections_made = 0
        self._courses: dict[tuple[str, str, str], str] = {}
        self._terms: dict[str, str] = {}

    # -- whole districts -------------------------------------------------------------------

    def district(
        self, index: int, schools: int, students: int, teachers: int, sections: int
    ) -> GeneratedDistrict:
        """A district of ``schools`` schools, each with the given numbers of records."""
        district = self._district_object(index)
        district_id = district["id"]
        plans = [self._school_plan(district_id, index, i) for i in range(schools)]
        school_ids = [plan.school["id"] for plan in plans]
        users: list[dict[str, Any]] = []
        for plan in plans:
            for _ in range(students):
                student = self.student(
                    district_id, plan.school["id"], school_ids, self._tick(), plan.kind
                )
                users.append(student)
                plan.members.append(student)
        by_id = {plan.school["id"]: plan for plan in plans}
        for student in users:  # secondary schools list the student too
            for school_id in student["roles"]["student"]["schools"][1:]:
                by_id[school_id].members.append(student)
        for plan in plans:
            for _ in range(teachers):
                teacher = self.teacher(
                    district_id, plan.school["id"], school_ids, self._tick(), plan.kind
                )
                users.append(teacher)
                plan.teachers.append(teacher)
        made: list[dict[str, Any]] = []
        for plan in plans:
            made.extend(self._school_sections(district_id, plan, sections, users))
        return GeneratedDistrict(district, [plan.school for plan in plans], users, made)

    def _tick(self) -> float:
        self._at += 0.001 + self.rng.random() * 0.02
        return self._at

    def _district_object(self, index: int) -> dict[str, Any]:
        rng = self.rng
        stem = names.DISTRICT_STEMS[index % len(names.DISTRICT_STEMS)]
        if index >= len(names.DISTRICT_STEMS):
            stem = f"{stem} {index // len(names.DISTRICT_STEMS) + 1}"
        district_id = self.ids.new(self._tick())
        first, last = self._pick(names.FIRST_NAMES), self._pick(names.LAST_NAMES)
        return {
            "id": district_id,
            "name": f"{stem} Unified School District",
            "state": "running",
            "last_sync": iso_ms(GENERATED_EPOCH - rng.random() * _DAY),
            "launch_date": f"{2016 + index % 8}-07-31",
            "login_methods": ["Clever Badges", "Clever Passwords"],
            "portal_url": f"https://clever.com/in/{_ascii(stem)}{district_id[-6:]}",
            "sis_type": self._pick(("sftp", "oneroster", "sftp")),
            "error": "",
            "district_contact": {
                "district": district_id,
                "email": f"{_ascii(first)}.{_ascii(last)}@{_ascii(stem)}.example.org",
                "name": {"first": first, "last": last},
                "title": "",
                "id": self.ids.new(self._at),
            },
        }

    def _school_plan(self, district_id: str, district_index: int, index: int) -> _SchoolPlan:
        rng = self.rng
        kind = index % len(names.SCHOOL_KINDS)
        kind_name, low, high, _, _ = names.SCHOOL_KINDS[kind]
        position = district_index * 7 + index
        stem = names.SCHOOL_STEMS[position % len(names.SCHOOL_STEMS)]
        if index >= len(names.SCHOOL_STEMS):
            stem = f"{stem} {index // len(names.SCHOOL_STEMS) + 1}"
        city, state, zip_prefix = names.CITIES[district_index % len(names.CITIES)]
        number = f"{self._int(10, 32)}K{100 + index:03d}"
        created = self._tick()
        principal_first, principal_last = (
            self._pick(names.FIRST_NAMES),
            self._pick(names.LAST_NAMES),
        )
        school = {
            "id": self.ids.new(created),
            "district": district_id,
            "name": f"{stem} {kind_name}",
            "school_number": number,
            "sis_id": number,
            "state_id": str(self._int(10000, 99999)),
            "low_grade": low,
            "high_grade": high,
            "phone": f"({self._int(201, 989)}) 555-{self._int(1000, 9999)}",
            "principal": {
                "name": f"{principal_first} {principal_last}",
                "email": f"{_ascii(principal_first)}{_ascii(principal_last)[:1]}@example.org",
            },
            "location": {
                "address": f"{self._int(1, 999)} {self._pick(names.STREETS)}",
                "city": city,
                "state": state,
                "zip": f"{zip_prefix}{self._int(1, 99):02d}",
            },
            "created": iso_ms(created),
            "last_modified": iso_ms(created + rng.random() * 30 * _DAY),
            "ext": {"charter_school": "N" if rng.random() < 0.9 else "Y"},
        }
        return _SchoolPlan(school, kind)

    # -- single records (also used by the mutation API) ------------------------------------

    def _person(self, first: str | None, last: str | None) -> tuple[str, str, dict[str, str]]:
        rng = self.rng
        first = self._pick(names.FIRST_NAMES) if first is None else first
        last = self._pick(names.LAST_NAMES) if last is None else last
        name = {"first": first, "middle": self._pick(names.MIDDLE_INITIALS), "last": last}
        roll = rng.random()
        if roll < 0.08:
            name["middle"] = ""
        elif roll < 0.11:
            del name["middle"]
        return first, last, name

    def _timestamps(self, at: float) -> tuple[str, str]:
        changed = at + self.rng.random() * 60 * _DAY if self.rng.random() < 0.3 else at
        return iso_ms(at), iso_ms(changed)

    def student(
        self,
        district_id: str,
        school_id: str,
        district_schools: list[str],
        at: float,
        kind: int = 0,
        first: str | None = None,
        last: str | None = None,
    ) -> dict[str, Any]:
        """A student whose primary school is ``school_id``; some list a second or third.

        ``first``/``last`` replace the generated names (email and username follow them).
        """
        rng = self.rng
        self._users_made += 1
        number = self._users_made
        first, last, name = self._person(first, last)
        schools = [school_id]
        if len(district_schools) > 1 and rng.random() < 0.25:
            schools.append(self._other(district_schools, schools))
            if len(district_schools) > 2 and rng.random() < 0.1:
                schools.append(self._other(district_schools, schools))
        grade = self._grade(kind)
        sis_id = str(100_000_000 + number * 89 + self._below(89))
        created, modified = self._timestamps(at)
        role: dict[str, Any] = {
            "school": school_id,
            "schools": schools,
            "grade": grade,
            "student_number": sis_id,
            "sis_id": sis_id,
            "state_id": str(200_000_000 + number * 61 + self._below(61)),
            "dob": self._dob(grade),
            "gender": self._pick("MFMFMFX") if rng.random() > 0.02 else "",
            "graduation_year": self._graduation_year(grade),
            "race": self._pick(names.RACES),
            "hispanic_ethnicity": self._pick(("Y", "N", "N", "")),
            "credentials": {
                "district_username": f"{_ascii(first)}{_ascii(last)[:1]}{number % 100:02d}"
            },
            "enrollments": [],
            "ext": {"gifted_status": self._pick(("", "Y", "N"))},
            "location": {
                "address": "",
                "city": "",
                "state": "",
                "zip": f"{self._int(10001, 99950)}",
            },
        }
        if rng.random() < 0.03:
            del role["state_id"]
        user: dict[str, Any] = {"id": self.ids.new(at), "district": district_id}
        if rng.random() >= 0.06:  # young students often have no email at all
            email = f"{_ascii(first)}.{_ascii(last)}{number}@example.net"
            user["email"] = email
            role["email"] = email  # real list responses copy it into the role
        user.update(name=name, created=created, last_modified=modified, roles={"student": role})
        return user

    def teacher(
        self,
        district_id: str,
        school_id: str,
        district_schools: list[str],
        at: float,
        kind: int = 0,
        first: str | None = None,
        last: str | None = None,
    ) -> dict[str, Any]:
        """A teacher at ``school_id`` (some at a second school); some have no email."""
        rng = self.rng
        self._users_made += 1
        number = self._users_made
        first, last, name = self._person(first, last)
        schools = [school_id]
        if len(district_schools) > 1 and rng.random() < 0.1:
            schools.append(self._other(district_schools, schools))
        kind_name = names.SCHOOL_KINDS[kind % len(names.SCHOOL_KINDS)][0]
        title = self._pick(names.TEACHER_TITLES_BY_KIND[kind_name]) if rng.random() > 0.05 else ""
        created, modified = self._timestamps(at)
        if rng.random() < 0.03:  # Clever really sends last_modified before created sometimes
            modified = iso_ms(at - rng.random() * 20 * _DAY)
        user: dict[str, Any] = {"id": self.ids.new(at), "district": district_id}
        roll = rng.random()
        if roll < 0.02:  # a real teacher email had no "@"
            user["email"] = f"{_ascii(first)}_{_ascii(last)}.example.org"
        elif roll < 0.93:
            user["email"] = f"{_ascii(first)}_{_ascii(last)}{number}@example.org"
        user.update(name=name, created=created, last_modified=modified)
        user["roles"] = {
            "teacher": {
                "school": school_id,
                "schools": schools,
                "sis_id": str(number),
                "state_id": str(self._int(100_000_000, 999_999_999)) if rng.random() > 0.1 else "",
                "teacher_number": str(self._int(100_000, 999_999)),
                "title": title,
                "credentials": {
                    "district_username": f"{_ascii(last)}_{_ascii(first)}{number % 100}"
                },
                "legacy_id": hex_string(rng, 24),
                "ext": {"admin_permissions": self._pick(("Y", ""))} if rng.random() < 0.5 else {},
            }
        }
        return user

    def section(
        self,
        district_id: str,
        school_id: str,
        at: float,
        teacher: dict[str, Any] | None,
        student_ids: list[str],
        grade: str,
        kind: int = 0,
    ) -> dict[str, Any]:
        """A section taught by ``teacher`` (or nobody) holding ``student_ids``."""
        rng = self.rng
        self._sections_made += 1
        subject, stem = self._pick(names.SUBJECTS)
        period = str(self._int(0, 8))
        teacher_last = teacher["name"].get("last", "Staff") if teacher else "Staff"
        if subject == "homeroom/advisory" and kind == 0:
            title = f"Class {self._sections_made:03d}, Homeroom"
        elif grade in names.GRADE_WORDS:
            title = f"{names.GRADE_WORDS[grade]} {stem}"
        else:
            title = f"{stem} {grade}".strip()
        course_key = (district_id, stem, grade)
        if course_key not in self._courses:
            self._courses[course_key] = hex_string(rng, 24)
        if district_id not in self._terms:
            self._terms[district_id] = hex_string(rng, 24)
        teacher_ids = [teacher["id"]] if teacher else []
        created, modified = self._timestamps(at)
        return {
            "id": self.ids.new(at),
            "district": district_id,
            "school": school_id,
            "name": f"{title} - {teacher_last} - {period}",
            "period": period,
            "section_number": "" if rng.random() < 0.9 else str(self._int(1, 30)),
            "sis_id": str(1000 + self._sections_made),
            "subject": subject,
            "grade": grade,
            "course": self._courses[course_key],
            "term_id": self._terms[district_id],
            "teacher": teacher["id"] if teacher else "",
            "teachers": teacher_ids,
            "students": sorted(student_ids),
            "created": created,
            "last_modified": modified,
            "ext": {
                "classroom": "" if rng.random() < 0.5 else f"{self._pick('ABCD')}{self._int(1, 30)}"
            },
        }

    def _school_sections(
        self, district_id: str, plan: _SchoolPlan, count: int, all_users: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        rng = self.rng
        by_grade: dict[str, list[str]] = {}
        for member in plan.members:
            by_grade.setdefault(member["roles"]["student"]["grade"], []).append(member["id"])
        member_ids = [member["id"] for member in plan.members]
        regular = names.SCHOOL_KINDS[plan.kind][3]
        made = []
        for _ in range(count):
            grade = self._pick(regular)
            pool = by_grade.get(grade, [])
            if len(pool) < 10:
                pool = member_ids
            size = min(len(pool), self._int(16, 35))
            students = rng.sample(pool, size)
            if rng.random() < 0.1 and len(all_users) > len(plan.members):
                # like real Clever, a few enrolments point at users of another school
                outsider = self._pick(all_users)
                if "student" in outsider["roles"] and outsider["id"] not in students:
                    students.append(outsider["id"])
            teachers = plan.teachers
            lead = self._pick(teachers) if teachers else None
            section = self.section(
                district_id, plan.school["id"], self._tick(), lead, students, grade, plan.kind
            )
            extra = [t["id"] for t in teachers if lead is not None and t is not lead]
            if extra and rng.random() < 0.2:
                co_teachers = rng.sample(extra, min(len(extra), self._int(1, 2)))
                section["teachers"] = [section["teacher"], *co_teachers]
            made.append(section)
        return made

    # -- field helpers ---------------------------------------------------------------------

    # random.choice/randint are ~20x slower than random() (a Python-level rejection loop);
    # the generator makes millions of picks for a big district, so it uses random() itself.
    def _pick(self, items: Sequence[_T]) -> _T:
        return items[int(self.rng.random() * len(items))]

    def _int(self, low: int, high: int) -> int:
        return low + int(self.rng.random() * (high - low + 1))

    def _below(self, limit: int) -> int:
        return int(self.rng.random() * limit)

    def _other(self, schools: list[str], taken: list[str]) -> str:
        while True:
            school_id = self._pick(schools)
            if school_id not in taken:
                return school_id

    def _grade(self, kind: int) -> str:
        _, _, _, regular, rare = names.SCHOOL_KINDS[kind]
        if self.rng.random() < 0.03:
            return self._pick(rare)
        return self._pick(regular)

    def _dob(self, grade: str) -> str:
        if grade in names.GRADE_ORDER:
            year = 2019 - (names.GRADE_ORDER.index(grade) - 4) - self._int(0, 1)
        else:
            year = self._int(2006, 2018)
        return f"{self._int(1, 12)}/{self._int(1, 28)}/{year}"

    def _graduation_year(self, grade: str) -> str:
        if grade in ("9", "10", "11", "12") and self.rng.random() < 0.4:
            return str(2025 + 12 - int(grade))
        return ""
