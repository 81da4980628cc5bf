"""One rendering of a run's result, shared by the HTTP endpoint, the CLI and the logs.

The JSON shape (README: 'HTTP API') is ``{"correlationId", "status", "durationMs", "schools": [{
"schoolId", "name", "status", "entities": [{"entityType", "syncType", "status", "syncId",
"processed", "inserted", "updated", "deleted", "failed", "retries", "rateLimitWaits",
"rateLimitWaitSeconds", "error"}]}]}``. Every message in
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
                "retries": o.waits.retries,
                "rateLimitWaits": o.waits.rate_limit_waits,
                "rateLimitWaitSeconds": round(o.waits.rate_limit_wait_seconds, 3),
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
    """Full messages, for below the summary table (whose MESSAGE column is cut short): every
    message of a failed, partial or skipped school or entity, and any other message the table
    shortened. One line per school when its entities share the message, one per entity
    otherwise; a school's own error (a missing secret, an unreachable database) once."""
    lines = []
    for school in run.schools:
        named = f"school {school.school_id} ({school.name})"
        shown = [
            (o.entity, message)
            for o in school.entities
            if (message := sanitize(o.message(), redact))
            and (o.status != RunStatus.SUCCESS or len(message) > SHORT_WIDTH)
        ]
        error = sanitize(school.error, redact)
        if error and error not in {message for _, message in shown}:
            lines.append(f"{named}: {error}")
        if len({message for _, message in shown}) == 1 and len(shown) > 1:
            lines.append(f"{named}: {shown[0][1]}")
            continue
        lines += [f"{named} {entity.lower()}s: {message}" for entity, message in shown]
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


SHORT_WIDTH = 80  # the MESSAGE column's width


def _short(text: str | None, width: int = SHORT_WIDTH) -> str:
    if not text:
        return ""
    return text if len(text) <= width else text[: width - 3] + "..."
