"""Change detail in SessionDb: what each run did to each record, read back by school or run.

A run collects its changes in a ``ChangeBuffer`` (in memory, capped at
``History__MaxChangeDetailsPerRun``; past the cap changes are only counted) and writes them
once, when it closes its SyncHistory rows: one ``executemany`` per thousand rows, so the
sync itself pays a tuple per changed record. Rows are deleted with their SyncHistory row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from cleversync.db.bulk import Bulk
from cleversync.db.schema import SyncChange, SyncHistory, utf16_length
from cleversync.db.sessiondb import SessionTables
from cleversync.sync.plan import ChangeItem, Fields
from cleversync.timeutil import utcnow
from cleversync.vocabulary import ChangeKind

_TABLE = SyncChange.__table__
_HISTORY = SyncHistory.__table__
NAME_WIDTH = 200  # SyncChanges.Name
ID_WIDTH = 50  # SyncChanges.CleverId
VALUE_WIDTH = 400  # an old or new value in Fields (school columns hold at most 200)
WRITE_CHUNK = 1000
DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class Change:
    """One record's change in one run (``history_id`` is its SyncHistory row's SyncId)."""

    history_id: int
    school_id: int
    entity: str
    clever_id: str
    kind: ChangeKind
    name: str | None
    fields: Fields | None
    recorded_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "historyId": self.history_id,
            "schoolId": self.school_id,
            "entity": self.entity,
            "cleverId": self.clever_id,
            "kind": str(self.kind),
            "name": self.name,
            "fields": (
                {c: {"old": old, "new": new} for c, (old, new) in self.fields.items()}
                if self.fields is not None
                else None
            ),
            "recordedAt": self.recorded_at.isoformat(),
        }


def fit(text: str | None, width: int) -> str | None:
    """``text`` cut to ``width`` UTF-16 units (as nvarchar counts them), never inside a
    surrogate pair; ``...`` marks a cut."""
    if text is None or utf16_length(text) <= width:
        return text
    kept: list[str] = []
    used = 0
    for char in text:
        units = 2 if ord(char) > 0xFFFF else 1
        if used + units > width - 3:
            break
        kept.append(char)
        used += units
    return "".join(kept) + "..."


class Described(Protocol):
    """What a write reports: how many records it changed, and their changes on demand."""

    @property
    def changed(self) -> int: ...

    def changes(self, limit: int) -> list[ChangeItem]: ...


@dataclass
class ChangeBuffer:
    """One run's changes until they are written. ``limit`` changes are kept; removals the
    guard held back have a ``limit`` of their own (the operator decides on that list)."""

    limit: int
    clock: Callable[[], datetime] = utcnow
    # (entity, Clever id, kind's value, name, fields, when): plain values only, so the
    # garbage collector stops tracking the tuples (thousands live until the run's end).
    rows: list[tuple[str, str, str, str | None, Fields | None, datetime]] = field(
        default_factory=list
    )
    held: list[tuple[str, str, str, str | None, Fields | None, datetime]] = field(
        default_factory=list
    )
    omitted: dict[str, int] = field(default_factory=dict)

    def room(self, kind: ChangeKind | None = None) -> int:
        kept = self.held if kind == ChangeKind.HELD_BACK else self.rows
        return max(self.limit - len(kept), 0)

    def add(self, entity: str, items: Sequence[ChangeItem], *, total: int | None = None) -> None:
        """Keep what fits of ``items`` (all held back, or none); the rest (and ``total``
        beyond them: changes not even described, to spare reading them) is counted as
        omitted."""
        total = len(items) if total is None else total
        if not total:
            return
        kept = 0
        if items:
            now = self.clock()
            held = items[0][1] == ChangeKind.HELD_BACK  # a hold-back is added on its own
            target = self.held if held else self.rows
            room = max(self.limit - len(target), 0)
            target.extend((entity, c, k.value, n, f, now) for c, k, n, f in items[:room])
            kept = min(room, len(items))
        if total > kept:
            self.omitted[entity] = self.omitted.get(entity, 0) + total - kept

    def add_from(self, entity: str, written: Described) -> None:
        """A write's changes, described only as far as there is room."""
        room = self.room()
        self.add(entity, written.changes(room) if room else [], total=written.changed)

    def __len__(self) -> int:
        return len(self.rows) + len(self.held)


_T = TypeVar("_T")


