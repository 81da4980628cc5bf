"""The ``Sandbox`` facade: generated districts, credentials, the mutation API and serving."""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cleversync.sandbox.app import RequestLog, SandboxApp
from cleversync.sandbox.auth import TokenRegistry
from cleversync.sandbox.changes import merge
from cleversync.sandbox.control import ControlApi
from cleversync.sandbox.events import EventLog
from cleversync.sandbox.faults import FaultSet
from cleversync.sandbox.generator import GENERATED_EPOCH, RosterGenerator
from cleversync.sandbox.ids import IdFactory
from cleversync.sandbox.names import SCHOOL_KINDS
from cleversync.sandbox.ratelimit import RateLimiter
from cleversync.sandbox.routes import DataApi
from cleversync.sandbox.server import RunningServer
from cleversync.sandbox.store import DistrictState, UnknownRecordError, without_member

_DAY = 86_400.0
_NAME_FIELDS = {"first_name": "first", "middle_name": "middle", "last_name": "last"}
_USER_FIELDS = frozenset({"district", "email", "name", "created", "last_modified", "roles"})
_ROLE_FIELDS = {
    "student": frozenset(
        {
            "school",
            "schools",
            "grade",
            "student_number",
            "sis_id",
            "state_id",
            "dob",
            "gender",
            "graduation_year",
            "race",
            "hispanic_ethnicity",
            "ell_status",
            "credentials",
            "enrollments",
            "ext",
            "location",
            "legacy_id",
        }
    ),
    "teacher": frozenset(
        {
            "school",
            "schools",
            "sis_id",
            "state_id",
            "teacher_number",
            "title",
            "credentials",
            "legacy_id",
            "ext",
        }
    ),
}
_SECTION_FIELDS = frozenset(
    {
        "district",
        "school",
        "name",
        "period",
        "section_number",
        "sis_id",
        "subject",
        "grade",
        "course",
        "term_id",
        "teacher",
        "teachers",
        "students",
        "created",
        "last_modified",
        "ext",
    }
)


@dataclass(frozen=True)
class SchoolInfo:
    id: str
    name: str


@dataclass(frozen=True)
class DistrictInfo:
    """What an operator needs to connect to one sandbox district."""

    id: str
    name: str
    client_id: str
    client_secret: str
    schools: list[SchoolInfo]


