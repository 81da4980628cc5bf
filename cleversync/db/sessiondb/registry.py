"""Districts and schools in SessionDb: register, list, look up (the admin commands' data)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine, Row

from cleversync.db.schema import District, School, utf16_length
from cleversync.errors import NotFoundError, UsageError
from cleversync.secrets import names
from cleversync.timeutil import utcnow

_CLEVER_ID = re.compile(r"^[0-9A-Za-z_-]{1,50}$")


@dataclass(frozen=True)
class DistrictRecord:
    district_id: int
    clever_district_id: str
    name: str
    prefix: str
    created_at: datetime


@dataclass(frozen=True)
class SchoolRecord:
    school_id: int
    district_id: int
    clever_school_id: str
    name: str
    database_name: str
    prefix: str
    is_active: bool
    requires_full_sync: bool

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
        clever_id = check_clever_id(clever_id, what="Clever district id")
        names.validate_prefix(prefix, what="district prefix")
        with self._engine.connect() as conn:
            self._check_district_free(conn, clever_id, prefix)
        return name, clever_id

    def add_district(self, *, name: str, clever_id: str, prefix: str) -> DistrictRecord:
        name = check_text(name, what="district name", width=200)
        clever_id = check_clever_id(clever_id, what="Clever district id")
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

    def list_districts(self) -> list[DistrictRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(District.__table__).order_by(District.DistrictId)).all()
        return [_district(row) for row in rows]

    def get_district(self, district_id: int) -> DistrictRecord:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(District.__table__).where(District.DistrictId == district_id)
            ).one_or_none()
        if row is None:
            raise NotFoundError(
                f"no district has id {district_id} (see 'cleversync district list')"
            )
        return _district(row)

    def district_count(self) -> int:
        with self._engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(District)) or 0

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
            if conn.scalar(select(School.SchoolId).where(School.CleverSchoolId == clever_id)):
                raise UsageError(f"a school with Clever id {clever_id} is already registered")
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
        self, *, district_id: int | None = None, active_only: bool = False
    ) -> list[SchoolRecord]:
        query = select(School.__table__).order_by(School.SchoolId)
        if district_id is not None:
            query = query.where(School.DistrictId == district_id)
        if active_only:
            query = query.where(School.IsActive.is_(True))
        with self._engine.connect() as conn:
            return [_school(row) for row in conn.execute(query).all()]

    def get_school(self, school_id: int) -> SchoolRecord:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(School.__table__).where(School.SchoolId == school_id)
            ).one_or_none()
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
        if conn.scalar(select(District.DistrictId).where(District.CleverDistrictId == clever_id)):
            raise UsageError(f"a district with Clever id {clever_id} is already registered")
        self._check_prefix_free(conn, prefix)

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


def _district(d: Row[Any]) -> DistrictRecord:
    return DistrictRecord(d.DistrictId, d.CleverDistrictId, d.Name, d.DistrictPrefix, d.CreatedAt)


def _school(s: Row[Any]) -> SchoolRecord:
    return SchoolRecord(
        s.SchoolId,
        s.DistrictId,
        s.CleverSchoolId,
        s.Name,
        s.DatabaseName,
        s.SchoolPrefix,
        bool(s.IsActive),
        bool(s.RequiresFullSync),
    )
