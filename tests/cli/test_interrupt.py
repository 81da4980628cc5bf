"""Ctrl-C, SIGTERM and stale leases: real `cleversync sync` processes against the sandbox
served over HTTP from the test, with SQLite files in tmp_path."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from cleversync.db.schema import School
from cleversync.db.sessiondb.history import History
from cleversync.db.sessiondb.lease import held_message
from cleversync.sandbox import Fault, Sandbox
from cleversync.services import Services
from cleversync.settings import Settings
from cleversync.timeutil import utcnow
from tests.cli.test_operate import cli, env, registered, sandbox  # noqa: F401 (fixtures)

FIRST_MESSAGE = "Stopping after the current batch (Ctrl-C again to stop now)"
# Small pages and batches: a batch boundary (where a stop takes effect) after every page;
# one school at a time, so that the second school has not started when the first stops.
SLOW_RUN = {
    "CleverSync__Sync__PageSize": "5",
    "CleverSync__Sync__BatchSize": "5",
    "CleverSync__Concurrency__MaxSchoolsInParallel": "1",
}


class Run:
    """A `python -m cleversync` process whose standard error is read line by line."""

    def __init__(self, *argv: str, extra_env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cleversync", *argv],
            env={**os.environ, **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 45) -> None:
        """Until a line of standard error holds ``text`` (fails if the process ends first)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"no {text!r} within {timeout} s; stderr: {''.join(self.err_lines)}")
            if line is None:
                pytest.fail(f"the process ended without {text!r}: {''.join(self.err_lines)}")
            if text in line:
                return

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code, out, "".join(self.err_lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def school_row(school_id: int) -> Any:
    services = Services(Settings.load())
    try:
        with services.session_engine().connect() as conn:
            return conn.execute(
                select(
                    School.SyncLeaseOwner, School.SyncLeaseExpiresAt, School.RequiresFullSync
                ).where(School.SchoolId == school_id)
            ).one()
    finally:
        services.close()


def set_lease(school_id: int, owner: str | None) -> None:
    services = Services(Settings.load())
    expires = utcnow() + timedelta(minutes=5) if owner else None
    try:
        with services.session_engine().begin() as conn:
            conn.execute(
                update(School)
                .where(School.SchoolId == school_id)
                .values(SyncLeaseOwner=owner, SyncLeaseExpiresAt=expires)
            )
    finally:
        services.close()


def open_rows(school_id: int) -> None:
    """History rows of a run that was killed before it could close them."""
    services = Services(Settings.load())
    try:
        History(
            services.session_engine(),
            policy=services.settings.retry.database,
            redactor=services.redactor,
        ).open_run(
            school_id=school_id,
            entities=["Student", "Teacher", "Section"],
            sync_type="Full",
            started_at=utcnow(),
            correlation_id="killed-run",
        )
    finally:
        services.close()


def history(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    code, out, _ = cli(capsys, "history", "--json")
    assert code == 0
    return json.loads(out)


def dead_pid() -> int:
    """The id of a process of this host that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_after_the_current_batch(
    registered: Sandbox,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    signum: int,
) -> None:
    registered.faults.add(
        Fault("delay", path="/v3.0/schools/*/users", seconds=0.2, after=1, times=None)
    )
    run = Run("sync", extra_env=SLOW_RUN)
    try:
        run.wait_for("school 1: students...")
        run.process.send_signal(signum)
        run.wait_for(FIRST_MESSAGE)
        code, out, err = run.finish()
    finally:
        run.kill()
    assert code == 130, err
    assert "Traceback" not in err
    assert "SCHOOL" in out and "Failed" in out  # the summary of what ran
    school_2 = registered.districts[0].schools[1].name
    assert school_2 not in out  # never started
    rows = history(capsys)
    assert {r["SchoolId"] for r in rows} == {1}
    assert [r["Status"] for r in rows] == ["Failed"] * 3
    assert all(r["ErrorMessage"].startswith("interrupted") for r in rows)
    owner, _, requires_full_sync = school_row(1)
    assert owner is None  # the lease is released
    assert requires_full_sync  # the interrupted full sync is done next time


def test_a_second_signal_exits_at_once_and_frees_the_lease(
    registered: Sandbox,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # After its first page, every page takes 90 s: the first stop would wait that long.
    registered.faults.add(
        Fault("delay", path="/v3.0/schools/*/users", seconds=90, after=1, times=None)
    )
    run = Run("sync", "--school-id", "1", extra_env=SLOW_RUN)
    try:
        run.wait_for("school 1: students...")
        run.process.send_signal(signal.SIGINT)
        run.wait_for(FIRST_MESSAGE)  # at once, not after the slow page
        run.process.send_signal(signal.SIGINT)
        code, out, err = run.finish(timeout=30)  # well under the slow page
    finally:
        run.kill()
    assert code == 130, err
    assert "Stopping now" in err and "Traceback" not in err
    assert out == ""  # no summary: it did not wait for the schools
    assert school_row(1)[0] is None  # the lease is released: the next run need not wait
    registered.faults.clear()
    code, _, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 0, err
    stopped = [r for r in history(capsys) if r["Status"] == "Failed"]
    assert len(stopped) == 3  # the next run closed the rows the stopped one left open
    # An entity may already have closed itself at a batch boundary between the two signals.
    assert all(
        "abandoned" in r["ErrorMessage"] or "interrupted" in r["ErrorMessage"] for r in stopped
    )
    assert any("abandoned" in r["ErrorMessage"] for r in stopped)


def test_a_lease_of_a_gone_process_of_this_host_is_taken_over_at_once(
    registered: Sandbox,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    gone = f"{socket.gethostname()}:{dead_pid()}:0123456789ab"
    set_lease(1, gone)
    open_rows(1)
    code, out, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 0, out + err
    assert f"Took over school 1's sync lease from {gone}" in err
    assert "no longer exists" in err
    killed = [r for r in history(capsys) if r["CorrelationId"] == "killed-run"]
    assert [r["Status"] for r in killed] == ["Failed"] * 3
    # A live process of this host keeps its lease: the school is skipped, the holder named.
    alive = f"{socket.gethostname()}:{os.getppid()}:0123456789ab"
    set_lease(1, alive)
    code, out, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 1
    assert "already being synced (by " + alive in out
    assert "None" not in out


def test_the_held_message_never_shows_an_unknown_holder_as_none() -> None:
    message = held_message(7, None, None)
    assert "None" not in message and "school 7 is already being synced" in message
    message = held_message(7, "vm:5767:abc", None)
    assert "None" not in message and "vm:5767:abc" in message
    assert "cleversync school release-lease --school-id 7" in message


def test_release_lease(
    registered: Sandbox,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    release = ("school", "release-lease", "--school-id", "1")
    code, out, _ = cli(capsys, *release)
    assert (code, "holds no sync lease" in out) == (0, True)
    # A live process of this machine: refused, the lease stays.
    alive = f"{socket.gethostname()}:{os.getppid()}:0123456789ab"
    set_lease(1, alive)
    code, _, err = cli(capsys, *release)
    assert code == 1 and "still running" in err and str(os.getppid()) in err
    assert school_row(1)[0] == alive
    # Another machine: only with --force, and with a warning.
    remote = "other-vm:4242:0123456789ab"
    set_lease(1, remote)
    code, _, err = cli(capsys, *release)
    assert code == 1 and "--force" in err and "another machine" in err
    assert school_row(1)[0] == remote
    code, out, err = cli(capsys, *release, "--force")
    assert code == 0 and "Warning" in err and "Released" in out
    assert school_row(1)[0] is None
    # A process of this machine that is gone: freed, its open history rows closed.
    gone = f"{socket.gethostname()}:{dead_pid()}:0123456789ab"
    set_lease(1, gone)
    open_rows(1)
    code, out, _ = cli(capsys, *release)
    assert code == 0 and "Released" in out and "no longer exists" in out
    assert school_row(1)[0] is None
    assert {r["Status"] for r in history(capsys)} == {"Failed"}
    assert cli(capsys, "school", "release-lease", "--school-id", "99")[0] == 2


def test_sync_json_into_a_closed_pipe_exits_quietly(
    registered: Sandbox,  # noqa: F811
) -> None:
    run = Run("sync", "--json")
    assert run.process.stdout is not None
    run.process.stdout.close()  # `| head` that has already left
    try:
        code = run.process.wait(timeout=60)
        run._reader.join(timeout=5)
    finally:
        run.kill()
    err = "".join(run.err_lines)
    assert code == 1
    for noise in ("Traceback", "BrokenPipe", "Exception ignored", "internal error"):
        assert noise not in err, err
