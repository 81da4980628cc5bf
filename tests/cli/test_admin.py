"""Admin commands through the CLI entry point: db upgrade, district and school add/list."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from cleversync.cli import main
from cleversync.db.engines import engine_for

CLEVER_DISTRICT = "58da8a43cc70ab00017a1a87"
CLEVER_SCHOOL = "58da8c58155b940248000007"
OTHER_DISTRICT = "5b2ad81a709e300001e2cd7a"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data_dir() -> Path:
    return Path(os.environ["CleverSync__DataDir"])


@pytest.fixture
def ready(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    code, _, err = run(
        capsys,
        "district",
        "add",
        "--name",
        "Demo ISD",
        "--clever-id",
        CLEVER_DISTRICT,
        "--prefix",
        "Demo-ISD",
    )
    assert code == 0, err


def secrets(data_dir: Path) -> dict[str, str]:
    return json.loads((data_dir / "secrets.json").read_text())


def test_db_upgrade_creates_sessiondb_on_a_fresh_machine(capsys, data_dir: Path) -> None:
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0
    sqlite_file = (data_dir / "sessiondb.sqlite").resolve()
    assert f"SessionDb (SQLite file {sqlite_file}): upgraded from empty to revision" in out
    url = secrets(data_dir)["CleverSyncSOS--SessionDb--ConnectionString"]
    assert url == f"sqlite:///{(data_dir / 'sessiondb.sqlite').resolve()}"
    assert {"Districts", "Schools", "SyncHistory"} <= set(
        inspect(engine_for(url)).get_table_names()
    )
    code, out, _ = run(capsys, "db", "upgrade")
    assert (code, "already at revision" in out) == (0, True)


def test_commands_before_db_upgrade_say_what_to_do(capsys) -> None:
    code, _, err = run(capsys, "district", "list")
    assert code == 1
    assert "run 'cleversync db upgrade' first" in err


def test_district_add_and_list(capsys, ready) -> None:
    code, out, _ = run(capsys, "district", "list")
    assert code == 0
    assert "Demo ISD" in out and CLEVER_DISTRICT in out and "Demo-ISD" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["--name", "Again", "--clever-id", CLEVER_DISTRICT, "--prefix", "Other"],
            "already registered",
        ),
        (
            ["--name", "Again", "--clever-id", OTHER_DISTRICT, "--prefix", "demo-isd"],
            "already used by 'Demo-ISD'",
        ),
        (
            ["--name", "Again", "--clever-id", OTHER_DISTRICT, "--prefix", "Bad Prefix"],
            "only letters",
        ),
        (["--name", "Again", "--clever-id", "not/an/id", "--prefix", "Fine"], "not a Clever id"),
        (["--name", "Again", "--clever-id", "abc", "--prefix", "Fine"], "24 hexadecimal digits"),
        (["--name", "Again", "--clever-id", "d1", "--prefix", "Fine"], "24 hexadecimal digits"),
        (
            ["--name", "Again", "--clever-id", CLEVER_DISTRICT[:-1] + "g", "--prefix", "Fine"],
            "24 hexadecimal digits",
        ),
        (
            ["--name", "Again", "--clever-id", CLEVER_DISTRICT + "0", "--prefix", "Fine"],
            "24 hexadecimal digits",
        ),
        (["--name", "   ", "--clever-id", OTHER_DISTRICT, "--prefix", "Fine"], "must not be empty"),
        (
            ["--name", "x" * 201, "--clever-id", OTHER_DISTRICT, "--prefix", "Fine"],
            "longer than 200",
        ),
    ],
)
def test_district_add_rejects_bad_input_with_exit_2(
    capsys, ready, argv: list[str], fragment: str
) -> None:
    code, _, err = run(capsys, "district", "add", *argv)
    assert code == 2
    assert fragment in err


def test_school_add_wires_a_local_sqlite_database(capsys, ready, data_dir: Path) -> None:
    code, out, err = run(
        capsys,
        "school",
        "add",
        "--district-id",
        "1",
        "--clever-id",
        CLEVER_SCHOOL,
        "--name",
        "Pineapple Elementary",
        "--prefix",
        "Pineapple",
    )
    assert code == 0, err
    assert "Registered school 1" in out
    url = secrets(data_dir)["CleverSyncSOS--Pineapple--ConnectionString"]
    assert url == f"sqlite:///{(data_dir / 'school-Pineapple.sqlite').resolve()}"
    code, out, _ = run(capsys, "db", "upgrade", "--school-id", "1")
    assert code == 0 and "upgraded from empty" in out
    assert "Students" in inspect(engine_for(url)).get_table_names()
    code, out, _ = run(capsys, "school", "list", "--district-id", "1")
    assert code == 0
    assert "Pineapple Elementary" in out and "school-Pineapple.sqlite" in out


def test_school_add_reads_the_connection_string_from_stdin(
    capsys, ready, data_dir: Path, monkeypatch
) -> None:
    monkeypatch.setattr(
        sys,
        "stdin",
        io.StringIO(
            "Server=tcp:sos.database.windows.net,1433;Initial Catalog=School_Lincoln_Db;User ID=u;Password=pw-secret-42;\n"
        ),
    )
    code, out, err = run(
        capsys,
        "school",
        "add",
        "--district-id",
        "1",
        "--clever-id",
        CLEVER_SCHOOL,
        "--name",
        "Lincoln",
        "--prefix",
        "Lincoln",
        "--connection-string-stdin",
    )
    assert code == 0, err
    assert "database School_Lincoln_Db" in out
    assert "pw-secret-42" not in out + err
    assert secrets(data_dir)["CleverSyncSOS--Lincoln--ConnectionString"].endswith(
        "Password=pw-secret-42;"
    )


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["--district-id", "9", "--clever-id", "s1", "--name", "X", "--prefix", "X"],
            "no district has id 9",
        ),
        (
            ["--district-id", "1", "--clever-id", "s1", "--name", "X", "--prefix", "X_1"],
            "only letters",
        ),
        (
            ["--district-id", "1", "--clever-id", "s1", "--name", "X", "--prefix", "demo-isd"],
            "already used",
        ),
        (
            ["--district-id", "1", "--clever-id", "s1", "--name", "X", "--prefix", "AdminPortal"],
            "reserved",
        ),
        (
            [
                "--district-id",
                "1",
                "--clever-id",
                "s1",
                "--name",
                "X",
                "--prefix",
                "X",
                "--database-name",
                "d" * 101,
            ],
            "longer than 100",
        ),
    ],
)
def test_school_add_rejects_bad_input_with_exit_2(
    capsys, ready, argv: list[str], fragment: str
) -> None:
    code, _, err = run(capsys, "school", "add", *argv)
    assert code == 2
    assert fragment in err


def test_school_add_rejects_a_duplicate_clever_id(capsys, ready) -> None:
    base = ["school", "add", "--district-id", "1", "--clever-id", CLEVER_SCHOOL, "--name", "A"]
    assert run(capsys, *base, "--prefix", "School-A")[0] == 0
    code, _, err = run(capsys, *base, "--prefix", "School-B")
    assert code == 2 and "already registered" in err


def test_all_schools_upgrade_goes_on_past_a_broken_school(capsys, ready, data_dir: Path) -> None:
    for prefix, clever in [("Alpha", "s1"), ("Beta", "s2"), ("Gamma", "s3")]:
        assert (
            run(
                capsys,
                "school",
                "add",
                "--district-id",
                "1",
                "--clever-id",
                clever,
                "--name",
                prefix,
                "--prefix",
                prefix,
            )[0]
            == 0
        )
    store = secrets(data_dir)
    del store["CleverSyncSOS--Beta--ConnectionString"]
    (data_dir / "secrets.json").write_text(json.dumps(store))
    code, out, err = run(capsys, "db", "upgrade", "--all-schools")
    assert code == 1
    assert "school 1 (Alpha" in out and "school 3 (Gamma" in out
    assert "CleverSyncSOS--Beta--ConnectionString" in err
    assert "could not upgrade: 2 (Beta)" in err


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["db", "upgrade", "--school-id", "1", "--all-schools"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["school", "add", "--district-id", "one"])
    assert info.value.code == 2


def test_bad_configuration_is_reported(capsys, monkeypatch) -> None:
    monkeypatch.setenv("CleverSync__Sync__PageSize", "0")
    code, _, err = run(capsys, "district", "list")
    assert code == 1
    assert "CleverSync__Sync__PageSize" in err


def test_console_script_runs_as_a_module(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cleversync", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "db" in result.stdout and "district" in result.stdout and "school" in result.stdout


def test_an_unreachable_sessiondb_is_reported_not_a_crash(capsys, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "secrets.json").write_text(
        json.dumps(
            {
                "CleverSyncSOS--SessionDb--ConnectionString": "postgresql+psycopg://sync:pw-never-shown@127.0.0.1:1/sessiondb"
            }
        )
    )
    code, _, err = run(capsys, "district", "list")
    assert code == 1
    assert "internal error" not in err
    assert "SessionDb" in err
    assert "pw-never-shown" not in err
