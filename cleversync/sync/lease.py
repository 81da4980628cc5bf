"""The per-school sync lease in SessionDb: two runs never sync one school at once.

A run takes the lease for a few minutes and renews it as it goes; a lease that was not
renewed in time belongs to a dead run (a crash, a killed Functions instance), so the next
run takes it over.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection, Engine

from cleversync.db.retry import in_transaction
from cleversync.db.schema import School
from cleversync.errors import LeaseHeldError, LeaseLostError
from cleversync.settings import RetryPolicy
from cleversync.timeutil import iso, utcnow

LEASE_DURATION = timedelta(minutes=5)
RENEW_EVERY = timedelta(seconds=30)
_TABLE = School.__table__


def new_owner() -> str:
    """Who holds a lease: host, process and a random part (several runs per process)."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Lease:
    """A held lease; ``renew`` is cheap to call often (it writes at most every 30 s)."""

    def __init__(
        self,
        engine: Engine,
        school_id: int,
        owner: str,
        *,
        policy: RetryPolicy,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        duration: timedelta,
        taken_over_from: str | None,
    ) -> None:
        self._engine = engine
        self.school_id = school_id
        self.owner = owner
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._duration = duration
        self._renewed_at = clock()
        self.taken_over_from = taken_over_from

    def renew(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._renewed_at < min(RENEW_EVERY, self._duration / 4):
            return
        renewed = self._update("renewing the sync lease", SyncLeaseExpiresAt=now + self._duration)
        if renewed != 1:
            raise LeaseLostError(
                f"school {self.school_id}'s sync lease was taken over by another run (this run "
                "went longer than the lease without renewing it); stopping this run"
            )
        self._renewed_at = now

    def release(self) -> None:
        self._update("releasing the sync lease", SyncLeaseOwner=None, SyncLeaseExpiresAt=None)

    def _update(self, what: str, **values: Any) -> int:
        """Change the lease columns while this run still owns the lease; rows changed."""
        statement = (
            update(_TABLE)
            .where(_TABLE.c.SchoolId == self.school_id, _TABLE.c.SyncLeaseOwner == self.owner)
            .values(**values)
        )
        return in_transaction(
            self._engine,
            lambda conn: conn.execute(statement).rowcount,
            policy=self._policy,
            what=what,
            sleep=self._sleep,
        )


class Leases:
    def __init__(
        self,
        engine: Engine,
        *,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        duration: timedelta = LEASE_DURATION,
    ) -> None:
        self._engine = engine
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._duration = duration

    def acquire(self, school_id: int, owner: str) -> Lease:
        """Take the school's lease, or raise LeaseHeldError naming the live holder."""
        now = self._clock()

        def take(conn: Connection) -> tuple[int, str | None, datetime | None]:
            before = conn.execute(
                select(_TABLE.c.SyncLeaseOwner, _TABLE.c.SyncLeaseExpiresAt).where(
                    _TABLE.c.SchoolId == school_id
                )
            ).first()
            taken = conn.execute(
                update(_TABLE)
                .where(
                    _TABLE.c.SchoolId == school_id,
                    or_(
                        _TABLE.c.SyncLeaseOwner.is_(None),
                        _TABLE.c.SyncLeaseExpiresAt.is_(None),
                        _TABLE.c.SyncLeaseExpiresAt < now,
                    ),
                )
                .values(SyncLeaseOwner=owner, SyncLeaseExpiresAt=now + self._duration)
            ).rowcount
            return taken, (before[0] if before else None), (before[1] if before else None)

        taken, holder, expires = in_transaction(
            self._engine, take, policy=self._policy, what="taking the sync lease", sleep=self._sleep
        )
        if taken != 1:
            raise LeaseHeldError(
                f"school {school_id} is already being synced (by {holder}, lease until "
                f"{iso(expires)}); try again when that run has finished"
            )
        return Lease(
            self._engine,
            school_id,
            owner,
            policy=self._policy,
            clock=self._clock,
            sleep=self._sleep,
            duration=self._duration,
            taken_over_from=holder,
        )
