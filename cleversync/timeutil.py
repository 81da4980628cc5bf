"""UTC time as the databases store it: naive ``datetime`` values meaning UTC (``datetime2``)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_clever_time(value: object) -> datetime | None:
    """Clever's ``2023-04-12T23:05:01.315Z`` as naive UTC; None for missing or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    if value[-1] == "Z":  # Clever's own form: read it without a time zone round trip
        try:
            return datetime.fromisoformat(value[:-1])
        except ValueError:
            return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def iso(value: datetime | None) -> str | None:
    """ISO-8601 with a Z for a naive UTC value (what the HTTP API and --json print)."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"
