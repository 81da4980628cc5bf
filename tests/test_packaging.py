"""Packaging: one list of runtime dependencies, a light package import, the example settings."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from cleversync.settings import all_variables

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_its_dependencies_from_requirements_txt() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dependencies" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["dependencies"] == {
        "file": ["requirements.txt"]
    }
    requirements = [
        line.split("~=")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(
        "~=" in line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert "azure-functions" in requirements and "sqlalchemy" in requirements


def test_importing_the_cli_stays_light() -> None:
    code = (
        "import sys, cleversync, cleversync.cli; cleversync.cli.build_parser(); "
        "heavy = ('sqlalchemy', 'azure', 'opentelemetry', 'alembic', 'httpx', 'pydantic', 'tenacity'); "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_local_settings_example_lists_every_setting_with_its_default() -> None:
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    for name, default in all_variables().items():
        expected = ("true" if default else "false") if isinstance(default, bool) else str(default)
        assert values.get(name) == expected, name
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["CleverSyncSchedule"] == "0 0 2 * * *"


def test_host_json_serves_routes_without_a_prefix() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["functionTimeout"] == "00:30:00"
