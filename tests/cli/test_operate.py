"""The operator's commands end to end through the CLI entry point, against the sandbox."""

from __future__ import annotations

import gc
import io
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from cleversync.cli import main
from cleversync.sandbox import DistrictInfo, Sandbox
from cleversync.services import GC_THRESHOLDS


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=11, districts=1, schools=2, students=30, teachers=4, sections=5)
    with sb.serve() as running:
        sb.running = running  # type: ignore[attr-defined]
        yield sb


@pytest.fixture
def env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    monkeypatch.setenv("CleverSync__Clever__ApiBaseUrl", sandbox.running.api_base_url)
    monkeypatch.setenv("CleverSync__Clever__TokenUrl", sandbox.running.token_url)
    monkeypatch.setenv("CleverSync__Retry__CleverApi__BackoffBase", "0")
    return sandbox


def cli(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, str, str]:
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv))
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return code, out, err


def add_district(
    capsys: pytest.CaptureFixture[str],
    district: DistrictInfo,
    *,
    name: str | None = None,
    prefix: str = "Demo",
) -> None:
    """``district add`` (as district 1, in a migrated SessionDb) and its credentials."""
    argv = ["--name", name or district.name, "--clever-id", district.id, "--prefix", prefix]
    assert cli(capsys, "district", "add", *argv)[0] == 0
    code, _, err = cli(
        capsys,
        "district",
        "set-credentials",
        "--district-id",
        "1",
        "--client-id",
        district.client_id,
        stdin=district.client_secret + "\n",
    )
    assert code == 0, err


@pytest.fixture
def registered(env: Sandbox, capsys: pytest.CaptureFixture[str]) -> Sandbox:
    assert cli(capsys, "db", "upgrade")[0] == 0
    add_district(capsys, env.districts[0])
    code, _, err = cli(capsys, "school", "discover", "--district-id", "1", "--register")
    assert code == 0, err
    assert cli(capsys, "db", "upgrade", "--all-schools")[0] == 0
    return env


def test_set_credentials_reads_the_secret_from_stdin_and_never_prints_it(
    env: Sandbox, capsys, tmp_path: Path
) -> None:
    district = env.districts[0]
    cli(capsys, "db", "upgrade")
    cli(capsys, "district", "add", "--name", "D", "--clever-id", district.id, "--prefix", "Demo")
    code, out, err = cli(
        capsys,
        "district",
        "set-credentials",
        "--district-id",
        "1",
        "--verify",
        stdin=f"{district.client_id}\n{district.client_secret}\n",
    )
    assert code == 0, err
    assert "Verified" in out
    assert district.client_secret not in out + err
    import os

    secrets = json.loads((Path(os.environ["CleverSync__DataDir"]) / "secrets.json").read_text())
    assert secrets["CleverSyncSOS--Demo--ClientId"] == district.client_id
    assert secrets["CleverSyncSOS--Demo--ClientSecret"] == district.client_secret


def test_set_credentials_with_a_wrong_secret_fails_verification_and_stores_nothing(
    env: Sandbox, capsys
) -> None:
    import os

    district = env.districts[0]
    cli(capsys, "db", "upgrade")
    cli(capsys, "district", "add", "--name", "D", "--clever-id", district.id, "--prefix", "Demo")
    good = [district.client_id, district.client_secret]
    assert (
        cli(
            capsys,
            "district",
            "set-credentials",
            "--district-id",
            "1",
            "--verify",
            stdin="\n".join(good) + "\n",
        )[0]
        == 0
    )
    code, out, err = cli(
        capsys,
        "district",
        "set-credentials",
        "--district-id",
        "1",
        "--client-id",
        district.client_id,
        "--verify",
        stdin="wrong-secret-123\n",
    )
    assert code == 1
    assert "refused the credentials" in err
    assert "nothing was stored" in err
    assert "wrong-secret-123" not in out + err
    secrets = json.loads((Path(os.environ["CleverSync__DataDir"]) / "secrets.json").read_text())
    assert secrets["CleverSyncSOS--Demo--ClientSecret"] == district.client_secret  # unchanged


def test_discover_lists_then_registers_with_valid_prefixes(env: Sandbox, capsys) -> None:
    district = env.districts[0]
    cli(capsys, "db", "upgrade")
    cli(capsys, "district", "add", "--name", "D", "--clever-id", district.id, "--prefix", "Demo")
    cli(
        capsys,
        "district",
        "set-credentials",
        "--district-id",
        "1",
        "--client-id",
        district.client_id,
        stdin=district.client_secret + "\n",
    )
    code, out, _ = cli(capsys, "school", "discover", "--district-id", "1")
    assert code == 0
    for school in district.schools:
        assert school.id in out
    assert "--register" in out
    code, out, _ = cli(capsys, "school", "discover", "--district-id", "1", "--register")
    assert code == 0
    assert "Registered 2 school(s)" in out
    code, out, _ = cli(capsys, "school", "list")
    for school in district.schools:
        assert school.name in out
    code, out, _ = cli(capsys, "school", "discover", "--district-id", "1", "--register")
    assert "Registered" not in out  # nothing new the second time