class ChangeLog(SessionTables):
    """Writes a run's changes and reads them back (newest first)."""

    # --- writing ------------------------------------------------------------------------

    def save(self, buffer: ChangeBuffer, *, school_id: int, sync_ids: dict[str, int]) -> int:
        """Write the buffered changes under their entity's SyncHistory row; returns how many."""
        rows = [
            (
                sync_ids[entity],
                school_id,
                entity,
                fit(clever_id, ID_WIDTH),
                str(kind),
                fit(name, NAME_WIDTH),
                _encode(fields),
                at,
            )
            for entity, clever_id, kind, name, fields, at in (*buffer.rows, *buffer.held)
            if entity in sync_ids
        ]
        if not rows:
            return 0

        def write(conn: Connection) -> int:
            for start in range(0, len(rows), WRITE_CHUNK):
                _INSERT.run(conn, rows[start : start + WRITE_CHUNK])
            return len(rows)

        return self._tx("writing change detail", write)

    # --- reading ------------------------------------------------------------------------

    def for_school(
        self,
        school_id: int,
        *,
        since: datetime | None = None,
        clever_id: str | None = None,
        history_id: int | None = None,
        entity: str | None = None,
        kind: ChangeKind | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[Change]:
        """The school's changes, newest first; ``since`` compares the time recorded (UTC)."""
        query = select(_TABLE).where(_TABLE.c.SchoolId == school_id)
        if since is not None:
            query = query.where(_TABLE.c.RecordedAt >= since)
        if clever_id is not None:
            query = query.where(_TABLE.c.CleverId == clever_id)
        if history_id is not None:
            query = query.where(_TABLE.c.SyncId == history_id)
        if entity is not None:
            query = query.where(_TABLE.c.EntityType == entity)
        if kind is not None:
            query = query.where(_TABLE.c.ChangeKind == str(kind))
        query = query.order_by(_TABLE.c.RecordedAt.desc(), _TABLE.c.ChangeId.desc()).limit(limit)
        return self._read(READING, lambda conn: [_change(r._mapping) for r in conn.execute(query)])

    def for_history(self, history_id: int) -> list[Change]:
        """Every change recorded under one SyncHistory row, in the order they were made."""
        query = select(_TABLE).where(_TABLE.c.SyncId == history_id).order_by(_TABLE.c.ChangeId)
        return self._read(READING, lambda conn: [_change(r._mapping) for r in conn.execute(query)])

    def omitted(self, history_id: int) -> int:
        """Changes of this row's run left out over the cap (0 for an unknown row)."""
        query = select(_HISTORY.c.ChangesOmitted).where(_HISTORY.c.SyncId == history_id)
        return self._read(READING, lambda conn: int(conn.scalar(query) or 0))

    def held_back(self, school_id: int) -> list[Change]:
        """What the school's latest guard hold-back refused to remove (every entity of that
        run), in the order recorded; empty if the guard never held anything back. It stays
        the latest after a forced run removed the rows: compare its ``history_id`` with the
        school's newest history to tell whether the decision is still waiting."""
        held = (_TABLE.c.SchoolId == school_id, _TABLE.c.ChangeKind == str(ChangeKind.HELD_BACK))
        joined = _TABLE.join(_HISTORY, _HISTORY.c.SyncId == _TABLE.c.SyncId)
        latest = select(func.max(_HISTORY.c.SyncStartTime)).select_from(joined).where(*held)

        def read(conn: Connection) -> list[Change]:
            started = conn.scalar(latest)
            if started is None:
                return []
            query = (
                select(_TABLE)
                .select_from(joined)
                .where(*held, _HISTORY.c.SyncStartTime == started)
                .order_by(_TABLE.c.ChangeId)
            )
            return [_change(r._mapping) for r in conn.execute(query)]

        return self._read(READING, read)


_COLUMNS = (
    "SyncId",
    "SchoolId",
    "EntityType",
    "CleverId",
    "ChangeKind",
    "Name",
    "Fields",
    "RecordedAt",
)


READING = "reading change detail"
_INSERT = Bulk(insert(_TABLE), _COLUMNS, plain=True)


def _encode(fields: Fields | None) -> str | None:
    if fields is None:
        return None
    return json.dumps(
        {c: [fit(old, VALUE_WIDTH), fit(new, VALUE_WIDTH)] for c, (old, new) in fields.items()},
        ensure_ascii=False,
    )


def _decode(text: str | None) -> Fields | None:
    if text is None:
        return None
    return {c: (pair[0], pair[1]) for c, pair in json.loads(text).items()}


def _change(row: Any) -> Change:
    return Change(
        history_id=row["SyncId"],
        school_id=row["SchoolId"],
        entity=row["EntityType"],
        clever_id=row["CleverId"],
        kind=ChangeKind(row["ChangeKind"]),
        name=row["Name"],
        fields=_decode(row["Fields"]),
        recorded_at=row["RecordedAt"],
    )


__all__ = ["Change", "ChangeBuffer", "ChangeItem", "ChangeLog", "Fields", "fit"]
