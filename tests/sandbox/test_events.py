"""The sandbox's Events API: order, cursors, filters, mutations, retention and switching off."""

from __future__ import annotations

import httpx
import pytest

from cleversync.sandbox import Fault, Sandbox
from cleversync.sandbox.ids import object_id_seconds
from tests.sandbox.helpers import FakeClock, client_for, follow, links_by_rel, next_link

DAY = 86_400


def _events(api: httpx.Client, query: str = "") -> list[dict]:
    records, _ = follow(api, f"/v3.0/events?{query}")
    return records


def _school(sandbox: Sandbox, index: int = 0) -> str:
    return sandbox.districts[0].schools[index].id


def test_a_new_sandbox_has_an_empty_feed(sandbox: Sandbox, api: httpx.Client) -> None:
    body = api.get("/v3.0/events").json()
    assert body == {"data": [], "links": [{"rel": "self", "uri": "/v3.0/events?"}]}
    assert api.get("/v3.0/events?ending_before=last&limit=1").json()["data"] == []
    assert sandbox.latest_event_id(sandbox.districts[0].id) is None


def test_mutations_emit_events_in_order_with_clevers_shape(
    sandbox: Sandbox, api: httpx.Client, clock: FakeClock
) -> None:
    school = _school(sandbox)
    student = sandbox.add_student(school, first_name="Zoë", last_name="O'Brien", grade="2")
    clock.advance(1.5)
    sandbox.update_user(student, {"name": {"last": "Nguyễn"}, "roles": {"student": {"grade": "4"}}})
    section = sandbox.add_section(school, student_ids=[student])
    sandbox.update_section(section, {"period": "7"})
    sandbox.remove_section(section)
    events = _events(api)
    assert [e["type"] for e in events] == [
        "users.created",
        "users.updated",
        "sections.created",
        "sections.updated",
        "sections.deleted",
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 5
    created, updated = events[0], events[1]
    assert set(created) == {"id", "type", "created", "data"}
    assert set(created["data"]) == {"object"}  # no previous_attributes on *.created
    assert created["data"]["object"]["name"]["first"] == "Zoë"
    assert created["created"] == "2025-06-15T15:06:40.000Z"  # the clock, second precision
    assert updated["created"] == "2025-06-15T15:06:41.000Z"  # 1.5 s later
    assert updated["data"]["object"]["last_modified"] == "2025-06-15T15:06:41.500Z"
    assert updated["data"]["object"] == sandbox.user(student)
    assert updated["data"]["previous_attributes"] == {
        "name": {"last": "O'Brien"},
        "roles": {"student": {"grade": "2"}},
    }
    assert events[3]["data"]["previous_attributes"] == {
        "period": events[2]["data"]["object"]["period"]
    }
    assert events[4]["data"]["object"]["id"] == section  # the last known object
    assert "previous_attributes" not in events[4]["data"]


def test_previous_attributes_hold_whole_arrays_and_removed_fields(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    first, second = _school(sandbox, 0), _school(sandbox, 1)
    student = sandbox.add_student(first, schools=[first], email="kid@example.net")
    sandbox.update_user(student, {"roles": {"student": {"schools": [first, second]}}})
    sandbox.update_user(student, {"email": None, "roles": {"student": {"email": None}}})
    sandbox.update_user(student, {"roles": {"student": {"ell_status": "Y"}}})
    sandbox.update_user(student, {"roles": {"student": {"ell_status": "Y"}}})  # no change
    updates = [e for e in _events(api) if e["type"] == "users.updated"]
    assert [u["data"]["previous_attributes"] for u in updates] == [
        {"roles": {"student": {"schools": [first]}}},
        {"email": "kid@example.net", "roles": {"student": {"email": "kid@example.net"}}},
        {"roles": {"student": {"ell_status": None}}},
    ]
    assert "email" not in updates[1]["data"]["object"]


def test_removing_a_user_unenrols_then_deletes(sandbox: Sandbox, api: httpx.Client) -> None:
    school = _school(sandbox)
    section = sandbox.sections(school)[0]
    student = section["students"][0]
    before = sandbox.user(student)
    sandbox.remove_user(student)
    events = _events(api)
    assert events[-1]["type"] == "users.deleted"
    assert events[-1]["data"]["object"] == before
    unenrolled = [e for e in events if e["type"] == "sections.updated"]
    assert section["id"] in {e["data"]["object"]["id"] for e in unenrolled}
    for event in unenrolled:
        assert student not in event["data"]["object"]["students"]
        assert student in event["data"]["previous_attributes"]["students"]
    assert api.get(f"/v3.0/users/{student}").status_code == 404
    assert sandbox.user(student) is None


def test_cursors_limit_and_links(sandbox: Sandbox, api: httpx.Client) -> None:
    school = _school(sandbox)
    for _ in range(7):
        sandbox.add_student(school)
    every = [e["id"] for e in _events(api)]
    body = api.get("/v3.0/events?limit=3").json()
    assert [e["data"]["id"] for e in body["data"]] == every[:3]
    assert body["data"][0]["uri"] == f"/v3.0/events/{every[0]}"
    assert links_by_rel(body) == {
        "self": "/v3.0/events?limit=3",
        "next": f"/v3.0/events?limit=3&starting_after={every[2]}",
    }
    after = api.get(f"/v3.0/events?starting_after={every[2]}&limit=3").json()
    assert [e["data"]["id"] for e in after["data"]] == every[3:6]
    assert links_by_rel(after)["prev"] == f"/v3.0/events?limit=3&ending_before={every[3]}"
    _, pages = follow(api, "/v3.0/events?limit=3")
    assert [len(p["data"]) for p in pages] == [3, 3, 1]


@pytest.mark.parametrize("limit", [1, 3])
def test_ending_before_last_returns_the_newest_events_oldest_first(
    sandbox: Sandbox, api: httpx.Client, limit: int
) -> None:
    for _ in range(5):
        sandbox.add_teacher(_school(sandbox))
    every = [e["id"] for e in _events(api)]
    body = api.get(f"/v3.0/events?ending_before=last&limit={limit}").json()
    assert [e["data"]["id"] for e in body["data"]] == every[-limit:]
    assert sandbox.latest_event_id(sandbox.districts[0].id) == every[-1]
    # polling from the baseline finds nothing new, then exactly what happens next
    baseline = every[-1]
    assert api.get(f"/v3.0/events?starting_after={baseline}").json()["data"] == []
    new_teacher = sandbox.add_teacher(_school(sandbox))
    [event] = _events(api, f"starting_after={baseline}")
    assert event["data"]["object"]["id"] == new_teacher


def test_event_ids_ascend_even_when_the_clock_goes_back(
    sandbox: Sandbox, api: httpx.Client, clock: FakeClock
) -> None:
    sandbox.add_student(_school(sandbox))
    clock.advance(-3600)
    sandbox.add_student(_school(sandbox))
    first, second = (e["id"] for e in _events(api))
    assert second > first
    assert object_id_seconds(first) == int(clock.now + 3600)


def test_school_filter_uses_every_school_a_user_lists(sandbox: Sandbox, api: httpx.Client) -> None:
    first, second = _school(sandbox, 0), _school(sandbox, 1)
    only_first = sandbox.add_student(first, schools=[first])
    both = sandbox.add_student(second, schools=[second, first])
    only_second = sandbox.add_student(second, schools=[second])
    section = sandbox.add_section(second)
    sandbox.update_user(only_first, {"roles": {"student": {"school": second, "schools": [second]}}})
    seen = [(e["type"], e["data"]["object"]["id"]) for e in _events(api, f"school={first}")]
    assert seen == [
        ("users.created", only_first),
        ("users.created", both),
        ("users.updated", only_first),  # it left: the school it left hears about it
    ]
    second_ids = {e["data"]["object"]["id"] for e in _events(api, f"school={second}")}
    assert {both, only_second, section, only_first} == second_ids


def test_record_type_filter_is_repeatable_and_carried_in_next(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    school = _school(sandbox)
    for _ in range(3):
        sandbox.add_student(school)
        sandbox.add_section(school)
    sections = _events(api, "record_type=sections&limit=2")
    assert [e["type"] for e in sections] == ["sections.created"] * 3
    both = _events(api, "record_type=users&record_type=sections")
    assert len(both) == 6
    body = api.get(f"/v3.0/events?school={school}&record_type=users&limit=2").json()
    nxt = next_link(body)
    assert nxt == (
        f"/v3.0/events?school={school}&record_type=users&limit=2"
        f"&starting_after={body['data'][-1]['data']['id']}"
    )
    assert api.get("/v3.0/events?record_type=people").status_code == 400


def test_events_of_another_district_are_not_visible(sandbox: Sandbox) -> None:
    sandbox.add_student(sandbox.districts[1].schools[0].id)
    with client_for(sandbox, district=0) as api:
        assert api.get("/v3.0/events").json()["data"] == []
    with client_for(sandbox, district=1) as api:
        assert len(api.get("/v3.0/events").json()["data"]) == 1


@pytest.mark.parametrize("status", [403, 404])
def test_events_switched_off_per_district(sandbox: Sandbox, status: int) -> None:
    district = sandbox.districts[0].id
    sandbox.add_student(_school(sandbox))
    sandbox.set_events_enabled(district, False, status=status)
    with client_for(sandbox, district=0) as api:
        response = api.get("/v3.0/events?ending_before=last&limit=1")
        assert response.status_code == status
        assert "message" in response.json()
        assert response.headers["x-ratelimit-bucket"] == "bearer"
        assert api.get("/v3.0/users?limit=1").status_code == 200
        with client_for(sandbox, district=1) as other:
            assert other.get("/v3.0/events").status_code == 200
        sandbox.set_events_enabled(district, True)
        assert api.get("/v3.0/events").status_code == 200
    with pytest.raises(ValueError, match="403 or 404"):
        sandbox.set_events_enabled(district, False, status=500)


def test_events_can_start_disabled(clock: FakeClock) -> None:
    sandbox = Sandbox(
        schools=1, students=3, teachers=1, sections=1, clock=clock, events_enabled=False
    )
    with client_for(sandbox) as api:
        assert api.get("/v3.0/events").status_code == 403


def _aged_feed(sandbox: Sandbox, clock: FakeClock) -> tuple[list[str], list[str]]:
    """Three events, 31 days, then three more: the first three have dropped off."""
    school = _school(sandbox)
    old = [sandbox.add_student(school) for _ in range(3)]
    with client_for(sandbox) as api:
        old_ids = [e["id"] for e in _events(api)]
    clock.advance(31 * DAY)
    for _ in range(3):
        sandbox.add_student(school)
    assert len(old) == 3
    with client_for(sandbox) as api:
        kept = [e["id"] for e in _events(api)]
    return old_ids, kept


def test_retention_drops_old_events_and_an_expired_cursor_reads_from_the_oldest_kept(
    sandbox: Sandbox, api: httpx.Client, clock: FakeClock
) -> None:
    old, kept = _aged_feed(sandbox, clock)
    assert len(kept) == 3 and not set(old) & set(kept)
    body = api.get(f"/v3.0/events?starting_after={old[0]}").json()  # as real Clever: 200
    assert [e["data"]["id"] for e in body["data"]] == kept
    assert links_by_rel(body)["prev"] == f"/v3.0/events?ending_before={kept[0]}"
    assert api.get(f"/v3.0/events/{old[1]}").status_code == 404
    assert api.get(f"/v3.0/events/{kept[1]}").json() == {
        "data": body["data"][1]["data"],
        "links": [{"rel": "self", "uri": f"/v3.0/events/{kept[1]}"}],
    }


def test_expired_cursor_404_fault(sandbox: Sandbox, api: httpx.Client, clock: FakeClock) -> None:
    old, kept = _aged_feed(sandbox, clock)
    sandbox.faults.add(Fault("expired_cursor_404", path="/v3.0/events"))
    assert api.get(f"/v3.0/events?starting_after={kept[0]}").status_code == 200  # not expired
    assert api.get(f"/v3.0/events?starting_after={old[2]}").status_code == 404
    assert api.get(f"/v3.0/events?starting_after={old[2]}").status_code == 200  # times=1 spent
