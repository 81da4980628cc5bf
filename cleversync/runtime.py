"""The Functions host's composition root: built lazily on first use, cached, resettable by tests."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from cleversync.errors import ConfigurationError
from cleversync.redaction import process_redactor

if TYPE_CHECKING:
    from cleversync.health import HealthMonitor
    from cleversync.services import Services
    from cleversync.settings import Settings

logger = logging.getLogger(__name__)


class Runtime:
    """What every invocation of this process shares: the Services and the HealthMonitor.

    When the settings are invalid there are no Services: ``config_error`` holds the error,
    health reports Unhealthy naming the setting, and every other use raises it (so the app
    still indexes and answers, rather than failing to start).
    """

    def __init__(
        self,
        services: Services | None = None,
        *,
        config_error: ConfigurationError | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
        first_wait: float | None = None,
        refresh_timeout: float | None = None,
    ) -> None:
        from cleversync.health import HealthMonitor, ServicesProbe
        from cleversync.settings import HealthSettings

        if (services is None) == (config_error is None):
            raise ValueError("give either services or a configuration error")
        self._services = services
        self.config_error = config_error
        health_settings = services.settings.health if services else HealthSettings()
        options: dict[str, float] = {}
        if first_wait is not None:
            options["first_wait"] = first_wait
        if refresh_timeout is not None:
            options["timeout"] = refresh_timeout
        self.health: HealthMonitor = HealthMonitor(
            ServicesProbe(services, config_error, redact=self.redact),
            cache_seconds=health_settings.cache_duration_seconds,
            clock=clock,
            wall_clock=wall_clock,
            executor=executor,
            **options,
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        """Read the settings, configure logging once, and wire the real clients (no I/O)."""
        from cleversync.settings import Settings
        from cleversync.telemetry import configure_logging

        try:
            settings = Settings.load(environ)
        except ConfigurationError as exc:
            configure_logging(None)
            logger.error("CleverSync is not configured correctly: %s", exc)
            return cls(config_error=exc)
        except Exception as exc:  # whatever goes wrong here must not escape a handler
            configure_logging(None)
            error = ConfigurationError(
                f"the settings could not be read ({type(exc).__name__}); see the logs"
            )
            logger.exception("CleverSync could not read its settings")
            return cls(config_error=error)
        configure_logging(settings)
        return cls.for_settings(settings)

    @classmethod
    def for_settings(cls, settings: Settings) -> Runtime:
        from cleversync.services import Services

        services = Services(settings)
        try:
            # Build the shared clients now, under the caller's lock: no network is touched,
            # and concurrent first invocations then share one token cache. A bad Clever URL
            # is reported here, as configuration.
            services.token_provider  # noqa: B018
        except Exception as exc:
            services.close()
            error = (
                exc
                if isinstance(exc, ConfigurationError)
                else ConfigurationError(
                    f"the clients could not be built ({type(exc).__name__}); see the logs"
                )
            )
            logger.error("CleverSync is not configured correctly: %s", error, exc_info=exc)
            return cls(config_error=error)
        import cleversync.orchestrator  # noqa: F401 (loaded now, so the freeze below covers it)
        from cleversync.services import prepare_process

        prepare_process()
        return cls(services)

    @property
    def services(self) -> Services:
        """The Services; raises the configuration error when the settings are invalid."""
        if self._services is None:
            assert self.config_error is not None
            raise self.config_error
        return self._services

    @property
    def settings(self) -> Settings | None:
        return self._services.settings if self._services is not None else None

    def redact(self, text: str) -> str:
        """Mask secrets with the process's registry and, if different, the Services' own."""
        text = process_redactor.redact(text)
        if self._services is not None and self._services.redactor is not process_redactor:
            text = self._services.redactor.redact(text)
        return text

    def close(self) -> None:
        if self._services is not None:
            self._services.close()


_lock = threading.Lock()
_current: Runtime | None = None


def current() -> Runtime:
    """This process's Runtime, built from the environment on the first call."""
    global _current
    runtime = _current
    if runtime is None:
        with _lock:
            if _current is None:
                _current = Runtime.from_environment()
            runtime = _current
    return runtime


def reset(replacement: Runtime | None = None) -> None:
    """Drop (and close) the cached Runtime; the next ``current()`` returns ``replacement``
    or, without one, builds anew from the environment. For tests."""
    global _current
    with _lock:
        previous, _current = _current, replacement
    if previous is not None and previous is not replacement:
        previous.close()
