"""Pure decisions at the edges of a school's run, over plain data: where a run whose events
could not be read falls back to, and what the entities' outcomes add up to for the school.

Nothing here does I/O; ``sync/school.py`` applies the answers (history rows, notes, logs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cleversync.db.sessiondb.history import sanitize
from cleversync.errors import EventCursorExpiredError, EventsNotEnabledError
from cleversync.vocabulary import RunStatus, SyncMode


@dataclass(frozen=True)
class Fallback:
    """What an events run does instead: a full sync, or a data comparison."""

    mode: SyncMode  # full | data
    reason: str  # the run's reason, as the result reports it
    note: str | None = None  # for every entity's history row (a full switch notes its reason)


def events_fallback(exc: EventCursorExpiredError | EventsNotEnabledError) -> Fallback:
    """An expired cursor needs a full sync (events were missed); events not enabled for the
    district leave comparing the data (which never deletes)."""
    if isinstance(exc, EventCursorExpiredError):
        return Fallback(SyncMode.FULL, f"{exc}; fell back to a full sync")
    return Fallback(SyncMode.DATA, f"compared data: {exc}", compared_data_note(exc))


def compared_data_note(exc: Exception) -> str:
    return f"compared data instead of reading events: {exc}"


def no_events_note(exc: Exception) -> str:
    """A full sync found events not enabled: what the next incremental runs will do."""
    return f"{exc}; incremental runs will compare data instead of reading events"


class Finished(Protocol):
    """What the roll-up reads of an entity's outcome."""

    @property
    def status(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def incomplete(self) -> bool: ...
    @property
    def completed(self) -> bool: ...


@dataclass(frozen=True)
class Rollup:
    status: RunStatus  # Success | Partial | Failed
    error: str | None
    needs_full: bool  # RequiresFullSync as it should be after the run


def roll_up(outcomes: Sequence[Finished], *, mode: SyncMode, flagged: bool) -> Rollup:
    """The school's status (its worst entity), its first error, and whether the next run
    must be a full one: after a full sync, unless every entity completed; after any other,
    if it was flagged already or a list Clever sent was incomplete (only a full sync
    removes what is gone)."""
    statuses = {o.status for o in outcomes}
    status = (
        RunStatus.FAILED
        if RunStatus.FAILED in statuses
        else (RunStatus.PARTIAL if RunStatus.PARTIAL in statuses else RunStatus.SUCCESS)
    )
    error = next((o.error for o in outcomes if o.error), None)
    if mode == SyncMode.FULL:
        needs_full = not all(o.completed for o in outcomes)
    else:
        needs_full = flagged or any(o.incomplete for o in outcomes)
    return Rollup(status, error, needs_full)


def unwritten_failure(error: str | None, unwritten: Sequence[str]) -> str | None:
    """The result's error when its sync record could not be written: the run's own error
    first, since that is what the operator must read first."""
    note = f"its sync record could not be written: {unwritten[0]}"
    return sanitize(f"{error}; and {note}" if error else note)
