"""One district's Events API feed: ordered, filtered, and trimmed by retention."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from cleversync.sandbox.ids import IdFactory, iso_seconds
from cleversync.sandbox.paging import Window, window


@dataclass(frozen=True)
class Event:
    """An event as stored; ``object`` is a snapshot shared read-only with nothing else."""

    id: str
    type: str
    created_at: float
    object: dict[str, Any]
    previous: dict[str, Any] | None
    schools: frozenset[str]

    @property
    def record_type(self) -> str:
        return self.type.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        # Real payloads put previous_attributes inside "data", beside "object" (not where
        # the Swagger spec has it), and only on *.updated events.
        data: dict[str, Any] = {"object": self.object}
        if self.previous is not None:
            data["previous_attributes"] = self.previous
        return {
            "id": self.id,
            "type": self.type,
            "created": iso_seconds(self.created_at),
            "data": data,
        }


class EventLog:
    """Events oldest first; those older than the retention period drop off the head."""

    def __init__(self, ids: IdFactory, retention_seconds: float) -> None:
        self._ids = ids
        self._retention = retention_seconds
        self._order: list[str] = []
        self._events: dict[str, Event] = {}
        self.pruned_through: str | None = None  # newest event id that retention removed

    def append(
        self,
        kind: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None,
        schools: Collection[str],
        now: float,
    ) -> Event:
        self.prune(now)
        event = Event(self._ids.new(now), kind, now, obj, previous, frozenset(schools))
        self._order.append(event.id)
        self._events[event.id] = event
        return event

    def prune(self, now: float) -> None:
        cutoff = now - self._retention
        drop = 0
        while drop < len(self._order) and self._events[self._order[drop]].created_at < cutoff:
            drop += 1
        if drop:
            self.pruned_through = self._order[drop - 1]
            for event_id in self._order[:drop]:
                del self._events[event_id]
            del self._order[:drop]

    def is_expired(self, cursor: str) -> bool:
        """True when ``cursor`` is at or before an event that retention already removed."""
        return self.pruned_through is not None and cursor <= self.pruned_through

    def get(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    def latest_id(self) -> str | None:
        return self._order[-1] if self._order else None

    def __len__(self) -> int:
        return len(self._order)

    def page(
        self,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        school: str | None,
        record_types: Collection[str],
    ) -> tuple[list[Event], Window]:
        keep: Callable[[str], bool] | None = None
        if school is not None or record_types:
            events = self._events

            def keep(event_id: str) -> bool:
                event = events[event_id]
                if record_types and event.record_type not in record_types:
                    return False
                return school is None or school in event.schools

        selected = window(self._order, limit, starting_after, ending_before, keep)
        return [self._events[event_id] for event_id in selected.ids], selected
