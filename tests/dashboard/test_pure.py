"""The dashboard's pure parts: CSRF tokens, the trend SVG, the overview's decisions."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cleversync.dashboard.csrf import Csrf
from cleversync.dashboard.trend import trend_svg
from cleversync.db.sessiondb.overview import (
    FAILING,
    HEALTHY,
    HELD_BACK,
    INACTIVE,
    NEVER,
    PARTIAL,
    RUNNING,
    EntityState,
    RunPoint,
    attention,
    full_sync_reason,
    streak,
)

NOW = datetime(2026, 3, 2, 8, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_csrf_token_is_bound_to_its_user_key_and_age() -> None:
    clock = Clock()
    csrf = Csrf(b"0123456789abcdef", clock=clock, max_age=3600)
    token = csrf.token("ada")
    assert csrf.valid("ada", token)
    assert not csrf.valid("grace", token)
    assert not Csrf(b"another key 16by", clock=clock).valid("ada", token)
    stamp, _, signature = token.rpartition(".")
    issued, _, nonce = stamp.partition(".")
    assert not csrf.valid("ada", f"{int(issued) + 100}.{nonce}.{signature}")  # tampered
    assert (
        not csrf.valid("ada", None)
        and not csrf.valid("ada", "")
        and not csrf.valid("ada", "x" * 500)
    )
    clock.now += 3599
    assert csrf.valid("ada", token)
    clock.now += 2
    assert not csrf.valid("ada", token)  # expired
    assert csrf.token("ada") != csrf.token("ada")  # a random part each time
    with pytest.raises(ValueError, match="16 bytes"):
        Csrf(b"short")


def _run(
    days_ago: float,
    status: str = "Success",
    changed: int = 3,
    seconds: float = 2.0,
    cid: str | None = None,
) -> RunPoint:
    return RunPoint(NOW - timedelta(days=days_ago), status, seconds, 10, changed, cid)


def test_the_trend_draws_runs_of_the_last_30_days_and_says_so_in_words() -> None:
    svg = str(
        trend_svg(
            [_run(40), _run(20, changed=10), _run(10, "Failed", 0, 1.0), _run(1, seconds=8.0)],
            NOW,
            label='<b>"School"</b>',
        )
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 3  # the run of 40 days ago is outside the window
    assert svg.count("<path") == 1  # the failed run's cross
    assert "<polyline" in svg
    assert "3 runs in 30 days, 1 failed, 13 rows changed, longest 8 s" in svg
    assert "<b>" not in svg and "&lt;b&gt;&#34;School&#34;&lt;/b&gt;" in svg
    empty = str(trend_svg([], NOW, label="S"))
    assert "no runs in 30 days" in empty and "<rect" not in empty


def test_the_failure_streak_counts_failed_runs_since_the_last_success() -> None:
    assert streak([]) == 0
    assert streak([_run(3, "Failed"), _run(2, "Success"), _run(1, "Failed")]) == 1
    assert streak([_run(3, "Failed"), _run(2, "Partial"), _run(1, "Failed")]) == 2
    # the attempts of one queued run count once
    assert streak([_run(2, "Failed", cid="r1"), _run(1, "Failed", cid="r1")]) == 1


def _entity(name: str, status: str, error: str | None = None, days_ago: float = 0) -> EntityState:
    at = NOW - timedelta(days=days_ago)
    return EntityState(name, 1, status, "Full", at, at, 1, 0, 0, 0, 0, error, "c")


HELD = "held back deleting 5 of 9 ... 'cleversync sync --school-id 2 --allow-mass-delete'"


@pytest.mark.parametrize(
    ("active", "running", "entities", "failures", "state"),
    [
        (False, False, {"Student": _entity("Student", "Failed")}, 3, INACTIVE),
        (True, False, {"Student": _entity("Student", "Partial", HELD)}, 0, HELD_BACK),
        (True, True, {"Student": _entity("Student", "Partial", HELD)}, 1, HELD_BACK),
        (True, False, {"Student": _entity("Student", "Failed")}, 0, FAILING),
        (True, True, {"Student": _entity("Student", "Success")}, 1, FAILING),
        (True, True, {"Student": _entity("Student", "Success")}, 0, RUNNING),
        (True, False, {}, 0, NEVER),
        (
            True,
            False,
            {"Student": _entity("Student", "Partial", "1 record(s) skipped")},
            0,
            PARTIAL,
        ),
        (
            True,
            False,
            {
                "Student": _entity("Student", "Success"),
                "Teacher": _entity("Teacher", "Failed", days_ago=2),
            },
            0,
            HEALTHY,
        ),
    ],
)
def test_what_needs_attention(
    active: bool, running: bool, entities: dict[str, EntityState], failures: int, state: str
) -> None:
    assert (
        attention(is_active=active, running=running, entities=entities, failure_streak=failures)
        == state
    )


def test_why_a_full_sync_is_next() -> None:
    assert full_sync_reason(False, {}, False) is None
    assert "never synced" in (full_sync_reason(True, {}, False) or "")
    held = {"Student": _entity("Student", "Partial", HELD)}
    assert "mass-delete guard held back deletes of Student" in (
        full_sync_reason(True, held, False) or ""
    )
    failed = {"Student": _entity("Student", "Failed")}
    assert "the last run failed" in (full_sync_reason(True, failed, False) or "")
    ok = {"Student": _entity("Student", "Success")}
    assert "flagged by an operator" in (full_sync_reason(True, ok, False) or "")
    assert "a full sync is running" in (full_sync_reason(True, ok, True) or "")
