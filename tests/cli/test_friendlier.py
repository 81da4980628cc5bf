"""The CLI's manners, through its entry point: health reasons in text, history order and
status case, -v after the command, full messages after the sync summary, FULL SYNC NEXT, a
long rate-limit wait announced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleversync.sandbox import Sandbox
from tests.cli.test_operate import add_district, cli, env, registered, sandbox  # noqa: F401 (fixtures)


def test_text_health_gives_each_failing_checks_reason(capsys) -> None:
    code, out, _ = cli(capsys, "health")
    assert code == 1
    lines = out.splitlines()
    at = lines.index("  sessionDb: Unhealthy (reachable=False)")
    assert lines[at + 1].startswith("    reason: SessionDb is not set up")
    assert "run 'cleversync db upgrade' first" in lines[at + 1]
    at = lines.index("  cleverAuth: Skipped")
    assert lines[at + 1] == "    reason: the districts could not be read"
    # A healthy check has no reason line.
    at = lines.index("  configuration: Healthy (store=local file)")
    assert not lines[at + 1].startswith("    reason")


def test_history_is_newest_first_and_status_ignores_case(registered: Sandbox, capsys) -> None:  # noqa: F811
    assert cli(capsys, "sync")[0] == 0
    assert cli(capsys, "sync", "--school-id", "1")[0] == 0
    code, out, _ = cli(capsys, "history", "--json")
    rows = json.loads(out)
    assert len(rows) == 9  # the first sync of two schools, then one school again
    starts = [row["SyncStartTime"] for row in rows]
    assert starts == sorted(starts, reverse=True)
    assert {r["SyncId"] for r in rows[:3]} == {7, 8, 9}  # the last run's rows come first
    code, out, _ = cli(capsys, "history")
    assert [int(line.split()[0]) for line in out.splitlines()[2:5]] == [9, 8, 7]
    for spelling in ("success", "SUCCESS", "Success"):
        code, out, err = cli(capsys, "history", "--status", spelling, "--json")
        assert code == 0, err
        assert len(json.loads(out)) == len(rows)
    code, out, _ = cli(capsys, "history", "--status", "failed", "--json")
    assert json.loads(out) == []
    with pytest.raises(SystemExit) as usage:
        cli(capsys, "history", "--status", "fine")
    assert usage.value.code == 2
    err = capsys.readouterr().err
    assert "'fine' is not a status" in err and "Success" in err


def test_verbosity_works_after_the_command_too(registered: Sandbox) -> None:  # noqa: F811
    def stderr(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cleversync", *argv],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    quiet = stderr("sync", "--school-id", "1")
    before = stderr("-v", "sync", "--school-id", "1")
    after = stderr("sync", "--school-id", "1", "-v")
    assert " INFO " in before and " INFO " in after and " INFO " not in quiet
    assert " DEBUG " not in after
    assert " DEBUG " in stderr("sync", "--school-id", "1", "-vv")
    assert " DEBUG " in stderr("-v", "sync", "--school-id", "1", "-v")  # the counts add up


def test_full_sync_next_is_yes_for_a_school_never_synced(registered: Sandbox, capsys) -> None:  # noqa: F811
    def full_next() -> list[str]:
        code, out, _ = cli(capsys, "school", "list")
        assert code == 0
        return [line.split()[-1] for line in out.splitlines()[2:]]

    assert full_next() == ["yes", "yes"]
    assert cli(capsys, "sync", "--school-id", "1")[0] == 0
    assert full_next() == ["no", "yes"]
    assert cli(capsys, "school", "flag-full-sync", "--school-id", "1")[0] == 0
    assert full_next() == ["yes", "yes"]


def test_the_sync_summary_shows_the_full_error_text(registered: Sandbox, capsys) -> None:  # noqa: F811
    secrets_file = Path(os.environ["CleverSync__DataDir"]) / "secrets.json"
    stored = json.loads(secrets_file.read_text())
    school_secret = next(k for k in stored if k.endswith("--ConnectionString") and "Sess" not in k)
    password = "Pa55-never-shown-anywhere"
    stored[school_secret] = f"postgresql+psycopg://sync:{password}@127.0.0.1:1/gone"
    secrets_file.write_text(json.dumps(stored))
    code, out, err = cli(capsys, "sync", "--json")
    assert code == 1
    errors = {
        e["error"]
        for s in json.loads(out)["schools"]
        for e in s["entities"]
        if e["error"] and e["status"] == "Failed"
    } | {s["error"] for s in json.loads(out)["schools"] if s["error"]}
    long = [e for e in errors if len(e) > 80]
    assert long, errors
    code, out, err = cli(capsys, "sync")
    assert code == 1
    for message in long:
        assert message in out  # in full, below the table
    assert password not in out + err


@pytest.fixture
def slow_sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(
        seed=5, districts=1, schools=1, students=5, teachers=2, sections=2, rate_limit=3,
        rate_window_seconds=6,
    )  # fmt: skip
    with sb.serve() as running:
        sb.running = running  # type: ignore[attr-defined]
        yield sb


def test_a_long_rate_limit_wait_is_announced_at_default_verbosity(
    slow_sandbox: Sandbox, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = slow_sandbox.running  # type: ignore[attr-defined]
    monkeypatch.setenv("CleverSync__Clever__ApiBaseUrl", running.api_base_url)
    monkeypatch.setenv("CleverSync__Clever__TokenUrl", running.token_url)
    monkeypatch.setenv("CleverSync__Retry__CleverApi__BackoffBase", "0")
    district = slow_sandbox.districts[0]
    assert cli(capsys, "db", "upgrade")[0] == 0
    add_district(capsys, district, name="D", prefix="Slow")
    school = district.schools[0]
    argv = ["--district-id", "1", "--clever-id", school.id, "--name", "S", "--prefix", "S"]
    assert cli(capsys, "school", "add", *argv)[0] == 0
    assert cli(capsys, "db", "upgrade", "--all-schools")[0] == 0
    code, out, err = cli(capsys, "sync")
    assert code == 0, out + err
    assert "Clever rate limit: waiting" in err
    assert "for the next window" in err


def _on_a_terminal(*argv: str) -> tuple[int, str, str]:
    """Run the CLI with its standard error on a pseudo-terminal: (exit, stdout, terminal)."""
    import pty

    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cleversync", *argv],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            env=os.environ.copy(),
            timeout=120,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end is closed: all was read
                break
            if not chunk:
                break
            shown += chunk
        return done.returncode, done.stdout, shown.decode(errors="replace")
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)


def test_long_commands_show_progress_on_a_terminal_only(registered: Sandbox, capsys) -> None:  # noqa: F811
    code, out, shown = _on_a_terminal("db", "upgrade", "--all-schools")
    assert code == 0, shown
    assert "[1/2] upgrading" in shown and "[2/2] upgrading" in shown
    assert "\x1b[2K" not in out  # results on stdout stay plain
    code, out, err = cli(capsys, "db", "upgrade", "--all-schools")
    assert code == 0 and "upgrading" not in out + err and "\x1b" not in out + err
    assert cli(capsys, "school", "remove", "--school-id", "2")[0] == 0
    code, out, shown = _on_a_terminal("school", "discover", "--district-id", "1", "--register")
    assert code == 0, shown
    assert "Reading district" in shown and "[1/1] registering" in shown
    assert "Registered 1 school(s)" in out
