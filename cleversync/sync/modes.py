"""One school's run once it holds its lease and its history rows: the school database, the
Clever client, and the full, data or events sync, falling back from one to another; between
batches and while waiting for Clever, the lease is renewed and the time budget kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cleversync.clever.client import CleverClient
from cleversync.clever.pages import FieldReport
from cleversync.db.school.entities import ENTITIES
from cleversync.db.school.store import EngineFactory, SchoolDb
from cleversync.db.sessiondb.history import Counts, History
from cleversync.db.sessiondb.lease import Lease
from cleversync.db.sessiondb.registry import DistrictRecord, Registry, SchoolRecord
from cleversync.errors import (
    DatabaseUnavailableError,
    EventCursorExpiredError,
    EventsNotEnabledError,
    SyncError,
)
from cleversync.settings import Settings
from cleversync.sync.events import apply_events
from cleversync.sync.outcome import EntityOutcome
from cleversync.sync.passes import PassContext, run_passes
from cleversync.sync.plan import ModeDecision, choose_mode, expects_rows
from cleversync.sync.rollup import compared_data_note, events_fallback, no_events_note
from cleversync.vocabulary import RunStatus, SyncMode, SyncType

if TYPE_CHECKING:
    from cleversync.sync.school import SyncRequest

logger = logging.getLogger("cleversync.sync.school")  # the name operators filter a run by

INTERRUPTED = "interrupted: the run was asked to stop (Ctrl-C or SIGTERM) after the current batch"
WAIT_SLICE_SECONDS = 10.0  # a long wait for Clever renews the lease and checks the budget

# (district, field report, *, wait=, breaker=) -> client
ClientFactory = Callable[..., CleverClient]


@dataclass
class Run:
    """One school's run in progress: what it holds and what it has learnt."""

    school: SchoolRecord
    district: DistrictRecord
    request: SyncRequest
    lease: Lease
    started: datetime
    deadline: datetime
    outcomes: dict[str, EntityOutcome] = field(default_factory=dict)
    db: SchoolDb | None = None
    client: CleverClient | None = None
    reason: str = ""
    cursor: str = ""  # the event cursor of the school's last good run
    flagged: bool = False  # RequiresFullSync as this run last saw or wrote it
    choose: Callable[..., ModeDecision] = choose_mode  # the mode, given more facts


