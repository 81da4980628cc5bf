"""Logging set-up for the entry points, and the filter that keeps secrets out of every record.

Package modules only call ``logging.getLogger(__name__)``; the Functions app and the CLI call
``configure_logging`` once. The redacting filter goes on every handler (a filter on a logger
would miss records propagated from child loggers), so no handler, including Azure Monitor's,
sees a record before it is cleaned.
"""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, TextIO

from cleversync.redaction import Redactor, process_redactor

if TYPE_CHECKING:
    from cleversync.settings import Settings

# Attributes every LogRecord has; anything else came from ``extra=`` (custom dimensions).
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_MARK = "_cleversync_handler"


class RedactingFilter(logging.Filter):
    """Masks secrets in the message, its arguments, the traceback and string extras.

    Idempotent: a record that passes through several handlers is cleaned once and stays
    clean. The exception is replaced by its redacted text (``exc_text``, which formatters
    print) and by OpenTelemetry's ``exception.*`` attributes, which Azure Monitor turns into
    an exception entry.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or process_redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            stack = redact("".join(traceback.format_exception(exc)).rstrip("\n"))
            record.exc_text = stack
            record.__dict__["exception.type"] = type(exc).__qualname__
            record.__dict__["exception.message"] = redact(str(exc))
            record.__dict__["exception.stacktrace"] = stack
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                record.__dict__[key] = redact(value)
        return True


def install_redaction(
    redactor: Redactor | None = None, logger: logging.Logger | None = None
) -> None:
    """Put the redacting filter on every handler of ``logger`` (default: the root logger)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(redactor))


def configure_logging(
    settings: Settings | None,
    *,
    stream: TextIO | None = None,
    level: int | None = None,
    redactor: Redactor | None = None,
) -> None:
    """Set up logging once for an entry point: a stream handler if asked, redaction everywhere.

    ``level`` overrides ``CleverSync__Logging__LogLevel`` (the CLI's --verbose).
    """
    root = logging.getLogger()
    if level is None:
        level = settings.logging.python_level if settings is not None else logging.INFO
    package = logging.getLogger("cleversync")
    package.setLevel(level)
    # The Azure SDKs log every request at INFO (URLs, headers): keep them to warnings.
    logging.getLogger("azure").setLevel(max(level, logging.WARNING))
    if stream is not None and not any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setLevel(level)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    install_redaction(redactor)
