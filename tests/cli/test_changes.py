"""``cleversync changes`` and ``sync --full --dry-run`` through the command line's entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from cleversync.db.schema import SCHOOL_METADATA
from cleversync.sandbox import Sandbox
from tests.cli import test_operate
from tests.cli.test_operate import cli

# The operator's fixtures: a sandbox served on loopback, and a laptop install registered to it.
sandbox = test_operate.sandbox
env = test_operate.env
registered = test_operate.registered


def school_dump() -> dict[str, dict[str, list[str]]]:
    """Every row of every school database (the local SQLite files)."""
    dumps = {}
    files = sorted(Path(os.environ["CleverSync__DataDir"]).glob("school-*.sqlite"))
    assert files
    for path in files:
        engine = create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                dumps[path.name] = {
                    t.name: sorted(map(repr, conn.execute(select(t))))
                    for t in SCHOOL_METADATA.sorted_tables
                }
        finally:
            engine.dispose()
    return dumps


def first_school(sb: Sandbox) -> str:
    return sb.districts[0].schools[0].id


def test_changes_lists_what_runs_did_newest_first(registered: Sandbox, capsys) -> None:
    assert cli(capsys, "sync", "--school-id", "1")[0] == 0
    student = registered.students(first_school(registered))[0]
    registered.update_user(student["id"], {"name": {"last": "  Changed  "}})
    assert cli(capsys, "sync", "--school-id", "1")[0] == 0
    code, out, err = cli(capsys, "changes", "--school-id", "1", "--clever-id", student["id"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["RECORDED", "(UTC)", "SYNC"]
    assert "Updated" in lines[2] and f"LastName: {student['name']['last']} -> Changed" in lines[2]
    assert "Inserted" in lines[3]
    code, out, _ = cli(capsys, "changes", "--school-id", "1", "--entity", "Teacher", "--json")
    body = json.loads(out)
    assert body["schoolId"] == 1 and body["omitted"] == {}
    assert body["changes"] and {c["entity"] for c in body["changes"]} == {"Teacher"}
    assert {c["kind"] for c in body["changes"]} == {"Inserted"}
    code, out, _ = cli(capsys, "changes", "--school-id", "1", "--since", "2999-01-01")
    assert (code, out.strip()) == (0, "No recorded changes match.")
    code, out, _ = cli(
        capsys, "changes", "--school-id", "1", "--since", "2000-01-01T00:00+02:00", "--limit", "2"
    )
    assert code == 0 and "(the newest 2; --limit shows more)" in out


def test_control_characters_from_clever_reach_no_terminal(registered: Sandbox, capsys) -> None:
    """A hostile name (an escape sequence, a line break forging a row) is shown escaped."""
    assert cli(capsys, "sync", "--school-id", "1")[0] == 0
    student = registered.students(first_school(registered))[0]
    hostile = "Evil\x1b]0;owned\x07\x1b[2J\nFAKE  1  Student  x  Deleted"
    registered.update_user(student["id"], {"name": {"last": hostile}})
    code, out, err = cli(capsys, "sync", "--school-id", "1", "--full", "--dry-run")
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert not any(line.startswith("FAKE") for line in out.splitlines())
    assert cli(capsys, "sync", "--school-id", "1")[0] == 0
    code, out, err = cli(capsys, "changes", "--school-id", "1", "--clever-id", student["id"])
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert not any(line.startswith("FAKE") for line in out.splitlines())
    assert "Evil\\x1b]0;owned" in out  # shown, escaped


def test_changes_says_how_many_were_not_detailed(
    registered: Sandbox, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CleverSync__History__MaxChangeDetailsPerRun", "4")
    cli(capsys, "sync", "--school-id", "1")
    code, out, _ = cli(capsys, "changes", "--school-id", "1", "--limit", "100")
    assert code == 0
    assert len([line for line in out.splitlines() if "Inserted" in line]) == 4
    assert "more change(s) were counted but not detailed" in out
    assert "CleverSync__History__MaxChangeDetailsPerRun" in out


def test_changes_bad_input_is_a_clear_error(registered: Sandbox, capsys) -> None:
    for argv, expected in (
        (["changes", "--school-id", "1", "--since", "yesterday"], "'yesterday' is not a date"),
        (["changes", "--school-id", "1", "--since", "2026-13-01"], "is not a date"),
        (["changes", "--school-id", "x"], "is not an id"),
        (["changes"], "--school-id"),
        (["changes", "--school-id", "1", "--entity", "Pupil"], "invalid choice"),
        (["changes", "--school-id", "1", "--clever-id", "x" * 51], "1 to 50 characters"),
    ):
        with pytest.raises(SystemExit) as info:
            cli(capsys, *argv)
        assert info.value.code == 2
        assert expected in capsys.readouterr().err
    code, _, err = cli(capsys, "changes", "--school-id", "99")
    assert code == 2 and "no school has id 99" in err


def test_dry_run_reports_a_full_sync_and_writes_nothing(registered: Sandbox, capsys) -> None:
    assert cli(capsys, "sync", "--school-id", "1")[0] == 0
    here = first_school(registered)
    students = registered.students(here)
    registered.update_user(students[0]["id"], {"email": "moved@example.org"})
    registered.remove_user(students[1]["id"])
    new = registered.add_student(here, first_name="Dry", last_name="Run")
    before = school_dump()
    code, out, err = cli(capsys, "sync", "--school-id", "1", "--full", "--dry-run")
    assert code == 0, err
    assert school_dump() == before
    assert "nothing was written" in out
    assert "1 to insert, 1 to update, 1 to remove" in out
    assert new in out and "Dry Run" in out
    assert "Email:" in out and "moved@example.org" in out
    assert students[1]["id"] in out
    code, out, _ = cli(capsys, "sync", "--school-id", "1", "--full", "--dry-run", "--json")
    body = json.loads(out)
    assert [c["cleverId"] for c in body["inserts"]] == [new]
    assert body["updates"][0]["fields"]["Email"]["new"] == "moved@example.org"
    assert [c["kind"] for c in body["deletes"]] == ["Deleted"]
    assert body["heldBack"] is False
    assert school_dump() == before
    code, out, _ = cli(capsys, "history", "--school-id", "1", "--status", "DryRun", "--json")
    assert len(json.loads(out)) == 6  # two previews, one row per entity
    # The next real sync is the incremental one it would have been.
    code, out, _ = cli(capsys, "sync", "--school-id", "1", "--json")
    assert code == 0
    school = json.loads(out)["schools"][0]
    assert school["mode"] == "events"
    secret = registered.districts[0].client_secret
    assert secret not in out


def test_dry_run_usage_errors(registered: Sandbox, capsys) -> None:
    for argv in (
        ["sync", "--dry-run"],
        ["sync", "--school-id", "1", "--dry-run"],
        ["sync", "--district-id", "1", "--full", "--dry-run"],
        ["sync", "--school-id", "1", "--full", "--allow-mass-delete", "--dry-run"],
    ):
        code, _, err = cli(capsys, *argv)
        assert code == 2, argv
        assert "--school-id N --full --dry-run" in err
    code, _, err = cli(capsys, "sync", "--school-id", "99", "--full", "--dry-run")
    assert code == 2 and "no school has id 99" in err


def test_dry_run_output_never_holds_a_secret(registered: Sandbox, capsys) -> None:
    from cleversync.sandbox import Fault

    district = registered.districts[0]
    cli(capsys, "sync", "--school-id", "1")
    registered.faults.add(Fault("status", path="/v3.0/schools/*", status=503, times=None))
    code, out, err = cli(capsys, "sync", "--school-id", "1", "--full", "--dry-run")
    assert code != 0
    assert "503" in out + err
    for text in (out, err):
        assert district.client_secret not in text
    registered.faults.clear()
    code, out, err = cli(capsys, "sync", "--school-id", "1", "--full", "--dry-run", "--json")
    assert code == 0
    assert district.client_secret not in out + err
    code, out, err = cli(capsys, "changes", "--school-id", "1", "--json")
    assert district.client_secret not in out + err
