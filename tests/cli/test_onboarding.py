"""Onboarding through the CLI entry point: a school's connection string set by command, the
many-schools path with SessionDb on a server, the district id's form and the DataDir rules."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from cleversync.sandbox import Sandbox
from cleversync.secrets import names
from cleversync.secrets.local import LocalSecretStore
from tests.cli.test_operate import add_district, cli, env, registered, sandbox  # noqa: F401 (fixtures)

PASSWORD = "Sup3r-Secret-Pa55word"  # a test value, checked never to be shown


def data_dir() -> Path:
    return Path(os.environ["CleverSync__DataDir"])


def stored() -> dict[str, str]:
    return json.loads((data_dir() / "secrets.json").read_text())


def school_secret(prefix: str) -> str:
    return names.connection_string(prefix)


def set_connection_string(
    capsys: pytest.CaptureFixture[str], value: str, *extra: str, school_id: str = "1"
) -> tuple[int, str, str]:
    return cli(
        capsys,
        "-vv",
        "school",
        "set-connection-string",
        "--school-id",
        school_id,
        *extra,
        stdin=value,
    )


@pytest.fixture
def first(registered: Sandbox, capsys: pytest.CaptureFixture[str]) -> str:  # noqa: F811
    """School 1's prefix, with its (local SQLite) connection string as registered."""
    from cleversync.services import Services
    from cleversync.settings import Settings

    services = Services(Settings.load())
    try:
        return services.registry.get_school(1).prefix
    finally:
        services.close()


def test_set_connection_string_to_a_working_postgresql_database(
    first: str, capsys, pg_server
) -> None:
    url = pg_server.create_database("school")
    database = url.rsplit("/", 1)[1]
    code, out, err = set_connection_string(capsys, url + "\n")
    assert code == 0, err
    assert f"Connected: postgresql 127.0.0.1:{pg_server.port}, database {database}" in out
    assert f"Database name label: school-{first}.sqlite -> {database}" in out
    assert stored()[school_secret(first)] == url
    code, out, _ = cli(capsys, "school", "list")
    assert database in out
    # Its tables, then a sync into it.
    code, out, err = cli(capsys, "db", "upgrade", "--school-id", "1")
    assert code == 0, err
    assert f"postgresql 127.0.0.1:{pg_server.port}, database {database}" in out
    code, out, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 0, err


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "no connection string on standard input"),
        ("   \n", "no connection string on standard input"),
        ("not a connection string\n", "the connection string on standard input"),
        ("mysql://u@h/db\n", "the connection string on standard input"),
    ],
)
def test_set_connection_string_rejects_bad_input_and_stores_nothing(
    first: str, capsys, value: str, fragment: str
) -> None:
    before = stored()
    code, out, err = set_connection_string(capsys, value)
    assert code == 2, out + err
    assert fragment in err
    assert "nothing was stored" in err
    assert stored() == before


def test_a_connection_string_that_cannot_connect_is_not_stored_nor_shown(
    first: str, capsys, pg_server, caplog: pytest.LogCaptureFixture
) -> None:
    before = stored()
    caplog.set_level(logging.DEBUG)
    for value in (
        f"postgresql+psycopg://sync:{PASSWORD}@127.0.0.1:1/nowhere",
        f"postgresql+psycopg://sync:{PASSWORD}@127.0.0.1:{pg_server.port}/no_such_database",
    ):
        code, out, err = set_connection_string(capsys, value + "\n")
        assert code == 1, out + err
        assert "school 1's database" in err and "nothing was stored" in err
        assert "--no-connect" in err
        assert PASSWORD not in out + err + caplog.text
        assert stored() == before


