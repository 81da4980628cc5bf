"""District (de)activation and removal of schools and districts, through the CLI entry point,
with SessionDb on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cleversync.db.schema import District, School, SyncHistory, SyncRunSchool
from cleversync.sandbox import Sandbox
from cleversync.secrets import names
from cleversync.secrets.local import LocalSecretStore
from cleversync.services import Services
from cleversync.settings import Settings
from tests.cli.test_interrupt import set_lease
from tests.cli.test_operate import add_district, cli, env, sandbox  # noqa: F401 (fixtures)


def data_dir() -> Path:
    return Path(os.environ["CleverSync__DataDir"])


def use_sessiondb(request: pytest.FixtureRequest) -> None:
    """SessionDb on PostgreSQL when asked (a bare 'db upgrade' then migrates it)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_server").create_database()
        store = LocalSecretStore(data_dir() / "secrets.json", cache_seconds=0)
        store.set(names.SESSIONDB_CONNECTION_STRING, url)


def count(table: type, school_id: int | None = None) -> int:
    services = Services(Settings.load())
    try:
        query = select(func.count()).select_from(table)
        if school_id is not None:
            query = query.where(table.SchoolId == school_id)  # type: ignore[attr-defined]
        with services.session_engine().connect() as conn:
            return conn.scalar(query) or 0
    finally:
        services.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def synced(request: pytest.FixtureRequest, env: Sandbox, capsys) -> Sandbox:  # noqa: F811
    """Two schools registered and synced once (so both have history)."""
    use_sessiondb(request)
    district = env.districts[0]
    assert cli(capsys, "db", "upgrade")[0] == 0
    add_district(capsys, district)
    code, out, err = cli(capsys, "school", "discover", "--district-id", "1", "--register")
    assert code == 0, err
    if request.param == "postgresql":
        # Off SQLite, discover invents no connection strings: each school gets its own.
        assert "2 of them have no connection string yet" in out
        server = request.getfixturevalue("pg_server")
        for school_id in ("1", "2"):
            code, out, err = cli(
                capsys,
                "school",
                "set-connection-string",
                "--school-id",
                school_id,
                stdin=server.create_database() + "\n",
            )
            assert code == 0, err
    assert cli(capsys, "db", "upgrade", "--all-schools")[0] == 0
    code, _, err = cli(capsys, "sync")
    assert code == 0, err
    return env


def school_ids(capsys: pytest.CaptureFixture[str], *argv: str) -> list[int]:
    code, out, err = cli(capsys, "sync", "--json", *argv)
    assert code in (0, 1), err
    return [s["schoolId"] for s in json.loads(out)["schools"]]


def test_a_deactivated_district_is_left_out_of_runs_and_upgrades(synced: Sandbox, capsys) -> None:
    assert cli(capsys, "school", "deactivate", "--school-id", "2")[0] == 0
    code, out, _ = cli(capsys, "district", "deactivate", "--district-id", "1")
    assert code == 0
    assert "its 2 school(s) are left out of every sync run" in out
    code, out, _ = cli(capsys, "district", "list")
    assert out.splitlines()[0].split()[-1] == "ACTIVE" and out.splitlines()[2].endswith("no")
    code, out, _ = cli(capsys, "sync")
    assert code == 0
    assert "No active schools to sync" in out
    code, _, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 2
    assert "is in an inactive district" in err
    code, out, _ = cli(capsys, "school", "list")
    assert out.count("no (district)") == 2
    code, out, _ = cli(capsys, "db", "upgrade", "--all-schools")
    assert code == 0
    assert "school 1 (" in out and "skipped (its district is inactive)" in out
    code, out, _ = cli(capsys, "district", "activate", "--district-id", "1")
    assert code == 0
    # School 2 was deactivated on its own: it stays out.
    assert "1 school(s); 1 of them deactivated on their own stay out" in out
    assert school_ids(capsys) == [1]
    code, out, _ = cli(capsys, "db", "upgrade", "--all-schools")
    assert "school 2 (" in out and "skipped (inactive)" in out
    code, _, err = cli(capsys, "district", "deactivate", "--district-id", "9")
    assert code == 2 and "no district has id 9" in err


