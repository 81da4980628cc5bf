"""``cleversync sandbox change``: the CLI over the sandbox's control API, through the real
entry point, against a sandbox served over real HTTP; and its errors when none answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cleversync.cli import main
from cleversync.sandbox import RunningServer, Sandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=5, districts=2, schools=2, students=20, teachers=3, sections=3)
    with sb.serve() as running:
        sb.url = running.api_base_url  # type: ignore[attr-defined]
        yield sb


def change(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["sandbox", "change", "--url", url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_schools_students_teachers_sections(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sandbox.url  # type: ignore[attr-defined]
    code, out, err = change(capsys, url, "list", "schools")
    assert code == 0, err
    for district in sandbox.districts:
        for school in district.schools:
            assert school.id in out and school.name in out
    first = sandbox.districts[0].schools[0].id
    code, out, _ = change(capsys, url, "list", "students", "--school", first)
    assert code == 0
    assert out.startswith("STUDENT")
    for student in sandbox.students(first):
        assert student["id"] in out
    code, out, _ = change(capsys, url, "list", "sections", "--school", first)
    assert [s["id"] in out for s in sandbox.sections(first)] == [True] * 3
    code, out, _ = change(capsys, url, "--json", "list", "teachers", "--school", first)
    assert json.loads(out)["data"] == sandbox.teachers(first)


def test_add_rename_move_remove_a_student(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sandbox.url  # type: ignore[attr-defined]
    first, second = (s.id for s in sandbox.districts[0].schools)
    district = sandbox.districts[0].id
    code, out, err = change(
        capsys, url, "--json", "add", "student", "--school", first,
        "--first-name", "Zoë", "--last-name", "Ng", "--grade", "2",
    )  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    student = answer["data"]["id"]
    assert [e["type"] for e in answer["events"]] == ["users.created"]
    assert sandbox.user(student)["name"] == {"first": "Zoë", "last": "Ng"}  # type: ignore[index]

    code, out, err = change(capsys, url, "rename", "student", student, "--last-name", "Nguyen")
    assert code == 0, err
    assert f"renamed student {student}: Zoë Nguyen" in out
    assert "users.updated" in out
    assert sandbox.events(district)[-1]["type"] == "users.updated"

    code, out, err = change(capsys, url, "move", "student", student, "--school", second)
    assert code == 0, err
    assert f"moved student {student}" in out
    assert sandbox.user(student)["roles"]["student"]["school"] == second  # type: ignore[index]

    code, out, err = change(capsys, url, "remove", "student", student)
    assert code == 0, err
    assert "users.deleted" in out
    assert sandbox.user(student) is None


def test_add_a_teacher_and_change_a_section(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sandbox.url  # type: ignore[attr-defined]
    first = sandbox.districts[0].schools[0].id
    code, out, err = change(
        capsys, url, "--json", "add", "teacher", "--school", first,
        "--first-name", "Ada", "--last-name", "King", "--title", "Math Teacher",
    )  # fmt: skip
    assert code == 0, err
    teacher = json.loads(out)["data"]["id"]
    section = sandbox.sections(first)[0]
    joining = next(s["id"] for s in sandbox.students(first) if s["id"] not in section["students"])
    leaving = section["students"][0]
    code, out, err = change(
        capsys, url, "section", section["id"], "--name", "Algebra 1",
        "--add-student", joining, "--remove-student", leaving, "--teacher", teacher,
    )  # fmt: skip
    assert code == 0, err
    assert f"changed section {section['id']}: Algebra 1" in out
    assert "sections.updated" in out
    now = sandbox.section(section["id"])
    assert now is not None
    assert (now["name"], now["teacher"]) == ("Algebra 1", teacher)
    assert joining in now["students"] and leaving not in now["students"]


def test_a_change_that_changes_nothing_says_so(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sandbox.url  # type: ignore[attr-defined]
    student = sandbox.students(sandbox.districts[0].schools[0].id)[0]
    code, out, _ = change(
        capsys, url, "rename", "student", student["id"], "--first-name", student["name"]["first"]
    )
    assert code == 0
    assert "no change: no event emitted" in out


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["remove", "student", "nope"], "no student nope"),
        (["move", "student", "{student}", "--school", "f" * 24], f"no school {'f' * 24}"),
        (["move", "student", "{student}", "--school", "{other}"], "between districts"),
        (["section", "nope", "--name", "x"], "no section nope"),
        (["section", "{section}"], "nothing to change"),
        (["rename", "teacher", "{student}", "--last-name", "X"], "no teacher"),
    ],
)
def test_refusals_are_one_line_and_exit_2(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    url = sandbox.url  # type: ignore[attr-defined]
    here = sandbox.districts[0].schools[0].id
    values = {
        "student": sandbox.students(here)[0]["id"],
        "other": sandbox.districts[1].schools[0].id,
        "section": sandbox.sections(here)[0]["id"],
    }
    before = sandbox.latest_event_id(sandbox.districts[0].id)
    code, out, err = change(capsys, url, *(a.format(**values) for a in argv))
    assert code == 2
    assert out == ""
    assert err.startswith("cleversync: error: ")
    assert said in err
    assert len(err.strip().splitlines()) == 1
    assert sandbox.latest_event_id(sandbox.districts[0].id) == before


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_sandbox_running_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    code, out, err = change(capsys, url, "list", "schools")
    assert code == 1
    assert out == ""
    assert f"no sandbox answers at {url}/sandbox" in err
    assert "cleversync sandbox serve" in err
    assert "Traceback" not in err


def test_a_url_that_is_not_a_sandbox(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = change(capsys, "not a url", "list", "schools")
    assert code == 2
    assert "is not an http URL" in err
    # A server that is not the sandbox's control API (here: Clever's own API paths).
    url = sandbox.url + "/oauth"  # type: ignore[attr-defined]
    code, _, err = change(capsys, url, "list", "schools")
    assert code == 1
    assert "is not a sandbox's control API (HTTP 404, text/html" in err


def test_a_refusing_sandbox_is_reported_with_its_reason(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # The sandbox's own app behind a socket that reports every client as remote, as a
    # server on another interface would: the sandbox refuses (403) and the CLI says why.
    def as_if_remote(environ: dict[str, Any], start_response: Any) -> Any:
        return sandbox.wsgi_app({**environ, "REMOTE_ADDR": "192.0.2.7"}, start_response)

    with RunningServer(as_if_remote) as running:
        code, out, err = change(capsys, running.api_base_url, "remove", "student", "x")
    assert (code, out) == (1, "")
    assert "answers loopback clients only (HTTP 403)" in err


def test_the_installed_command_changes_a_running_sandbox(sandbox: Sandbox) -> None:
    url = sandbox.url  # type: ignore[attr-defined]
    here = sandbox.districts[0].schools[0].id
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cleversync", "sandbox", "change", "--url", url,
         "add", "student", "--school", here, "--first-name", "Kai", "--last-name", "Ono"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "added student" in done.stdout and "Kai Ono" in done.stdout
    assert any(s["name"].get("last") == "Ono" for s in sandbox.students(here))
    usage = subprocess.run(
        [sys.executable, "-m", "cleversync", "sandbox", "change", "--url", url, "add", "pupil"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert usage.returncode == 2
    assert "invalid choice: 'pupil'" in usage.stderr
