"""Case Q: the queue path. Case 1's school synced through the ``sync_school`` trigger's work
(the run recorded, its one message processed by ``QueuedRuns.process_message``) against the
same school synced inline by the orchestrator, each in a process of its own with the same
modules loaded, on new databases each time; interleaved, ``--repeat`` of each, the medians
count. The queue is a list here: the Storage queue's send and receive are the host's.
"""

from __future__ import annotations

import statistics

from bench.install import Backend, Installation
from bench.measure import Bench, Figure, Result, Served, cpu_ratio, median_of

QUEUE_RATIO = 1.10


def run(bench: Bench, site: Served, backend: Backend) -> None:
    inline: list[Result] = []
    queued: list[Result] = []
    for attempt in range(bench.repeat):
        for path in ("inline", "queued") if attempt % 2 == 0 else ("queued", "inline"):
            installation = Installation(
                bench.root, backend, site.district, site.district.schools, "queue"
            )
            try:
                result = bench.product(
                    site,
                    installation,
                    f"caseQ-{path}-{backend.name}",
                    kind="school_path",
                    path=path,
                    school_id=installation.schools[0].school_id,
                )
            finally:
                installation.drop()
            (inline if path == "inline" else queued).append(result)
    bad = [r["status"] for r in [*inline, *queued] if not str(r["status"]).startswith("Success")]
    run, base = median_of(queued), median_of(inline)
    ratio = run["wall"] / base["wall"]
    bench.add(
        Figure.measured(
            "Q queue: one school via sync_school",
            backend.name,
            {**run, "rows": None},
            base,
            ratio=ratio,
            target=f"<= {QUEUE_RATIO:g}x inline",
            passed=not bad and ratio <= QUEUE_RATIO,
            notes=[
                *[f"a run ended {s}" for s in bad[:3]],
                "the floor column is the same school synced inline; wall s: queued "
                + " ".join(f"{r['wall']:.2f}" for r in queued)
                + "; inline "
                + " ".join(f"{r['wall']:.2f}" for r in inline)
                + f"; CPU s (median): queued {statistics.median(r['cpu'] for r in queued):.2f}, "
                + f"inline {statistics.median(r['cpu'] for r in inline):.2f}, "
                + f"x{cpu_ratio(queued, inline) or 0:.2f}",
            ],
            details={"queued": run["walls"], "inline": base["walls"]},
        )
    )
