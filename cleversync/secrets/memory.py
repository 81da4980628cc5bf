"""Secrets held in memory: credentials being checked before they are stored, and tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cleversync.errors import SecretStoreUnavailableError
from cleversync.redaction import Redactor
from cleversync.secrets.base import SecretStore


class MemorySecretStore(SecretStore):
    """A secret store in a dict; ``down`` makes it unreachable."""

    description = "in-memory secret store"

    def __init__(
        self,
        values: dict[str, str] | None = None,
        *,
        redactor: Redactor | None = None,
        cache_seconds: float = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"clock": clock} if clock else {}
        super().__init__(cache_seconds=cache_seconds, redactor=redactor, **kwargs)
        self.values = dict(values or {})
        self.down = False
        self.reads: list[str] = []

    def check(self) -> None:
        if self.down:
            raise SecretStoreUnavailableError("the in-memory secret store is down")

    def _fetch(self, name: str) -> str | None:
        self.check()
        self.reads.append(name)
        return self.values.get(name)

    def _store(self, name: str, value: str) -> None:
        self.check()
        self.values[name] = value
