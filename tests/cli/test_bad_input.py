"""Ordinary bad input gets one line naming what is wrong and exit 2 (1 for a failed
operation), never a traceback; all through the CLI entry point."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cleversync.cli import main

PASSWORD = "pw-never-shown-9"


def run(capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str = "") -> tuple[int, str]:
    """Exit status and everything printed; argparse's SystemExit counts as an exit status."""
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return code, out + err


def data_dir() -> Path:
    return Path(os.environ["CleverSync__DataDir"])


def setup_district(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, ["db", "upgrade"])[0] == 0
    district = [
        "district",
        "add",
        "--name",
        "D",
        "--clever-id",
        "5b2ad81a709e300001e2cd7a",
        "--prefix",
        "Demo",
    ]
    assert run(capsys, district)[0] == 0


def add_school(capsys: pytest.CaptureFixture[str], connection_string: str | None = None) -> None:
    argv = ["school", "add", "--district-id", "1", "--clever-id", "s1", "--name", "Elm"]
    argv += ["--prefix", "Elm"]
    if connection_string is not None:
        argv.append("--connection-string-stdin")
    code, text = run(capsys, argv, stdin=(connection_string or "") + "\n")
    assert code == 0, text


def school_file() -> Path:
    return data_dir() / "school-Elm.sqlite"


def sqlite_school(capsys: pytest.CaptureFixture[str]) -> None:
    """A registered school with a migrated SQLite database."""
    setup_district(capsys)
    add_school(capsys)
    code, text = run(capsys, ["db", "upgrade", "--school-id", "1"])
    assert code == 0, text


def execute(sql: str) -> None:
    with sqlite3.connect(school_file()) as conn:
        conn.execute(sql)


@dataclass
class Case:
    argv: list[str]
    code: int
    says: list[str]
    setup: Callable[[pytest.CaptureFixture[str]], None] | None = None
    stdin: str = ""
    env: dict[str, str] = field(default_factory=dict)
    never: list[str] = field(default_factory=list)


def _no_version_table(capsys: pytest.CaptureFixture[str]) -> None:
    sqlite_school(capsys)
    execute("DROP TABLE alembic_version_school")


def _unknown_revision(capsys: pytest.CaptureFixture[str]) -> None:
    sqlite_school(capsys)
    execute("UPDATE alembic_version_school SET version_num = '9999'")


def _missing_column(capsys: pytest.CaptureFixture[str]) -> None:
    sqlite_school(capsys)
    execute("ALTER TABLE Students DROP COLUMN Grade")


def _server_down(capsys: pytest.CaptureFixture[str]) -> None:
    setup_district(capsys)
    add_school(capsys, f"postgresql+psycopg://sync:{PASSWORD}@127.0.0.1:1/school_elm")


def _ado_net_school(capsys: pytest.CaptureFixture[str]) -> None:
    setup_district(capsys)
    add_school(
        capsys,
        "Server=tcp:sos.database.windows.net,1433;Initial Catalog=School_Elm;"
        f"User ID=sync;Password={PASSWORD};",
    )


def _registered_school(capsys: pytest.CaptureFixture[str]) -> None:
    setup_district(capsys)
    add_school(capsys)


SCHOOL_ADD = ["school", "add", "--district-id", "1", "--clever-id", "s1", "--name", "Elm"]
SCHOOL_ADD += ["--prefix", "Elm", "--connection-string-stdin"]
HUGE = str(2**70)