def test_school_remove_is_refused_while_it_has_history(synced: Sandbox, capsys) -> None:
    rows = count(SyncHistory, 1)
    assert rows == 3
    code, _, err = cli(capsys, "school", "remove", "--school-id", "1")
    assert code == 2
    assert "school 1 (" in err and "3 sync history row(s)" in err
    assert "--keep-history" in err and "--purge-history" in err
    assert count(SyncHistory, 1) == 3
    with pytest.raises(SystemExit) as usage:
        cli(capsys, "school", "remove", "--school-id", "1", "--keep-history", "--purge-history")
    assert usage.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_school_remove_keeping_its_history(synced: Sandbox, capsys) -> None:
    clever_id = synced.districts[0].schools[0].id
    code, out, err = cli(capsys, "school", "remove", "--school-id", "1", "--keep-history")
    assert code == 0, err
    assert "its sync history is kept" in out
    assert "No database was dropped" in out and "CleverSyncSOS--" in out
    assert count(SyncHistory, 1) == 3  # the rows and their school's key stay
    code, out, _ = cli(capsys, "school", "list")
    assert clever_id not in out
    assert school_ids(capsys) == [2]
    code, _, err = cli(capsys, "history", "--school-id", "1")
    assert code == 2 and "no school has id 1" in err  # hidden from lookups
    code, out, _ = cli(capsys, "history", "--json")
    assert {row["SchoolId"] for row in json.loads(out)} == {1, 2}
    code, out, _ = cli(capsys, "history")
    name = synced.districts[0].schools[0].name
    assert f"1 {name}"[:20] in out  # its rows still carry its name
    # Discovery shows it as removed and does not register it again.
    code, out, err = cli(capsys, "school", "discover", "--district-id", "1", "--register")
    assert code == 0, err
    assert "1 (removed)" in out and "Registered" not in out
    # Registering it again says how to finish removing it.
    argv = ["--district-id", "1", "--clever-id", clever_id, "--name", "Again", "--prefix", "Again"]
    argv.append("--connection-string-stdin")
    connection_string = f"sqlite:///{data_dir() / 'again.sqlite'}\n"
    code, _, err = cli(capsys, "school", "add", *argv, stdin=connection_string)
    assert code == 2
    assert "removed with its history kept" in err and "--purge-history" in err
    # ...which works on the removed school.
    code, out, err = cli(capsys, "school", "remove", "--school-id", "1", "--purge-history")
    assert code == 0, err
    assert count(SyncHistory, 1) == 0
    assert cli(capsys, "school", "add", *argv, stdin=connection_string)[0] == 0


def test_school_remove_purging_its_history_never_drops_its_database(
    synced: Sandbox, capsys
) -> None:
    store = LocalSecretStore(data_dir() / "secrets.json", cache_seconds=0)
    connection_string = store.get("CleverSyncSOS--" + _prefix(capsys, 1) + "--ConnectionString")
    assert connection_string
    code, out, err = cli(capsys, "school", "remove", "--school-id", "1", "--purge-history")
    assert code == 0, err
    assert "Deleted 3 sync history row(s)" in out
    assert count(SyncHistory, 1) == 0 and count(SyncRunSchool, 1) == 0
    assert count(SyncHistory, 2) == 3
    # The school's database is still there, with its rows.
    from sqlalchemy import text

    from cleversync.db.engines import engine_for

    engine = engine_for(connection_string)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text('SELECT COUNT(*) FROM "Students"')) > 0
    finally:
        engine.dispose()
    assert school_ids(capsys) == [2]
    code, _, err = cli(capsys, "school", "remove", "--school-id", "1", "--purge-history")
    assert code == 2 and "no school has id 1" in err


def _prefix(capsys: pytest.CaptureFixture[str], school_id: int) -> str:
    services = Services(Settings.load())
    try:
        return services.registry.get_school(school_id).prefix
    finally:
        services.close()


