"""Logging set-up for the entry points: redaction, the run's dimensions, Azure Monitor.

Package modules only call ``logging.getLogger(__name__)``; the Functions app and the CLI call
``configure_logging`` once. The redacting filter goes on every handler (a filter on a logger
would miss records propagated from child loggers), so no handler, including Azure Monitor's,
sees a record before it is cleaned. With ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set, logs
and traces go to Azure Monitor through OpenTelemetry (``azure-monitor-opentelemetry``, imported
only then); record attributes given with ``extra=`` become custom dimensions.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from cleversync.logcontext import ContextFilter
from cleversync.redaction import Redactor

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

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

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


def install_redaction(redactor: Redactor, logger: logging.Logger | None = None) -> None:
    """Put the context and redacting filters on every handler of ``logger`` (default: root).

    A handler that already redacts is given ``redactor`` instead of its old one: the latest
    composition root's secrets are the ones this process now holds.
    """
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.filters.insert(0, ContextFilter())
        existing = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        for redacting in existing:
            redacting.redactor = redactor
        if not existing:
            handler.addFilter(RedactingFilter(redactor))


AzureMonitorConfigurator = Callable[..., Any]
_monitor_configured = False


def configure_logging(
    settings: Settings | None,
    *,
    stream: TextIO | None = None,
    level: int | None = None,
    redactor: Redactor,
    azure_monitor: AzureMonitorConfigurator | None = None,
) -> None:
    """Set up logging once for an entry point: a stream handler if asked, Azure Monitor when
    a connection string is set, redaction and the run's dimensions on every handler.

    ``redactor`` is the composition root's (``Services.redactor``); ``level`` overrides
    ``CleverSync__Logging__LogLevel`` (the CLI's --verbose);
    ``azure_monitor`` replaces ``configure_azure_monitor`` (tests).
    """
    root = logging.getLogger()
    if level is None:
        level = settings.logging.python_level if settings is not None else logging.INFO
    package = logging.getLogger("cleversync")
    package.setLevel(level)
    # The Azure SDKs log every request at INFO (URLs, headers): keep them to warnings.
    logging.getLogger("azure").setLevel(max(level, logging.WARNING))
    if stream is not None and not any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        handler: logging.Handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setLevel(level)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    if settings is not None and settings.appinsights_connection_string:
        _configure_azure_monitor(settings.appinsights_connection_string, azure_monitor)
    install_redaction(redactor)
    install_redaction(redactor, package)


def _configure_azure_monitor(
    connection_string: str, configurator: AzureMonitorConfigurator | None
) -> None:
    """Export to Application Insights, once per process (OpenTelemetry's providers are global).

    The exporter works in background threads with its own retries and timeouts: an
    unreachable endpoint costs the sync nothing but those threads' attempts.
    """
    global _monitor_configured
    if _monitor_configured:
        return
    if configurator is None:
        from azure.monitor.opentelemetry import configure_azure_monitor

        configurator = configure_azure_monitor
    try:
        configurator(
            connection_string=connection_string,
            logger_name="cleversync",
            enable_live_metrics=False,
        )
    except Exception as exc:  # telemetry must never stop the app from syncing
        logging.getLogger(__name__).warning(
            "Azure Monitor could not be configured; logging locally only: %s", type(exc).__name__
        )
        return
    _monitor_configured = True