def test_no_connect_stores_it_untried_and_never_echoes_the_password(
    first: str, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ado = (
        "Server=tcp:sos.database.windows.net,1433;Initial Catalog=Lincoln-Elementary;"
        f"User ID=sync;Password={PASSWORD};Encrypt=True;"
    )
    code, out, err = set_connection_string(capsys, ado + "\n", "--no-connect")
    assert code == 0, err
    assert "Not tried (--no-connect): SQL Server tcp:sos.database.windows.net,1433" in out
    assert "Database name label" in out and "Lincoln-Elementary" in out
    assert stored()[school_secret(first)] == ado
    assert PASSWORD not in out + err + caplog.text
    code, out, err = cli(capsys, "school", "list")
    assert "Lincoln-Elementary" in out and PASSWORD not in out
    # Tried (on loopback, nothing listening): refused, whether or not this machine has the
    # ODBC driver; the stored one stays.
    loopback = ado.replace("sos.database.windows.net,1433", "127.0.0.1,1")
    code, out, err = set_connection_string(capsys, loopback + "\n")
    assert code == 1, out + err
    assert "nothing was stored" in err
    assert PASSWORD not in out + err + caplog.text
    assert stored()[school_secret(first)] == ado


def test_a_sqlite_file_to_be_created_is_accepted_when_its_folder_exists(
    first: str, capsys, tmp_path: Path
) -> None:
    file = tmp_path / "new-school.sqlite"
    code, out, err = set_connection_string(capsys, f"sqlite:///{file}\n")
    assert code == 0, err
    assert f"SQLite file {file} does not exist yet" in out
    code, out, err = cli(capsys, "db", "upgrade", "--school-id", "1")
    assert code == 0, err
    assert f"SQLite file {file}" in out and file.exists()
    code, out, err = set_connection_string(capsys, f"sqlite:///{tmp_path / 'no' / 'x.sqlite'}\n")
    assert code == 1
    assert f"the folder {tmp_path / 'no'}" in err


def test_a_relative_sqlite_path_is_stored_where_the_command_found_it(
    first: str, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'sqlite:///school.sqlite' typed in one folder must not name another file for a
    sync run started elsewhere (the Functions host, a timer): it is stored absolute."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    code, out, err = set_connection_string(capsys, "sqlite:///rel-school.sqlite\n")
    assert code == 0, err
    assert f"SQLite file {here / 'rel-school.sqlite'}" in out
    assert stored()[school_secret(first)] == f"sqlite:///{here / 'rel-school.sqlite'}"
    monkeypatch.chdir(tmp_path)  # elsewhere, the same file
    code, out, err = cli(capsys, "db", "upgrade", "--school-id", "1")
    assert code == 0, err
    assert (here / "rel-school.sqlite").exists() and not (tmp_path / "rel-school.sqlite").exists()


def test_set_connection_string_for_an_unknown_school(first: str, capsys) -> None:
    code, _, err = set_connection_string(capsys, "sqlite:///x\n", school_id="99")
    assert code == 2 and "no school has id 99" in err


def test_fifty_schools_path_with_sessiondb_on_a_server(
    env: Sandbox,  # noqa: F811
    capsys,
    pg_server,
) -> None:
    """The README's 'Onboarding many schools' path: SessionDb on a server (PostgreSQL here,
    Azure SQL in production), discover --register, one connection string per school, then
    db upgrade --all-schools and a sync."""
    store = LocalSecretStore(data_dir() / "secrets.json", cache_seconds=0)
    store.set(names.SESSIONDB_CONNECTION_STRING, pg_server.create_database("session"))
    district = env.districts[0]
    assert cli(capsys, "db", "upgrade")[0] == 0
    assert not (data_dir() / "sessiondb.sqlite").exists()
    add_district(capsys, district)
    code, out, err = cli(capsys, "school", "discover", "--district-id", "1", "--register")
    assert code == 0, err
    assert "Registered 2 school(s)" in out
    assert "2 of them have no connection string yet" in out
    assert "cleversync school set-connection-string --school-id N" in out
    secrets = stored()
    assert not [k for k in secrets if k.endswith("--ConnectionString") and "SessionDb" not in k]
    assert "sqlite" not in json.dumps(secrets)
    # Before the strings are given, db upgrade --all-schools names the schools that lack one.
    code, out, err = cli(capsys, "db", "upgrade", "--all-schools")
    assert code == 1
    assert "could not upgrade: 1 (" in err and "ConnectionString" in err
    for school_id in ("1", "2"):
        url = pg_server.create_database("school")
        code, out, err = set_connection_string(capsys, url + "\n", school_id=school_id)
        assert code == 0, err
    code, out, err = cli(capsys, "db", "upgrade", "--all-schools")
    assert code == 0, err
    assert out.count("upgraded from empty") == 2
    code, out, err = cli(capsys, "sync")
    assert code == 0, err
    assert not list(data_dir().glob("*.sqlite"))


def test_db_upgrade_for_a_school_never_creates_sessiondb(capsys, tmp_path: Path) -> None:
    for argv in (["--school-id", "7"], ["--all-schools"]):
        code, out, err = cli(capsys, "db", "upgrade", *argv)
        assert code == 1, out
        assert "SessionDb is not set up" in err and "nothing was created" in err
        assert f"local secrets file {data_dir() / 'secrets.json'}" in err
        assert "'cleversync db upgrade' (no school option)" in err
        assert not (data_dir() / "sessiondb.sqlite").exists()
        assert not (data_dir() / "secrets.json").exists()


def test_messages_name_files_by_their_absolute_path(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CleverSync__DataDir", "relative-data")
    absolute = tmp_path / "relative-data"
    code, _, err = cli(capsys, "district", "list")
    assert code == 1
    assert f"local secrets file {absolute / 'secrets.json'}" in err
    code, out, _ = cli(capsys, "db", "upgrade")
    assert code == 0
    assert f"SessionDb (SQLite file {absolute / 'sessiondb.sqlite'})" in out
    district = ["--name", "D", "--clever-id", "5b2ad81a709e300001e2cd7a", "--prefix", "Demo"]
    assert cli(capsys, "district", "add", *district)[0] == 0
    school = ["--district-id", "1", "--clever-id", "s1", "--name", "S", "--prefix", "S"]
    assert cli(capsys, "school", "add", *school)[0] == 0
    code, out, err = cli(capsys, "db", "upgrade", "--school-id", "1")
    assert code == 0, err
    assert f"(S, database school-S.sqlite, SQLite file {absolute / 'school-S.sqlite'})" in out
    # A school database whose tables are gone is named by its absolute path too.
    (absolute / "school-S.sqlite").unlink()
    (absolute / "school-S.sqlite").touch(mode=0o600)
    code, out, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 1
    assert f"school database school-S.sqlite (SQLite file {absolute / 'school-S.sqlite'})" in out
    (absolute / "sessiondb.sqlite").unlink()
    code, _, err = cli(capsys, "district", "list")
    assert code == 1
    assert f"SQLite database file {absolute / 'sessiondb.sqlite'} does not exist" in err


def test_a_missing_secrets_file_named_by_the_setting_is_an_error(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "typo" / "secrets.json"
    monkeypatch.setenv("CleverSync__Secrets__File", str(missing))
    code, out, err = cli(capsys, "health")
    assert code == 1
    assert "CleverSync is Unhealthy" in out
    assert "secretStore: Unhealthy" in out
    assert f"reason: the local secrets file {missing} named by CleverSync__Secrets__File" in out
    code, _, err = cli(capsys, "db", "upgrade")
    assert code == 1
    assert "does not exist" in err and "CleverSync__Secrets__File" in err
    assert not missing.exists() and not missing.parent.exists()
    # Once it exists (empty), it is the store.
    missing.parent.mkdir()
    missing.write_text("{}")
    missing.chmod(0o600)
    assert cli(capsys, "db", "upgrade")[0] == 0
    assert names.SESSIONDB_CONNECTION_STRING in json.loads(missing.read_text())


def test_connection_strings_set_at_once_are_all_stored(capsys, tmp_path: Path) -> None:
    """An operator's loop run in parallel (`... &`): every process's write is kept."""
    import subprocess
    import sys

    assert cli(capsys, "db", "upgrade")[0] == 0
    district = ["--name", "D", "--clever-id", "5b2ad81a709e300001e2cd7a", "--prefix", "Demo"]
    assert cli(capsys, "district", "add", *district)[0] == 0
    count = 4
    for n in range(1, count + 1):
        school = ["--district-id", "1", "--clever-id", f"s{n}", "--name", f"S{n}"]
        assert cli(capsys, "school", "add", *school, "--prefix", f"S{n}")[0] == 0
    wanted = {n: f"sqlite:///{tmp_path / f'elsewhere-{n}.sqlite'}" for n in range(1, count + 1)}
    command = [sys.executable, "-m", "cleversync", "school", "set-connection-string"]
    command.append("--school-id")
    procs = [
        subprocess.Popen(
            [*command, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for n in wanted
    ]
    for proc, value in zip(procs, wanted.values(), strict=True):
        assert proc.stdin is not None
        proc.stdin.write(value + "\n")
        proc.stdin.close()
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    secrets = stored()
    for n, value in wanted.items():
        assert secrets[school_secret(f"S{n}")] == value
