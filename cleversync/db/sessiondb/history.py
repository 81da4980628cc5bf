"""SyncHistory in SessionDb: one row per school, entity and run; where the next run starts.

A run's rows share their ``SyncStartTime``, which identifies the run. The school's latest
*good* run is the latest whose rows are all ``Success`` or ``Partial``: its cursor and
timestamp are where incremental sync starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from cleversync.db.schema import School, SyncChange, SyncHistory
from cleversync.db.sessiondb import SessionTables
from cleversync.redaction import Redactor, mask_credentials
from cleversync.runtally import Waits
from cleversync.settings import RetryPolicy
from cleversync.sync.plan import EntityRun, LastRun
from cleversync.timeutil import utcnow
from cleversync.vocabulary import GOOD_STATUSES, RunStatus, SyncType

MAX_MESSAGE = 4000
RETRIED_ATTEMPTS = 4  # attempts of one queued run read per run counted (the host makes 3)
_TABLE = SyncHistory.__table__


@dataclass
class Counts:
    processed: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0


def sanitize(message: str | None, redact: Callable[[str], str] = mask_credentials) -> str | None:
    """What may be stored or shown: secrets masked, bounded length.

    Without ``redact`` only the credential patterns are masked: results held in memory are
    cleaned of registered secrets where they leave the process (SyncHistory, HTTP, CLI,
    logs), by the Redactor of the composition root that built them.
    """
    if not message:
        return None
    text = redact(message)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


_T = TypeVar("_T")


class History(SessionTables):
    """Reads and writes SyncHistory; every write is its own transaction, retried if transient."""

    def __init__(
        self,
        engine: Engine,
        *,
        policy: RetryPolicy,
        redactor: Redactor,  # required: error messages are stored
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(engine, policy=policy, redactor=redactor, clock=clock, sleep=sleep)

    def _write(self, what: str, statement: Any, params: Any = None) -> Any:
        return self._tx(what, lambda conn: conn.execute(statement, params))

    def open_run(
        self,
        *,
        school_id: int,
        entities: Sequence[str],
        sync_type: SyncType,
        started_at: datetime,
        correlation_id: str,
        status: RunStatus = RunStatus.IN_PROGRESS,
    ) -> dict[str, int]:
        """Open one InProgress row per entity (a preview's: DryRun); returns their SyncIds
        by entity."""

        def open_rows(conn: Connection) -> dict[str, int]:
            ids = {}
            for entity in entities:
                ids[entity] = conn.execute(
                    insert(_TABLE).returning(_TABLE.c.SyncId),
                    {
                        "SchoolId": school_id,
                        "EntityType": entity,
                        "SyncType": sync_type,
                        "SyncStartTime": started_at,
                        "Status": status,
                        "RecordsProcessed": 0,
                        "RecordsInserted": 0,
                        "RecordsUpdated": 0,
                        "RecordsDeleted": 0,
                        "RecordsFailed": 0,
                        "CorrelationId": correlation_id,
                    },
                ).scalar_one()
            return ids

        return self._tx("opening SyncHistory rows", open_rows)

    def record_failed_run(
        self,
        *,
        school_id: int,
        entities: Sequence[str],
        correlation_id: str,
        message: str,
    ) -> None:
        """One Failed row per entity for a run that failed before writing any (it counts in
        the school's failure streak like any other failed run)."""
        now = self._clock()
        self._write(
            "recording a failed run in SyncHistory",
            insert(_TABLE),
            [
                {
                    "SchoolId": school_id,
                    "EntityType": entity,
                    "SyncType": SyncType.INCREMENTAL,
                    "SyncStartTime": now,
                    "SyncEndTime": now,
                    "Status": RunStatus.FAILED,
                    "RecordsProcessed": 0,
                    "RecordsInserted": 0,
                    "RecordsUpdated": 0,
                    "RecordsDeleted": 0,
                    "RecordsFailed": 0,
                    "ErrorMessage": sanitize(message, self._redact),
                    "CorrelationId": correlation_id,
                }
                for entity in entities
            ],
        )

    def set_sync_type(self, sync_ids: Sequence[int], sync_type: SyncType) -> None:
        self._write(
            "updating SyncHistory",
            update(_TABLE).where(_TABLE.c.SyncId.in_(list(sync_ids))).values(SyncType=sync_type),
        )

    def close(
        self,
        sync_id: int,
        *,
        status: RunStatus,
        counts: Counts,
        error: str | None,
        last_event_id: str | None,
        last_sync_timestamp: datetime | None,
        changes_omitted: int = 0,
        waits: Waits | None = None,
    ) -> None:
        waits = waits or Waits()
        self._write(
            "closing a SyncHistory row",
            update(_TABLE)
            .where(_TABLE.c.SyncId == sync_id)
            .values(
                Status=status,
                SyncEndTime=self._clock(),
                RecordsProcessed=counts.processed,
                RecordsInserted=counts.inserted,
                RecordsUpdated=counts.updated,
                RecordsDeleted=counts.deleted,
                RecordsFailed=counts.failed,
                ErrorMessage=sanitize(error, self._redact),
                LastEventId=last_event_id,
                LastSyncTimestamp=last_sync_timestamp,
                ChangesOmitted=changes_omitted,
                Retries=waits.retries,
                RateLimitWaits=waits.rate_limit_waits,
                RateLimitWaitSeconds=round(waits.rate_limit_wait_seconds, 3),
            ),
        )

    def close_abandoned(self, school_id: int, message: str) -> int:
        """Close the school's InProgress rows as Failed: their run died (we hold the lease now)."""
        result = self._write(
            "closing abandoned SyncHistory rows",
            update(_TABLE)
            .where(_TABLE.c.SchoolId == school_id, _TABLE.c.Status == RunStatus.IN_PROGRESS)
            .values(
                Status=RunStatus.FAILED,
                SyncEndTime=self._clock(),
                ErrorMessage=sanitize(message, self._redact),
            ),
        )
        return result.rowcount or 0

    def close_expired(self, message: str) -> dict[int, int]:
        """Close, as Failed, the InProgress rows of every school (active or not) whose sync
        lease has expired or is not held: the run that opened them is gone, and a school
        deactivated after a crash has no next run to close them. Rows closed, by school."""
        schools = School.__table__
        now = self._clock()
        dead = select(schools.c.SchoolId).where(
            or_(
                schools.c.SyncLeaseOwner.is_(None),
                schools.c.SyncLeaseExpiresAt.is_(None),
                schools.c.SyncLeaseExpiresAt < now,
            )
        )
        expired = (_TABLE.c.Status == RunStatus.IN_PROGRESS, _TABLE.c.SchoolId.in_(dead))

        def close(conn: Any) -> dict[int, int]:
            counts = select(_TABLE.c.SchoolId, func.count()).where(*expired)
            found = {
                int(school): int(n)
                for school, n in conn.execute(counts.group_by(_TABLE.c.SchoolId))
            }
            if found:
                conn.execute(
                    update(_TABLE)
                    .where(*expired)
                    .values(
                        Status=RunStatus.FAILED,
                        SyncEndTime=now,
                        ErrorMessage=sanitize(message, self._redact),
                    )
                )
            return found

        return self._tx("closing expired SyncHistory rows", close)

    def last_good_run(self, school_id: int) -> LastRun | None:
        bad = func.sum(case((_TABLE.c.Status.in_(GOOD_STATUSES), 0), else_=1))
        query = (
            select(
                _TABLE.c.SyncStartTime,
                func.max(_TABLE.c.LastEventId),
                func.max(_TABLE.c.LastSyncTimestamp),
            )
            .where(_TABLE.c.SchoolId == school_id, _TABLE.c.Status != RunStatus.DRY_RUN)
            .group_by(_TABLE.c.SyncStartTime)
            .having(bad == 0)
            .order_by(_TABLE.c.SyncStartTime.desc())
            .limit(1)
        )
        row = self._read("reading SyncHistory", lambda conn: conn.execute(query).first())
        if row is None:
            return None
        return LastRun(started_at=row[0], last_event_id=row[1], last_sync_timestamp=row[2])

    def entity_runs(self, school_id: int, limit: int = 1000) -> dict[str, list[EntityRun]]:
        """The school's Success and Partial rows by entity, newest first (for
        ``expects_rows``: whether each entity's table must hold rows)."""
        query = (
            select(
                _TABLE.c.EntityType,
                _TABLE.c.SyncType,
                _TABLE.c.RecordsProcessed,
                _TABLE.c.RecordsInserted,
                _TABLE.c.RecordsUpdated,
                _TABLE.c.RecordsFailed,
            )
            .where(_TABLE.c.SchoolId == school_id, _TABLE.c.Status.in_(GOOD_STATUSES))
            .order_by(_TABLE.c.SyncStartTime.desc(), _TABLE.c.SyncId.desc())
            .limit(limit)
        )
        rows = self._read("reading SyncHistory", lambda conn: conn.execute(query).all())
        runs: dict[str, list[EntityRun]] = {}
        for entity, sync_type, processed, inserted, updated, failed in rows:
            runs.setdefault(entity, []).append(
                EntityRun(sync_type, processed or 0, inserted or 0, updated or 0, failed or 0)
            )
        return runs

    def run_statuses(self, school_id: int, limit: int = 50) -> list[RunStatus]:
        """The school's latest runs, newest first, each as Failed, Partial or Success.

        The attempts of one queued run (its message delivered again after a failure) share
        its CorrelationId: they count as one run, the latest attempt's outcome. Previews
        (DryRun) are not runs: they neither fail nor reset a failure streak."""
        worst = func.max(
            case(
                (_TABLE.c.Status == RunStatus.FAILED, 3),
                (_TABLE.c.Status == RunStatus.IN_PROGRESS, 2),
                (_TABLE.c.Status == RunStatus.PARTIAL, 1),
                else_=0,
            )
        )
        query = (
            select(_TABLE.c.SyncStartTime, worst, func.max(_TABLE.c.CorrelationId))
            .where(_TABLE.c.SchoolId == school_id, _TABLE.c.Status != RunStatus.DRY_RUN)
            .group_by(_TABLE.c.SyncStartTime)
            .order_by(_TABLE.c.SyncStartTime.desc())
            .limit(limit * RETRIED_ATTEMPTS)
        )
        rows = self._read("reading SyncHistory", lambda conn: conn.execute(query).all())
        names = {
            3: RunStatus.FAILED,
            2: RunStatus.IN_PROGRESS,
            1: RunStatus.PARTIAL,
            0: RunStatus.SUCCESS,
        }
        statuses: list[RunStatus] = []
        newer: str | None = None
        for _, level, correlation_id in rows:
            if not (correlation_id and correlation_id == newer):
                statuses.append(names[int(level)])
            newer = correlation_id
        return statuses[:limit]

    def failure_streak(self, school_id: int, limit: int = 50) -> int:
        """Failed runs since the last Success (Partial runs neither count nor reset)."""
        streak = 0
        for status in self.run_statuses(school_id, limit):
            if status == RunStatus.SUCCESS:
                break
            if status == RunStatus.FAILED:
                streak += 1
        return streak

    def purge(self, older_than: datetime) -> int:
        """Delete the rows older than ``older_than`` (not those in progress) and their change
        detail (deleted first, not left to the cascade: a large purge stays one statement
        per table whatever the database's foreign-key settings)."""
        old = (_TABLE.c.SyncStartTime < older_than, _TABLE.c.Status != RunStatus.IN_PROGRESS)
        changes = SyncChange.__table__

        def purge(conn: Connection) -> int:
            conn.execute(
                delete(changes).where(changes.c.SyncId.in_(select(_TABLE.c.SyncId).where(*old)))
            )
            return conn.execute(delete(_TABLE).where(*old)).rowcount or 0

        return self._tx("purging old SyncHistory rows", purge)

    def rows(
        self,
        *,
        school_id: int | None = None,
        since: datetime | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        query = select(_TABLE).order_by(_TABLE.c.SyncStartTime.desc(), _TABLE.c.SyncId.desc())
        if school_id is not None:
            query = query.where(_TABLE.c.SchoolId == school_id)
        if since is not None:
            query = query.where(_TABLE.c.SyncStartTime >= since)
        if status is not None:
            query = query.where(_TABLE.c.Status == status)
        query = query.limit(limit)
        return self._read(
            "reading SyncHistory", lambda conn: [dict(r._mapping) for r in conn.execute(query)]
        )

    def rows_for_run(self, correlation_id: str) -> list[dict[str, Any]]:
        query = (
            select(_TABLE).where(_TABLE.c.CorrelationId == correlation_id).order_by(_TABLE.c.SyncId)
        )
        return self._read(
            "reading SyncHistory", lambda conn: [dict(r._mapping) for r in conn.execute(query)]
        )
