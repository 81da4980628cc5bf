"""The dashboard's actions: a confirmation page first, then a POST with a CSRF token; each
one's effect in SessionDb (SQLite and PostgreSQL), and nothing changed when refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from werkzeug.test import Client

from cleversync.dashboard.csrf import Csrf
from cleversync.db.schema import District, School, SyncRun
from cleversync.secrets import names
from cleversync.timeutil import utcnow
from tests.dashboard.conftest import CSRF_KEY, RecordingQueue, Story, text, token_of
from tests.world import World


def _runs(world: World) -> int:
    with world.services.checked_session_engine().connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(SyncRun)) or 0)


def _confirm_and_post(client: Client, path: str) -> tuple[str, object]:
    page = client.get(path)
    assert page.status_code == 200
    token = token_of(page)
    return text(page), client.post(path, data={"csrf_token": token})


@pytest.mark.parametrize(
    ("action", "full", "allow"),
    [("sync", False, False), ("full-sync", True, False), ("accept-hold-back", True, True)],
)
def test_sync_actions_queue_a_run_of_that_school(
    client: Client,
    story: Story,
    world: World,
    queue: RecordingQueue,
    action: str,
    full: bool,
    allow: bool,
) -> None:
    school = story.held_back.school_id
    path = f"/admin/schools/{school}/actions/{action}"
    before = _runs(world)
    confirm, response = _confirm_and_post(client, path)
    assert _runs(world) == before + 1
    assert response.status_code == 303  # type: ignore[attr-defined]
    [message] = queue.sent
    assert (message.school_id, message.full, message.allow_mass_delete) == (school, full, allow)
    assert message.trigger == "cli"
    location = response.headers["Location"]  # type: ignore[attr-defined]
    assert location == f"/admin/runs/{message.run_id}"
    run_page = text(client.get(location))
    assert f"Run {message.run_id}" in run_page and story.held_back.name in run_page
    if allow:
        assert "mass-delete guard lifted" in run_page
        assert "held back deleting 21 of 36 active student rows" in confirm


def test_the_confirmation_page_changes_nothing(
    client: Client, story: Story, world: World, queue: RecordingQueue
) -> None:
    before = _runs(world)
    for action in ("sync", "full-sync", "accept-hold-back", "flag-full-sync", "deactivate"):
        page = client.get(f"/admin/schools/{story.healthy.school_id}/actions/{action}")
        assert page.status_code == 200 and 'method="post"' in text(page)
    assert _runs(world) == before and queue.sent == []
    school = world.services.registry.get_school(story.healthy.school_id)
    assert school.is_active and not school.requires_full_sync
    assert "No hold-back is waiting for this school now" in text(
        client.get(f"/admin/schools/{story.healthy.school_id}/actions/accept-hold-back")
    )


def test_flag_for_a_full_sync(client: Client, story: Story, world: World) -> None:
    school = story.healthy.school_id
    assert not world.services.registry.get_school(school).requires_full_sync
    _, response = _confirm_and_post(client, f"/admin/schools/{school}/actions/flag-full-sync")
    assert response.headers["Location"] == f"/admin/schools/{school}?done=flagged"  # type: ignore[attr-defined]
    assert world.services.registry.get_school(school).requires_full_sync
    page = text(client.get(f"/admin/schools/{school}?done=flagged"))
    assert "Flagged: the school&#39;s next run will be a full sync." in page
    assert "flagged by an operator" in page


def test_deactivate_and_activate(client: Client, story: Story, world: World) -> None:
    school = story.healthy.school_id
    _confirm_and_post(client, f"/admin/schools/{school}/actions/deactivate")
    assert not world.services.registry.get_school(school).is_active
    assert "Inactive" in text(client.get("/admin/?state=Inactive"))
    # an inactive school cannot be synced: the refusal is shown, nothing queued
    page = client.get(f"/admin/schools/{school}/actions/sync")
    refused = client.post(
        f"/admin/schools/{school}/actions/sync", data={"csrf_token": token_of(page)}
    )
    assert refused.status_code == 400 and "is inactive; it is not synced" in text(refused)
    _confirm_and_post(client, f"/admin/schools/{school}/actions/activate")
    assert world.services.registry.get_school(school).is_active


def test_a_school_being_synced_is_not_queued_again(
    client: Client, story: Story, world: World, queue: RecordingQueue
) -> None:
    import os
    import socket

    school = story.healthy.school_id
    holder = f"{socket.gethostname()}:{os.getpid()}:live"
    with world.services.checked_session_engine().begin() as conn:
        conn.execute(
            update(School)
            .where(School.SchoolId == school)
            .values(SyncLeaseOwner=holder, SyncLeaseExpiresAt=utcnow() + timedelta(minutes=4))
        )
    _, response = _confirm_and_post(client, f"/admin/schools/{school}/actions/sync")
    assert response.status_code == 409  # type: ignore[attr-defined]
    assert "already being synced" in text(response)  # type: ignore[arg-type]
    assert queue.sent == []


@pytest.mark.parametrize(
    "token",
    [None, "", "garbage", "1.abc.def", "token-for-someone-else", "expired"],
)
def test_a_post_without_a_valid_csrf_token_changes_nothing(
    client: Client, story: Story, world: World, queue: RecordingQueue, token: str | None
) -> None:
    if token == "token-for-someone-else":
        token = Csrf(CSRF_KEY).token("someone else")
    elif token == "expired":
        token = Csrf(CSRF_KEY, clock=lambda: 1_000_000.0).token("local operator")
    elif token == "1.abc.def":
        token = Csrf(b"another key of 32 bytes........").token("local operator")
    school = story.healthy.school_id
    before = _runs(world)
    for action in ("sync", "flag-full-sync", "deactivate", "accept-hold-back"):
        data = {} if token is None else {"csrf_token": token}
        response = client.post(f"/admin/schools/{school}/actions/{action}", data=data)
        assert response.status_code == 403
        assert "nothing was changed" in text(response)
    data = {} if token is None else {"csrf_token": token}
    assert client.post("/admin/districts/new", data=data | {"name": "X"}).status_code == 403
    district = world.districts[0].district_id
    assert client.post(f"/admin/districts/{district}/discover", data=data).status_code == 403
    assert _runs(world) == before and queue.sent == []
    record = world.services.registry.get_school(school)
    assert record.is_active and not record.requires_full_sync
    assert len(world.services.registry.list_districts()) == 1


def test_an_unknown_action_or_school_is_404(client: Client, story: Story) -> None:
    assert client.get(f"/admin/schools/{story.healthy.school_id}/actions/delete").status_code == 404
    assert client.get("/admin/schools/999/actions/sync").status_code == 404


# --- registering a district ---------------------------------------------------------------


def _register(client: Client, **fields: str) -> object:
    form = client.get("/admin/districts/new")
    return client.post("/admin/districts/new", data={"csrf_token": token_of(form), **fields})


def _second_district(world: World) -> dict[str, str]:
    district = world.sandbox.districts[0]
    return {
        "name": "Second USD",
        "clever_id": district.id,
        "prefix": "Second-USD",
        "client_id": district.client_id,
        "client_secret": district.client_secret,
    }


def test_register_a_district_then_its_schools(world: World, client: Client) -> None:
    # The sandbox's one district, registered afresh: start from an empty registry.
    with world.services.checked_session_engine().begin() as conn:
        conn.execute(School.__table__.delete())
        conn.execute(District.__table__.delete())
    fields = _second_district(world)
    response = _register(client, **fields)
    assert response.status_code == 303  # type: ignore[attr-defined]
    [district] = world.services.registry.list_districts()
    assert (district.name, district.prefix) == ("Second USD", "Second-USD")
    assert world.secrets.get(names.client_secret("Second-USD")) == fields["client_secret"]
    assert world.secrets.get(names.client_id("Second-USD")) == fields["client_id"]
    location = response.headers["Location"]  # type: ignore[attr-defined]
    assert location == f"/admin/districts/{district.district_id}/discover?done=district"
    listing = client.get(location)
    page = text(listing)
    assert fields["client_secret"] not in page
    for school in world.sandbox.districts[0].schools:
        assert school.name in page
    assert "Register 2 school(s)" in page
    done = client.post(
        f"/admin/districts/{district.district_id}/discover",
        data={"csrf_token": token_of(listing)},
    )
    assert done.status_code == 303
    registered = world.services.registry.list_schools(district_id=district.district_id)
    assert sorted(s.clever_school_id for s in registered) == sorted(
        s.id for s in world.sandbox.districts[0].schools
    )
    after = text(client.get(done.headers["Location"]))
    assert "Every school Clever lists for this district is registered." in after


def test_wrong_credentials_store_nothing_and_are_not_echoed(world: World, client: Client) -> None:
    with world.services.checked_session_engine().begin() as conn:
        conn.execute(School.__table__.delete())
        conn.execute(District.__table__.delete())
    fields = _second_district(world) | {"client_secret": "wrong-Secret-123456"}
    response = _register(client, **fields)
    assert response.status_code == 502  # type: ignore[attr-defined]
    page = text(response)  # type: ignore[arg-type]
    assert "nothing was stored" in page
    assert "wrong-Secret-123456" not in page
    assert 'value="Second USD"' in page  # the form keeps what is not secret
    assert world.services.registry.list_districts() == []
    assert world.secrets.get(names.client_secret("Second-USD")) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prefix": "bad prefix!"}, "may hold only letters"),
        ({"prefix": "District-1"}, "is already used"),
        ({"clever_id": "not a clever id"}, "is not a Clever id"),
        ({"client_secret": ""}, "Fill in: client secret."),
        ({"name": " "}, "Fill in: name."),
    ],
)
def test_bad_district_input_is_named(
    world: World, client: Client, change: dict[str, str], message: str
) -> None:
    fields = _second_district(world) | {"clever_id": "0123456789abcdef01234567"} | change
    response = _register(client, **fields)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert message in text(response).replace("&#39;", "'")  # type: ignore[arg-type]
    assert len(world.services.registry.list_districts()) == 1


def test_preview_shows_what_a_full_sync_would_do_and_changes_nothing(
    client: Client, story: Story, world: World, queue: RecordingQueue
) -> None:
    school = story.held_back.school_id
    before_state = text(client.get("/admin/?state=HeldBack"))
    stored = len(world.students(world.school(1)))
    confirm, response = _confirm_and_post(client, f"/admin/schools/{school}/actions/preview")
    assert "without changing anything" in confirm
    assert response.status_code == 200  # type: ignore[attr-defined]
    page = text(response)  # type: ignore[arg-type]
    assert "Would hold the removals back" in page
    assert f"Removals ({len(story.leaving)})" in page
    for clever_id in story.leaving:
        assert clever_id in page
    assert queue.sent == []
    assert len(world.students(world.school(1))) == stored  # the school database only read
    dry = [r for r in world.history(school_id=school) if r["Status"] == "DryRun"]
    assert len(dry) == 3
    # the preview is history, not the school's state: still held back, same streak
    assert text(client.get("/admin/?state=HeldBack")).count("<tr class=") == before_state.count(
        "<tr class="
    )
    history = text(client.get(f"/admin/schools/{school}?status=DryRun"))
    assert history.count('<tr id="sync-') == 3
