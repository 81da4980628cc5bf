"""One measured run in its own process (``python -m bench.child`` with a JSON spec on stdin).

The product's run goes through ``Services(Settings.load()).orchestrator().run(...)``, as
``cleversync sync`` and the Functions app do, configured only by ``CleverSync__`` variables
and the local secrets file. Modules are imported before the clock starts (start-up is
measured on its own); the peak RSS covers the whole process. The last stdout line is JSON.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import resource
import sys
import time
from typing import Any

PRODUCT_MODULES = (
    "cleversync.services",
    "cleversync.orchestrator",
    "cleversync.sync.school",
    "cleversync.db.sessiondb.lease",
    "cleversync.clever.client",
    "cleversync.clever.tokens",
    "cleversync.clever.ratelimit",
    "cleversync.db.engines",
    "cleversync.db.migrate",
    "cleversync.secrets.local",
    "cleversync.telemetry",
)


def peak_rss_kb() -> int:
    """This process's peak resident set (KiB): VmHWM, the high-water mark of its own memory.

    Not ``ru_maxrss``: Linux carries that over from the parent's memory across the vfork and
    exec that start a child, so a child of a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


class GcTimer:
    """CPU time spent in the cyclic garbage collector while it is installed (all threads).

    CPU time of the collecting thread (``time.thread_time``), not wall time: on a busy
    machine a collection's wall time counts the moments the process was not running."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        self.seconds += time.thread_time() - self._started
        self.full += info["generation"] == 2

    def stop(self) -> None:
        gc.callbacks.remove(self._callback)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _import_product(backend: str) -> None:
    for name in PRODUCT_MODULES:
        importlib.import_module(name)
    if backend == "postgresql":
        importlib.import_module("psycopg")
        importlib.import_module("sqlalchemy.dialects.postgresql.psycopg")


def idle(spec: dict[str, Any]) -> dict[str, Any]:
    """The product's modules loaded, nothing run: the baseline that growth is measured from."""
    _import_product(spec["backend"])
    return {"wall": 0.0}


def _profile_schools(path: str) -> None:
    """Profile each school's run with pyinstrument in the worker thread that runs it (a
    profiler sees only its own thread); the reports are appended to ``path``."""
    import threading

    from pyinstrument import Profiler

    from cleversync.sync.school import SchoolSync

    original = SchoolSync.run
    lock = threading.Lock()

    def run(self: SchoolSync, *args: Any, **kwargs: Any) -> Any:
        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
        try:
            return original(self, *args, **kwargs)
        finally:
            profiler.stop()
            with lock, open(path, "a", encoding="utf-8") as out:
                out.write(profiler.output_text(unicode=True, color=False))

    SchoolSync.run = run  # type: ignore[method-assign]


def product(spec: dict[str, Any]) -> dict[str, Any]:
    _import_product(spec["backend"])
    from cleversync.services import Services, prepare_process
    from cleversync.settings import Settings
    from cleversync.telemetry import configure_logging

    services = Services(Settings.load())
    # what the CLI does
    configure_logging(None, stream=sys.stderr, level=logging.WARNING, redactor=services.redactor)
    if spec.get("profile"):
        _profile_schools(spec["profile"])
    orchestrator = services.orchestrator()
    prepare_process()  # what `cleversync sync` does once its modules are loaded
    collector = GcTimer()
    cpu = cpu_seconds()
    began = time.perf_counter()
    try:
        run = orchestrator.run(
            school_id=spec.get("school_id"),
            district_id=spec.get("district_id"),
            full=spec.get("full", False),
            trigger="cli",
            within_deadline=False,  # as `cleversync sync`
        )
    finally:
        services.close()
    wall = time.perf_counter() - began
    cpu = cpu_seconds() - cpu
    collector.stop()
    schools: list[dict[str, Any]] = []
    for school in run.schools:
        schools.append(
            {
                "school_id": school.school_id,
                "status": school.status,
                "mode": school.mode,
                "error": school.error,
                "entities": {
                    o.entity: {
                        "processed": o.counts.processed,
                        "inserted": o.counts.inserted,
                        "updated": o.counts.updated,
                        "deleted": o.counts.deleted,
                        "failed": o.counts.failed,
                    }
                    for o in school.entities
                },
            }
        )
    totals = dict.fromkeys(("processed", "inserted", "updated", "deleted", "failed"), 0)
    for row in schools:
        for counts in row["entities"].values():
            for key in totals:
                totals[key] += counts[key]
    return {
        "wall": wall,
        "status": run.status,
        "schools": schools,
        "rows": totals["processed"],
        "written": totals["inserted"] + totals["updated"] + totals["deleted"],
        "totals": totals,
        "failed_schools": sum(1 for s in schools if s["status"] == "Failed"),
        "cpu": cpu,
        "gc_seconds": collector.seconds,
        "gc_full_collections": collector.full,
    }


class ListQueue:
    """The sync queue as a list: the messages a run sends, for the bench to deliver."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def send(self, message: Any) -> None:
        self.messages.append(message)


def school_path(spec: dict[str, Any]) -> dict[str, Any]:
    """One school synced in this process, ``inline`` (the orchestrator, as a run inside the
    host does) or ``queued`` (the run recorded and its message sent, then the message
    processed as the ``sync_school`` trigger does: ``queued_runs().process_message``). Only
    the school's sync is timed: for the queue, the trigger's work on the message."""
    _import_product(spec["backend"])
    importlib.import_module("cleversync.runs")
    from cleversync.services import Services, prepare_process
    from cleversync.settings import Settings
    from cleversync.telemetry import configure_logging

    services = Services(Settings.load())
    configure_logging(None, stream=sys.stderr, level=logging.WARNING, redactor=services.redactor)
    queue = ListQueue()
    services.use_sync_queue(queue)
    orchestrator = services.orchestrator()
    targets = orchestrator.targets(school_id=spec["school_id"], district_id=None)
    prepare_process()
    collector = GcTimer()
    cpu = cpu_seconds()
    try:
        if spec["path"] == "inline":
            began = time.perf_counter()
            run = orchestrator.run(school_id=spec["school_id"], full=True, trigger="timer")
            wall = time.perf_counter() - began
            status = str(run.status)
        else:
            queued = services.queued_runs()
            record = queued.enqueue_run(targets, full=True, trigger="timer")
            [message] = queue.messages
            began = time.perf_counter()
            outcome = services.queued_runs().process_message(message.to_json(), 1)
            wall = time.perf_counter() - began
            state = queued.run_status(record.run_id) or {}
            status = f"{state.get('status')} ({outcome})"
    finally:
        services.close()
    cpu = cpu_seconds() - cpu
    collector.stop()
    return {
        "wall": wall,
        "status": status,
        "cpu": cpu,
        "gc_seconds": collector.seconds,
        "gc_full_collections": collector.full,
        "rows": None,
    }


def floor(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.floor import FLOORS

    collector = GcTimer()
    cpu = cpu_seconds()
    result = FLOORS[spec["floor"]](spec)
    result["cpu"] = cpu_seconds() - cpu
    collector.stop()
    result["gc_seconds"], result["gc_full_collections"] = collector.seconds, collector.full
    return result


KINDS = {"idle": idle, "product": product, "floor": floor, "school_path": school_path}


def main() -> int:
    spec = json.loads(sys.stdin.read())
    result = KINDS[spec["kind"]](spec)
    result["peak_rss_kb"] = peak_rss_kb()

    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
