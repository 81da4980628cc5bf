"""The pure parts of change detail: what a batch plan changed, and the run's capped buffer."""

from __future__ import annotations

from datetime import datetime

from cleversync.db.sessiondb.changes import ChangeBuffer
from cleversync.sync.mapping import Row
from cleversync.sync.plan import Existing, batch_changes, display_name, plan_batch
from cleversync.vocabulary import ChangeKind

T0 = datetime(2026, 12, 1)


def row(clever_id: str, first: str, last: str, email: str | None = None) -> Row:
    return Row(clever_id, {"FirstName": first, "LastName": last, "Email": email}, None)


def test_batch_changes_name_each_kind_and_only_the_columns_that_differ() -> None:
    existing = {
        "same": Existing(1, ("Ann", "Lee", None), True),
        "moved": Existing(2, ("Bo", "Kim", " bo@x.org "), True),
        "back": Existing(3, ("Cy", "Fox", None), False),
        "spaces": Existing(4, ("Di", "Ng", "  "), True),
    }
    rows = [
        row("same", "Ann", "Lee"),
        row("moved", "Bo", "Kim", "bo@y.org"),
        row("back", "Cy", "Fox"),
        row("new", "Ed", "Oz"),
        row("spaces", "Di", "Ng", None),  # blank = no value: not a change
    ]
    plan = plan_batch(rows, existing)
    items = batch_changes(plan, existing)
    assert items == [
        ("new", ChangeKind.INSERTED, "Ed Oz", None),
        ("moved", ChangeKind.UPDATED, "Bo Kim", {"Email": ("bo@x.org", "bo@y.org")}),
        ("back", ChangeKind.REACTIVATED, "Cy Fox", None),
    ]
    assert batch_changes(plan, existing, limit=2) == items[:2]
    assert batch_changes(plan, existing, limit=0) == []


def test_display_names() -> None:
    assert display_name({"Name": "Math 1"}) == "Math 1"
    assert display_name({"FirstName": "Ann", "LastName": "Lee"}) == "Ann Lee"
    assert display_name({"FirstName": None, "LastName": "Lee"}) == "Lee"
    assert display_name({"FirstName": None, "LastName": None}) is None


def test_the_buffer_keeps_up_to_its_limit_and_counts_the_rest_by_entity() -> None:
    buffer = ChangeBuffer(3, clock=lambda: T0)
    buffer.add("Student", [(f"s{n}", ChangeKind.INSERTED, None, None) for n in range(2)])
    buffer.add("Teacher", [(f"t{n}", ChangeKind.INSERTED, None, None) for n in range(2)])
    buffer.add("Section", [], total=5)  # not even described: counted
    assert [r[1] for r in buffer.rows] == ["s0", "s1", "t0"]
    assert buffer.omitted == {"Teacher": 1, "Section": 5}
    assert buffer.room() == 0
    # A hold-back list has a limit of its own: the operator decides on it.
    assert buffer.room(ChangeKind.HELD_BACK) == 3
    buffer.add("Student", [(f"h{n}", ChangeKind.HELD_BACK, None, None) for n in range(4)])
    assert [r[1] for r in buffer.held] == ["h0", "h1", "h2"]
    assert buffer.omitted["Student"] == 1
    assert len(buffer) == 6


class Described:
    def __init__(self, n: int) -> None:
        self.asked: list[int] = []
        self.n = n

    @property
    def changed(self) -> int:
        return self.n

    def changes(self, limit: int) -> list:
        self.asked.append(limit)
        return [(f"c{i}", ChangeKind.UPDATED, None, None) for i in range(min(limit, self.n))]


def test_a_full_buffer_does_not_ask_a_write_to_describe_its_changes() -> None:
    buffer = ChangeBuffer(2)
    first, second = Described(3), Described(4)
    buffer.add_from("Student", first)
    buffer.add_from("Student", second)
    assert first.asked == [2] and second.asked == []
    assert buffer.omitted == {"Student": 5}