CASES = {
    "api url port not a number": Case(
        ["sync"],
        1,
        ["CleverSync__Clever__ApiBaseUrl", "port"],
        env={"CleverSync__Clever__ApiBaseUrl": "https://api.clever.com:notaport"},
    ),
    "token url port not a number": Case(
        ["health"],
        1,
        ["CleverSync__Clever__TokenUrl", "port"],
        env={"CleverSync__Clever__TokenUrl": "https://clever.com:notaport/oauth/tokens"},
    ),
    "connection string port not a number": Case(
        SCHOOL_ADD,
        2,
        ["connection string", "port"],
        setup=setup_district,
        stdin=f"postgresql+psycopg://sync:{PASSWORD}@db.example.org:notaport/elm\n",
    ),
    "mysql connection string": Case(
        SCHOOL_ADD,
        2,
        ["mysql", "SQLite", "PostgreSQL", "SQL Server"],
        setup=setup_district,
        stdin=f"mysql://sync:{PASSWORD}@db.example.org/elm\n",
    ),
    "ado.net string without odbc driver 18": Case(
        ["db", "upgrade", "--school-id", "1"],
        1,
        ["ODBC Driver 18 for SQL Server", "install"],
        setup=_ado_net_school,
    ),
    "demo with no students": Case(
        ["demo", "--students", "0", "--folder", "{tmp}/demo"], 2, ["--students"]
    ),
    "demo folder that cannot be created": Case(
        ["demo", "--folder", "{tmp}/a-file/demo"], 2, ["{tmp}/a-file/demo", "--folder"]
    ),
    "sandbox port out of range": Case(["sandbox", "serve", "--port", "70000"], 2, ["--port"]),
    "school id beyond the database's integers": Case(
        ["sync", "--school-id", HUGE], 2, ["--school-id"], setup=_registered_school
    ),
    "district id beyond the database's integers": Case(
        ["school", "list", "--district-id", HUGE], 2, ["--district-id"], setup=_registered_school
    ),
    "history of a huge school id": Case(
        ["history", "--school-id", HUGE], 2, ["--school-id"], setup=_registered_school
    ),
    "school database at a revision this version does not know": Case(
        ["db", "upgrade", "--school-id", "1"],
        1,
        ["school database school-Elm.sqlite", "9999"],
        setup=_unknown_revision,
    ),
    "school database with tables but no version table": Case(
        ["db", "upgrade", "--school-id", "1"],
        1,
        ["school database school-Elm.sqlite", "alembic_version_school"],
        setup=_no_version_table,
        never=["error: SessionDb", "already exists"],
    ),
    "school database missing a column": Case(
        ["db", "upgrade", "--school-id", "1"],
        1,
        ["school database school-Elm.sqlite", "Students", "Grade"],
        setup=_missing_column,
        never=["school-Elm.sqlite): already at revision"],
    ),
    "school database server down": Case(
        ["db", "upgrade", "--school-id", "1"],
        1,
        ["school database school_elm"],
        setup=_server_down,
        never=["error: SessionDb"],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_is_one_clear_line(
    case: Case, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("ODBCSYSINI", str(tmp_path))  # no ODBC drivers registered here
    if case.setup is not None:
        case.setup(capsys)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
    code, text = run(capsys, argv, stdin=case.stdin)
    assert code == case.code, text
    for fragment in case.says:
        assert fragment.replace("{tmp}", str(tmp_path)) in text, text
    for fragment in [*case.never, "Traceback", "internal error", PASSWORD]:
        assert fragment not in text, text
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    assert len(errors) <= 2, text  # argparse adds its usage line; we add one line


@pytest.mark.skipif(not shutil.which("chattr"), reason="needs chattr to make a file read-only")
def test_a_read_only_sqlite_file_is_named_read_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sqlite_school(capsys)
    for suffix in ("-wal", "-shm"):  # as an operator finds it: the last run closed cleanly
        Path(f"{school_file()}{suffix}").unlink(missing_ok=True)
    read_only = _make_read_only(school_file())
    try:
        code, text = run(capsys, ["sync", "--school-id", "1"])
        code_upgrade, upgrade_text = run(capsys, ["db", "upgrade", "--school-id", "1"])
    finally:
        read_only.undo()
    assert code == 1
    assert "read-only" in text and str(school_file()) in text, text
    assert "unable to open database file" not in text
    assert code_upgrade == 1
    assert "read-only" in upgrade_text and "Traceback" not in upgrade_text, upgrade_text


class _ReadOnly:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = os.geteuid() == 0
        if self.root:  # the owner's bits do not stop root; the immutable flag does
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if result.returncode != 0:
                pytest.skip(f"chattr +i failed here: {result.stderr.decode().strip()}")
        else:
            path.chmod(0o444)

    def undo(self) -> None:
        if self.root:
            subprocess.run(["chattr", "-i", str(self.path)], check=True)
        else:
            self.path.chmod(0o600)


def _make_read_only(path: Path) -> _ReadOnly:
    return _ReadOnly(path)
