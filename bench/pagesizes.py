"""The page-size study (``python -m bench --page-sizes``): cases 1, 4 and 5 at each page size
Clever allows up to its maximum, for time, requests and peak memory; the table goes into
``docs/performance.md`` between its ``page-size study`` markers.

Each figure is one product run in a process of its own (modules loaded before the clock
starts, as in cases 4 and 5), on new databases. At page size 100 the district's requests
need more than one rate-limit window (1,200 a minute per district token), so its time is
mostly waiting for the next window.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cases import case1_full, case4_district, case5_big_school
from bench.install import Backend, SqliteBackend
from bench.measure import REPO, Bench, Result, Served, served

PAGE_SIZES = (100, 500, 1000, 5000, 10000)
DOC = REPO / "docs" / "performance.md"
BEGIN, END = "<!-- page-size study: begin -->", "<!-- page-size study: end -->"
RESULTS = REPO / "bench" / "results" / "pagesizes.json"


def _school(bench: Bench, site: Served, backend: Backend, label: str, page_size: int) -> Result:
    return bench.new_school_run(
        site, backend, f"{label}-{page_size}-{backend.name}", full=True, page_size=page_size
    )


def _row(case: str, backend: str, page_size: int, run: Result) -> dict[str, Any]:
    failed = run.get("failed_schools", 0)
    return {
        "case": case,
        "db": backend,
        "page_size": page_size,
        "wall": round(run["wall"], 2),
        "requests": run["api_requests"],
        "http_429": run["http_429"],
        "peak_mb": round(run["peak_mb"]),
        "failed_schools": failed,
    }


def study(args: argparse.Namespace) -> int:
    from bench.run import _start_postgres

    root = Path(tempfile.mkdtemp(prefix="cleversync-pagesizes-"))
    bench = Bench(root, repeat=1, profile_dir=None)
    rows: list[dict[str, Any]] = []
    server = None
    began = time.perf_counter()
    try:
        backends: list[Backend] = []
        if args.db in ("sqlite", "all"):
            backends.append(SqliteBackend(root))
        if args.db in ("postgresql", "all"):
            server, reason = _start_postgres()
            if server is None:
                print(f"PostgreSQL skipped: {reason}")
            else:
                from bench.install import PostgresBackend

                backends.append(PostgresBackend(server))
        for backend in backends:
            print(f"== {backend.name} ==", flush=True)
            with served(case1_full.sandbox()) as site:
                for size in PAGE_SIZES:
                    rows.append(
                        _row("1", backend.name, size, _school(bench, site, backend, "one", size))
                    )
                    print(f"  {rows[-1]}", flush=True)
            with served(case4_district.sandbox()) as site:
                for size in PAGE_SIZES:
                    run = case4_district.district_run(bench, site, backend, size)
                    rows.append(_row("4", backend.name, size, run))
                    print(f"  {rows[-1]}", flush=True)
            with served(case5_big_school.sandbox()) as site:
                for size in PAGE_SIZES:
                    rows.append(
                        _row("5", backend.name, size, _school(bench, site, backend, "big", size))
                    )
                    print(f"  {rows[-1]}", flush=True)
            backend.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    text = table(rows)
    print(text)
    load = os.getloadavg()
    print(f"study time {time.perf_counter() - began:.0f} s; load {load[0]:.2f} {load[1]:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "load": load}, indent=2) + "\n", encoding="utf-8")
    write_doc(text)
    print(f"table written to {DOC.relative_to(REPO)}")
    return 0


CASES = {
    "1": "1: one school, 10,000 students",
    "4": "4: 100 schools × 1,000 students, 5 at once",
    "5": "5: one school, 50,000 students",
}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | database | page size | wall | requests | answered 429 | peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {CASES[row['case']]} | {'SQLite' if row['db'] == 'sqlite' else 'PostgreSQL'} "
            f"| {row['page_size']:,} | {row['wall']:.2f} s | {row['requests']:,} "
            f"| {row['http_429']} | {row['peak_mb']} MB |"
        )
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n## Page size\n\n" + block + "\n"
    DOC.write_text(doc, encoding="utf-8")
