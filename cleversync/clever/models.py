"""Typed Clever v3.0 payloads: users (students, teachers), sections, schools, events.

Every field of Clever's v3.0 schema (Clever's docs, plus what the recordings show) is declared,
so ``unknown_in`` can report only what Clever added since: a schema change is
logged by field name, and the sync goes on with the fields it maps. Optional fields are
optional because real payloads omit them, send ``""`` or ``null``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cleversync.errors import RecordError


class CleverModel(BaseModel):
    # defer_build: a model's validators are built when a record first needs them (one that
    # ``fits`` does not pass), not at import: building them all cost every process ~10 ms.
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True, defer_build=True)


class Name(CleverModel):
    first: str | None = None
    middle: str | None = None
    last: str | None = None


class StudentRole(CleverModel):
    school: str | None = None
    schools: list[str] = Field(default_factory=list)
    grade: str | None = None
    student_number: str | None = None
    sis_id: str | None = None
    state_id: str | None = None
    dob: str | None = None
    gender: str | None = None
    graduation_year: str | None = None
    race: str | None = None
    hispanic_ethnicity: str | None = None
    ell_status: str | None = None
    email: str | None = None  # seen in real list responses: a copy of the user's email
    credentials: dict[str, Any] | None = None
    enrollments: list[Any] | None = None
    location: dict[str, Any] | None = None
    ext: dict[str, Any] | None = None
    legacy_id: str | None = None
    created: str | None = None
    last_modified: str | None = None
    # v3.1 additions, known so they are not reported as unknown on a v3.1 feed
    preferred_name: dict[str, Any] | None = None
    gifted_status: str | None = None
    section_504_status: str | None = None
    disability: dict[str, Any] | None = None
    frl_status: str | None = None
    home_language: str | None = None
    home_language_code: str | None = None
    iep_status: str | None = None


class TeacherRole(CleverModel):
    school: str | None = None
    schools: list[str] = Field(default_factory=list)
    title: str | None = None
    teacher_number: str | None = None
    sis_id: str | None = None
    state_id: str | None = None
    credentials: dict[str, Any] | None = None
    legacy_id: str | None = None
    ext: dict[str, Any] | None = None
    district: str | None = None
    name: dict[str, Any] | None = None
    email: str | None = None
    created: str | None = None
    last_modified: str | None = None


class Roles(CleverModel):
    student: StudentRole | None = None
    teacher: TeacherRole | None = None
    staff: dict[str, Any] | None = None
    district_admin: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None


class User(CleverModel):
    id: str
    district: str | None = None
    email: str | None = None
    name: Name | None = None
    created: str | None = None
    last_modified: str | None = None
    roles: Roles = Field(default_factory=Roles)
    lms_status: dict[str, Any] | None = None


class Section(CleverModel):
    id: str
    district: str | None = None
    school: str | None = None
    name: str | None = None
    period: str | None = None
    section_number: str | None = None
    sis_id: str | None = None
    subject: str | None = None
    grade: str | None = None
    course: str | None = None
    term_id: str | None = None
    teacher: str | None = None
    teachers: list[str] = Field(default_factory=list)
    students: list[str] = Field(default_factory=list)
    created: str | None = None
    last_modified: str | None = None
    ext: dict[str, Any] | None = None
    lms_status: dict[str, Any] | None = None


class School(CleverModel):
    id: str
    district: str | None = None
    name: str | None = None
    school_number: str | None = None
    sis_id: str | None = None
    state_id: str | None = None
    nces_id: str | None = None
    mdr_number: str | None = None
    low_grade: str | None = None
    high_grade: str | None = None
    phone: str | None = None
    principal: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    created: str | None = None
    last_modified: str | None = None
    ext: dict[str, Any] | None = None


class Event(CleverModel):
    """One entry of the Events API: ``type`` is ``{record type}.{created|updated|deleted}``."""

    id: str
    type: str
    created: str | None = None
    object: dict[str, Any] = Field(default_factory=dict)
    previous_attributes: dict[str, Any] | None = None

    @property
    def record_type(self) -> str:
        return self.type.partition(".")[0]

    @property
    def action(self) -> str:
        return self.type.partition(".")[2]


def parse_event(raw: dict[str, Any]) -> Event:
    """An event from the feed: Clever nests ``object`` and ``previous_attributes`` in ``data``."""
    data: dict[str, Any] = raw["data"] if isinstance(raw.get("data"), dict) else {}
    try:
        return Event(
            id=raw["id"],
            type=raw["type"],
            created=raw.get("created"),
            object=data.get("object") or {},
            previous_attributes=data.get("previous_attributes"),
        )
    except (KeyError, ValidationError) as exc:
        raise RecordError(str(raw.get("id", "")), f"unreadable event ({_problem(exc)})") from None


_Model = TypeVar("_Model", bound=CleverModel)


def parse(model: type[_Model], raw: Any) -> _Model:
    """Validate one record; a record that does not fit raises RecordError naming its fields."""
    clever_id = str(raw.get("id", "")) if isinstance(raw, dict) else ""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RecordError(
            clever_id, f"unreadable {model.__name__.lower()} ({_problem(exc)})"
        ) from None


def checked(model: type[CleverModel], raw: Any) -> dict[str, Any]:
    """The record's fields as a dict, once they are known to fit ``model``: ``raw`` itself
    when ``fits`` shows it would validate as it is (no model is built), else the validated
    model's dump; a record that does not fit raises RecordError, as ``parse``."""
    if isinstance(raw, dict) and fits(model, raw):
        return raw
    return parse(model, raw).model_dump()


