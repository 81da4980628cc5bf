"""Packaging: one list of runtime dependencies, a light package import, the example settings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cleversync.settings import all_variables
from tests.test_function_app import EXPECTED_BINDINGS

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_its_dependencies_from_requirements_in() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dependencies" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["dependencies"] == {
        "file": ["requirements.in"]
    }
    names = {r.name for r in _requirements_in()}
    assert {"azure-functions", "sqlalchemy", "psycopg"} <= names


def _requirements_in() -> list[Requirement]:
    lines = (ROOT / "requirements.in").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def _lock() -> dict[str, str]:
    """requirements.txt as {normalized name: exact version}."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, version = line.strip().partition("==")
        assert sep and version and ";" not in line, f"not an exact pin: {line!r}"
        pins[canonicalize_name(name)] = version
    return pins


def _closure(roots: list[Requirement]) -> set[str]:
    """Every distribution the roots need on Linux/CPython 3.11, read from installed metadata."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        for text in distribution(name).requires or []:
            needed = Requirement(text)
            wanted = needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if wanted:
                todo.append((needed, frozenset(needed.extras)))
    return seen


def test_requirements_txt_is_the_exact_lock_of_requirements_in() -> None:
    # A stale lock is one that no longer satisfies requirements.in, or pins packages
    # requirements.in no longer needs: 'make lock' after every edit of requirements.in.
    pins = _lock()
    for requirement in _requirements_in():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in requirements.in but not locked"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.txt pins {name}=={pins[name]}, outside {requirement}"
        )
    needed = _closure(_requirements_in())
    assert set(pins) == needed, (
        f"locked but not needed: {sorted(set(pins) - needed)}; "
        f"needed but not locked: {sorted(needed - set(pins))}"
    )
    # The dev environment is installed with the lock as constraints ('make test').
    for name in needed:
        assert distribution(name).version == pins[name], name


@pytest.mark.skipif(
    shutil.which("uv", path=str(Path(sys.executable).parent)) is None
    and shutil.which("uv") is None,
    reason="uv is not installed",
)
def test_requirements_txt_alone_installs_an_app_that_indexes(tmp_path: Path) -> None:
    # What Azure does: install requirements.txt (not the package), then import function_app
    # from the app's folder.
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv is not None
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "-r", "requirements.txt"],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    code = (
        "import json, function_app\n"
        "print(json.dumps({f.get_function_name(): [json.loads(b) for b in f.get_raw_bindings()]"
        " for f in function_app.app.get_functions()}))\n"
        # What the functions load on first use: the database drivers included.
        "import cleversync.services, cleversync.health.monitor, cleversync.orchestrator\n"
        "import alembic, psycopg, sqlalchemy.dialects.postgresql.psycopg\n"
    )
    result = subprocess.run(
        [str(python), "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + code],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == EXPECTED_BINDINGS


def test_funcignore_leaves_out_the_laptop_and_keeps_the_migrations() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for must in (".venv/", ".cleversync*/", "tests/", "bench/", ".ci/", "local.settings.json"):
        assert must in ignored, must
    assert not any(line.startswith("migrations") for line in ignored)


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


def test_host_json_keeps_the_requests_table() -> None:
    # Host.Results is what fills Application Insights' `requests` table: at Error it is empty.
    host = json.loads((ROOT / "host.json").read_text())
    assert host["logging"]["logLevel"]["Host.Results"] == "Information"
