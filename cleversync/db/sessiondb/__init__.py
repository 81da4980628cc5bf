"""SessionDb: the school registry, sync history and leases (every statement on SessionDb)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from sqlalchemy.engine import Connection, Engine

from cleversync.db.engines import READ_ONLY
from cleversync.db.retry import in_transaction, run_with_retry
from cleversync.redaction import Redactor, mask_credentials
from cleversync.timeutil import utcnow

if TYPE_CHECKING:
    from cleversync.settings import RetryPolicy

# What the sync modules hold SessionDb by, without importing SQLAlchemy themselves.
SessionEngine: TypeAlias = Engine

_T = TypeVar("_T")


class SessionTables:
    """Reads and writes some SessionDb tables: each call one transaction, retried if
    transient; texts stored through ``_redact``, the composition root's redactor
    (registered secret values, not only the credential patterns) when given."""

    def __init__(
        self,
        engine: Engine,
        *,
        policy: RetryPolicy,
        redactor: Redactor | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._engine = engine
        self._policy = policy
        self._redact = redactor.redact if redactor is not None else mask_credentials
        self._clock = clock
        self._sleep = sleep

    def _tx(self, what: str, fn: Callable[[Connection], _T]) -> _T:
        return in_transaction(self._engine, fn, policy=self._policy, what=what, sleep=self._sleep)

    def _read(self, what: str, fn: Callable[[Connection], _T]) -> _T:
        """``fn`` on a connection outside any explicit transaction (reads), retried."""

        def run() -> _T:
            with self._engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})  # a snapshot; no write lock
                return fn(conn)

        return run_with_retry(run, policy=self._policy, what=what, sleep=self._sleep)
