"""The mass-delete override applies to one school, and the guard's hint names that school."""

from __future__ import annotations

import pytest

from cleversync.errors import UsageError
from tests.world import World, clever_school_id, stored_students


def test_the_held_back_hint_names_the_real_school_and_command(world: World) -> None:
    school = world.schools[1]  # not school 1: the hint must carry the real id, not a constant
    world.sync(school_id=school.school_id)
    students = world.sandbox.students(clever_school_id(world, 1))
    leaving = [s["id"] for s in students[: int(len(students) * 0.6)]]
    for student in leaving:
        world.sandbox.remove_user(student)
    run = world.sync(school_id=school.school_id, full=True)
    [result] = run.schools
    outcome = next(o for o in result.entities if o.entity == "Student")
    assert outcome.status == "Partial"
    command = f"cleversync sync --school-id {school.school_id} --allow-mass-delete"
    assert command in outcome.message()
    assert f"schoolId={school.school_id}&allowMassDelete=true" in outcome.message()
    assert " N " not in outcome.message() and "--school-id N" not in outcome.message()
    row = next(
        r
        for r in world.history(school_id=school.school_id)
        if r["EntityType"] == "Student" and r["Status"] == "Partial"
    )
    assert command in row["ErrorMessage"]
    assert set(leaving) <= set(stored_students(world, 1))  # still held back


def test_the_orchestrator_refuses_the_override_for_many_schools(world: World) -> None:
    for kwargs in ({}, {"district_id": world.districts[0].district_id}):
        with pytest.raises(UsageError, match="exactly one school"):
            world.sync(allow_mass_delete=True, **kwargs)
    assert world.history() == []