def test_a_school_without_history_is_removed_without_an_option(env: Sandbox, capsys) -> None:  # noqa: F811
    district = env.districts[0]
    assert cli(capsys, "db", "upgrade")[0] == 0
    argv = ["--name", "D", "--clever-id", district.id, "--prefix", "Demo"]
    assert cli(capsys, "district", "add", *argv)[0] == 0
    school = ["--district-id", "1", "--clever-id", district.schools[0].id, "--name", "S"]
    assert cli(capsys, "school", "add", *school, "--prefix", "S")[0] == 0
    code, out, err = cli(capsys, "school", "remove", "--school-id", "1")
    assert code == 0, err
    assert "Removed school 1 (S)." in out
    assert count(School) == 0
    code, out, err = cli(capsys, "district", "remove", "--district-id", "1")
    assert code == 0, err
    assert "District 1 (D) removed." in out and "CleverSyncSOS--Demo--ClientSecret" in out
    assert count(District) == 0


def test_removal_is_refused_while_a_sync_holds_the_lease(synced: Sandbox, capsys) -> None:
    set_lease(2, "elsewhere:4242:abcd")
    code, _, err = cli(capsys, "school", "remove", "--school-id", "2", "--purge-history")
    assert code == 1
    assert "is being synced now" in err and "elsewhere:4242:abcd" in err
    assert "release-lease" in err
    assert count(SyncHistory, 2) == 3
    # A district goes all or none: school 1 is not removed either.
    code, _, err = cli(capsys, "district", "remove", "--district-id", "1", "--purge-history")
    assert code == 1 and "is being synced now" in err
    assert count(School) == 2 and count(SyncHistory) == 6
    set_lease(2, None)
    code, out, err = cli(capsys, "district", "remove", "--district-id", "1", "--keep-history")
    assert code == 0, err
    assert "District 1 (" in out and "kept as removed" in out
    assert count(SyncHistory) == 6
    code, out, _ = cli(capsys, "district", "list")
    assert "No districts registered" in out
    code, out, _ = cli(capsys, "school", "list")
    assert "No schools registered" in out
    code, out, err = cli(capsys, "district", "remove", "--district-id", "1", "--purge-history")
    assert code == 0, err
    assert count(SyncHistory) == 0 and count(School) == 0 and count(District) == 0


def test_district_remove_is_refused_while_its_schools_have_history(synced: Sandbox, capsys) -> None:
    code, _, err = cli(capsys, "district", "remove", "--district-id", "1")
    assert code == 2
    assert "its 2 schools have 6 sync history row(s)" in err
    assert count(School) == 2


def test_two_removals_at_once_remove_once(synced: Sandbox) -> None:
    """Two operators remove the same school at the same moment: one removes it, the other
    says it is gone; neither fails with a database error."""
    command = [sys.executable, "-m", "cleversync", "school", "remove", "--school-id", "1"]
    procs = [
        subprocess.Popen(
            [*command, "--purge-history"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0, results
    if codes[1] != 0:
        err = next(err for code, _, err in results if code != 0)
        assert "no school has id 1" in err or "removed meanwhile" in err, err
        assert "Traceback" not in err and "internal error" not in err
    assert count(School) == 1 and count(SyncHistory, 1) == 0


def test_a_deactivated_districts_authentication_does_not_count_in_health(
    synced: Sandbox, capsys
) -> None:
    store = LocalSecretStore(data_dir() / "secrets.json", cache_seconds=0)
    store.set(names.client_secret("Demo"), "revoked-secret-value")
    code, out, _ = cli(capsys, "health", "--authenticate")
    assert code == 1 and "cleverAuth: Unhealthy" in out
    assert cli(capsys, "district", "deactivate", "--district-id", "1")[0] == 0
    code, out, _ = cli(capsys, "health", "--authenticate")
    assert code == 0, out
    assert "cleverAuth: Healthy" in out and "revoked-secret-value" not in out
