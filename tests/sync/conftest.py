"""End-to-end sync fixtures: a small sandbox district and a World on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cleversync.sandbox import Sandbox
from tests.world import World, make_world


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(seed=7, districts=1, schools=2, students=40, teachers=5, sections=6)


@pytest.fixture
def world(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, sandbox: Sandbox
) -> Iterator[World]:
    pg = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    with make_world(backend, tmp_path, pg, sandbox=sandbox) as w:
        w.register_all()
        yield w
