"""The dashboard's pages over a real SessionDb (SQLite and PostgreSQL) after a demo-like
sequence of syncs: what the overview, a school and a run show, filters, bad input."""

from __future__ import annotations

import re
from html import unescape

from sqlalchemy import select, update
from werkzeug.test import Client

from cleversync.db.schema import School, SyncHistory
from cleversync.sandbox import Fault
from tests.dashboard.conftest import Story, text
from tests.world import World


def plain(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def cells(page: str, school: str) -> dict[str, str]:
    """One school's row of the overview: its cells by their labels, as plain text."""
    body = page.split('<table class="schools">', 1)[1].split("</table>", 1)[0]
    row = next(r for r in body.split("<tr class=")[1:] if school in r)
    return {
        label: plain(cell)
        for label, cell in re.findall(r'<td data-label="([^"]+)">(.*?)</td>', row, re.S)
    }


def _rows(page: str) -> list[str]:
    """The overview's school rows, in order, as plain text."""
    body = page.split('<table class="schools">', 1)[1].split("</table>", 1)[0]
    return [plain(r) for r in body.split("<tr class=")[1:]]


def test_the_overview_puts_what_needs_attention_first(client: Client, story: Story) -> None:
    response = client.get("/admin/")
    assert response.status_code == 200
    rows = _rows(text(response))
    assert len(rows) == 3
    held, broken, healthy = rows
    assert story.held_back.name in held and "Deletes held back" in held
    assert "Decide on the held-back deletes" in held
    assert "Yes: the mass-delete guard held back deletes of Student rows" in held
    assert story.broken.name in broken and "Failing" in broken
    assert story.healthy.name in healthy and " OK" in healthy
    # status in words beside the colour, per entity
    for word in ("✓ Success", "! Partial", "✕ Failed"):
        assert word in plain(text(response))
    assert text(response).count("<svg") == 3  # one trend per school
    assert 'aria-label="' in text(response)


def test_the_failure_streak_and_full_sync_flag_are_shown(client: Client, story: Story) -> None:
    page = text(client.get("/admin/"))
    broken = cells(page, story.broken.name)
    assert broken["Failures in a row"] == "2"  # both runs that included it failed
    assert broken["Full sync next"] == "Yes: the last run failed: a full sync follows to catch up"
    assert broken["Running now"] == "No"
    held = cells(page, story.held_back.name)
    assert held["Failures in a row"] == "0"
    assert held["Full sync next"].startswith("Yes: the mass-delete guard held back deletes")
    healthy = cells(page, story.healthy.name)
    assert healthy["Full sync next"] == "No"
    processed, changed = healthy["Rows processed / changed"].split(" / ")
    assert int(processed) >= 1 and int(changed) == 1  # the rename, synced by events


def test_filter_by_state_and_district(client: Client, story: Story, world: World) -> None:
    failing = text(client.get("/admin/?state=Failed"))
    rows = _rows(failing)
    assert len(rows) == 1 and story.broken.name in rows[0]
    held = _rows(text(client.get("/admin/?state=HeldBack")))
    assert len(held) == 1 and story.held_back.name in held[0]
    district = world.districts[0].district_id
    assert len(_rows(text(client.get(f"/admin/?district={district}")))) == 3
    empty = text(client.get(f"/admin/?district={district + 100}"))
    assert "No school matches." in empty


def test_a_bad_filter_is_named_and_ignored(client: Client, story: Story) -> None:
    response = client.get("/admin/?state=Purple&district=abc")
    assert response.status_code == 400
    page = text(response)
    assert "status filter &#39;Purple&#39; is not one of" in page
    assert "district must be a positive whole number, not &#39;abc&#39;" in page
    assert len(_rows(page)) == 3


def test_a_running_school_shows_its_lease_holder(
    client: Client, story: Story, world: World
) -> None:
    from datetime import timedelta

    from cleversync.timeutil import utcnow

    with world.services.checked_session_engine().begin() as conn:
        conn.execute(
            update(School)
            .where(School.SchoolId == story.healthy.school_id)
            .values(
                SyncLeaseOwner="host-a:4242:abc", SyncLeaseExpiresAt=utcnow() + timedelta(minutes=4)
            )
        )
    page = text(client.get("/admin/"))
    row = next(r for r in _rows(page) if story.healthy.name in r)
    assert "Running now" in row and "Yes, host-a:4242:abc" in row
    assert len(_rows(text(client.get("/admin/?state=Running")))) == 1


def test_the_school_page_shows_history_errors_and_runs(client: Client, story: Story) -> None:
    response = client.get(f"/admin/schools/{story.broken.school_id}")
    assert response.status_code == 200
    page = text(response)
    assert "CleverSyncSOS--Broken-Elementary--ConnectionString" in page  # the sanitized error
    assert plain(page).count("✕ Failed") >= 6  # 2 runs x 3 entities
    held = text(client.get(f"/admin/schools/{story.held_back.school_id}"))
    assert "Deletes held back, waiting for a decision" in held
    assert "--allow-mass-delete" in held
    assert "Review and accept the deletes" in held
    # every run links to its run page by correlation id
    assert re.search(r'href="/admin/runs/[0-9a-f-]+"><code>', held)


def test_the_school_history_filters(client: Client, story: Story) -> None:
    school = story.healthy.school_id
    all_rows = text(client.get(f"/admin/schools/{school}")).count('<tr id="sync-')
    assert all_rows == 6  # two runs x three entities
    students = text(client.get(f"/admin/schools/{school}?entity=Student"))
    assert students.count('<tr id="sync-') == 2
    assert "<td>Teacher</td>" not in students
    failed = text(client.get(f"/admin/schools/{school}?status=Failed"))
    assert failed.count('<tr id="sync-') == 0 and "No history matches these filters." in failed
    future = text(client.get(f"/admin/schools/{school}?since=2999-01-01"))
    assert future.count('<tr id="sync-') == 0
    past = text(client.get(f"/admin/schools/{school}?until=2000-01-01"))
    assert past.count('<tr id="sync-') == 0
    today = text(client.get(f"/admin/schools/{school}?since=2000-01-01&until=2999-12-31"))
    assert today.count('<tr id="sync-') == 6
    bad = client.get(f"/admin/schools/{school}?since=yesterday&entity=Pupil&status=Meh")
    assert bad.status_code == 400
    page = text(bad)
    assert "the &#39;from&#39; date must be YYYY-MM-DD, not &#39;yesterday&#39;" in page
    assert "entity &#39;Pupil&#39; is not one of Student, Teacher, Section" in page
    assert "status &#39;Meh&#39; is not one of" in page


def test_an_unknown_school_or_run_is_404(client: Client, story: Story) -> None:
    assert client.get("/admin/schools/9999").status_code == 404
    assert "no school has id 9999" in text(client.get("/admin/schools/9999"))
    assert client.get("/admin/runs/424242").status_code == 404
    assert client.get("/admin/runs/no-such-run").status_code == 404
    assert client.get("/admin/runs/bad%20key").status_code == 404
    assert client.get("/admin/nothing-here").status_code == 404
    assert client.get("/admin/schools/99999999999").status_code == 404


def test_a_run_by_correlation_id_lists_its_schools(
    client: Client, story: Story, world: World
) -> None:
    rows = world.history(school_id=story.broken.school_id)
    correlation_id = rows[0]["CorrelationId"]
    response = client.get(f"/admin/runs/{correlation_id}")
    assert response.status_code == 200
    page = text(response)
    assert story.broken.name in page and story.healthy.name in page  # the whole run
    assert story.held_back.name in page
    found = client.get(f"/admin/runs?key={correlation_id}")
    assert found.status_code == 303 and found.headers["Location"].endswith(correlation_id)
    assert client.get("/admin/runs?key=%3Cscript%3E").status_code == 400


def test_a_queued_run_by_its_id_shows_attempts_and_outcomes(
    client: Client, story: Story, world: World
) -> None:
    queued = world.services.queued_runs()
    run = queued.enqueue_run(
        queued.orchestrator.targets(school_id=story.healthy.school_id), trigger="cli"
    )
    page = text(client.get(f"/admin/runs/{run.run_id}"))
    assert f"Run {run.run_id}" in page and "Queued" in page and "Attempts: 0" in page
    assert "not yet (reload to follow it)" in page
    by_correlation = text(client.get(f"/admin/runs/{run.correlation_id}"))
    assert f"Run {run.run_id}" in by_correlation


def test_no_secret_is_ever_rendered(client: Client, story: Story, world: World) -> None:
    secret = "S3cr3t-Client-Secret-Value"
    world.redactor.register(secret)
    with world.services.checked_session_engine().begin() as conn:
        conn.execute(
            update(SyncHistory)
            .where(SyncHistory.SyncId == select(SyncHistory.SyncId).limit(1).scalar_subquery())
            .values(ErrorMessage=f"boom with {secret} and Password=hunter2;")
        )
    for path in ("/admin/", *(f"/admin/schools/{s.school_id}" for s in world.schools)):
        page = text(client.get(path))
        assert secret not in page
        assert "hunter2" not in page
    district_secret = world.sandbox.districts[0].client_secret
    for path in ("/admin/", "/admin/districts/new", f"/admin/schools/{story.healthy.school_id}"):
        assert district_secret not in text(client.get(path))


def test_pages_carry_security_headers_and_the_css_is_served(client: Client, story: Story) -> None:
    response = client.get("/admin/")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    css = client.get("/admin/static/dashboard.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert "@media (max-width: 700px)" in text(css)
    assert "http" not in text(css)  # nothing fetched from elsewhere


def test_a_run_s_change_detail_shows_old_and_new_values(
    client: Client, story: Story, world: World
) -> None:
    school = story.healthy.school_id
    row = next(
        r
        for r in world.history(school_id=school)
        if r["EntityType"] == "Student" and r["RecordsUpdated"] == 1
    )
    page = text(client.get(f"/admin/schools/{school}?changes={row['SyncId']}"))
    detail = plain(page.split('id="changes"', 1)[1].split("</section>", 1)[0])
    assert "Updated" in detail and story.renamed_id in detail
    assert f"LastName {story.renamed_old} {story.renamed_new}" in detail
    # a record's own changes, by its Clever id
    record = text(client.get(f"/admin/schools/{school}?record={story.renamed_id}"))
    mine = plain(record.split('id="record"', 1)[1])
    assert f"LastName {story.renamed_old} {story.renamed_new}" in mine
    assert "Inserted" in mine  # its first full sync
    bad = client.get(f"/admin/schools/{school}?record=no%20such&changes=x")
    assert bad.status_code == 400
    assert "is not one (up to 50 letters" in text(bad)


def test_the_held_back_records_are_listed_beside_the_decision(client: Client, story: Story) -> None:
    for path in (
        f"/admin/schools/{story.held_back.school_id}",
        f"/admin/schools/{story.held_back.school_id}/actions/accept-hold-back",
    ):
        page = text(client.get(path))
        held = page.split('class="held"', 1)[1].split("</table>", 1)[0]
        assert sorted(re.findall(r"<code>([^<]+)</code>", held)) == sorted(story.leaving)
    assert 'class="held"' not in text(client.get(f"/admin/schools/{story.healthy.school_id}"))


def _newest_row(page: str) -> str:
    return page.split('<tr id="sync-', 1)[1].split("</tr>", 1)[0]


def _cell(row: str, name: str) -> str:
    match = re.search(rf'<td class="{name}">(.*?)</td>', row, re.S)
    assert match, row
    return plain(match.group(1))


def test_the_school_page_shows_each_runs_retries_and_rate_limit_waits(
    client: Client, story: Story, world: World
) -> None:
    school = story.healthy
    clever_id = world.services.registry.get_school(school.school_id).clever_school_id
    users, sections = f"/v3.0/schools/{clever_id}/users", f"/v3.0/schools/{clever_id}/sections"
    world.sandbox.faults.add(Fault("status", path=users, query="role=teacher", status=500, times=2))
    world.sandbox.faults.add(
        Fault("status", path=sections, status=429, headers={"Retry-After": "0.5"}, times=1)
    )
    run = world.sync(school_id=school.school_id, full=True)
    assert run.schools[0].status == "Success", run.schools[0].error
    base = f"/admin/schools/{school.school_id}"
    teacher = _newest_row(text(client.get(f"{base}?entity=Teacher")))
    section = _newest_row(text(client.get(f"{base}?entity=Section")))
    student = _newest_row(text(client.get(f"{base}?entity=Student")))
    assert run.correlation_id in teacher and run.correlation_id in section
    assert (_cell(teacher, "retries"), _cell(teacher, "waits")) == ("2", "0")
    assert (_cell(section, "retries"), _cell(section, "waits")) == ("1", "1 (0.5 s)")
    assert (_cell(student, "retries"), _cell(student, "waits")) == ("0", "0")
    page = text(client.get(base))
    assert "Rate-limit waits" in page and "not recorded" not in page
