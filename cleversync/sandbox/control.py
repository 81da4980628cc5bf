"""The sandbox's control API under ``/sandbox/``: change the roster by hand over loopback HTTP.

Not part of Clever's API: no bearer token, no rate limit, no faults, not in the request log.
Each change goes through the ``Sandbox`` mutation methods, so it emits the events Clever
would (``users.created|updated|deleted``, ``sections.updated``) and the Data API shows it.

    GET    /sandbox                       districts and their schools
    GET    /sandbox/{students|teachers|sections}?school=ID
    GET    /sandbox/{students|teachers|sections}/ID
    POST   /sandbox/{students|teachers}   {"school", "first_name", "last_name", ...}   -> 201
    PATCH  /sandbox/{students|teachers}/ID   {"first_name", "middle_name", "last_name"}
    POST   /sandbox/{students|teachers}/ID/move   {"school"}
    DELETE /sandbox/{students|teachers}/ID
    PATCH  /sandbox/sections/ID   {"name", "add_students", "remove_students", "teacher"}

Answers are JSON: ``{"data": ..., "events": [{"id", "type"}]}`` for a change (the events
it emitted), ``{"message": ...}`` with 400, 403, 404, 405 or 415 when refused. Only loopback
clients are served, and only under a loopback ``Host`` (a DNS-rebinding page would send
its own host name) and without a foreign ``Origin``; a body must be ``application/json``,
which a cross-site form cannot send without a CORS preflight the sandbox never grants.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cleversync.sandbox.messages import Request, Response, is_loopback
from cleversync.sandbox.store import UnknownRecordError

if TYPE_CHECKING:
    from cleversync.sandbox.sandbox import Sandbox

PREFIX = "/sandbox"
_ROLES = {"students": "student", "teachers": "teacher"}
_NAME_KEYS = ("first_name", "middle_name", "last_name")
_ADD_KEYS = {
    "student": frozenset({"school", *_NAME_KEYS, "email", "grade"}),
    "teacher": frozenset({"school", *_NAME_KEYS, "email", "title"}),
}
_SECTION_KEYS = frozenset({"name", "add_students", "remove_students", "teacher"})


def is_control_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ControlError(Exception):
    """A refused control request: answered as ``{"message": ...}`` with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ControlApi:
    """Routes ``/sandbox/...`` requests to the ``Sandbox`` mutation and reading methods."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._lock = threading.Lock()  # one change at a time, so its events are its own

    def handle(self, request: Request, client_address: str) -> Response:
        try:
            _check_origin(request, client_address)
            body = _body(request)
            with self._lock:
                return self._route(request, body)
        except ControlError as error:
            return Response(error.status, {"message": error.message})
        except UnknownRecordError as error:  # a record removed by another caller meanwhile
            return Response(404, {"message": f"no record {error.args[0]}"})

    # -- routing ---------------------------------------------------------------------------

    def _route(self, request: Request, body: dict[str, Any] | None) -> Response:
        parts = [part for part in request.path[len(PREFIX) :].split("/") if part]
        method = request.method
        if not parts:
            _allow(method, "GET")
            return Response(200, {"data": self._index()})
        kind, rest = parts[0], parts[1:]
        if kind not in (*_ROLES, "sections") or len(rest) > 2:
            raise ControlError(404, f"no such control endpoint: {request.path}")
        if not rest:
            if method == "GET":
                return Response(200, {"data": self._list(kind, request.param("school"))})
            if kind == "sections":
                _allow(method, "GET")
            _allow(method, "GET", "POST")
            return self._change(lambda: self._add(_ROLES[kind], _required(body)), status=201)
        object_id = rest[0]
        if len(rest) == 2:
            if kind == "sections" or rest[1] != "move":
                raise ControlError(404, f"no such control endpoint: {request.path}")
            _allow(method, "POST")
            return self._change(lambda: self._move(_ROLES[kind], object_id, _required(body)))
        if kind == "sections":
            _allow(method, "GET", "PATCH")
            if method == "GET":
                return Response(200, {"data": self._section(object_id)})
            return self._change(lambda: self._change_section(object_id, _required(body)))
        role = _ROLES[kind]
        _allow(method, "GET", "PATCH", "DELETE")
        if method == "GET":
            return Response(200, {"data": self._user(role, object_id)})
        if method == "PATCH":
            return self._change(lambda: self._rename(role, object_id, _required(body)))
        if body:
            raise ControlError(400, f"DELETE takes no fields, got: {', '.join(sorted(body))}")
        return self._change(lambda: self._remove(role, object_id))

    def _change(self, apply: Callable[[], dict[str, Any]], status: int = 200) -> Response:
        """Apply one change and answer with its result and the events it emitted."""
        before = {d.id: self._sandbox.latest_event_id(d.id) for d in self._sandbox.districts}
        data = apply()
        events = []
        for district_id, latest in before.items():
            emitted = self._sandbox.events(district_id)
            ids = [e["id"] for e in emitted]
            start = ids.index(latest) + 1 if latest in ids else 0
            events += [{"id": e["id"], "type": e["type"]} for e in emitted[start:]]
        return Response(status, {"data": data, "events": events})

    # -- reading ---------------------------------------------------------------------------

    def _index(self) -> list[dict[str, Any]]:
        return [
            {
                "id": district.id,
                "name": district.name,
                "schools": [{"id": s.id, "name": s.name} for s in district.schools],
            }
            for district in self._sandbox.districts
        ]

    def _list(self, kind: str, school_id: str | None) -> list[dict[str, Any]]:
        schools = [school_id] if school_id is not None else self._school_ids()
        if school_id is not None:
            self._school(school_id)
        read = {
            "students": self._sandbox.students,
            "teachers": self._sandbox.teachers,
            "sections": self._sandbox.sections,
        }[kind]
        found: dict[str, dict[str, Any]] = {}
        for school in schools:
            for record in read(school):
                found.setdefault(record["id"], record)
        return [found[key] for key in sorted(found)]

    def _school_ids(self) -> list[str]:
        return [s.id for d in self._sandbox.districts for s in d.schools]

    def _school(self, school_id: str) -> str:
        """The district of a known school, or 404."""
        for district in self._sandbox.districts:
            if any(school.id == school_id for school in district.schools):
                return district.id
        raise ControlError(404, f"no school {school_id}")

    def _user(self, role: str, user_id: str) -> dict[str, Any]:
        user = self._sandbox.user(user_id)
        if user is None or role not in user.get("roles", {}):
            raise ControlError(404, f"no {role} {user_id}")
        return user

    def _section(self, section_id: str) -> dict[str, Any]:
        section = self._sandbox.section(section_id)
        if section is None:
            raise ControlError(404, f"no section {section_id}")
        return section

    # -- changes ---------------------------------------------------------------------------

    def _add(self, role: str, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, _ADD_KEYS[role], f"adding a {role}")
        school_id = _text(body, "school")
        self._school(school_id)
        fields: dict[str, str | None] = {"middle_name": None}  # none unless given
        for key in (*_NAME_KEYS, "email", "grade", "title"):
            value = _optional_text(body, key)
            if value is not None:
                fields[key] = value
            elif key in ("first_name", "last_name") or (key in body and key != "middle_name"):
                raise ControlError(400, f"{key} is required (a non-empty string)")
        add = self._sandbox.add_student if role == "student" else self._sandbox.add_teacher
        return self._user(role, add(school_id, **fields))

    def _rename(self, role: str, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(role, user_id)
        _only(body, frozenset(_NAME_KEYS), f"renaming a {role}")
        if not body:
            raise ControlError(400, f"renaming needs one of: {', '.join(_NAME_KEYS)}")
        name: dict[str, Any] = {}
        for key in _NAME_KEYS:
            if key in body:
                # A middle name can be removed (null or ""); first and last names cannot.
                value = _optional_text(body, key)
                if value is None and key != "middle_name":
                    raise ControlError(400, f"{key} cannot be empty")
                name[key.removesuffix("_name")] = value
        self._sandbox.update_user(user["id"], {"name": name})
        return self._user(role, user_id)

    def _move(self, role: str, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(role, user_id)
        _only(body, frozenset({"school"}), f"moving a {role}")
        school_id = _text(body, "school")
        district_id = self._school(school_id)
        if district_id != user["district"]:
            raise ControlError(
                400,
                f"school {school_id} is in district {district_id}, not in the {role}'s "
                f"district {user['district']}: a user cannot move between districts",
            )
        self._sandbox.move_user(user_id, role, school_id)
        return self._user(role, user_id)

    def _remove(self, role: str, user_id: str) -> dict[str, Any]:
        user = self._user(role, user_id)
        self._sandbox.remove_user(user_id)
        return user

    def _change_section(self, section_id: str, body: dict[str, Any]) -> dict[str, Any]:
        section = self._section(section_id)
        _only(body, _SECTION_KEYS, "changing a section")
        if not body:
            raise ControlError(400, f"a section change needs one of: {', '.join(_SECTION_KEYS)}")
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = _text(body, "name")
        students = list(section.get("students", []))
        add, remove = _ids(body, "add_students"), _ids(body, "remove_students")
        for student_id in add:
            self._member_of(section, "student", student_id)
            if student_id in students:
                raise ControlError(400, f"student {student_id} is already in section {section_id}")
            students.append(student_id)
        for student_id in remove:
            if student_id not in students:
                raise ControlError(400, f"student {student_id} is not in section {section_id}")
            students.remove(student_id)
        if add or remove:
            changes["students"] = sorted(students)
        if "teacher" in body:
            teacher_id = _text(body, "teacher")
            self._member_of(section, "teacher", teacher_id)
            old = section.get("teacher")
            others = [t for t in section.get("teachers", []) if t not in (old, teacher_id)]
            changes["teacher"] = teacher_id
            changes["teachers"] = [teacher_id, *others]
        self._sandbox.update_section(section_id, changes)
        return self._section(section_id)

    def _member_of(self, section: dict[str, Any], role: str, user_id: str) -> None:
        """A section's students and teachers are the district's users at its school."""
        user = self._user(role, user_id)
        school_id = section.get("school")
        if school_id not in (user["roles"][role].get("schools") or []):
            raise ControlError(
                400, f"{role} {user_id} is not at school {school_id} of section {section['id']}"
            )


def _check_origin(request: Request, client_address: str) -> None:
    if not is_loopback(client_address):
        raise ControlError(403, "the sandbox control API answers loopback clients only")
    host = request.headers.get("host")
    if host is None:
        raise ControlError(403, "the sandbox control API needs a Host header")
    if not is_loopback(_host_name(host)):
        raise ControlError(
            403, f"the sandbox control API answers only under a loopback host name, not {host!r}"
        )
    origin = request.headers.get("origin")
    if origin is not None and not is_loopback(_host_name(origin.partition("://")[2] or origin)):
        raise ControlError(403, f"the sandbox control API refuses requests from {origin!r}")
    if "authorization" in request.headers:
        raise ControlError(
            400,
            "the sandbox control API takes no Authorization header: it is not part of "
            "Clever's API (that is under /v3.0)",
        )


def _host_name(host: str) -> str:
    """``127.0.0.1:8765`` -> ``127.0.0.1``, ``[::1]:8765`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def _body(request: Request) -> dict[str, Any] | None:
    if not request.body:
        if request.method in ("POST", "PATCH"):
            raise ControlError(
                400, f"{request.method} needs a JSON object body (Content-Type: application/json)"
            )
        return None
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ControlError(
            415, f"the body must be application/json, not {content_type or 'untyped'!r}"
        )
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ControlError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ControlError(400, f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _required(body: dict[str, Any] | None) -> dict[str, Any]:
    return body if body is not None else {}


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise ControlError(405, f"{method} is not allowed here; use {' or '.join(allowed)}")


def _only(body: dict[str, Any], allowed: frozenset[str], doing: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ControlError(
            400,
            f"unknown field(s) for {doing}: {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(allowed))})",
        )


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ControlError(400, f"{key} must be a string, not {type(value).__name__}")
    return value


def _text(body: dict[str, Any], key: str) -> str:
    value = _optional_text(body, key)
    if value is None:
        raise ControlError(400, f"{key} is required (a non-empty string)")
    return value


def _ids(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ControlError(400, f"{key} must be a list of ids")
    if len(set(value)) != len(value):
        raise ControlError(400, f"{key} names an id twice")
    return value
