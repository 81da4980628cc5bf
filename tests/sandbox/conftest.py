"""Fixtures for the Clever sandbox tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cleversync.sandbox import Sandbox
from tests.sandbox.helpers import FakeClock, client_for


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> Sandbox:
    """Two districts of two small schools each."""
    return Sandbox(seed=7, districts=2, schools=2, students=40, teachers=4, sections=5, clock=clock)


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with client_for(sandbox) as client:
        yield client
