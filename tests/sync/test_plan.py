"""The pure decisions: change detection, batch plans, links, the delete guard, the mode."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cleversync.sync.mapping import Row
from cleversync.sync.plan import (
    EntityRun,
    Existing,
    LastRun,
    changed_columns,
    choose_mode,
    expects_rows,
    latest_per_record,
    plan_batch,
    plan_deletes,
    plan_links,
    same,
)

NOW = datetime(2026, 9, 1, 2, 0)


def row(clever_id: str, **values: str | None) -> Row:
    return Row(clever_id, {"FirstName": "A", "LastName": "B", "Email": None, **values}, None)


@pytest.mark.parametrize(
    ("a", "b"), [(None, ""), ("", "   "), (None, " \t"), ("x", " x "), ("x", "x")]
)
def test_normalized_equal(a: str | None, b: str | None) -> None:
    assert same(a, b)


@pytest.mark.parametrize(("a", "b"), [("x", "y"), (None, "x"), ("x", "X"), ("a b", "a  b")])
def test_normalized_different(a: str | None, b: str | None) -> None:
    assert not same(a, b)


def test_changed_columns() -> None:
    assert changed_columns({"A": "1", "B": " 2 ", "C": None}, {"A": "1", "B": "2", "C": ""}) == []
    assert changed_columns({"A": "1", "B": "3"}, {"A": "1", "B": "2"}) == ["B"]


def test_plan_batch_inserts_updates_and_skips() -> None:
    existing = {
        "same": Existing(1, ("A", "B", ""), True),  # "" stored by another tool: same as None
        "changed": Existing(2, ("A", "Old", None), True),
        "inactive": Existing(3, ("A", "B", None), False),
    }
    plan = plan_batch([row("same"), row("changed"), row("inactive"), row("new")], existing)
    assert [r.clever_id for r in plan.inserts] == ["new"]
    assert [(k, r.clever_id) for k, r in plan.updates] == [(2, "changed"), (3, "inactive")]
    assert [(k, r.clever_id) for k, r in plan.unchanged] == [(1, "same")]


def test_the_later_record_wins_within_a_batch() -> None:
    plan = plan_batch([row("a", LastName="First"), row("a", LastName="Second")], {})
    assert [(r.clever_id, r.values["LastName"]) for r in plan.inserts] == [("a", "Second")]


def test_plan_links() -> None:
    add, remove = plan_links({1: {10, 11}, 2: set(), 3: {30}}, {1: {11, 12}, 2: {20}})
    assert add == [(1, 10), (3, 30)]
    assert remove == [(1, 12), (2, 20)]


@pytest.mark.parametrize(
    ("missing", "active", "allowed"),
    [
        (0, 0, True),
        (0, 100, True),
        (40, 100, True),
        (41, 100, False),
        (100, 100, False),
        (1, 2, False),
        (1, 3, True),
    ],
)
def test_delete_guard_threshold(missing: int, active: int, allowed: bool) -> None:
    plan = plan_deletes(
        entity="Student",
        missing=missing,
        active=active,
        max_percent=40,
        allow_mass_delete=False,
        mode="Delete",
    )
    assert plan.allowed is allowed
    if not allowed:
        assert "--allow-mass-delete" in plan.message
        assert "CleverSync__Sync__MaxDeletePercent" in plan.message


def test_delete_guard_override_and_deactivate_wording() -> None:
    assert plan_deletes(
        entity="Student",
        missing=90,
        active=100,
        max_percent=40,
        allow_mass_delete=True,
        mode="Delete",
    ).allowed
    held = plan_deletes(
        entity="Teacher",
        missing=90,
        active=100,
        max_percent=40,
        allow_mass_delete=False,
        mode="Deactivate",
    )
    assert "deactivating 90 of 100 active teacher rows (90 %" in held.message


def test_mode_choice() -> None:
    good = LastRun(NOW - timedelta(days=1), "evt-1", NOW - timedelta(days=1))

    def choose(**kw: object) -> object:
        options = {"requested_full": False, "requires_full_sync": False, "last": good, **kw}
        return choose_mode(now=NOW, retention_days=29, **options)

    assert choose().mode == "events"
    assert choose(requested_full=True).mode == "full"
    assert choose(requires_full_sync=True).mode == "full"
    assert choose(last=None).reason == "the school has no successful sync yet"
    assert choose(last=LastRun(NOW, None, NOW)).mode == "data"
    assert choose(last=LastRun(NOW, "", NOW)).mode == "events"  # empty feed at baseline
    old = LastRun(NOW - timedelta(days=30), "evt-1", NOW - timedelta(days=30))
    decision = choose(last=old)
    assert decision.mode == "full"
    assert "30 days ago" in decision.reason
    edge = LastRun(NOW - timedelta(days=29), "evt-1", NOW - timedelta(days=29))
    assert choose(last=edge).mode == "events"


GOOD = LastRun(NOW - timedelta(days=1), "evt-1", NOW - timedelta(days=1))


@pytest.mark.parametrize(
    ("options", "mode", "in_reason"),
    [
        ({"empty_entities": ["Student"]}, "full", "no active Student rows"),
        ({"empty_entities": ["Student", "Section"]}, "full", "Student and Section"),
        ({"empty_entities": ["Teacher"], "last": LastRun(NOW, None, NOW)}, "full", "replaced"),
        ({"empty_entities": []}, "events", "cursor"),
        ({"empty_entities": ["Student"], "requested_full": True}, "full", "requested"),
        ({"empty_entities": ["Student"], "last": None}, "full", "no successful sync"),
    ],
)
def test_an_emptied_table_means_a_full_sync(
    options: dict[str, object], mode: str, in_reason: str
) -> None:
    chosen = {"requested_full": False, "requires_full_sync": False, "last": GOOD, **options}
    decision = choose_mode(now=NOW, retention_days=29, **chosen)  # type: ignore[arg-type]
    assert decision.mode == mode
    assert in_reason in decision.reason


def full(processed: int, failed: int = 0, inserted: int = 0) -> EntityRun:
    return EntityRun("Full", processed, inserted, 0, failed)


def incremental(inserted: int = 0, updated: int = 0) -> EntityRun:
    return EntityRun("Incremental", inserted + updated, inserted, updated, 0)


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], False),  # never synced: nothing was stored
        ([full(40, inserted=40)], True),
        ([full(40)], True),  # stored before and unchanged: still there
        ([incremental(), incremental(), full(40)], True),  # incremental runs never remove
        ([full(0)], False),  # Clever had none: an empty table is right
        ([full(3, failed=3)], False),  # every record skipped: none stored
        ([full(0), full(40)], False),  # the latest full sync removed them all
        ([incremental(inserted=2), full(0)], True),  # added since by events
        ([incremental(updated=1), full(0)], True),  # reactivated since
        ([incremental(), incremental()], False),  # the full sync's row was purged
    ],
)
def test_expects_rows(runs: list[EntityRun], expected: bool) -> None:
    assert expects_rows(runs) is expected


def test_latest_per_record_keeps_the_last_state_in_last_seen_order() -> None:
    assert list(latest_per_record([("a", 1), ("b", 2), ("a", 3)]).items()) == [("b", 2), ("a", 3)]


def test_mapped_rows_follow_the_entitys_column_order() -> None:
    # plan_batch compares a row's values with the stored ones position by position.
    from cleversync.clever.models import Section, User, checked
    from cleversync.db.school.entities import SECTION, STUDENT, TEACHER
    from cleversync.sync.mapping import section_row, student_row, teacher_row

    user = checked(
        User,
        {"id": "u", "name": {"first": "A", "last": "B"}, "roles": {"student": {}, "teacher": {}}},
    )
    assert tuple(student_row(user).values) == STUDENT.columns
    assert tuple(teacher_row(user).values) == TEACHER.columns
    assert (
        tuple(section_row(checked(Section, {"id": "s", "name": "Math"})).values) == SECTION.columns
    )
