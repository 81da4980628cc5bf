"""What every case shares: the figures, the measured child runs, the served sandbox.

The sandbox is served from the bench's own process; every measured run (the product's and
the floor's) is a child process of its own (``bench.child``), so each peak RSS is that run's
alone. Before each run the district's token is rotated, so every run starts in a rate-limit
window of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.install import Backend, Installation
from cleversync.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]

# One school of cases 1 and 2 (and 3, which changes it). Case 5 keeps its teachers and
# sections, so that the difference between the two is students alone.
SCHOOL_STUDENTS, SCHOOL_TEACHERS, SCHOOL_SECTIONS = 10_000, 600, 400
PAGE_SIZE = 1000  # the product's default
PARALLEL = 5  # MaxSchoolsInParallel, the product's default
RATE_LIMIT, RATE_WINDOW = 1200, 60.0  # Clever's: per token, per minute

Result = dict[str, Any]


@dataclass
class Figure:
    """One line of the table, with what explains it."""

    case: str
    db: str
    wall: float | None
    rows: int | None = None
    peak_mb: float | None = None
    floor: float | None = None
    floor_peak_mb: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measured(
        cls,
        case: str,
        db: str,
        run: dict[str, Any],
        floor: dict[str, Any] | float,
        *,
        target: str,
        passed: bool | None,
        ratio: float | None = None,
        notes: list[str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> Figure:
        """A line for a product run and its floor (a floor run, or a time the case imposes);
        the ratio is product over floor unless given."""
        floor_wall = floor["wall"] if isinstance(floor, dict) else floor
        floor_peak = floor["peak_mb"] if isinstance(floor, dict) else None
        if ratio is None and floor_wall:
            ratio = run["wall"] / floor_wall
        return cls(
            case,
            db,
            run["wall"],
            run["rows"],
            run["peak_mb"],
            floor_wall,
            floor_peak,
            ratio,
            target,
            passed,
            notes or [],
            details or {},
        )

    @property
    def rows_per_second(self) -> float | None:
        if not self.rows or not self.wall:
            return None
        return self.rows / self.wall


class BenchError(RuntimeError):
    """A measured run failed outright (not a missed target)."""


# --- child processes ------------------------------------------------------------------------


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The machine's environment without any CleverSync setting, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().startswith("cleversync")
        and key != "APPLICATIONINSIGHTS_CONNECTION_STRING"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def spawn(spec: dict[str, Any], env: dict[str, str] | None = None) -> Result:
    """Run ``python -m bench.child`` with ``spec``; its last stdout line is the result."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.child"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(env),
        timeout=1800,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise BenchError(
            f"{spec['kind']} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    result: Result = json.loads(done.stdout.strip().splitlines()[-1])
    result["log"] = [line for line in done.stderr.splitlines() if line.strip()]
    result["peak_mb"] = result["peak_rss_kb"] / 1024
    return result


TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time: a whole process's peak RSS


def product_command() -> list[str]:
    """How an operator starts the product: the console script, else ``python -m``."""
    script = Path(sys.executable).with_name("cleversync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cleversync"]


def process(argv: list[str], env: dict[str, str] | None = None) -> Result:
    """Run ``argv`` as a process of its own and time it from the outside: its whole life,
    start-up and exit included. The peak RSS and the CPU seconds (user + system) are GNU
    time's (it forks from its own small process, so the figures are the child's alone);
    None where GNU time is missing. CPU seconds vary far less than wall time on a busy
    machine: the notes give their ratio next to the wall's."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss", encoding="utf-8") as rss:
        command = [TIME, "-f", "%M %U %S", "-o", rss.name, *argv] if TIME else argv
        began = time.perf_counter()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=child_env(env),
            timeout=1800,
            check=False,
        )
        wall = time.perf_counter() - began
        lines = [line for line in Path(rss.name).read_text(encoding="utf-8").splitlines() if line]
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(argv[:4])} ... failed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    fields = lines[-1].split() if lines else []
    peak = cpu = None
    if len(fields) == 3:
        peak, cpu = int(fields[0]) / 1024, float(fields[1]) + float(fields[2])
    return {
        "wall": wall,
        "peak_mb": peak,
        "cpu": cpu,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def cpu_ratio(runs: list[Result], floors: list[Result]) -> float | None:
    """The ratio of the median CPU seconds (None without them)."""
    mine = [float(r["cpu"]) for r in runs if r.get("cpu") is not None]
    theirs = [float(r["cpu"]) for r in floors if r.get("cpu") is not None]
    if not mine or not theirs or not statistics.median(theirs):
        return None
    return statistics.median(mine) / statistics.median(theirs)


def median_of(results: list[Result]) -> Result:
    """The median run (the middle wall) of repeated, interleaved runs, with the peak memory
    of the largest and every wall."""
    walls = [r["wall"] for r in results]
    middle = dict(sorted(results, key=lambda r: r["wall"])[(len(results) - 1) // 2])
    middle["wall"] = statistics.median(walls)
    peaks = [r["peak_mb"] for r in results if r.get("peak_mb") is not None]
    middle["peak_mb"] = max(peaks) if peaks else None
    middle["walls"] = [round(w, 3) for w in walls]
    return middle


class Served:
    """A sandbox served on loopback, with the request counting the runs need."""

    def __init__(self, sandbox: Sandbox, api_base_url: str, token_url: str) -> None:
        self.sandbox = sandbox
        self.api_base_url = api_base_url
        self.token_url = token_url
        self.district = sandbox.districts[0]

    def fresh_token(self) -> str:
        """A new district token: a rate-limit window of its own (the old token answers 401)."""
        self.sandbox.request_log.clear()
        return self.sandbox.rotate_token(self.district.id)

    def api_requests(self) -> tuple[int, int]:
        """(/v3.0 requests answered, of which 429) since the last ``fresh_token``."""
        records = [r for r in self.sandbox.request_log if r.target.startswith("/v3.0/")]
        return len(records), sum(1 for r in records if r.status == 429)


def district(
    seed: int,
    *,
    schools: int = 1,
    students: int = SCHOOL_STUDENTS,
    teachers: int = SCHOOL_TEACHERS,
    sections: int = SCHOOL_SECTIONS,
) -> Sandbox:
    """One sandbox district paced as Clever paces a token (RATE_LIMIT a RATE_WINDOW)."""
    return Sandbox(
        seed=seed,
        districts=1,
        schools=schools,
        students=students,
        teachers=teachers,
        sections=sections,
        rate_limit=RATE_LIMIT,
        rate_window_seconds=RATE_WINDOW,
    )


@contextmanager
def served(sandbox: Sandbox) -> Iterator[Served]:
    with sandbox.serve() as running:
        yield Served(sandbox, running.api_base_url, running.token_url)


# --- the bench ------------------------------------------------------------------------------


class Bench:
    """One bench run: where its files go, how often the cases repeat, what it found."""

    def __init__(
        self, root: Path, *, repeat: int, profile_dir: Path | None, district_repeat: int = 1
    ) -> None:
        self.root = root
        self.repeat = max(1, repeat)
        self.district_repeat = max(1, district_repeat)
        self.profile_dir = profile_dir
        self.figures: list[Figure] = []
        self.facts: dict[str, Any] = {}

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        ratio = f", x{figure.ratio:.2f} of the floor" if figure.ratio is not None else ""
        wall = f"{figure.wall:.2f} s" if figure.wall is not None else "-"
        print(f"  case {figure.case} on {figure.db}: {wall}{ratio} [{verdict(figure)}]")
        for note in figure.notes:
            print(f"    {note}")
        sys.stdout.flush()

    def product(
        self,
        site: Served,
        installation: Installation,
        label: str,
        *,
        page_size: int = PAGE_SIZE,
        **spec: Any,
    ) -> Result:
        site.fresh_token()
        env = installation.env(
            site.api_base_url, site.token_url, page_size=page_size, parallel=PARALLEL
        )
        full = {"kind": "product", "backend": installation.backend.name, **spec}
        if self.profile_dir is not None:
            full["profile"] = str(self.profile_dir / f"{label}.txt")
        result = spawn(full, env)
        result["api_requests"], result["http_429"] = site.api_requests()
        return result

    def new_school_run(self, site: Served, backend: Backend, label: str, **spec: Any) -> Result:
        """``product`` for the district's first school, on a new installation (dropped after):
        its first full sync, in a process of its own."""
        installation = Installation(self.root, backend, site.district, site.district.schools, label)
        try:
            return self.product(
                site, installation, label, school_id=installation.schools[0].school_id, **spec
            )
        finally:
            installation.drop()

    def cli(
        self,
        site: Served,
        installation: Installation,
        args: list[str],
        *,
        page_size: int = PAGE_SIZE,
        env: dict[str, str] | None = None,
    ) -> Result:
        """``cleversync ARGS`` as an operator runs it, timed as a whole process."""
        site.fresh_token()
        full_env = installation.env(
            site.api_base_url, site.token_url, page_size=page_size, parallel=PARALLEL
        )
        full_env.update(env or {})
        result = process([*product_command(), *args], full_env)
        result["api_requests"], result["http_429"] = site.api_requests()
        return result

    def floor_process(
        self,
        site: Served,
        backend: Backend,
        floor: str,
        schools: list[dict[str, str]],
        *,
        page_size: int = PAGE_SIZE,
    ) -> Result:
        """The floor as a whole process of its own (``python -m bench.floor``)."""
        spec = _floor_spec(site, backend, floor, schools, page_size)
        result = process([sys.executable, "-m", "bench.floor", json.dumps(spec)])
        inner = json.loads(result["stdout"].strip().splitlines()[-1])
        result.update({k: v for k, v in inner.items() if k != "wall"})
        result["inner_wall"] = inner["wall"]
        result["api_requests"], result["http_429"] = site.api_requests()
        return result

    def floor(
        self,
        site: Served,
        backend: Backend,
        floor: str,
        schools: list[dict[str, str]],
        *,
        page_size: int = PAGE_SIZE,
        **spec: Any,
    ) -> Result:
        result = spawn(
            {"kind": "floor", **_floor_spec(site, backend, floor, schools, page_size), **spec}
        )
        result["api_requests"], result["http_429"] = site.api_requests()
        return result


def _floor_spec(
    site: Served, backend: Backend, floor: str, schools: list[dict[str, str]], page_size: int
) -> dict[str, Any]:
    """What a floor run is given, with a new token (a rate-limit window of its own)."""
    return {
        "floor": floor,
        "backend": backend.name,
        "api_base_url": site.api_base_url,
        "token": site.fresh_token(),
        "page_size": page_size,
        "schools": schools,
    }


# --- notes ----------------------------------------------------------------------------------


def problems(runs: list[Result], mode: str) -> list[str]:
    out = []
    for run in runs:
        for school in run["schools"]:
            if school["status"] != "Success" or school["mode"] != mode:
                out.append(
                    f"school {school['school_id']}: {school['status']}, mode {school['mode']} "
                    f"(expected Success, {mode}): {school['error']}"
                )
    return out[:3]


def timing(runs: list[Result], floors: list[Result]) -> str:
    def walls(results: list[Result]) -> str:
        return " ".join(f"{r['wall']:.2f}" for r in results)

    run, floor = median_of(runs), median_of(floors)
    text = (
        f"wall s (the median counts): product {walls(runs)}, floor {walls(floors)}; CPU s: "
        f"product {run['cpu']:.2f} of which {run['gc_seconds']:.2f} in the garbage collector "
        f"({run['gc_full_collections']} full collections), floor {floor['cpu']:.2f}"
    )
    return text


def verdict(figure: Figure) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[figure.passed]
