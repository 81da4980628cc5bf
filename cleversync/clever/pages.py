"""Pages of Clever records: as Clever sent them, and parsed into typed records.

An entry that is not an object, or a record that does not fit its model, becomes a
``RecordError`` on its page (skipped and counted); fields Clever sends that the models do not
know are reported once per run per entity (``FieldReport``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cleversync.clever.models import (
    CleverModel,
    Event,
    User,
    checked,
    parse,
    parse_event,
    unknown_in,
)
from cleversync.errors import RecordError

logger = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=CleverModel)


@dataclass
class Page(Generic[T]):
    """One page of records: the readable ones, the ones that failed to parse, and how many
    records were skipped because they do not hold the role asked for."""

    records: list[T] = field(default_factory=list)
    failures: list[RecordError] = field(default_factory=list)
    off_role: int = 0
    last_id: str | None = None  # the id of the page's last entry, readable or not


@dataclass
class RawPage:
    """One page as Clever sent it: the record objects, and the entries that are not objects."""

    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[RecordError] = field(default_factory=list)
    last_id: str | None = None


class FieldReport:
    """Unknown fields, reported once per run per entity (names only, EC-008)."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def observe(self, entity: str, fields: set[str]) -> None:
        if not fields:
            return
        with self._lock:
            seen = self._seen.setdefault(entity, set())
            new = fields - seen
            seen |= new
        if new:
            logger.warning(
                "Clever sent %s fields this version of CleverSync does not know: %s; the "
                "fields it maps are still synced (review the schema change)",
                entity,
                ", ".join(sorted(new)),
                extra={"EntityType": entity, "UnknownFields": ",".join(sorted(new))},
            )

    def fields(self, entity: str) -> set[str]:
        with self._lock:
            return set(self._seen.get(entity, ()))


def raw_page(items: list[Any], what: str) -> RawPage:
    """The record objects of a page's ``data`` array (each entry's ``data``)."""
    page = RawPage()
    for item in items:
        raw = item.get("data") if isinstance(item, dict) else None
        if not isinstance(raw, dict):
            page.failures.append(RecordError("", f"an entry of {what} is not an object"))
            continue
        if isinstance(raw.get("id"), str):
            page.last_id = raw["id"]
        page.records.append(raw)
    return page


def parse_page(
    raws: list[dict[str, Any]],
    model: type[M],
    entity: str,
    role: str | None,
    field_report: FieldReport,
) -> Page[M]:
    """Typed records (unreadable ones as failures, records without ``role`` left out)."""

    def read(raw: dict[str, Any]) -> M:
        return parse_event(raw) if model is Event else parse(model, raw)  # type: ignore[return-value]

    def lacks_role(record: M) -> bool:
        return isinstance(record, User) and getattr(record.roles, role or "") is None

    return _read_page(raws, read, lacks_role if role else None, model, entity, field_report)


def checked_page(
    raws: list[dict[str, Any]],
    model: type[CleverModel],
    entity: str,
    role: str | None,
    field_report: FieldReport,
) -> Page[dict[str, Any]]:
    """As ``parse_page``, but each readable record is its fields as a dict
    (``models.checked``): the dict Clever sent when it fits the model as it is, so the
    usual page builds no models at all."""

    def lacks_role(record: dict[str, Any]) -> bool:
        return (record.get("roles") or {}).get(role) is None

    return _read_page(
        raws,
        lambda raw: checked(model, raw),
        lacks_role if role else None,
        model,
        entity,
        field_report,
    )


def _read_page(
    raws: list[dict[str, Any]],
    read: Callable[[dict[str, Any]], T],
    lacks_role: Callable[[T], bool] | None,
    model: type[CleverModel],
    entity: str,
    field_report: FieldReport,
) -> Page[T]:
    page: Page[T] = Page()
    kept: list[dict[str, Any]] = []  # the raw records of page.records
    for raw in raws:
        try:
            record = read(raw)
        except RecordError as exc:
            page.failures.append(exc)
            continue
        if lacks_role is not None and lacks_role(record):
            page.off_role += 1  # `next` links may not carry the role filter
            continue
        kept.append(raw)
        page.records.append(record)
    field_report.observe(entity, set() if model is Event else unknown_in(model, kept))
    return page


def parse_raw(
    raw: RawPage, model: type[M], entity: str, role: str | None, field_report: FieldReport
) -> Page[M]:
    """``raw`` parsed (``parse_page``), its unreadable entries first among the failures."""
    page = parse_page(raw.records, model, entity, role, field_report)
    page.failures[:0] = raw.failures
    page.last_id = raw.last_id
    return page
