"""SyncRuns and SyncRunSchools in SessionDb: a run's schools from queued to their outcome.

A run is recorded with all its schools ``Queued``; each school's queue message marks it
``Running`` (counting attempts), then finishes it with its outcome. The run itself is
finished (``SyncRuns.FinishedAt``) by whichever call finishes its last school: that call
locks the run's row first, so with several instances exactly one of them sees the run end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from cleversync.db.schema import School, SyncHistory, SyncRun, SyncRunSchool
from cleversync.db.sessiondb import SessionTables
from cleversync.db.sessiondb.history import sanitize
from cleversync.errors import UsageError
from cleversync.vocabulary import FINISHED_STATUSES

QUEUED = "Queued"
RUNNING = "Running"
OPEN = (QUEUED, RUNNING)
FINISHED = FINISHED_STATUSES

_RUNS = SyncRun.__table__
_PARTS = SyncRunSchool.__table__
_SCHOOLS = School.__table__
_HISTORY = SyncHistory.__table__
_T = TypeVar("_T")


@dataclass(frozen=True)
class RunSchool:
    school_id: int
    name: str | None
    status: str
    attempts: int
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    history: list[dict[str, Any]] = field(default_factory=list)  # its SyncHistory rows


@dataclass(frozen=True)
class RunRecord:
    run_id: int
    correlation_id: str
    trigger: str
    requested_at: datetime
    full: bool
    allow_mass_delete: bool
    finished_at: datetime | None
    reported_at: datetime | None
    schools: list[RunSchool] = field(default_factory=list)

    def school(self, school_id: int) -> RunSchool | None:
        return next((s for s in self.schools if s.school_id == school_id), None)


class Runs(SessionTables):
    """Reads and writes SyncRuns and SyncRunSchools; each write one transaction, retried."""

    def create(
        self,
        *,
        correlation_id: str,
        trigger: str,
        full: bool,
        allow_mass_delete: bool,
        school_ids: Sequence[int],
    ) -> RunRecord:
        """Record a run with every one of its schools Queued."""
        now = self._clock()

        def write(conn: Connection) -> int:
            taken = conn.execute(
                select(_RUNS.c.RunId).where(_RUNS.c.CorrelationId == correlation_id)
            ).first()
            if taken is not None:
                raise UsageError(
                    f"correlation id {correlation_id} is already used by sync run {taken[0]}; "
                    "send a new one (or none) for a new run"
                )
            run_id = int(
                conn.execute(
                    insert(_RUNS).returning(_RUNS.c.RunId),
                    {
                        "CorrelationId": correlation_id,
                        "Trigger": trigger,
                        "RequestedAt": now,
                        "Full": full,
                        "AllowMassDelete": allow_mass_delete,
                        # A run of no school is over as soon as it is recorded.
                        "FinishedAt": None if school_ids else now,
                    },
                ).scalar_one()
            )
            if school_ids:
                conn.execute(
                    insert(_PARTS),
                    [
                        {
                            "RunId": run_id,
                            "SchoolId": school_id,
                            "Status": QUEUED,
                            "Attempts": 0,
                            "QueuedAt": now,
                        }
                        for school_id in school_ids
                    ],
                )
            return run_id

        run_id = self._tx("recording a sync run", write)
        found = self.get(run_id, with_history=False)
        assert found is not None
        return found

    def start_school(self, run_id: int, school_id: int) -> bool:
        """Mark the school Running (one more attempt); False when its part of the run is
        already over or is not part of it (a message delivered again)."""
        statement = (
            update(_PARTS)
            .where(
                _PARTS.c.RunId == run_id,
                _PARTS.c.SchoolId == school_id,
                _PARTS.c.Status.in_(OPEN),
            )
            .values(Status=RUNNING, Attempts=_PARTS.c.Attempts + 1, StartedAt=self._clock())
        )
        return self._tx("starting a school's sync", lambda c: c.execute(statement).rowcount) == 1

    def note_error(self, run_id: int, school_id: int, error: str) -> None:
        """Remember an attempt's error on a school still running (its next attempt may pass;
        if none does, this is the error the run reports)."""
        statement = (
            update(_PARTS)
            .where(
                _PARTS.c.RunId == run_id,
                _PARTS.c.SchoolId == school_id,
                _PARTS.c.Status.in_(OPEN),
            )
            .values(Error=sanitize(error, self._redact))
        )
        self._tx("recording a school's error", lambda c: c.execute(statement))

    def finish_school(
        self, run_id: int, school_id: int, status: str, error: str | None = None
    ) -> tuple[bool, bool]:
        """Close the school's part with its outcome; (this call closed it, this call finished
        the whole run). A part already closed is left as it is: (False, False)."""
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status}")
        now = self._clock()

        def write(conn: Connection) -> tuple[bool, bool]:
            # Lock the run's row first: two instances finishing its last two schools at once
            # are serialized here, so the second sees the first's school closed.
            locked = conn.execute(
                update(_RUNS).where(_RUNS.c.RunId == run_id).values(FinishedAt=_RUNS.c.FinishedAt)
            ).rowcount
            if locked != 1:
                return False, False
            closed = conn.execute(
                update(_PARTS)
                .where(
                    _PARTS.c.RunId == run_id,
                    _PARTS.c.SchoolId == school_id,
                    _PARTS.c.Status.in_(OPEN),
                )
                .values(Status=status, FinishedAt=now, Error=sanitize(error, self._redact))
            ).rowcount
            if closed != 1:
                return False, False
            still_open = conn.execute(
                select(func.count())
                .select_from(_PARTS)
                .where(_PARTS.c.RunId == run_id, _PARTS.c.Status.in_(OPEN))
            ).scalar_one()
            if still_open:
                return True, False
            ended = conn.execute(
                update(_RUNS)
                .where(_RUNS.c.RunId == run_id, _RUNS.c.FinishedAt.is_(None))
                .values(FinishedAt=now)
            ).rowcount
            return True, ended == 1

        return self._tx("finishing a school's sync", write)

    def get(
        self, run_id: int, *, with_history: bool = True, school_id: int | None = None
    ) -> RunRecord | None:
        """The run with its schools (their names and, if asked, their SyncHistory rows);
        only ``school_id``'s part when given (what one queue message needs)."""
        one_school = [] if school_id is None else [_PARTS.c.SchoolId == school_id]
        one_history = [] if school_id is None else [_HISTORY.c.SchoolId == school_id]

        def read(conn: Connection) -> RunRecord | None:
            run = conn.execute(select(_RUNS).where(_RUNS.c.RunId == run_id)).first()
            if run is None:
                return None
            parts = conn.execute(
                select(_PARTS, _SCHOOLS.c.Name)
                .select_from(_PARTS.outerjoin(_SCHOOLS, _SCHOOLS.c.SchoolId == _PARTS.c.SchoolId))
                .where(_PARTS.c.RunId == run_id, *one_school)
                .order_by(_PARTS.c.SchoolId)
            ).all()
            rows: dict[int, list[dict[str, Any]]] = {}
            if with_history:
                for row in conn.execute(
                    select(_HISTORY)
                    .where(_HISTORY.c.CorrelationId == run.CorrelationId, *one_history)
                    .order_by(_HISTORY.c.SyncId)
                ):
                    rows.setdefault(row.SchoolId, []).append(dict(row._mapping))
            return RunRecord(
                run_id=run.RunId,
                correlation_id=run.CorrelationId,
                trigger=run.Trigger,
                requested_at=run.RequestedAt,
                full=bool(run.Full),
                allow_mass_delete=bool(run.AllowMassDelete),
                finished_at=run.FinishedAt,
                reported_at=run.ReportedAt,
                schools=[
                    RunSchool(
                        school_id=p.SchoolId,
                        name=p.Name,
                        status=p.Status,
                        attempts=p.Attempts or 0,
                        queued_at=p.QueuedAt,
                        started_at=p.StartedAt,
                        finished_at=p.FinishedAt,
                        error=p.Error,
                        history=rows.get(p.SchoolId, []),
                    )
                    for p in parts
                ],
            )

        return self._read("reading a sync run", read)

    def purge(self, older_than: datetime) -> int:
        """Delete the runs requested before ``older_than`` that have finished; runs deleted."""
        old = select(_RUNS.c.RunId).where(
            _RUNS.c.RequestedAt < older_than, _RUNS.c.FinishedAt.is_not(None)
        )

        def write(conn: Connection) -> int:
            # Their schools first: SQLite enforces no ON DELETE CASCADE unless told to.
            conn.execute(delete(_PARTS).where(_PARTS.c.RunId.in_(old)))
            return int(conn.execute(delete(_RUNS).where(_RUNS.c.RunId.in_(old))).rowcount or 0)

        return self._tx("purging old sync runs", write)
