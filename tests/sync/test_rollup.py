"""The pure roll-up of a school's run and the fallbacks of an events run, over plain data."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cleversync.errors import EventCursorExpiredError, EventsNotEnabledError
from cleversync.sync.rollup import (
    Fallback,
    Rollup,
    events_fallback,
    roll_up,
    unwritten_failure,
)


@dataclass
class Done:
    status: str
    error: str | None = None
    incomplete: bool = False
    completed: bool = True


OK = Done("Success")
SKIPPED_RECORDS = Done("Partial")  # completed: only records were skipped
HELD_BACK = Done("Partial", completed=False)  # the mass-delete guard held deletes back
INCOMPLETE = Done("Partial", incomplete=True, completed=False)
BROKEN = Done("Failed", error="writing 7 student rows: disk full", completed=False)


@pytest.mark.parametrize(
    ("outcomes", "mode", "flagged", "expected"),
    [
        ([OK, OK, OK], "full", True, Rollup("Success", None, False)),
        ([OK, SKIPPED_RECORDS, OK], "full", True, Rollup("Partial", None, False)),
        ([OK, HELD_BACK, OK], "full", True, Rollup("Partial", None, True)),
        ([OK, INCOMPLETE, OK], "full", True, Rollup("Partial", None, True)),
        ([SKIPPED_RECORDS, BROKEN, OK], "full", True, Rollup("Failed", BROKEN.error, True)),
        # any other mode keeps what it found, and an incomplete list flags a full sync
        ([OK, OK, OK], "events", False, Rollup("Success", None, False)),
        ([OK, OK, OK], "data", True, Rollup("Success", None, True)),
        ([OK, INCOMPLETE, OK], "data", False, Rollup("Partial", None, True)),
        ([OK, BROKEN, OK], "events", False, Rollup("Failed", BROKEN.error, False)),
    ],
)
def test_roll_up(outcomes: list[Done], mode: str, flagged: bool, expected: Rollup) -> None:
    assert roll_up(outcomes, mode=mode, flagged=flagged) == expected


def test_the_first_error_is_the_schools() -> None:
    first, second = Done("Failed", error="first"), Done("Failed", error="second")
    assert roll_up([OK, first, second], mode="full", flagged=False).error == "first"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            EventCursorExpiredError("cursor e9 is older than Clever keeps"),
            Fallback("full", "cursor e9 is older than Clever keeps; fell back to a full sync"),
        ),
        (
            EventsNotEnabledError("events are not enabled for district 4"),
            Fallback(
                "data",
                "compared data: events are not enabled for district 4",
                "compared data instead of reading events: events are not enabled for district 4",
            ),
        ),
    ],
)
def test_events_fallback(
    exc: EventCursorExpiredError | EventsNotEnabledError, expected: Fallback
) -> None:
    assert events_fallback(exc) == expected


@pytest.mark.parametrize(
    ("error", "unwritten", "expected"),
    [
        (None, ["SessionDb: gone"], "its sync record could not be written: SessionDb: gone"),
        (
            "writing 7 student rows: disk full",
            ["SessionDb: gone", "later"],
            "writing 7 student rows: disk full; and its sync record could not be written: "
            "SessionDb: gone",
        ),
    ],
)
def test_unwritten_failure_puts_the_runs_own_error_first(
    error: str | None, unwritten: list[str], expected: str
) -> None:
    assert unwritten_failure(error, unwritten) == expected
