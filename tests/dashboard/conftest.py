"""Dashboard fixtures: a sandbox world (SQLite and PostgreSQL) after a demo-like sequence of
syncs, and the dashboard app over its Services, driven by Werkzeug's test client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse

from cleversync.dashboard.app import Dashboard
from cleversync.dashboard.auth import LocalGate
from cleversync.dashboard.csrf import Csrf
from cleversync.db.sessiondb.registry import SchoolRecord
from cleversync.queue import SyncMessage
from cleversync.sandbox import Sandbox
from tests.sync.conftest import backend
from tests.world import World, clever_school_id, make_world

__all__ = ["backend"]

CSRF_KEY = b"k" * 32
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class RecordingQueue:
    """A sync queue that keeps what was sent (the handler tests check the run, not a sync)."""

    def __init__(self) -> None:
        self.sent: list[SyncMessage] = []

    def send(self, message: SyncMessage) -> None:
        self.sent.append(message)


@dataclass
class Story:
    """What the demo-like sequence left: which school is which."""

    healthy: SchoolRecord  # synced twice; one student renamed in between
    held_back: SchoolRecord  # its last full sync was held back by the mass-delete guard
    broken: SchoolRecord  # no connection string: every run fails
    renamed_id: str
    renamed_old: str
    renamed_new: str
    leaving: list[str]


def tell_story(world: World) -> Story:
    """Two full syncs, a rename synced by events, a failing school and a guard hold-back."""
    registry = world.services.registry
    district = world.districts[0]
    broken = registry.add_school(
        district_id=district.district_id,
        clever_id="broken-school-0001",
        name="Broken Elementary",
        prefix="Broken-Elementary",
        database_name="Broken",
    )
    world.sync()
    first = clever_school_id(world, 0)
    student = world.sandbox.students(first)[0]
    old = student["name"]["last"]
    world.sandbox.update_user(student["id"], {"name": {"last": "Renamed-Smith"}})
    world.sync()
    second = clever_school_id(world, 1)
    students = world.sandbox.students(second)
    leaving = [s["id"] for s in students[: int(len(students) * 0.6)]]
    for clever_id in leaving:
        world.sandbox.remove_user(clever_id)
    world.sync(school_id=world.schools[1].school_id, full=True)
    return Story(
        healthy=world.school(0),
        held_back=world.school(1),
        broken=registry.get_school(broken.school_id),
        renamed_id=student["id"],
        renamed_old=old,
        renamed_new="Renamed-Smith",
        leaving=leaving,
    )


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(seed=11, districts=1, schools=2, students=30, teachers=4, sections=5)


@pytest.fixture
def world(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, sandbox: Sandbox
) -> Iterator[World]:
    pg = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    with make_world(backend, tmp_path, pg, sandbox=sandbox) as w:
        w.register_all()
        yield w


@pytest.fixture
def story(world: World) -> Story:
    return tell_story(world)


@pytest.fixture
def queue(world: World) -> RecordingQueue:
    recording = RecordingQueue()
    world.services.use_sync_queue(recording)
    return recording


@pytest.fixture
def app(world: World, queue: RecordingQueue) -> Dashboard:
    return Dashboard(world.services, gate=LocalGate(), csrf=Csrf(CSRF_KEY), trigger="cli")


def loopback(app: Any) -> Any:
    """The app as a loopback client reaches it (the test client sets no REMOTE_ADDR)."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        return app({"REMOTE_ADDR": "127.0.0.1", **environ}, start_response)

    return wrapped


@pytest.fixture
def client(app: Dashboard) -> Client:
    return Client(loopback(app))


def token_of(response: TestResponse) -> str:
    found = _TOKEN.search(response.get_data(as_text=True))
    assert found, "the page has no CSRF token"
    return found.group(1)


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)
