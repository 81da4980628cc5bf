"""sync/ decides and runs; every SQL statement lives under db/: no sync module imports SQLAlchemy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cleversync.sync

SYNC = Path(cleversync.sync.__file__).parent


def sqlalchemy_imports(source: str) -> list[str]:
    """The SQLAlchemy modules ``source`` imports (anywhere: top level, functions, TYPE_CHECKING)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n == "sqlalchemy" or n.startswith("sqlalchemy.")]
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sqlalchemy", ["sqlalchemy"]),
        ("import os, sqlalchemy.exc as e", ["sqlalchemy.exc"]),
        ("from sqlalchemy import select", ["sqlalchemy"]),
        ("def f():\n    from sqlalchemy.engine import Connection", ["sqlalchemy.engine"]),
        ("if TYPE_CHECKING:\n    from sqlalchemy.engine import Engine", ["sqlalchemy.engine"]),
        ("import sqlalchemyish\nfrom cleversync.db.school.store import SchoolDb", []),
    ],
)
def test_the_check_sees_every_form_of_import(source: str, expected: list[str]) -> None:
    assert sqlalchemy_imports(source) == expected


def test_no_sync_module_imports_sqlalchemy() -> None:
    modules = sorted(SYNC.rglob("*.py"))
    assert len(modules) > 5  # the walk found the package
    offenders = {
        str(path.relative_to(SYNC)): found
        for path in modules
        if (found := sqlalchemy_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "SQL belongs under cleversync/db/; these sync modules import it"
