"""The run's dimensions on every log record made while it works (retries, waits, token refreshes).

A school's run sets its ``CorrelationId``, ``DistrictId`` and ``SchoolId`` here; the filter
the entry points install copies them onto each record made in that thread that does not
already carry them, so Application Insights can join a retry to the school it delayed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "cleversync_log_context", default=None
)


@contextlib.contextmanager
def log_context(**dimensions: Any) -> Iterator[None]:
    """Add ``dimensions`` to every record logged inside the block (nested blocks merge)."""
    current = _context.get() or {}
    token = _context.set({**current, **{k: v for k, v in dimensions.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the current log context onto records (never overwriting what a record has)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if key not in record.__dict__:
                record.__dict__[key] = value
        return True
