"""The quick check that lets a page's records skip building models (``models.fits``): never
laxer than pydantic, and what it passes maps exactly as the validated model would."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cleversync.clever.models import CleverModel, Section, User, checked, fits, parse
from cleversync.errors import RecordError
from cleversync.sync.mapping import section_row, student_row, teacher_row
from tests.child import python_output
from tests.recordings import body

# What JSON can hold, and a few shapes of each.
VALUES: list[Any] = [None, "", "x", 0, 1.5, True, [], ["a"], [1], {}, {"a": 1}, {"first": "A"}]


def _records(name: str) -> list[dict[str, Any]]:
    return [item["data"] for item in body(name)["data"]]


def test_real_records_fit_as_clever_sent_them() -> None:
    users = _records("school_users") + _records("user_myteachers")
    sections = _records("school_sections")
    for model, raws in ((User, users), (Section, sections)):
        for raw in raws:
            assert fits(model, raw)
            assert checked(model, raw) is raw  # no model built, no copy made


def _variants(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The record with each field (and each nested field) set to each JSON value, and
    removed."""
    out = []

    def walk(path: list[str], node: dict[str, Any]) -> None:
        for key, value in node.items():
            for replacement in [*VALUES, "missing"]:
                variant = copy.deepcopy(raw)
                target = variant
                for step in path:
                    target = target[step]
                if replacement == "missing":
                    del target[key]
                else:
                    target[key] = copy.deepcopy(replacement)
                out.append(variant)
            if isinstance(value, dict):
                walk([*path, key], value)

    walk([], raw)
    return out


def _refusal(read: Any) -> tuple[str, str] | None:
    try:
        read()
    except RecordError as exc:
        return exc.clever_id, exc.problem
    return None


def _row(mapper: Any, record: dict[str, Any]) -> Any:
    try:
        return mapper(record)
    except RecordError as exc:
        return ("RecordError", exc.clever_id, exc.problem)


@pytest.mark.parametrize(
    ("model", "recording", "mapper"),
    [
        (User, "school_users", student_row),
        (User, "user_myteachers", teacher_row),
        (Section, "school_sections", section_row),
    ],
)
def test_the_quick_check_agrees_with_pydantic(
    model: type[CleverModel], recording: str, mapper: Any
) -> None:
    variants = _variants(_records(recording)[0])
    assert len(variants) > 200
    passed = 0
    for raw in variants:
        refused = _refusal(lambda raw=raw: parse(model, raw))
        if refused is not None:
            # Rejected by pydantic: the check must not pass it, and checked() says the same.
            assert not fits(model, raw), raw
            assert _refusal(lambda raw=raw: checked(model, raw)) == refused
            continue
        validated = parse(model, raw)
        # Accepted: whichever way checked() took, the row is the validated model's.
        passed += fits(model, raw)
        assert _row(mapper, checked(model, raw)) == _row(mapper, validated.model_dump()), raw
    assert passed > len(variants) // 4  # the quick way is the usual one


def test_a_required_field_missing_or_null_does_not_fit() -> None:
    assert not fits(User, {"name": {"first": "A"}})
    assert not fits(User, {"id": None})
    assert not fits(User, {"id": "u", "roles": None})  # roles has a default, but not None
    assert not fits(Section, {"id": "s", "students": None})
    with pytest.raises(RecordError, match="unreadable user"):
        checked(User, {"id": "u", "roles": None})


def test_unknown_fields_may_hold_anything() -> None:
    raw = {"id": "u", "brand_new": [1, {"x": None}], "roles": {"student": {"new": 5}}}
    assert fits(User, raw)
    assert checked(User, raw) is raw


def test_models_are_built_only_when_a_record_needs_pydantic() -> None:
    # Building the validators of every record model cost each process some 10 ms of
    # start-up, and a sync whose records all fit never validates one (defer_build).
    code = (
        "from cleversync.clever import models\n"
        "from cleversync.errors import RecordError\n"
        "record = {'id': 'u1', 'name': {'first': 'A', 'last': 'B'}}\n"
        "assert models.fits(models.User, record) and models.checked(models.User, record)\n"
        "print(models.User.__pydantic_complete__, models.Section.__pydantic_complete__)\n"
        "try:\n"
        "    models.checked(models.User, {'id': 'u2', 'name': {'first': 7}})\n"
        "except RecordError as exc:\n"
        "    print(exc)\n"
        "print(models.User.__pydantic_complete__, models.Section.__pydantic_complete__)\n"
    )
    out = python_output(code).splitlines()
    assert out[0] == "False False"
    assert "name.first" in out[1] and "7" not in out[1]
    assert out[2] == "True False"