def test_sync_history_and_exit_statuses(registered: Sandbox, capsys) -> None:
    code, out, err = cli(capsys, "sync")
    assert code == 0, err
    assert "Full" in out and "Success" in out
    assert "Syncing 2 school(s)" in err  # progress goes to stderr
    code, out, _ = cli(capsys, "sync", "--school-id", "1", "--json")
    assert code == 0
    body = json.loads(out)
    assert body["status"] == "Success"
    assert [e["syncType"] for e in body["schools"][0]["entities"]] == ["Incremental"] * 3
    # A record that does not fit: Partial, exit 1.
    registered.add_student(
        registered.districts[0].schools[0].id, first_name="x" * 150, last_name="Long"
    )
    code, out, _ = cli(capsys, "sync", "--school-id", "1")
    assert code == 1
    assert "Partial" in out
    code, out, _ = cli(capsys, "history", "--school-id", "1", "--status", "Partial", "--json")
    rows = json.loads(out)
    assert [r["EntityType"] for r in rows] == ["Student"]
    assert rows[0]["RecordsFailed"] == 1
    code, out, _ = cli(capsys, "history", "--since", "2000-01-01")
    assert code == 0
    assert "SYNC" in out and "Partial" in out


def test_sync_turns_the_collector_back_on(registered: Sandbox, capsys) -> None:
    # `sync` holds the cyclic GC off while its modules load, then freezes them and turns it
    # on: a run must never go on without it, nor must a sync that stopped early.
    code, _, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 0, err
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    code, _, _ = cli(capsys, "sync", "--allow-mass-delete")  # refused before loading
    assert code == 2
    assert gc.isenabled()


