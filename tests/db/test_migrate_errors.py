"""`db upgrade`'s errors name the database and what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleversync.db.engines import engine_for
from cleversync.db.migrate import upgrade
from cleversync.errors import DatabaseError


def test_an_unknown_target_revision_is_named(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'school.sqlite'}", create_sqlite_file=True)
    with pytest.raises(DatabaseError, match="school database Elm: there is no revision '9999'"):
        upgrade(engine, "school", "9999", what="school database Elm")
    assert upgrade(engine, "school")[0] is None  # nothing was changed by the refusal
