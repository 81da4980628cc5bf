"""One rendering of a run's result, shared by the HTTP endpoint, the CLI and the logs.

The JSON shape (README: 'HTTP API') is ``{"correlationId", "status", "durationMs", "schools": [{
"schoolId", "name", "status", "entities": [{"entityType", "syncType", "status", "syncId",
"processed", "inserted", "updated", "deleted", "failed", "error"}]}]}``. Every message in
it has passed through the caller's redactor (``redact``, its composition root's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cleversync.db.sessiondb.history import sanitize
from cleversync.orchestrator import RunResult
from cleversync.sync.school import SchoolResult
from cleversync.vocabulary import RunStatus

Redact = Callable[[str], str]


def run_json(run: RunResult, redact: Redact) -> dict[str, Any]:
    return {
        "correlationId": run.correlation_id,
        "status": run.status,
        "durationMs": run.duration_ms,
        "schools": [school_json(school, redact) for school in run.schools],
    }


def school_json(school: SchoolResult, redact: Redact) -> dict[str, Any]:
    return {
        "schoolId": school.school_id,
        "name": school.name,
        "status": school.status,
        "mode": school.mode,
        "error": sanitize(school.error, redact),
        "entities": [
            {
                "entityType": o.entity,
                "syncType": o.sync_type,
                "status": o.status,
                "syncId": o.sync_id,
                "processed": o.counts.processed,
                "inserted": o.counts.inserted,
                "updated": o.counts.updated,
                "deleted": o.counts.deleted,
                "failed": o.counts.failed,
                "error": sanitize(o.message(), redact),
            }
            for o in school.entities
        ],
    }


def summary_rows(run: RunResult, redact: Redact) -> list[tuple[object, ...]]:
    """One row per school and entity, for the CLI's summary table."""
    rows: list[tuple[object, ...]] = []
    for school in run.schools:
        if not school.entities:
            rows.append(
                (
                    school.school_id,
                    school.name,
                    "-",
                    "-",
                    school.status,
                    "",
                    "",
                    "",
                    "",
                    "",
                    sanitize(school.error, redact) or "",
                )
            )
            continue
        for o in school.entities:
            rows.append(
                (
                    school.school_id,
                    school.name,
                    o.entity,
                    o.sync_type,
                    o.status,
                    o.counts.processed,
                    o.counts.inserted,
                    o.counts.updated,
                    o.counts.deleted,
                    o.counts.failed,
                    _short(sanitize(o.message(), redact)),
                )
            )
    return rows


def problems(run: RunResult, redact: Redact) -> list[str]:
    """Full messages of what went wrong, for below the summary table: one line per school
    when its entities failed for the same reason, one per entity otherwise."""
    lines = []
    for school in run.schools:
        if not school.entities and school.error:
            lines.append(
                f"school {school.school_id} ({school.name}): {sanitize(school.error, redact)}"
            )
        bad = [
            (o.entity, sanitize(o.message(), redact))
            for o in school.entities
            if o.status in (RunStatus.FAILED, RunStatus.PARTIAL) and o.message()
        ]
        if len({message for _, message in bad}) == 1 and len(bad) > 1:
            lines.append(f"school {school.school_id} ({school.name}): {bad[0][1]}")
            continue
        lines += [
            f"school {school.school_id} {entity.lower()}s: {message}" for entity, message in bad
        ]
    return lines


SUMMARY_HEADERS = [
    "SCHOOL",
    "NAME",
    "ENTITY",
    "TYPE",
    "STATUS",
    "PROCESSED",
    "INSERTED",
    "UPDATED",
    "DELETED",
    "FAILED",
    "MESSAGE",
]


def _short(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    return text if len(text) <= width else text[: width - 3] + "..."
