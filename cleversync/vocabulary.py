"""The words CleverSync stores, returns and prints: statuses, sync types and modes.

Each is a ``StrEnum``, so a member *is* its string: it compares equal to it, hashes like it,
formats as it and is written to SessionDb, JSON bodies and logs as it. The values are the
contract (SyncHistory's check constraints, the HTTP API, the command line); the names are
for the code. Standard library only: anything may import this module.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A SyncHistory row's status, a school's result and a whole run's.

    A row is ``InProgress`` until closed as ``Success``, ``Partial`` (some records skipped or
    held back) or ``Failed``. ``Skipped`` is never stored: a school that was not tried (its
    lease is held elsewhere, its district is down) and a run in which no school ran.
    ``DryRun`` marks a full sync's preview (``sync --full --dry-run``): it wrote nothing, so
    it is never a good run, a failure nor a run in progress.
    """

    IN_PROGRESS = "InProgress"
    SUCCESS = "Success"
    PARTIAL = "Partial"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    DRY_RUN = "DryRun"


STORED_STATUSES = (
    RunStatus.IN_PROGRESS,
    RunStatus.SUCCESS,
    RunStatus.FAILED,
    RunStatus.PARTIAL,
    RunStatus.DRY_RUN,
)
GOOD_STATUSES = (RunStatus.SUCCESS, RunStatus.PARTIAL)  # a run incremental sync can start from
# A queued school's part of a run: Queued, then Running, then one of these.
FINISHED_STATUSES = (RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.SKIPPED)
RUN_TRIGGERS = ("timer", "http", "cli")  # who asked for a run


class ChangeKind(StrEnum):
    """What a run did to one record (the change detail of a SyncHistory row): ``HeldBack``
    is a removal the mass-delete guard refused."""

    INSERTED = "Inserted"
    UPDATED = "Updated"
    DELETED = "Deleted"
    DEACTIVATED = "Deactivated"
    REACTIVATED = "Reactivated"
    HELD_BACK = "HeldBack"


class SyncType(StrEnum):
    """What a SyncHistory row says the run was: a full sync, or an incremental one."""

    FULL = "Full"
    INCREMENTAL = "Incremental"


class SyncMode(StrEnum):
    """How a school is synced: every record (``full``), the Events API since the stored cursor
    (``events``), or every record compared with what is stored (``data``, no cursor)."""

    FULL = "full"
    EVENTS = "events"
    DATA = "data"


class HealthStatus(StrEnum):
    """A health check's status. The overall answer is one of the first three; a check may
    also be ``Pending`` (still starting; counts as Degraded), ``Skipped`` (not run because an
    earlier one failed) or ``Unknown`` (a district's credentials not used yet)."""

    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"
    PENDING = "Pending"
    SKIPPED = "Skipped"
    UNKNOWN = "Unknown"
