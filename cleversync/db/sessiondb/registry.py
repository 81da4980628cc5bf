"""Districts and schools in SessionDb: register, list, look up (the admin commands' data)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.engine import Connection, Engine, Row

from cleversync.db.schema import (
    District,
    School,
    SyncHistory,
    SyncRun,
    SyncRunSchool,
    utf16_length,
)
from cleversync.db.sessiondb.runs import OPEN
from cleversync.errors import CleverSyncError, NotFoundError, UsageError
from cleversync.secrets import names
from cleversync.timeutil import utcnow

_CLEVER_ID = re.compile(r"^[0-9A-Za-z_-]{1,50}$")
# Clever's ids are MongoDB ObjectIds: 24 hexadecimal digits (a district id is typed by hand).
_CLEVER_DISTRICT_ID = re.compile(r"^[0-9A-Fa-f]{24}$")

# What happens to a removed school's SyncHistory (and run rows).
REFUSE = "refuse"  # remove only a school that has none
KEEP = "keep"  # keep them: the school's row stays, marked removed and hidden
PURGE = "purge"  # delete them with the school


class HistoryExistsError(UsageError):
    """A removal was refused: the school (or district) has sync history."""


class BeingSyncedError(CleverSyncError):
    """A removal was refused: a run holds the school's sync lease."""


@dataclass(frozen=True)
class Removal:
    """What a removal did: schools deleted, or kept as removed with their history."""

    deleted: list[SchoolRecord]
    kept: list[SchoolRecord]
    history_rows: int  # SyncHistory rows deleted (purge) or kept (keep)


@dataclass(frozen=True)
class DistrictRecord:
    district_id: int
    clever_district_id: str
    name: str
    prefix: str
    created_at: datetime
    is_active: bool = True


@dataclass(frozen=True)
class SchoolRecord:
    school_id: int
    district_id: int
    clever_school_id: str
    name: str
    database_name: str
    prefix: str
    is_active: bool  # synced by runs: the school and its district are both active
    requires_full_sync: bool
    district_active: bool = True

    @property
    def connection_secret(self) -> str:
        return names.connection_string(self.prefix)


def check_text(value: str, *, what: str, width: int) -> str:
    value = value.strip()
    if not value:
        raise UsageError(f"{what} must not be empty")
    if utf16_length(value) > width:
        raise UsageError(f"{what} is longer than {width} characters")
    return value


def check_clever_district_id(value: str) -> str:
    value = value.strip()
    if not _CLEVER_DISTRICT_ID.match(value):
        raise UsageError(
            f"Clever district id {value[:60]!r} is not a Clever id: Clever's ids are 24 "
            "hexadecimal digits (0-9, a-f), e.g. 58da8a43cc70ab00017a1a87; copy it from the "
            "district's page in the Clever dashboard"
        )
    return value


def check_clever_id(value: str, *, what: str) -> str:
    value = value.strip()
    if not _CLEVER_ID.match(value):
        raise UsageError(
            f"{what} {value!r} is not a Clever id (up to 50 letters, digits, '-' or '_')"
        )
    return value


