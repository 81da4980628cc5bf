"""The email tests run against the sandbox world of the sync tests (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.sync.conftest import backend, sandbox, world

__all__ = ["backend", "sandbox", "world"]
