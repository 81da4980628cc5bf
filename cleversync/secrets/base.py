"""The secret store interface, with the caching, audit logging and redaction every store shares."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from cleversync.errors import SecretNotFoundError, SecretStoreUnavailableError
from cleversync.redaction import Redactor

logger = logging.getLogger(__name__)

# While the store is unreachable, a stale cached value serves for this long between tries.
OUTAGE_RETRY_SECONDS = 30.0


class SecretStore(ABC):
    """Reads and writes secrets by Key Vault name; values are cached for ``cache_seconds``.

    A missing secret is cached as missing too, so fallbacks (a district's own app, then the
    global one) do not ask the vault again on every call; a secret created or rotated in the
    store is picked up once the cache entry expires.
    """

    description: str = "secret store"

    def __init__(
        self,
        *,
        cache_seconds: float = 900,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache_seconds = cache_seconds
        # Standalone (a test, a check), values are masked in this store's own registry.
        self._redactor = redactor or Redactor()
        self._clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def get(self, name: str) -> str | None:
        """The secret's value, or None when the store has no such secret.

        When the store cannot be reached, a value cached earlier keeps serving (past its
        expiry) and the failure is remembered for health; with nothing cached, the
        SecretStoreUnavailableError propagates.
        """
        now = self._clock()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            value = self._fetch(name)
        except SecretStoreUnavailableError as exc:
            self.last_error = str(exc)
            if cached is not None and cached[1] is not None:
                # Serve the stale value; ask the store again only after a pause, so an
                # outage does not cost every read the store's full retries.
                with self._lock:
                    self._cache[name] = (
                        now - self._cache_seconds + OUTAGE_RETRY_SECONDS,
                        cached[1],
                    )
                logger.warning(
                    "The %s is unreachable; serving the cached value of %s: %s",
                    self.description,
                    name,
                    exc,
                    extra={"SecretName": name},
                )
                return cached[1]
            raise
        self.last_error = None
        # Audit trail: which secret was read, never its value.
        logger.info(
            "Read secret %s from the %s (%s)",
            name,
            self.description,
            "found" if value is not None else "not found",
            extra={"SecretName": name},
        )
        if value is not None:
            self._redactor.register(value)
        with self._lock:
            self._cache[name] = (now, value)
        return value

    def require(self, name: str) -> str:
        """The secret's value; SecretNotFoundError naming it when it does not exist."""
        value = self.get(name)
        if value is None:
            raise SecretNotFoundError(name, store=self.description)
        return value

    def set(self, name: str, value: str) -> None:
        """Create or replace a secret."""
        self._redactor.register(value)
        self._store(name, value)
        logger.info("Wrote secret %s to the %s", name, self.description, extra={"SecretName": name})
        with self._lock:
            self._cache[name] = (self._clock(), value)

    def invalidate(self, name: str | None = None) -> None:
        """Forget cached values (all of them, or one), so the next read asks the store."""
        with self._lock:
            if name is None:
                self._cache.clear()
            else:
                self._cache.pop(name, None)

    def has_cached_values(self) -> bool:
        """Whether cached secrets can still serve (health reports Degraded, not Unhealthy)."""
        with self._lock:
            return any(value is not None for _, value in self._cache.values())

    @abstractmethod
    def check(self) -> None:
        """Raise SecretStoreUnavailableError when the store cannot be reached."""

    @abstractmethod
    def _fetch(self, name: str) -> str | None: ...

    @abstractmethod
    def _store(self, name: str, value: str) -> None: ...