def test_sync_usage_errors(registered: Sandbox, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sync", "--school-id", "1", "--district-id", "1"])
    assert info.value.code == 2
    assert cli(capsys, "sync", "--school-id", "99")[0] == 2
    assert cli(capsys, "sync", "--district-id", "99")[0] == 2


def test_flag_full_sync_makes_the_next_run_full(registered: Sandbox, capsys) -> None:
    cli(capsys, "sync")
    code, out, _ = cli(capsys, "school", "flag-full-sync", "--school-id", "2")
    assert code == 0
    code, out, _ = cli(capsys, "sync", "--json")
    modes = {s["schoolId"]: s["mode"] for s in json.loads(out)["schools"]}
    assert modes == {1: "events", 2: "full"}


def test_a_failed_sync_exits_1_with_the_reason(registered: Sandbox, capsys) -> None:
    registered.rotate_token(registered.districts[0].id)  # the app fetches the new token itself
    code, _, _ = cli(capsys, "sync")
    assert code == 0
    from cleversync.sandbox import Fault

    registered.faults.add(Fault("status", path="/v3.0/schools/*", status=503, times=None))
    code, out, _ = cli(capsys, "sync", "--full")
    assert code == 1
    assert "Failed" in out
    assert "HTTP 503" in out
    # No SMTP host on a laptop: the run's report is an .eml file in DataDir/outbox.
    [report] = sorted((Path(os.environ["CleverSync__DataDir"]) / "outbox").glob("*.eml"))
    message = message_from_bytes(report.read_bytes(), policy=policy.default)
    assert str(message["Subject"]).startswith("CleverSync: 0 schools synced, ")
    assert "cleversync sync --school-id 1" in report.read_text()


def test_demo_runs_the_whole_cycle(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    code, out, err = cli(capsys, "demo", "--folder", str(folder), "--students", "60")
    assert code == 0, out + err
    for step in (
        "$ cleversync db upgrade",
        "$ cleversync district set-credentials",
        "$ cleversync school discover",
        "Incremental",
        "$ cleversync school flag-full-sync --school-id 3",
    ):
        assert step in out
    assert (folder / "sessiondb.sqlite").exists()
    assert "graduated" in out
    assert out.rstrip().endswith(
        ".venv/bin/cleversync dashboard\nthen open http://127.0.0.1:8765/admin/ in a browser "
        "(Ctrl-C stops it)."
    )
    # Every run's report is an .eml file in the demo's outbox; the last one is shown.
    reports = sorted((folder / "outbox").glob("*.eml"))
    assert len(reports) == 3
    assert "=== 6. The run reports ===" in out
    assert "Subject: CleverSync: 3 schools synced" in out
    assert any(str(path) in out for path in reports)
    # The demo leaves its own files only, and can run again over them.
    code, _, _ = cli(capsys, "demo", "--folder", str(folder), "--students", "60")
    assert code == 0


def test_demo_refuses_a_folder_it_did_not_make(capsys, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, err = cli(capsys, "demo", "--folder", str(tmp_path))
    assert code == 2
    assert "was not made by the demo" in err
    assert (tmp_path / "precious.txt").exists()


def test_health_reports_each_check(registered: Sandbox, capsys, monkeypatch) -> None:
    code, out, _ = cli(capsys, "health", "--authenticate")
    assert code == 0
    assert "CleverSync is Healthy" in out
    code, out, _ = cli(capsys, "health", "--json")
    report = json.loads(out)
    assert report["status"] == "Healthy"
    assert set(report["checks"]) == {"configuration", "secretStore", "sessionDb", "cleverAuth"}
    assert report["checks"]["sessionDb"]["activeSchools"] == 2
    # The district's secret is rotated in Clever but not here: authentication fails.
    import os

    secrets_file = Path(os.environ["CleverSync__DataDir"]) / "secrets.json"
    stored = json.loads(secrets_file.read_text())
    stored["CleverSyncSOS--Demo--ClientSecret"] = "no-longer-valid-secret"
    secrets_file.write_text(json.dumps(stored))
    code, out, _ = cli(capsys, "health", "--authenticate")
    assert code == 1
    assert "CleverSync is Unhealthy" in out
    assert "refused the credentials" in out
    assert "no-longer-valid-secret" not in out
    monkeypatch.setenv("CleverSync__Sync__BatchSize", "5000")
    code, out, _ = cli(capsys, "health")
    assert code == 1
    assert "CleverSync__Sync__BatchSize" in out


def test_a_deactivated_school_is_left_out_of_runs(registered: Sandbox, capsys) -> None:
    code, out, _ = cli(capsys, "school", "deactivate", "--school-id", "2")
    assert code == 0
    assert "left out of every sync run" in out
    code, out, _ = cli(capsys, "sync", "--json")
    assert [s["schoolId"] for s in json.loads(out)["schools"]] == [1]
    code, _, err = cli(capsys, "sync", "--school-id", "2")
    assert code == 2
    assert "inactive" in err
    assert cli(capsys, "school", "activate", "--school-id", "2")[0] == 0
    code, out, _ = cli(capsys, "sync", "--json")
    assert [s["schoolId"] for s in json.loads(out)["schools"]] == [1, 2]


def test_small_usage_checks(registered: Sandbox, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["history", "--limit", "0"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "cleversync 0." in capsys.readouterr().out


def test_plain_http_to_a_remote_host_is_a_configuration_error(
    registered: Sandbox, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("CleverSync__Clever__ApiBaseUrl", "http://api.clever.com")
    code, _, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 1
    assert "CleverSync__Clever__ApiBaseUrl" in err
    assert "must use https" in err
    code, out, _ = cli(capsys, "health")
    assert code == 1
    assert "Unhealthy" in out
    monkeypatch.setenv("CleverSync__Clever__ApiBaseUrl", registered.running.api_base_url)
    code, out, _ = cli(capsys, "history", "--school-id", "1", "--json")
    assert (code, json.loads(out)) == (0, [])  # nothing ran, no Failed rows to count


def hold_leases(*school_ids: int) -> None:
    """Leases held by a live run elsewhere (another instance), in the CLI's SessionDb."""
    from sqlalchemy import create_engine, update

    from cleversync.db.schema import School

    path = Path(os.environ["CleverSync__DataDir"]) / "sessiondb.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    until = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=5)
    with engine.begin() as conn:
        conn.execute(
            update(School)
            .where(School.SchoolId.in_(school_ids))
            .values(SyncLeaseOwner="another-instance:7:abc", SyncLeaseExpiresAt=until)
        )
    engine.dispose()


def test_a_run_where_every_school_was_skipped_exits_1_saying_why(
    registered: Sandbox, capsys
) -> None:
    hold_leases(1, 2)
    code, out, _ = cli(capsys, "sync")
    assert code == 1
    verdict = out.strip().splitlines()[-1]
    assert ": Skipped in " in verdict and "(2 skipped)" in verdict
    assert "nothing was synced" in verdict
    assert "already being synced (by another-instance:7:abc" in out  # each school's reason
    code, out, _ = cli(capsys, "sync", "--school-id", "1")
    assert code == 1
    assert ": Skipped in " in out and "Success" not in out
    code, out, _ = cli(capsys, "sync", "--json")
    assert code == 1 and json.loads(out)["status"] == "Skipped"