class Registry:
    """Reads and writes the Districts and Schools tables."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    # --- districts ----------------------------------------------------------------------

    def check_new_district(self, *, name: str, clever_id: str, prefix: str) -> tuple[str, str]:
        """UsageError unless a district with these values could be added now; the cleaned
        (name, Clever id). For checks before anything else happens (asking Clever)."""
        name = check_text(name, what="district name", width=200)
        clever_id = check_clever_district_id(clever_id)
        names.validate_prefix(prefix, what="district prefix")
        with self._engine.connect() as conn:
            self._check_district_free(conn, clever_id, prefix)
        return name, clever_id

    def add_district(self, *, name: str, clever_id: str, prefix: str) -> DistrictRecord:
        name = check_text(name, what="district name", width=200)
        clever_id = check_clever_district_id(clever_id)
        names.validate_prefix(prefix, what="district prefix")
        with self._engine.begin() as conn:
            self._check_district_free(conn, clever_id, prefix)
            now = self._clock()
            district_id = conn.execute(
                District.__table__.insert().returning(District.DistrictId),
                {
                    "CleverDistrictId": clever_id,
                    "Name": name,
                    "DistrictPrefix": prefix,
                    "CreatedAt": now,
                    "UpdatedAt": now,
                },
            ).scalar_one()
        return self.get_district(district_id)

    def list_districts(self, *, include_removed: bool = False) -> list[DistrictRecord]:
        """The registered districts (active or not; removed ones only with
        ``include_removed``)."""
        query = select(District.__table__)
        if not include_removed:
            query = query.where(District.RemovedAt.is_(None))
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(District.DistrictId)).all()
        return [_district(row) for row in rows]

    def get_district(self, district_id: int, *, include_removed: bool = False) -> DistrictRecord:
        query = select(District.__table__).where(District.DistrictId == district_id)
        if not include_removed:
            query = query.where(District.RemovedAt.is_(None))
        with self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFoundError(
                f"no district has id {district_id} (see 'cleversync district list')"
            )
        return _district(row)

    def district_count(self) -> int:
        with self._engine.connect() as conn:
            query = select(func.count()).select_from(District)
            return conn.scalar(query.where(District.RemovedAt.is_(None))) or 0

    # --- schools ------------------------------------------------------------------------

    def add_school(
        self,
        *,
        district_id: int,
        clever_id: str,
        name: str,
        prefix: str,
        database_name: str,
    ) -> SchoolRecord:
        name = check_text(name, what="school name", width=200)
        clever_id = check_clever_id(clever_id, what="Clever school id")
        names.validate_prefix(prefix, what="school prefix")
        database_name = check_text(database_name, what="database name", width=100)
        self.get_district(district_id)
        with self._engine.begin() as conn:
            found = conn.execute(
                select(School.SchoolId, School.RemovedAt).where(School.CleverSchoolId == clever_id)
            ).first()
            if found is not None:
                raise UsageError(
                    f"a school with Clever id {clever_id} is already registered"
                    + _removed_note("school", found.SchoolId, found.RemovedAt)
                )
            self._check_prefix_free(conn, prefix)
            now = self._clock()
            school_id = conn.execute(
                School.__table__.insert().returning(School.SchoolId),
                {
                    "DistrictId": district_id,
                    "CleverSchoolId": clever_id,
                    "Name": name,
                    "DatabaseName": database_name,
                    "SchoolPrefix": prefix,
                    "IsActive": True,
                    "RequiresFullSync": False,
                    "CreatedAt": now,
                    "UpdatedAt": now,
                },
            ).scalar_one()
        return self.get_school(school_id)

    def list_schools(
        self,
        *,
        district_id: int | None = None,
        active_only: bool = False,
        include_removed: bool = False,
    ) -> list[SchoolRecord]:
        """The registered schools (removed ones only with ``include_removed``: their Clever
        ids and prefixes stay taken); ``active_only``: those runs sync (the school and its
        district active)."""
        query = _SCHOOLS.order_by(School.SchoolId)
        if not include_removed:
            query = query.where(School.RemovedAt.is_(None))
        if district_id is not None:
            query = query.where(School.DistrictId == district_id)
        if active_only:
            query = query.where(School.IsActive.is_(True), District.IsActive.is_(True))
        with self._engine.connect() as conn:
            return [_school(row) for row in conn.execute(query).all()]

    def get_school(self, school_id: int, *, include_removed: bool = False) -> SchoolRecord:
        query = _SCHOOLS.where(School.SchoolId == school_id)
        if not include_removed:
            query = query.where(School.RemovedAt.is_(None))
        with self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFoundError(f"no school has id {school_id} (see 'cleversync school list')")
        return _school(row)

    def set_requires_full_sync(self, school_id: int, value: bool = True) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(School)
                .where(School.SchoolId == school_id)
                .values(RequiresFullSync=value, UpdatedAt=self._clock())
            )

    def set_active(self, school_id: int, active: bool) -> SchoolRecord:
        """Take a school out of (or back into) district and all-school runs."""
        self.get_school(school_id)
        with self._engine.begin() as conn:
            conn.execute(
                update(School)
                .where(School.SchoolId == school_id)
                .values(IsActive=active, UpdatedAt=self._clock())
            )
        return self.get_school(school_id)

    def _check_district_free(self, conn: Connection, clever_id: str, prefix: str) -> None:
        found = conn.execute(
            select(District.DistrictId, District.RemovedAt).where(
                District.CleverDistrictId == clever_id
            )
        ).first()
        if found is not None:
            raise UsageError(
                f"a district with Clever id {clever_id} is already registered"
                + _removed_note("district", found.DistrictId, found.RemovedAt)
            )
        self._check_prefix_free(conn, prefix)

    def set_district_active(self, district_id: int, active: bool) -> DistrictRecord:
        """Take a district's schools out of (or back into) every run; each school's own
        active flag is kept, so a school deactivated on its own stays so."""
        self.get_district(district_id)
        with self._engine.begin() as conn:
            conn.execute(
                update(District)
                .where(District.DistrictId == district_id)
                .values(IsActive=active, UpdatedAt=self._clock())
            )
        return self.get_district(district_id)

    def set_database_name(self, school_id: int, database_name: str) -> SchoolRecord:
        """The school's DatabaseName label (what operators see; the secret is what connects)."""
        database_name = check_text(database_name, what="database name", width=100)
        self.get_school(school_id)
        with self._engine.begin() as conn:
            conn.execute(
                update(School)
                .where(School.SchoolId == school_id)
                .values(DatabaseName=database_name, UpdatedAt=self._clock())
            )
        return self.get_school(school_id)

    def history_rows(self, school_ids: list[int]) -> int:
        """How many SyncHistory rows these schools have."""
        if not school_ids:
            return 0
        query = select(func.count()).where(SyncHistory.SchoolId.in_(school_ids))
        with self._engine.connect() as conn:
            return conn.scalar(query) or 0

    def remove_school(self, school_id: int, history: str = REFUSE) -> Removal:
        """Remove a school from SessionDb (never its database). ``history``: REFUSE, KEEP or
        PURGE (see above). Refused while a run holds the school's lease."""
        school = self.get_school(school_id, include_removed=history == PURGE)
        with self._engine.begin() as conn:
            removal = self._remove_schools(conn, [school], history)
        return removal

    def remove_district(self, district_id: int, history: str = REFUSE) -> Removal:
        """Remove a district and all its schools, in one transaction (all or none)."""
        district = self.get_district(district_id, include_removed=history == PURGE)
        query = _SCHOOLS.where(School.DistrictId == district.district_id)
        with self._engine.begin() as conn:
            rows = conn.execute(query).all()
            schools = [_school(row) for row in rows]
            earlier = [s for s, row in zip(schools, rows, strict=True) if row.RemovedAt]
            if history in (REFUSE, PURGE):
                removal = self._remove_schools(conn, schools, history)
            else:  # schools removed before with their history kept stay so
                live = [s for s in schools if s not in earlier]
                removal = self._remove_schools(conn, live, history)
                removal.kept.extend(earlier)
            now = self._clock()
            row = District.DistrictId == district.district_id
            if removal.kept:  # their rows keep their district's key: it stays, as removed
                conn.execute(
                    update(District)
                    .where(row, District.RemovedAt.is_(None))
                    .values(IsActive=False, RemovedAt=now, UpdatedAt=now)
                )
            else:
                conn.execute(delete(District).where(row))
        return removal

    def _remove_schools(
        self, conn: Connection, schools: list[SchoolRecord], history: str
    ) -> Removal:
        if history not in (REFUSE, KEEP, PURGE):
            raise ValueError(f"unknown history handling {history!r}")
        ids = [s.school_id for s in schools]
        now = self._clock()
        rows = (
            conn.scalar(select(func.count()).where(SyncHistory.SchoolId.in_(ids))) or 0
            if ids
            else 0
        )
        if rows and history == REFUSE:
            raise HistoryExistsError(
                f"{_named(schools)} {'has' if len(schools) == 1 else 'have'} {rows} sync "
                "history row(s); give --keep-history (the history stays, the school is hidden) "
                "or --purge-history (the history is deleted too)"
            )
        deleted: list[SchoolRecord] = []
        kept: list[SchoolRecord] = []
        # Runs waiting for one of these schools: a part deleted below must not leave its
        # run open for ever (locked first, in the order finish_school locks).
        waiting = (
            list(
                conn.scalars(
                    select(SyncRunSchool.RunId)
                    .where(SyncRunSchool.SchoolId.in_(ids), SyncRunSchool.Status.in_(OPEN))
                    .distinct()
                )
            )
            if ids
            else []
        )
        if waiting:
            conn.execute(
                update(SyncRun)
                .where(SyncRun.RunId.in_(waiting))
                .values(FinishedAt=SyncRun.FinishedAt)
            )
        for school in schools:
            target = and_(School.SchoolId == school.school_id, _lease_free(now))
            has_history = exists().where(SyncHistory.SchoolId == school.school_id)
            if history == PURGE:
                conn.execute(delete(SyncHistory).where(SyncHistory.SchoolId == school.school_id))
                conn.execute(
                    delete(SyncRunSchool).where(SyncRunSchool.SchoolId == school.school_id)
                )
            else:
                # Its run rows go with it; its history rows keep it (KEEP) or refuse (REFUSE),
                # checked in the same statement, so a run finishing meanwhile cannot slip by.
                conn.execute(
                    delete(SyncRunSchool).where(
                        SyncRunSchool.SchoolId == school.school_id, ~has_history
                    )
                )
            removed = conn.execute(delete(School).where(target, ~has_history)).rowcount
            if removed:
                deleted.append(school)
                continue
            if history == KEEP:
                removed = conn.execute(
                    update(School)
                    .where(target, School.RemovedAt.is_(None))
                    .values(IsActive=False, RemovedAt=now, UpdatedAt=now)
                ).rowcount
                if removed:
                    kept.append(school)
                    continue
            current = conn.execute(
                select(School.SyncLeaseOwner, School.RemovedAt).where(
                    School.SchoolId == school.school_id
                )
            ).first()
            if current is None or (current.RemovedAt is not None and history != PURGE):
                raise NotFoundError(
                    f"school {school.school_id} ({school.name}) was removed meanwhile "
                    "(by another command); nothing more to do"
                )
            holder = current.SyncLeaseOwner
            if holder is not None and not conn.scalar(select(func.count()).where(target)):
                raise BeingSyncedError(
                    f"school {school.school_id} ({school.name}) is being synced now (its sync "
                    f"lease is held by {holder}); nothing was removed. Try again when the run "
                    "ends, or free a dead run's lease with 'cleversync school release-lease "
                    f"--school-id {school.school_id}'"
                )
            raise HistoryExistsError(
                f"school {school.school_id} ({school.name}) got sync history meanwhile; "
                "nothing was removed; give --keep-history or --purge-history"
            )
        if waiting:  # the runs whose last open part was deleted have ended
            conn.execute(
                update(SyncRun)
                .where(
                    SyncRun.RunId.in_(waiting),
                    SyncRun.FinishedAt.is_(None),
                    ~exists().where(
                        SyncRunSchool.RunId == SyncRun.RunId, SyncRunSchool.Status.in_(OPEN)
                    ),
                )
                .values(FinishedAt=now)
            )
        return Removal(deleted=deleted, kept=kept, history_rows=rows)

    def _check_prefix_free(self, conn: Connection, prefix: str) -> None:
        # Key Vault names ignore case, and district and school secrets share one namespace.
        lowered = prefix.lower()
        taken = conn.execute(
            select(District.DistrictPrefix)
            .where(func.lower(District.DistrictPrefix) == lowered)
            .union_all(
                select(School.SchoolPrefix).where(func.lower(School.SchoolPrefix) == lowered)
            )
        ).first()
        if taken is not None:
            raise UsageError(
                f"prefix {prefix!r} is already used by {taken[0]!r} "
                "(prefixes are unique ignoring case, as Key Vault names are)"
            )


