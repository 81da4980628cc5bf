"""The Functions host's Runtime around the composition root (``Services``): built lazily on
first use, cached, resettable by tests.

Building it (reading the settings, importing the database and HTTP stacks, wiring the
clients) takes about half a second in a fresh process. Work that needs it (a sync, the timer)
builds it on the calling thread; health must answer at once, so it only starts the build in
the background and answers "starting" until the Runtime is there (``ready()``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, TypedDict

from cleversync.errors import ConfigurationError
from cleversync.redaction import Redactor
from cleversync.threads import start_thread

if TYPE_CHECKING:
    from cleversync.health.monitor import HealthMonitor, Wait
    from cleversync.services import Services
    from cleversync.settings import Settings

logger = logging.getLogger(__name__)


class _MonitorWaits(TypedDict, total=False):
    """The HealthMonitor's waits a caller overrides (the others keep its defaults)."""

    first_wait: float
    timeout: float


class Runtime:
    """What every invocation of this process shares: the Services (the composition root)
    and the HealthMonitor over them; the handlers get the parts they use.

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
        wait: Wait | None = None,
        first_wait: float | None = None,
        refresh_timeout: float | None = None,
    ) -> None:
        from cleversync.health.checks import ProbeTargets, ServicesProbe
        from cleversync.health.monitor import HealthMonitor
        from cleversync.settings import HealthSettings

        if (services is None) == (config_error is None):
            raise ValueError("give either services or a configuration error")
        self._services = services
        self.config_error = config_error
        # Without Services no secret was ever read: a registry of its own masks the patterns.
        self.redactor = services.redactor if services else Redactor()
        health_settings = services.settings.health if services else HealthSettings()
        options: _MonitorWaits = {}
        if first_wait is not None:
            options["first_wait"] = first_wait
        if refresh_timeout is not None:
            options["timeout"] = refresh_timeout
        self.health: HealthMonitor = HealthMonitor(
            ServicesProbe(
                ProbeTargets.of(services) if services else None,
                config_error,
                redact=self.redact,
            ),
            cache_seconds=health_settings.cache_duration_seconds,
            clock=clock,
            wall_clock=wall_clock,
            executor=executor,
            wait=wait,
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
            runtime = cls(config_error=exc)
            configure_logging(None, redactor=runtime.redactor)
            logger.error("CleverSync is not configured correctly: %s", exc)
            return runtime
        except Exception as exc:  # whatever goes wrong here must not escape a handler
            error = ConfigurationError(
                f"the settings could not be read ({type(exc).__name__}); see the logs"
            )
            runtime = cls(config_error=error)
            configure_logging(None, redactor=runtime.redactor)
            logger.exception("CleverSync could not read its settings")
            return runtime
        return cls.for_settings(settings)

    @classmethod
    def for_settings(cls, settings: Settings) -> Runtime:
        """The Runtime over new Services, with the process's logging redacted by their Redactor."""
        from cleversync.services import Services
        from cleversync.telemetry import configure_logging

        services = Services(settings)
        configure_logging(settings, redactor=services.redactor)
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
        import cleversync.runs  # noqa: F401 (the queue path and the orchestrator, loaded before the freeze)
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

    def redact(self, text: str) -> str:
        """Mask the secrets the Services registered and the credential patterns."""
        return self.redactor.redact(text)

    def close(self) -> None:
        if self._services is not None:
            self._services.close()


Build = Callable[[], Runtime]
Start = Callable[[Callable[[], None]], None]


def _in_daemon_thread(work: Callable[[], None]) -> None:
    start_thread(work, name="cleversync-startup")


class LazyRuntime:
    """One process's Runtime, built once by ``build`` (``Runtime.from_environment``).

    ``get()`` builds it on the calling thread (or waits for a build already running);
    ``ready()`` never waits: it returns the Runtime when it is built, and otherwise starts
    the build with ``start`` (a daemon thread) and returns None.
    """

    def __init__(
        self,
        build: Build | None = None,
        *,
        built: Runtime | None = None,
        start: Start = _in_daemon_thread,
    ) -> None:
        self._build = build or Runtime.from_environment
        self._start = start
        self._runtime = built
        self._build_lock = threading.Lock()  # held for the whole build
        self._state_lock = threading.Lock()  # held for a moment, never during a build
        self._starting = False
        self._closed = False

    @property
    def built(self) -> Runtime | None:
        return self._runtime

    def get(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            with self._build_lock:
                if self._runtime is None:
                    self._runtime = self._build_safely()
                runtime = self._runtime
        return runtime

    def ready(self) -> Runtime | None:
        runtime = self._runtime
        if runtime is not None:
            return runtime
        with self._state_lock:
            if self._starting or self._closed:
                return None
            self._starting = True
        try:
            self._start(self._build_in_background)
        except Exception:  # no thread to build on: say "starting" now, try on the next call
            logger.exception("Could not start building CleverSync's clients")
            with self._state_lock:
                self._starting = False
        return None

    def close(self) -> None:
        """Close the Runtime, now if it is built, else as soon as a running build ends."""
        with self._state_lock:
            self._closed = True
            runtime = self._runtime
        if runtime is not None:
            runtime.close()

    def _build_in_background(self) -> None:
        try:
            with self._build_lock:
                if self._runtime is not None:
                    return
                runtime = self._build_safely()
                # The first health check starts now, so the next probe finds it done.
                try:
                    runtime.health.start()
                except Exception:
                    logger.exception("Could not start the first health check")
                with self._state_lock:  # published and checked at once: closed exactly once
                    self._runtime = runtime
                    closed = self._closed
            if closed:
                runtime.close()
        finally:
            with self._state_lock:
                self._starting = False

    def _build_safely(self) -> Runtime:
        try:
            return self._build()
        except Exception as exc:
            # The settings' and clients' own errors are already configuration errors; this
            # is anything else (a broken install). Answer with it rather than raise from
            # every handler, as a wrong setting does.
            logger.exception("CleverSync could not start")
            return Runtime(
                config_error=ConfigurationError(
                    f"CleverSync could not start ({type(exc).__name__}); see the logs"
                )
            )


_lock = threading.Lock()
_process = LazyRuntime()


def current() -> Runtime:
    """This process's Runtime, built from the environment on the first call (on this thread)."""
    return _process.get()


def ready() -> Runtime | None:
    """This process's Runtime if it is built; else None, with the build started in the
    background. For handlers that must answer at once (health)."""
    return _process.ready()


def reset(replacement: Runtime | None = None, *, build: Build | None = None) -> None:
    """Drop (and close) the cached Runtime; the next ``current()`` returns ``replacement``
    or, without one, builds anew with ``build`` (default: from the environment). For tests."""
    global _process
    with _lock:
        previous, _process = _process, LazyRuntime(build, built=replacement)
    if previous.built is not replacement or replacement is None:
        previous.close()
