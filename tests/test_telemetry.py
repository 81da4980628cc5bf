"""Logging: redaction on every handler, the run's dimensions on records, Azure Monitor wiring."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from cleversync.logcontext import ContextFilter, log_context
from cleversync.redaction import Redactor
from cleversync.settings import Settings
from cleversync.telemetry import RedactingFilter, configure_logging

ROOT = Path(__file__).resolve().parents[1]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


def test_the_filter_cleans_message_arguments_traceback_and_extras() -> None:
    redactor = Redactor()
    redactor.register("topsecret-value-1")
    handler = Capture()
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("boom with topsecret-value-1 inside")
        except ValueError:
            logger.exception(
                "failed for %s", "topsecret-value-1", extra={"Detail": "x topsecret-value-1"}
            )
        logger.error("Authorization: Bearer abcdefghijklmnop and Password=hunter2hunter2;")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(handler.lines)
    assert "topsecret-value-1" not in text
    assert "abcdefghijklmnop" not in text
    assert "hunter2hunter2" not in text
    first = handler.records[0]
    assert first.__dict__["exception.type"] == "ValueError"
    assert "topsecret" not in first.__dict__["exception.stacktrace"]
    assert "topsecret" not in first.__dict__["Detail"]
    assert "Traceback" in text  # the traceback is kept, cleaned


def test_the_filter_is_idempotent_across_handlers() -> None:
    redactor = Redactor()
    redactor.register("another-secret-22")
    first, second = Capture(), Capture()
    for handler in (first, second):
        handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("test.twice")
    logger.addHandler(first)
    logger.addHandler(second)
    logger.propagate = False
    try:
        logger.warning("value %s and %d", "another-secret-22", 7)
    finally:
        logger.removeHandler(first)
        logger.removeHandler(second)
    assert first.lines == second.lines == ["WARNING test.twice value *** and 7"]


def test_the_log_context_reaches_records_without_overwriting() -> None:
    handler = Capture()
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("test.context")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with log_context(CorrelationId="run-1", SchoolId=7):
            logger.info("inside")
            logger.info("explicit", extra={"SchoolId": 8})
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, explicit, outside = handler.records
    assert (inside.CorrelationId, inside.SchoolId) == ("run-1", 7)
    assert explicit.SchoolId == 8
    assert not hasattr(outside, "CorrelationId")


def test_azure_monitor_is_configured_only_with_a_connection_string() -> None:
    calls: list[dict] = []
    configure_logging(
        Settings.load({}), redactor=Redactor(), azure_monitor=lambda **kw: calls.append(kw)
    )
    assert calls == []
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
    configure_logging(
        Settings.load({"APPLICATIONINSIGHTS_CONNECTION_STRING": connection}),
        redactor=Redactor(),
        azure_monitor=lambda **kw: calls.append(kw),
    )
    assert len(calls) == 1
    assert calls[0]["connection_string"] == connection
    assert calls[0]["logger_name"] == "cleversync"


def test_importing_the_package_does_not_import_azure_monitor() -> None:
    code = "import sys, cleversync.telemetry, cleversync.services, cleversync.cli; print('azure.monitor' in ' '.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"


OFFLINE_SYNC = textwrap.dedent(
    """
    import json, os, sys, tempfile, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from cleversync.sandbox import Sandbox
    from cleversync.redaction import Redactor
    from cleversync.settings import Settings
    from cleversync.telemetry import configure_logging
    from tests.world import World

    configure_logging(Settings.load(), redactor=Redactor())
    sb = Sandbox(seed=5, districts=1, schools=2, students=200, teachers=10, sections=8)
    tmp = Path(tempfile.mkdtemp())
    with sb.serve() as running:
        world = World(sb, running.api_base_url, running.token_url, lambda n: f"sqlite:///{{tmp / n}}.sqlite", {{}})
        world.register_all()
        start = time.perf_counter()
        run = world.sync()
        took = time.perf_counter() - start
    import logging
    handlers = [type(h).__name__ for h in logging.getLogger("cleversync").handlers]
    print(json.dumps({{"status": run.status, "seconds": took, "handlers": handlers}}), flush=True)
    os._exit(0)  # do not wait for the exporter's final flush to an unreachable endpoint
    """
)


def _offline_sync(tmp_path: Path, connection_string: str | None) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    if connection_string:
        env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = connection_string
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SYNC.format(root=str(ROOT))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_unreachable_azure_monitor_does_not_break_or_slow_a_sync(tmp_path: Path) -> None:
    local = _offline_sync(tmp_path, None)
    unreachable = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/"
    exported = _offline_sync(tmp_path, unreachable)
    assert local["status"] == exported["status"] == "Success"
    assert "LoggingHandler" not in local["handlers"]
    assert "LoggingHandler" in exported["handlers"]  # Azure Monitor's handler was installed
    assert exported["seconds"] < local["seconds"] * 2 + 1