# A school with its district's active flag, which decides with its own whether runs sync it.
_SCHOOLS = select(School.__table__, District.IsActive.label("DistrictActive")).join(
    District, District.DistrictId == School.DistrictId
)


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(
        School.SyncLeaseOwner.is_(None),
        School.SyncLeaseExpiresAt.is_(None),
        School.SyncLeaseExpiresAt < now,
    )


def _named(schools: list[SchoolRecord]) -> str:
    if len(schools) == 1:
        return f"school {schools[0].school_id} ({schools[0].name})"
    return f"its {len(schools)} schools"


def _removed_note(what: str, key: int, removed_at: datetime | None) -> str:
    if removed_at is None:
        return ""
    return (
        f" (as {what} {key}, removed with its history kept; delete it for good with "
        f"'cleversync {what} remove --{what}-id {key} --purge-history')"
    )


def _district(d: Row[Any]) -> DistrictRecord:
    return DistrictRecord(
        d.DistrictId,
        d.CleverDistrictId,
        d.Name,
        d.DistrictPrefix,
        d.CreatedAt,
        bool(d.IsActive),
    )


def _school(s: Row[Any]) -> SchoolRecord:
    district_active = bool(s.DistrictActive)
    return SchoolRecord(
        s.SchoolId,
        s.DistrictId,
        s.CleverSchoolId,
        s.Name,
        s.DatabaseName,
        s.SchoolPrefix,
        bool(s.IsActive) and district_active and s.RemovedAt is None,
        bool(s.RequiresFullSync),
        district_active,
    )
