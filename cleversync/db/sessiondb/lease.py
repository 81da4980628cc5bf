"""The per-school sync lease in SessionDb: two runs never sync one school at once.

A run takes the lease for a few minutes and renews it as it goes; a lease that was not
renewed in time belongs to a dead run (a crash, a killed Functions instance), so the next
run takes it over. The owner is ``host:pid:random``: a lease held by a process of this
host that no longer exists is taken over at once, without waiting for it to expire.
"""

from __future__ import annotations

import logging
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
from cleversync.errors import LeaseHeldError, LeaseLostError, NotFoundError
from cleversync.settings import RetryPolicy
from cleversync.timeutil import iso, utcnow

logger = logging.getLogger(__name__)

LEASE_DURATION = timedelta(minutes=5)
RENEW_EVERY = timedelta(seconds=30)
_TABLE = School.__table__

# What can be told about a lease's owner from this machine.
GONE = "gone"  # a process of this host that no longer exists
ALIVE = "alive"  # a running process of this host
REMOTE = "remote"  # another host (or an owner string we cannot read): cannot tell


def new_owner(tag: str = "") -> str:
    """Who holds a lease: host, process and a random part (several runs per process),
    which starts with ``tag`` when given (a queued run's id: its deliveries know each other)."""
    return f"{_host()}:{os.getpid()}:{tag}{uuid.uuid4().hex[:12]}"


def _host() -> str:
    return socket.gethostname()[:100]


def owner_process(owner: str) -> tuple[str, int] | None:
    """(host, pid) of an owner string ``host:pid:random``; None if it is not one."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) <= 0:
        return None
    return parts[0], int(parts[1])


def owner_state(owner: str) -> str:
    """GONE, ALIVE or REMOTE for a lease owner."""
    process = owner_process(owner)
    if process is None or process[0] != _host():
        return REMOTE
    pid = process[1]
    if pid == os.getpid():
        return ALIVE
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return GONE
    except OSError:  # PermissionError: it exists, under another user
        return ALIVE
    return ALIVE


def held_message(school_id: int, holder: str | None, expires: datetime | None) -> str:
    """Why a school's lease could not be taken, never showing an unknown holder as None."""
    if holder is None:
        return (
            f"school {school_id} is already being synced: another run took its lease just "
            "now; try again when that run has finished"
        )
    until = f", lease until {iso(expires)}" if expires is not None else ""
    return (
        f"school {school_id} is already being synced (by {holder}{until}); try again when "
        "that run has finished (if it is gone: 'cleversync school release-lease "
        f"--school-id {school_id}')"
    )


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

        def take(conn: Connection) -> tuple[int, str | None, datetime | None, bool]:
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
            held = (before[0], before[1]) if before else (None, None)
            return taken, *held, before is not None

        taken, holder, expires, registered = in_transaction(
            self._engine, take, policy=self._policy, what="taking the sync lease", sleep=self._sleep
        )
        if not registered:  # removed since the run listed it ('school remove')
            raise NotFoundError(f"no school has id {school_id} (removed since the run began)")
        if taken != 1 and holder is not None and owner_state(holder) == GONE:
            # A crashed or killed run of this host: no need to wait for its lease to expire.
            taken = self._take(school_id, owner, holder, now + self._duration)
            if taken == 1:
                logger.warning(
                    "Took over school %s's sync lease from %s: that process no longer exists "
                    "on this host",
                    school_id,
                    holder,
                )
        if taken != 1:
            raise LeaseHeldError(held_message(school_id, holder, expires))
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

    def holder(self, school_id: int) -> tuple[str | None, datetime | None]:
        """The school's lease owner and expiry (None, None when it holds none)."""
        query = select(_TABLE.c.SyncLeaseOwner, _TABLE.c.SyncLeaseExpiresAt).where(
            _TABLE.c.SchoolId == school_id
        )
        row = in_transaction(
            self._engine,
            lambda conn: conn.execute(query).first(),
            policy=self._policy,
            what="reading the sync lease",
            sleep=self._sleep,
        )
        return (row[0], row[1]) if row is not None else (None, None)

    def release_held(self, school_id: int, holder: str) -> bool:
        """Free the school's lease if ``holder`` still has it (not one taken since)."""
        return self._take(school_id, None, holder, None) == 1

    def release_this_process(self) -> int:
        """Free every lease this process holds (it is stopping at once); leases freed."""
        mine = f"{_host()}:{os.getpid()}:"
        return in_transaction(
            self._engine,
            lambda conn: (
                conn.execute(
                    update(_TABLE)
                    .where(_TABLE.c.SyncLeaseOwner.startswith(mine, autoescape=True))
                    .values(SyncLeaseOwner=None, SyncLeaseExpiresAt=None)
                ).rowcount
            ),
            policy=self._policy,
            what="releasing the sync leases",
            sleep=self._sleep,
        )

    def _take(
        self, school_id: int, owner: str | None, holder: str, expires: datetime | None
    ) -> int:
        """Hand the lease from ``holder`` to ``owner`` (None: free it) if nobody took it since."""
        return in_transaction(
            self._engine,
            lambda conn: (
                conn.execute(
                    update(_TABLE)
                    .where(_TABLE.c.SchoolId == school_id, _TABLE.c.SyncLeaseOwner == holder)
                    .values(SyncLeaseOwner=owner, SyncLeaseExpiresAt=expires)
                ).rowcount
            ),
            policy=self._policy,
            what="taking over the sync lease",
            sleep=self._sleep,
        )