class Sandbox:
    """A fake Clever: seeded districts behind a WSGI app, plus hooks for tests and demos."""

    def __init__(
        self,
        seed: int = 1,
        districts: int = 1,
        schools: int = 3,
        students: int = 300,
        teachers: int = 20,
        sections: int = 15,
        *,
        clock: Callable[[], float] = time.time,
        rate_limit: int = 1200,
        rate_window_seconds: float = 60,
        event_retention_days: float = 30,
        token_lifetime_seconds: float = 3600,
        events_enabled: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        request_log_size: int = 10_000,
    ) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._generator = RosterGenerator(seed)
        event_ids = IdFactory(random.Random(f"cleversync-sandbox:{seed}:events"))
        self._tokens = TokenRegistry(
            random.Random(f"cleversync-sandbox:{seed}:auth"),
            IdFactory(random.Random(f"cleversync-sandbox:{seed}:tokens")),
            token_lifetime_seconds,
        )
        self._states: dict[str, DistrictState] = {}
        self.districts: list[DistrictInfo] = []
        for index in range(districts):
            generated = self._generator.district(index, schools, students, teachers, sections)
            state = DistrictState(generated, EventLog(event_ids, event_retention_days * _DAY))
            state.events_enabled = events_enabled
            self._states[state.id] = state
            app = self._tokens.register(state.id, GENERATED_EPOCH - 30 * _DAY + index)
            self.districts.append(
                DistrictInfo(
                    state.id,
                    state.district["name"],
                    app.client_id,
                    app.client_secret,
                    [SchoolInfo(school["id"], school["name"]) for school in generated.schools],
                )
            )
        self.faults = FaultSet()
        self.request_log = RequestLog(request_log_size)
        self.rate_limiter = RateLimiter(rate_limit, rate_window_seconds, clock)
        self.wsgi_app = SandboxApp(
            control=ControlApi(self),
            api=DataApi(self._states, self._lock, self.faults, clock),
            tokens=self._tokens,
            limiter=self.rate_limiter,
            faults=self.faults,
            log=self.request_log,
            clock=clock,
            sleep=sleep,
        )

    # -- serving and credentials -----------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
        """Listen on a loopback port in a daemon thread (use as a context manager)."""
        return RunningServer(self.wsgi_app, host, port)

    def connection_info(self, running: RunningServer) -> dict[str, Any]:
        """The JSON line ``sandbox serve`` prints (README: 'Command line')."""
        return {
            "apiBaseUrl": running.api_base_url,
            "tokenUrl": running.token_url,
            "districts": [
                {
                    "id": info.id,
                    "name": info.name,
                    "clientId": info.client_id,
                    "clientSecret": info.client_secret,
                    "schools": [{"id": school.id, "name": school.name} for school in info.schools],
                }
                for info in self.districts
            ],
        }

    def district_token(self, district_id: str) -> str:
        return self._tokens.district_token(district_id).access_token

    def rotate_token(self, district_id: str) -> str:
        """A new district token; the old one answers 401 from now on."""
        return self._tokens.rotate(district_id, self._clock())

    def set_events_enabled(self, district_id: str, enabled: bool, status: int = 403) -> None:
        """Switch a district's Events API; while off, /events answers ``status`` (403 or 404)."""
        if status not in (403, 404):
            raise ValueError("a disabled Events API answers 403 or 404")
        with self._lock:
            state = self._state(district_id)
            state.events_enabled = enabled
            state.events_disabled_status = status

    def latest_event_id(self, district_id: str) -> str | None:
        with self._lock:
            state = self._state(district_id)
            state.events.prune(self._clock())
            return state.events.latest_id()

    def events(self, district_id: str) -> list[dict[str, Any]]:
        """The district's retained events as the API shows them, oldest first."""
        with self._lock:
            state = self._state(district_id)
            state.events.prune(self._clock())
            events, _ = state.events.page(len(state.events) or 1, None, None, None, ())
            return copy.deepcopy([event.to_json() for event in events])

    # -- mutations (each emits the matching event, stamped by the clock) -------------------

    def add_student(self, school_id: str, **fields: Any) -> str:
        """Add a student at ``school_id``; ``fields`` override generated values, None omits."""
        return self._add_user("student", school_id, fields)

    def add_teacher(self, school_id: str, **fields: Any) -> str:
        return self._add_user("teacher", school_id, fields)

    def _add_user(self, role: str, school_id: str, fields: dict[str, Any]) -> str:
        changes = _user_changes(role, fields)
        with self._lock:
            state = self._state_of_school(school_id)
            now = self._clock()
            school_ids = state.school_ids()
            kind = _school_kind(state, school_id)
            make = self._generator.student if role == "student" else self._generator.teacher
            names = {key: fields.get(f"{key}_name") for key in ("first", "last")}
            user = make(state.id, school_id, school_ids, now, kind, **_strings(names))
            user = merge(user, changes)
            state.add_user(user, now)
            return str(user["id"])

    def add_section(
        self,
        school_id: str,
        teacher_id: str | None = None,
        student_ids: list[str] | None = None,
        **fields: Any,
    ) -> str:
        """Add a section; by default taught by one of the school's teachers, with 20 students."""
        unknown = set(fields) - _SECTION_FIELDS
        if unknown:
            raise TypeError(f"unknown section fields: {sorted(unknown)}")
        with self._lock:
            state = self._state_of_school(school_id)
            rng = self._generator.rng
            teacher = state.users.get(teacher_id) if teacher_id else None
            if teacher_id and teacher is None:
                raise UnknownRecordError(teacher_id)
            if teacher is None:
                teachers = state.ids(("school_users", school_id, "teacher", True))
                teacher = state.users[rng.choice(teachers)] if teachers else None
            if student_ids is None:
                pool = state.ids(("school_users", school_id, "student", False))
                student_ids = rng.sample(pool, min(20, len(pool)))
            grades = [
                state.users[s]["roles"]["student"].get("grade", "")
                for s in student_ids
                if s in state.users and "student" in state.users[s]["roles"]
            ]
            grade = Counter(grades).most_common(1)[0][0] if grades else ""
            kind = _school_kind(state, school_id)
            now = self._clock()
            section = self._generator.section(
                state.id, school_id, now, teacher, list(student_ids), grade, kind
            )
            section = merge(section, fields)
            state.add_section(section, now)
            return str(section["id"])

    def update_user(self, user_id: str, changes: dict[str, Any]) -> None:
        """Apply a nested partial (``None`` removes a field); emits ``users.updated``."""
        with self._lock:
            self._state_of("users", user_id).update_user(user_id, changes, self._clock())

    def update_section(self, section_id: str, changes: dict[str, Any]) -> None:
        with self._lock:
            self._state_of("sections", section_id).update_section(
                section_id, changes, self._clock()
            )

    def remove_user(self, user_id: str, *, unenroll: bool = True) -> None:
        """Delete a user (``users.deleted``), first unenrolling them (``sections.updated``)."""
        with self._lock:
            self._state_of("users", user_id).remove_user(user_id, self._clock(), unenroll=unenroll)

    def move_user(self, user_id: str, role: str, school_id: str) -> None:
        """Move a user to another school of their district, as an SIS transfer looks: they
        leave the old school's sections (``sections.updated``), then their role names only
        the new school (``users.updated``)."""
        with self._lock:
            state = self._state_of("users", user_id)
            if school_id not in state.schools:
                raise UnknownRecordError(school_id)
            user = state.users[user_id]
            if role not in user.get("roles", {}):
                raise ValueError(f"user {user_id} has no {role} role")
            now = self._clock()
            for section_id in state.sections_of_user(user_id):
                if state.sections[section_id].get("school") != school_id:
                    state.update_section(
                        section_id, without_member(state.sections[section_id], user_id), now
                    )
            state.update_user(
                user_id, {"roles": {role: {"school": school_id, "schools": [school_id]}}}, now
            )

    def remove_section(self, section_id: str) -> None:
        with self._lock:
            self._state_of("sections", section_id).remove_section(section_id, self._clock())

    # -- reading current objects (copies) --------------------------------------------------

    def students(self, school_id: str) -> list[dict[str, Any]]:
        """The school's students as /schools/{id}/users?role=student lists them."""
        return self._members(school_id, "student")

    def teachers(self, school_id: str) -> list[dict[str, Any]]:
        return self._members(school_id, "teacher")

    def sections(self, school_id: str) -> list[dict[str, Any]]:
        with self._lock:
            state = self._state_of_school(school_id)
            return copy.deepcopy(
                [state.sections[s] for s in state.ids(("school_sections", school_id))]
            )

    def user(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            state = self._find("users", user_id)
            return copy.deepcopy(state.users[user_id]) if state else None

    def section(self, section_id: str) -> dict[str, Any] | None:
        with self._lock:
            state = self._find("sections", section_id)
            return copy.deepcopy(state.sections[section_id]) if state else None

    def _members(self, school_id: str, role: str) -> list[dict[str, Any]]:
        with self._lock:
            state = self._state_of_school(school_id)
            ids = state.ids(("school_users", school_id, role, False))
            return copy.deepcopy([state.users[user_id] for user_id in ids])

    # -- lookups ---------------------------------------------------------------------------

    def _state(self, district_id: str) -> DistrictState:
        try:
            return self._states[district_id]
        except KeyError:
            raise UnknownRecordError(district_id) from None

    def _state_of_school(self, school_id: str) -> DistrictState:
        for state in self._states.values():
            if school_id in state.schools:
                return state
        raise UnknownRecordError(school_id)

    def _find(self, kind: str, object_id: str) -> DistrictState | None:
        for state in self._states.values():
            if state.object(kind, object_id) is not None:
                return state
        return None

    def _state_of(self, kind: str, object_id: str) -> DistrictState:
        state = self._find(kind, object_id)
        if state is None:
            raise UnknownRecordError(object_id)
        return state


def _user_changes(role: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Turn ``add_student``/``add_teacher`` keyword fields into a nested partial."""
    changes: dict[str, Any] = {}
    role_changes: dict[str, Any] = {}
    name: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _NAME_FIELDS:
            name[_NAME_FIELDS[key]] = value
        elif key == "email":
            changes["email"] = value
            if role == "student":  # Clever copies a student's email into the role
                role_changes["email"] = value
        elif key in _USER_FIELDS:
            changes[key] = value
        elif key in _ROLE_FIELDS[role]:
            role_changes[key] = value
        else:
            raise TypeError(f"unknown {role} field {key!r}")
    if name:
        if changes.get("name", {}) is None:
            raise TypeError("name=None cannot be combined with first_name/middle_name/last_name")
        changes["name"] = {**changes.get("name", {}), **name}
    if role_changes:  # built by hand: merge() would apply the None markers meant for later
        roles = dict(changes.get("roles") or {})
        roles[role] = {**(roles.get(role) or {}), **role_changes}
        changes["roles"] = roles
    return changes


def _strings(values: dict[str, Any]) -> dict[str, str]:
    return {key: value for key, value in values.items() if isinstance(value, str)}


def _school_kind(state: DistrictState, school_id: str) -> int:
    """Elementary, middle or high (0, 1, 2), as the generator assigned them in turn."""
    return state.school_ids().index(school_id) % len(SCHOOL_KINDS)
