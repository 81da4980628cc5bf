"""The Azure Functions Python worker's invocation-log seam, as a fake.

It mirrors azure-functions-python-worker's ``azure_functions_worker/dispatcher.py``: one
module-level ``_invocation_id_local = threading.local()`` is every invocation's
``context.thread_local_storage``; ``_run_sync_func`` sets
``context.thread_local_storage.invocation_id`` on the thread that runs a sync handler and
sets it back to None afterwards; ``Dispatcher.on_logging`` (called from the root handler's
``emit``, in the thread that logged) adds ``get_current_invocation_id()``, which is
``getattr(_invocation_id_local, 'invocation_id', None)`` outside asyncio tasks, to the
record sent to the host, and a record without one never reaches the invocation's log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")

_invocation_id_local = threading.local()


def current_invocation_id() -> str | None:
    return getattr(_invocation_id_local, "invocation_id", None)


@dataclass
class FakeContext:
    """``azure.functions.Context`` as the worker builds it."""

    invocation_id: str
    function_name: str = "test"
    function_directory: str = "."
    thread_local_storage: threading.local = field(default_factory=lambda: _invocation_id_local)
    trace_context: Any = None
    retry_context: Any = None


def invoke(handler: Callable[..., R], *args: Any, invocation_id: str = "inv-1") -> R:
    """Run ``handler(*args, context=...)`` as the worker's ``_run_sync_func`` does."""
    context = FakeContext(invocation_id)
    context.thread_local_storage.invocation_id = invocation_id
    try:
        return handler(*args, context=context)
    finally:
        context.thread_local_storage.invocation_id = None


@dataclass
class Logged:
    thread: str
    invocation_id: str | None
    message: str


class InvocationLog(logging.Handler):
    """What the host receives: each record with the invocation id of the thread that logged
    it, read at emit time in that thread as the worker does."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[Logged] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        logged = Logged(record.threadName or "", current_invocation_id(), record.getMessage())
        with self._lock_records:
            self.records.append(logged)

    def dropped(self) -> list[Logged]:
        """Records no invocation log shows (no id on their thread)."""
        return [r for r in self.records if r.invocation_id is None]

    def threads(self) -> set[str]:
        return {r.thread for r in self.records}


@contextlib.contextmanager
def invocation_log(logger_name: str = "cleversync") -> Iterator[InvocationLog]:
    """Capture every record of the app's loggers, at INFO and above, while the block runs."""
    handler = InvocationLog()
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