class Modes:
    """Runs a school's sync in its mode; shared by every run of a ``SchoolSync``."""

    def __init__(
        self,
        *,
        settings: Settings,
        school_engine: EngineFactory,
        clever: ClientFactory,
        registry: Registry,
        history: History,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        on_progress: Callable[[int, str, int], None] | None,
    ) -> None:
        self._settings = settings
        self._school_engine = school_engine
        self._clever = clever
        self.registry = registry
        self.history = history
        self._clock = clock
        self._sleep = sleep
        self._on_progress = on_progress

    def execute(self, run: Run, decision: ModeDecision) -> SyncMode:
        hint = f"cleversync db upgrade --school-id {run.school.school_id}"
        try:
            engine = self._school_engine(run.school)
        except DatabaseUnavailableError as exc:
            raise DatabaseUnavailableError(
                f"{exc}; create the school's tables with '{hint}'"
            ) from exc
        run.db = SchoolDb(
            engine,
            name=run.school.database_name,
            policy=self._settings.retry.database,
            sleep=self._sleep,
        )
        run.db.require_current(hint)
        breakers = run.request.breakers
        run.client = self._clever(
            run.district,
            FieldReport(),
            wait=lambda seconds: self._clever_wait(run, seconds),
            breaker=breakers.district(run.district.district_id) if breakers else None,
        )
        if decision.mode != SyncMode.FULL:
            emptied = self._emptied(run)
            if emptied:
                decision = run.choose(empty_entities=emptied)
                self._switch_to_full(run, decision.reason)
                logger.warning(
                    "School %s: %s; running a full sync",
                    run.school.school_id,
                    decision.reason,
                    extra=dims(run.school, run.request),
                )
        if decision.mode == SyncMode.EVENTS:
            try:
                self._events(run, run.cursor)
                return SyncMode.EVENTS
            except (EventCursorExpiredError, EventsNotEnabledError) as exc:
                fallback = events_fallback(exc)
            if fallback.mode == SyncMode.FULL:
                self._switch_to_full(run, fallback.reason)
                self._full(run)
                return SyncMode.FULL
            run.reason = fallback.reason
            self._fallback_note(run, fallback.note or "")
            self._data(run, baseline_known_disabled=True)
            return SyncMode.DATA
        if decision.mode == SyncMode.DATA:
            self._data(run)
            return SyncMode.DATA
        self._full(run)
        return SyncMode.FULL

    def _emptied(self, run: Run) -> list[str]:
        """Entities whose table holds no active rows though their history says it must."""
        runs = self.history.entity_runs(run.school.school_id)
        assert run.db is not None
        return run.db.emptied(e for e in ENTITIES if expects_rows(runs.get(e.name, [])))

    def _switch_to_full(self, run: Run, reason: str) -> None:
        """The run becomes a full sync (its history rows say so, with the reason)."""
        run.reason = reason
        self._note_all(run, reason)
        self.history.set_sync_type([o.sync_id for o in run.outcomes.values()], SyncType.FULL)
        for outcome in run.outcomes.values():
            outcome.sync_type, outcome.status, outcome.counts = (
                SyncType.FULL,
                RunStatus.IN_PROGRESS,
                Counts(),
            )

    # --- modes --------------------------------------------------------------------------

    def _full(self, run: Run) -> None:
        # Flagged before the first page, cleared only when every entity finished: a run
        # killed in between (no finally block runs) leaves the next run a full one, so what
        # Clever removed is still removed.
        if not run.flagged:
            self.registry.set_requires_full_sync(run.school.school_id, True)
            run.flagged = True
        baseline = self._baseline(run)  # before any data: no event during the sync is lost
        self._passes(run, delete=True)
        for outcome in run.outcomes.values():
            outcome.last_event_id = baseline

    def _data(self, run: Run, *, baseline_known_disabled: bool = False) -> None:
        baseline = None if baseline_known_disabled else self._baseline(run, fallback=True)
        self._passes(run, delete=False)
        for outcome in run.outcomes.values():
            outcome.last_event_id = baseline

    def _events(self, run: Run, cursor: str) -> None:
        assert run.client is not None
        assert run.db is not None
        last = apply_events(
            run.client,
            school_clever_id=run.school.clever_school_id,
            cursor=cursor,
            page_size=self._settings.sync.page_size,
            outcomes=run.outcomes,
            transaction=run.db.transaction,
            now=self._clock,
            after_page=lambda: self._checkpoint(run),
        )
        for outcome in run.outcomes.values():
            outcome.last_event_id = last
            outcome.finish()

    def _baseline(self, run: Run, *, fallback: bool = False) -> str | None:
        assert run.client is not None
        try:
            return run.client.latest_event_id()
        except EventsNotEnabledError as exc:
            if fallback:
                self._fallback_note(run, compared_data_note(exc))
            else:
                self._note_all(run, no_events_note(exc))
                logger.warning(
                    "Events API not enabled for district %s: %s",
                    run.district.district_id,
                    exc,
                    extra=dims(run.school, run.request),
                )
            return None

    def _fallback_note(self, run: Run, note: str) -> None:
        self._note_all(run, note)
        logger.warning(
            "School %s: %s", run.school.school_id, note, extra=dims(run.school, run.request)
        )

    def _note_all(self, run: Run, note: str) -> None:
        for outcome in run.outcomes.values():
            outcome.notes.append(note)

    # --- entity passes ------------------------------------------------------------------

    def _passes(self, run: Run, *, delete: bool) -> None:
        assert run.client is not None
        assert run.db is not None
        school = run.school.school_id
        on_progress = self._on_progress
        context = PassContext(
            settings=self._settings,
            transaction=run.db.transaction,
            checkpoint=lambda: self._checkpoint(run),
            clock=self._clock,
            allow_mass_delete=run.request.allow_mass_delete,
            progress=(lambda entity, n: on_progress(school, entity, n)) if on_progress else None,
            school_id=school,
        )
        run_passes(context, run.client, run.school.clever_school_id, run.outcomes, delete=delete)

    # --- plumbing -----------------------------------------------------------------------

    def _checkpoint(self, run: Run) -> None:
        """Between batches: renew the lease, and stop a run that outlived its time budget."""
        if run.request.stop is not None and run.request.stop.is_set():
            raise SyncError(INTERRUPTED)
        if self._clock() > run.deadline:
            raise SyncError(
                f"time budget exceeded: the sync of school {run.school.school_id} ran longer than "
                f"CleverSync__Sync__TimeoutMinutes={self._settings.sync.timeout_minutes:g}; stopped"
            )
        run.lease.renew()

    def _clever_wait(self, run: Run, seconds: float) -> None:
        """Every wait for Clever (retries, rate limits), and the moment before each request
        (``seconds`` 0): in slices, renewing the lease and keeping to the time budget, so
        a long wait neither lets the lease lapse nor outlives the run's budget."""
        if seconds > 0 and self._clock() + timedelta(seconds=seconds) > run.deadline:
            raise SyncError(
                f"time budget exceeded: waiting {seconds:.0f} s for Clever would take the sync "
                f"of school {run.school.school_id} past "
                f"CleverSync__Sync__TimeoutMinutes={self._settings.sync.timeout_minutes:g}; "
                "stopped"
            )
        self._checkpoint(run)
        while seconds > 0:
            step = min(seconds, WAIT_SLICE_SECONDS)
            self._sleep(step)
            seconds -= step
            self._checkpoint(run)


def dims(school: SchoolRecord, request: SyncRequest, **extra: Any) -> dict[str, Any]:
    return {
        "CorrelationId": request.correlation_id,
        "DistrictId": school.district_id,
        "SchoolId": school.school_id,
        **extra,
    }
