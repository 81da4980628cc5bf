"""End to end: a full sync, a change made with ``cleversync sandbox change`` against the
sandbox served over real HTTP, then an incremental sync from the events feed that brings
exactly that change into the school's database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from cleversync.cli import main
from tests.world import World, clever_school_id, stored_students


def sandbox_change(world: World, capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    url = world.env["CleverSync__Clever__ApiBaseUrl"]
    capsys.readouterr()
    code = main(["sandbox", "change", "--url", url, "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def snapshot(world: World) -> dict[str, object]:
    school = world.school()
    return {
        "students": stored_students(world),
        "teachers": {
            k: {c: r[c] for c in ("FirstName", "LastName", "Email", "Title")}
            for k, r in world.teachers(school).items()
        },
        "sections": {k: r["Name"] for k, r in world.sections(school).items()},
        "enrolments": world.enrolments(school),
    }


def test_a_rename_by_the_cli_is_exactly_what_the_next_incremental_sync_brings(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.sync(school_id=1)
    before = snapshot(world)
    student = world.sandbox.students(clever_school_id(world))[3]
    answer = sandbox_change(
        world, capsys, "rename", "student", student["id"], "--first-name", "Renamed-By-Hand"
    )
    assert [e["type"] for e in answer["events"]] == ["users.updated"]
    run = world.sync(school_id=1)
    assert (run.schools[0].mode, run.schools[0].status) == ("events", "Success")
    after = snapshot(world)
    expected_students = dict(before["students"])  # type: ignore[call-overload]
    expected_students[student["id"]] = {
        **expected_students[student["id"]],
        "FirstName": "Renamed-By-Hand",
    }
    assert after == {**before, "students": expected_students}


def test_an_added_student_enrolled_in_a_renamed_section_arrives_by_events(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.sync(school_id=1)
    before = snapshot(world)
    here = clever_school_id(world)
    added = sandbox_change(
        world, capsys, "add", "student", "--school", here,
        "--first-name", "Hand", "--last-name", "Made", "--grade", "3",
    )  # fmt: skip
    new_id = added["data"]["id"]
    section = world.sandbox.sections(here)[0]["id"]
    changed = sandbox_change(
        world, capsys, "section", section, "--name", "Renamed Section", "--add-student", new_id
    )
    assert [e["type"] for e in changed["events"]] == ["sections.updated"]
    run = world.sync(school_id=1)
    assert run.schools[0].mode == "events"
    after = snapshot(world)
    assert after["students"] == {
        **before["students"],  # type: ignore[dict-item]
        new_id: {
            "FirstName": "Hand",
            "LastName": "Made",
            "Email": added["data"].get("email"),
            "Grade": "3",
            "StudentNumber": added["data"]["roles"]["student"]["student_number"],
        },
    }
    assert after["sections"] == {**before["sections"], section: "Renamed Section"}  # type: ignore[dict-item]
    assert after["enrolments"] == before["enrolments"] | {(section, new_id)}  # type: ignore[operator]
    assert after["teachers"] == before["teachers"]