def fits(model: type[CleverModel], raw: dict[str, Any]) -> bool:
    """Whether ``model`` would accept ``raw`` unchanged: every field it declares is absent
    (and has a default) or holds exactly the JSON type declared; unknown keys may hold
    anything (``extra="allow"``). Stricter than pydantic, never laxer: a record it does not
    pass goes through pydantic, which accepts it or says what is wrong. It exists for speed:
    a page's records are checked here, in a fraction of the time building models takes
    (one loop, no call per field: it runs for every field of every record)."""
    shapes, required = _shapes(model)
    for name in required:
        if name not in raw:
            return False
    for name, value in raw.items():
        shape = shapes.get(name)
        if shape is None:
            continue  # a field the model does not declare: kept as it is
        if value is None:
            if shape.nullable:
                continue
            return False
        kind = shape.kind
        if kind == _STR:
            if type(value) is not str:
                return False
        elif kind == _STR_LIST:
            if type(value) is not list:
                return False
            for item in value:
                if type(item) is not str:
                    return False
        elif kind == _DICT:
            if type(value) is not dict:
                return False
            for key in value:
                if type(key) is not str:
                    return False
        elif kind == _LIST:
            if type(value) is not list:
                return False
        elif kind == _MODEL and shape.model is not None:
            if type(value) is not dict or not fits(shape.model, value):
                return False
        else:
            return False
    return True


# The shapes of field fits() knows; any other is left to pydantic.
_STR, _STR_LIST, _DICT, _LIST, _MODEL, _OTHER = range(6)


@dataclass(frozen=True)
class _Shape:
    kind: int
    nullable: bool
    model: type[CleverModel] | None = None


@functools.cache
def _shapes(model: type[CleverModel]) -> tuple[dict[str, _Shape], tuple[str, ...]]:
    """``model``'s fields by shape, and the fields it requires."""
    shapes: dict[str, _Shape] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = typing.get_args(annotation)
        nullable = type(None) in args
        if nullable:
            rest = [a for a in args if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else None
        shapes[name] = _shape(annotation, nullable)
    required = tuple(n for n, info in model.model_fields.items() if info.is_required())
    return shapes, required


def _shape(annotation: Any, nullable: bool) -> _Shape:
    if annotation is str:
        return _Shape(_STR, nullable)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args == (str,):
        return _Shape(_STR_LIST, nullable)
    if origin is list and args in ((), (Any,)):
        return _Shape(_LIST, nullable)
    if origin is dict and args == (str, Any):
        return _Shape(_DICT, nullable)
    if inspect.isclass(annotation) and issubclass(annotation, CleverModel):
        return _Shape(_MODEL, nullable, annotation)
    return _Shape(_OTHER, nullable)


def unknown_in(model: type[BaseModel], raws: list[dict[str, Any]], prefix: str = "") -> set[str]:
    """Dotted names of the fields in ``raws`` (records of ``model``, as Clever sent them)
    that the v3.0 schema does not have (names only), for all of them at once: a page's key
    sets are joined in C instead of each record's models being walked in Python (it runs
    for every page)."""
    keys: set[str] = set().union(*raws)
    found = {f"{prefix}{key}" for key in keys - _field_names(model)}
    for name in _nested_fields(model):
        nested = [raw[name] for raw in raws if isinstance(raw.get(name), dict)]
        if nested:
            found |= unknown_in(_nested_model(model, name), nested, f"{prefix}{name}.")
    return found


@functools.cache
def _field_names(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(model.model_fields)


@functools.cache
def _nested_model(model: type[BaseModel], name: str) -> type[BaseModel]:
    annotation = model.model_fields[name].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if inspect.isclass(candidate) and issubclass(candidate, CleverModel):
            return candidate
    raise TypeError(f"{model.__name__}.{name} is not a nested model")


@functools.cache
def _nested_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` declared as a nested model: the only ones ``unknown_in``
    must descend into."""
    nested = []
    for name, info in model.model_fields.items():
        candidates = (info.annotation, *typing.get_args(info.annotation))
        if any(inspect.isclass(c) and issubclass(c, CleverModel) for c in candidates):
            nested.append(name)
    return tuple(nested)


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        # Field paths and error kinds only: the rejected values may be personal data.
        parts = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in error["loc"]) or "record"
            parts.append(f"{where}: {error['msg']}")
        return "; ".join(parts[:5])
    return f"missing {exc}"
