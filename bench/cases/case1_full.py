"""Case 1: a full sync of one school of 10,000 students into new databases, as an operator's
``cleversync sync --school-id N --full`` pays it: the whole process (start-up, settings,
SessionDb, lease, history), timed from outside, against the floor's whole process
(``python -m bench.floor``).

Product and floor runs are interleaved, ``--repeat`` of each, each on new databases, and the
medians count. A third run of each round is the product again with change details off
(``History__MaxChangeDetailsPerRun=0``): the cost of recording them is the ratio of the
product's median to that one's. The last databases are kept for cases 3 and 2.
"""

from __future__ import annotations

import statistics

from bench.install import Backend, Database, Installation, fingerprint
from bench.measure import (
    Bench,
    Figure,
    Result,
    Served,
    cpu_ratio,
    district,
    median_of,
)
from cleversync.sandbox import Sandbox

FULL_RATIO = 1.3
DETAILS_RATIO = 1.10
DETAILS_VARIABLE = "CleverSync__History__MaxChangeDetailsPerRun"


def sandbox() -> Sandbox:
    """The one school of cases 1, 3 and 2."""
    return district(1)


def details_setting_known() -> bool:
    """Whether this product has the change-detail setting (the dashboard's change recording)."""
    from cleversync.settings import read_environment

    _, _, unknown = read_environment({DETAILS_VARIABLE: "0"})
    return not unknown


def sync_args(school_id: int, *, full: bool = True) -> list[str]:
    return ["sync", "--school-id", str(school_id), *(["--full"] if full else [])]


def run(
    bench: Bench, site: Served, backend: Backend, idle_mb: float
) -> tuple[Installation, Database]:
    """Measure case 1 and the change-detail cost; returns the last installation and floor
    database (the caller drops them)."""
    runs: list[Result] = []
    floors: list[Result] = []
    plain: list[Result] = []
    problems: list[str] = []
    for attempt in range(bench.repeat):
        kept = attempt == bench.repeat - 1
        # The order turns each round, so no side always follows the other.
        order = ["product", "floor", "plain"]
        order = order[attempt % 3 :] + order[: attempt % 3]
        for side in order:
            if side == "floor":
                floor_db = backend.school_database("one-floor")
                targets = [{"clever_id": site.district.schools[0].id, "target": floor_db.target}]
                floors.append(bench.floor_process(site, backend, "full", targets))
                if kept:
                    keep_floor = floor_db
                else:
                    backend.drop(floor_db)
                continue
            installation = Installation(
                bench.root, backend, site.district, site.district.schools, "one"
            )
            school = installation.schools[0]
            env = {DETAILS_VARIABLE: "0"} if side == "plain" else None
            result = bench.cli(site, installation, sync_args(school.school_id), env=env)
            result["fingerprint"] = fingerprint(school.database.url)
            (runs if side == "product" else plain).append(result)
            if kept and side == "product":
                keep = installation
            else:
                installation.drop()
    run, floor = median_of(runs), median_of(floors)
    for result in [*runs, *plain]:
        stored = sum(result["fingerprint"][t][0] for t in ("Students", "Teachers", "Sections"))
        if stored != floor["rows"]:
            problems.append(f"the product stored {stored} records, the floor {floor['rows']}")
    ratio = run["wall"] / floor["wall"]
    bench.add(
        Figure.measured(
            "1 full sync, 10k students (whole process)",
            backend.name,
            {**run, "rows": floor["rows"]},
            floor,
            ratio=ratio,
            target=f"<= {FULL_RATIO:g}x floor",
            passed=not problems and ratio <= FULL_RATIO,
            notes=[
                *problems[:3],
                f"{floor['rows']} records stored by both ({floor['written']} rows with the "
                f"links); {run['api_requests']} API requests; peak {_mb(run)} "
                f"(the floor {_mb(floor)}; an idle child with the modules loaded: "
                f"{idle_mb:.0f} MB)",
                walls(runs, floors),
            ],
            details={"product": _strip(run), "floor": _strip(floor)},
        )
    )
    known = details_setting_known()
    base = median_of(plain)
    details_ratio = run["wall"] / base["wall"]
    bench.add(
        Figure.measured(
            "D change details, case 1",
            backend.name,
            {**run, "rows": floor["rows"]},
            base,
            ratio=details_ratio,
            target=f"<= {DETAILS_RATIO:g}x details off",
            # Without the setting the two sides are the same run: nothing to pass or fail.
            passed=(not problems and details_ratio <= DETAILS_RATIO) if known else None,
            notes=[
                f"the floor column is the same run with {DETAILS_VARIABLE}=0"
                + (
                    ""
                    if known
                    else " (this build has no such setting yet: the two are alike, so "
                    "the ratio is noise and is not judged)"
                ),
                f"wall s: default {_walls(runs)}; details off {_walls(plain)}",
            ],
            details={"setting_known": known, "details_off": _strip(base)},
        )
    )
    return keep, keep_floor


def walls(runs: list[Result], floors: list[Result]) -> str:
    text = f"wall s (the median counts): product {_walls(runs)}; floor {_walls(floors)}"
    ratio = cpu_ratio(runs, floors)
    if ratio is not None:
        mine = statistics.median(r["cpu"] for r in runs)
        theirs = statistics.median(r["cpu"] for r in floors)
        text += f"; CPU s (median) {mine:.2f} against {theirs:.2f}, x{ratio:.2f}"
    return text


def _walls(results: list[Result]) -> str:
    return " ".join(f"{r['wall']:.2f}" for r in results)


def _mb(result: Result) -> str:
    return "-" if result.get("peak_mb") is None else f"{result['peak_mb']:.0f} MB"


def _strip(result: Result) -> Result:
    return {k: v for k, v in result.items() if k not in ("stdout", "stderr")}
