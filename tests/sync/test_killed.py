"""A full sync killed mid-run (SIGKILL: no finally block, no history written at the end)
must leave the school flagged, so the next run is full and removes what Clever removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from cleversync.db.schema import School
from cleversync.sandbox import Fault, Sandbox
from tests.world import clever_school_id, make_world, stored_students


def test_a_full_sync_killed_mid_run_leaves_the_school_flagged(tmp_path: Path) -> None:
    reached, release = threading.Event(), threading.Event()

    def held(seconds: float) -> None:  # the delay fault's wait: the child is now mid-sync
        reached.set()
        release.wait(30)

    sandbox = Sandbox(
        seed=7, districts=1, schools=1, students=40, teachers=4, sections=4, sleep=held
    )
    with make_world("sqlite", tmp_path, None, sandbox=sandbox) as world:
        world.register_all()
        assert world.sync(school_id=1).status == "Success"
        removed = [s["id"] for s in sandbox.students(clever_school_id(world))[:4]]
        for student in removed:  # Clever removes four students; only a full sync sees it
            sandbox.remove_user(student)
        secrets = tmp_path / "secrets.json"
        secrets.write_text(json.dumps(world.secrets.values))
        # The second page of students waits until the child has been killed.
        sandbox.faults.add(Fault("delay", path="/v3.0/schools/*/users", query="starting_after"))
        child = subprocess.Popen(
            [sys.executable, "-m", "cleversync", "sync", "--full", "--school-id", "1"],
            env={**os.environ, **world.env, "CleverSync__Secrets__File": str(secrets)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert reached.wait(30), child.stderr.read().decode() if child.stderr else ""
            child.kill()
            child.wait(10)
        finally:
            release.set()
            if child.stderr:
                child.stderr.close()
        assert world.school().requires_full_sync
        # The dead run's lease would run out after a few minutes; here it has.
        with world.services.session_engine().begin() as conn:
            past = world.services.utc_clock() - timedelta(minutes=1)
            conn.execute(update(School).where(School.SchoolId == 1).values(SyncLeaseExpiresAt=past))
        run = world.sync(school_id=1)  # not asked for a full sync
        assert (run.status, run.schools[0].mode) == ("Success", "full")
        assert not set(removed) & set(stored_students(world))
        assert not world.school().requires_full_sync
