"""Runs the cases on SQLite and PostgreSQL, prints the table, writes the JSON, exits 1 on a
missed target.

Each case is a module of ``bench.cases``; what they share (the figures, the measured child
runs, the served sandbox) is ``bench.measure``. ``--db`` and ``--cases`` pick what runs
(``--db sqlite --cases 3 --repeat 1`` is a quick look); the README's Performance section has
the figures and ``docs/performance.md`` what profiling them found.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.cases import (
    case1_full,
    case2_no_change,
    case3_events,
    case4_district,
    case5_big_school,
    case_fixed,
    case_queue,
)
from bench.child import PRODUCT_MODULES
from bench.install import Backend, PostgresBackend, SqliteBackend
from bench.measure import (
    REPO,
    Bench,
    Figure,
    child_env,
    served,
    spawn,
    verdict,
)

RESULTS = REPO / "bench" / "results" / "latest.json"
HELP_SECONDS = 0.5


# --- cases 1, 3 and 2: one school of 10,000 students ---------------------------------------


def one_school(bench: Bench, backend: Backend, idle_mb: float, cases: set[str]) -> None:
    """Case 1 into new databases, then cases 3 and 2 into the same ones; the queue path
    (case Q) on the same school."""
    sandbox = case1_full.sandbox()
    sections = sandbox.sections(sandbox.districts[0].schools[0].id)
    bench.facts["students_per_section"] = round(
        sum(len(s["students"]) for s in sections) / len(sections), 1
    )
    with served(sandbox) as site:
        if cases & {"1", "2", "3"}:
            installation, floor_db = case1_full.run(bench, site, backend, idle_mb)
            school = installation.schools[0]
            floor_school = [{"clever_id": school.clever_id, "target": floor_db.target}]
            try:
                # Case 3 before case 2: a data comparison stores no event cursor, so after
                # it the next run would compare data again instead of reading events.
                if "3" in cases:
                    case3_events.run(bench, site, backend, installation, floor_school)
                if "2" in cases:
                    case2_no_change.run(bench, site, backend, installation, floor_school)
            finally:
                installation.drop()
                backend.drop(floor_db)
        if "Q" in cases:
            case_queue.run(bench, site, backend)


# --- start-up ---------------------------------------------------------------------------------


def compile_bytecode() -> None:
    """Write the .pyc files an install has (pip writes them; uv, and PYTHONDONTWRITEBYTECODE,
    leave them out): without them every process compiles its imports from source, a second
    or more of each run that no installed CleverSync pays."""
    import compileall
    import sysconfig

    for folder in (sysconfig.get_paths()["purelib"], REPO / "cleversync", REPO / "bench"):
        compileall.compile_dir(folder, quiet=2, workers=0)


def measure_help(runs: int = 7) -> dict[str, Any]:
    """Wall times of ``python -m cleversync --help`` (and of the console script, if any)."""
    commands = {"python -m cleversync --help": [sys.executable, "-m", "cleversync", "--help"]}
    script = Path(sys.executable).with_name("cleversync")
    if script.exists():
        commands["cleversync --help"] = [str(script), "--help"]
    out: dict[str, Any] = {}
    for name, command in commands.items():
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            subprocess.run(
                command, stdout=subprocess.DEVNULL, check=True, env=child_env(), cwd=REPO
            )
            times.append(time.perf_counter() - began)
        out[name] = {"median": statistics.median(times), "runs": times}
    return out


# What each process of cases F, 1 and 2 imports before its run: the floor's modules, the
# libraries the product is built on alone, and the product's sync modules.
IMPORT_SETS = {
    "the floor's modules (httpx, sqlite3, json)": "import bench.floor",
    # pydantic with one model built: its schema machinery loads at the first model.
    "SQLAlchemy, pydantic, tenacity and httpx alone": (
        "import sqlalchemy, sqlalchemy.dialects.sqlite, pydantic, tenacity, httpx; "
        "pydantic.create_model('M', a=(int, 0))"
    ),
    "the product's sync modules": "import "
    + ", ".join(("cleversync.cli.run", "cleversync.settings", *PRODUCT_MODULES)),
}


def measure_imports(runs: int = 7) -> dict[str, float]:
    """Median wall of a process that only imports each set (interpreter start included;
    the collector off, as `cleversync sync` loads its modules), the sets interleaved: how
    much of the whole-process cases' gap is start-up, and how much of that the libraries
    alone take. Not judged."""
    times: dict[str, list[float]] = {name: [] for name in IMPORT_SETS}
    for _ in range(runs):
        for name, code in IMPORT_SETS.items():
            began = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", f"import gc; gc.disable(); {code}"],
                check=True,
                env=child_env(),
                cwd=REPO,
            )
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(walls) for name, walls in times.items()}


# --- output ------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(figures: list[Figure]) -> str:
    headers = ["case", "db", "wall s", "rows/s", "peak MB", "floor s", "ratio", "target", "result"]
    rows = [
        [
            f.case,
            f.db,
            _fmt(f.wall),
            _fmt(f.rows_per_second, 0),
            _fmt(f.peak_mb, 0),
            _fmt(f.floor),
            _fmt(f.ratio),
            f.target,
            verdict(f),
        ]
        for f in figures
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    numeric = {2, 3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="CleverSync's benchmark: the product's sync path against the floor "
        "(README.md, Performance).",
    )
    parser.add_argument(
        "--db", choices=["sqlite", "postgresql", "all"], default="all", help="databases (all)"
    )
    parser.add_argument(
        "--cases",
        default="F,1,2,3,Q,4,5",
        help="cases to run (F,1,2,3,Q,4,5; case 1 includes D, the change-detail cost)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="interleaved runs of cases F, 1, 2 and Q, product and floor alike; the median "
        "counts (5)",
    )
    parser.add_argument(
        "--district-repeat",
        type=int,
        default=1,
        help="interleaved runs of case 4, product and floor alike; the median counts (1)",
    )
    parser.add_argument(
        "--page-sizes",
        action="store_true",
        help="run the page-size study instead (cases 1, 4, 5 at 100 to 10000) and write its "
        "table into docs/performance.md",
    )
    parser.add_argument(
        "--profile", type=Path, help="write a pyinstrument profile of each product run here"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.page_sizes:
        from bench.pagesizes import study

        return study(args)
    cases = {c.strip().upper() for c in args.cases.split(",") if c.strip()}
    if "1" in cases:
        cases.add("D")
    began = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="cleversync-bench-"))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    bench = Bench(
        root,
        repeat=args.repeat,
        profile_dir=args.profile,
        district_repeat=args.district_repeat,
    )
    print(
        f"CleverSync benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}",
        flush=True,
    )
    compile_bytecode()
    help_times = measure_help()
    bench.facts["help"] = help_times
    bench.facts["imports"] = measure_imports()
    bench.facts["bytes_per_seen_id"] = case5_big_school.bytes_per_seen_id()
    bench.facts["bytes_per_kept_id"] = case5_big_school.bytes_per_kept_id()
    skipped: dict[str, str] = {}
    server = None
    try:
        backends: list[Backend] = []
        if args.db in ("sqlite", "all"):
            backends.append(SqliteBackend(root))
        if args.db in ("postgresql", "all"):
            server, reason = _start_postgres()
            if server is None:
                skipped["postgresql"] = reason
                print(f"PostgreSQL skipped: {reason}")
            else:
                backends.append(PostgresBackend(server))
        for backend in backends:
            print(f"\n== {backend.name} ==", flush=True)
            idle = spawn({"kind": "idle", "backend": backend.name})
            bench.facts[f"idle_child_mb_{backend.name}"] = idle["peak_mb"]
            print(f"  idle child (the product's modules imported): {idle['peak_mb']:.0f} MB")
            if "F" in cases:
                case_fixed.run(bench, backend)
            if cases & {"1", "2", "3", "Q"}:
                one_school(bench, backend, idle["peak_mb"], cases)
            if "5" in cases:
                case5_big_school.run(bench, backend, idle["peak_mb"])
            if "4" in cases:
                case4_district.run(bench, backend)
            backend.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - began
    return _report(bench, cases, skipped, total)


def _report(bench: Bench, cases: set[str], skipped: dict[str, str], total: float) -> int:
    figures = [f for f in bench.figures if f.case[0] in cases]
    help_median = bench.facts["help"]["python -m cleversync --help"]["median"]
    help_ok = help_median < HELP_SECONDS
    print("\n" + table(figures))
    print()
    for name, value in bench.facts["help"].items():
        verdict = "PASS" if value["median"] < HELP_SECONDS else "FAIL"
        print(
            f"{name}: median {value['median'] * 1000:.0f} ms of {len(value['runs'])} runs "
            f"(target < {HELP_SECONDS * 1000:.0f} ms) [{verdict}]"
        )
    imports = bench.facts.get("imports", {})
    if imports:
        print(
            "start-up, a process importing only (median of 7, collector off, not judged): "
            + "; ".join(f"{name} {seconds:.2f} s" for name, seconds in imports.items())
        )
    for name in ("sqlite", "postgresql"):
        if f"idle_child_mb_{name}" in bench.facts:
            print(f"idle child RSS ({name}): {bench.facts[f'idle_child_mb_{name}']:.0f} MB")
    if "students_per_section" in bench.facts:
        print(f"case 1's sections hold {bench.facts['students_per_section']} students on average")
    for name, reason in skipped.items():
        print(f"{name} skipped: {reason}")
    print(f"total bench time: {total:.0f} s")
    load = os.getloadavg()
    print(f"machine load (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    bench.facts["load_average"] = load
    missed = [f"case {f.case} on {f.db}" for f in figures if f.passed is False]
    if not help_ok:
        missed.append("cleversync --help")
    print("every target holds" if not missed else f"targets missed: {'; '.join(missed)}")
    _write_json(bench, figures, skipped, total, help_ok)
    return 1 if missed else 0


def _start_postgres() -> tuple[Any, str]:
    from tests.pgserver import PgServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None, "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[dev]')"
    server = PgServer(bin_dir)
    try:
        server.start()
    except Exception as exc:
        with suppress(Exception):
            server.stop()
        return None, f"the throwaway cluster did not start: {exc}"
    return server, ""


def _write_json(
    bench: Bench, figures: list[Figure], skipped: dict[str, str], total: float, help_ok: bool
) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "total_seconds": total,
        "help_ok": help_ok,
        "facts": bench.facts,
        "skipped": skipped,
        "figures": [{**asdict(f), "rows_per_second": f.rows_per_second} for f in figures],
    }
    RESULTS.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    RESULTS.with_suffix(".md").write_text(markdown(figures) + "\n", encoding="utf-8")
    print(f"figures written to {RESULTS.relative_to(REPO)} (and the README's table to .md)")


def markdown(figures: list[Figure]) -> str:
    """The figures as the README's table."""
    lines = [
        "| case | database | product | floor | ratio | peak | target | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        db = "SQLite" if f.db == "sqlite" else "PostgreSQL"
        peak = "" if f.peak_mb is None else f"{f.peak_mb:.0f} MB"
        lines.append(
            f"| {f.case} | {db} | {_fmt(f.wall)} s | {_fmt(f.floor)} s | {_fmt(f.ratio)} "
            f"| {peak} | {f.target} | {verdict(f)} |"
        )
    return "\n".join(lines)
