"""The dashboard in a real browser (Debian's chromium through Playwright) against
``cleversync dashboard`` served for real on loopback, after a demo-like sequence of syncs
against the sandbox: a failure, a rename, a guard hold-back. Screenshots of each page go to
the test's folder (``screenshots/``)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func
from sqlalchemy import select as sql_select

from cleversync.cli import main
from cleversync.db.schema import Student
from cleversync.sandbox import Sandbox
from tests.conftest import IN_CI
from tests.world import FAST

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs it)")
    print(f"skipping the browser tests: {reason}")
    pytest.skip(reason)


def run(*argv: str, stdin: str | None = None) -> int:
    import io

    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        return main(list(argv))
    finally:
        sys.stdin = saved


class Installation:
    """A laptop installation (SQLite, local secrets file) over a two-district sandbox, with
    the first district registered and synced like the demo."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.sandbox = Sandbox(seed=5, districts=2, schools=2, students=40, teachers=4, sections=5)
        self.district = self.sandbox.districts[0]
        self.other = self.sandbox.districts[1]
        self.monkeypatch = monkeypatch
        self.env: dict[str, str] = {}

    def start(self, running: Any) -> None:
        self.env = {
            **FAST,
            "CleverSync__DataDir": str(self.folder / "data"),
            "CleverSync__Clever__ApiBaseUrl": running.api_base_url,
            "CleverSync__Clever__TokenUrl": running.token_url,
        }
        for key, value in self.env.items():
            self.monkeypatch.setenv(key, value)

    def tell_story(self) -> dict[str, Any]:
        d = self.district
        assert run("db", "upgrade") == 0
        assert (
            run("district", "add", "--name", d.name, "--clever-id", d.id, "--prefix", "Demo") == 0
        )
        assert (
            run(
                "district",
                "set-credentials",
                "--district-id",
                "1",
                "--client-id",
                d.client_id,
                stdin=d.client_secret + "\n",
            )
            == 0
        )
        assert run("school", "discover", "--district-id", "1", "--register") == 0
        assert run("db", "upgrade", "--all-schools") == 0
        missing = self.folder / "gone" / "broken.sqlite"
        assert (
            run(
                "school",
                "add",
                "--district-id",
                "1",
                "--clever-id",
                "brokenschool01",
                "--name",
                "Broken Elementary",
                "--prefix",
                "Broken-Elementary",
                "--connection-string-stdin",
                stdin=f"sqlite:///{missing}\n",
            )
            == 0
        )
        assert run("sync") == 1  # the broken school fails
        first, second = d.schools[0].id, d.schools[1].id
        student = self.sandbox.students(first)[0]
        old = student["name"]["last"]
        self.sandbox.update_user(student["id"], {"name": {"last": "Renamed-Smith"}})
        assert run("sync") == 1
        students = self.sandbox.students(second)
        leaving = [s["id"] for s in students[: int(len(students) * 0.6)]]
        for clever_id in leaving:
            self.sandbox.remove_user(clever_id)
        assert run("sync", "--school-id", "2", "--full") == 1  # held back
        return {"renamed": student["id"], "old": old, "new": "Renamed-Smith", "leaving": leaving}

    def active_students(self, school_prefix: str) -> int:
        engine = create_engine(
            f"sqlite:///{self.folder / 'data' / f'school-{school_prefix}.sqlite'}"
        )
        try:
            with engine.connect() as conn:
                return int(
                    conn.scalar(
                        sql_select(func.count())
                        .select_from(Student)
                        .where(Student.IsActive.is_(True))
                    )
                    or 0
                )
        finally:
            engine.dispose()


@pytest.fixture
def installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Installation, dict[str, Any]]]:
    _chromium_or_skip()
    setup = Installation(tmp_path, monkeypatch)
    with setup.sandbox.serve() as running:
        setup.start(running)
        story = setup.tell_story()
        yield setup, story


@pytest.fixture
def dashboard_url(installation: tuple[Installation, dict[str, Any]]) -> Iterator[str]:
    setup, _ = installation
    env = {**os.environ, **setup.env}
    process = subprocess.Popen(
        [sys.executable, "-m", "cleversync", "dashboard", "--port", "0"],
        env=env,
        cwd=setup.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _wait_for_url(process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1)
        if ready:
            line = process.stdout.readline()
            found = re.search(r"open (http://127\.0\.0\.1:\d+/admin)/", line)
            if found:
                return found.group(1)
        if process.poll() is not None:
            raise AssertionError(
                f"cleversync dashboard exited: {process.stderr.read() if process.stderr else ''}"
            )
    raise AssertionError("cleversync dashboard did not say where it listens within 60 s")


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            yield context.new_page()
        finally:
            browser.close()


def go(page: Any, selector: str) -> None:
    """Click what navigates, and wait for the next page."""
    with page.expect_navigation():
        page.click(selector)


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_an_operator_s_morning(
    installation: tuple[Installation, dict[str, Any]],
    dashboard_url: str,
    page: Any,
    tmp_path: Path,
) -> None:
    setup, story = installation
    page.goto(f"{dashboard_url}/")
    rows = page.locator("table.schools tbody tr")
    assert rows.count() == 3
    # what needs attention first: the hold-back, then the failing school, then the healthy one
    first, second, third = (rows.nth(i).inner_text() for i in range(3))
    assert "Deletes held back" in first
    assert "Broken Elementary" in second and "Failing" in second
    assert "OK" in third
    assert rows.nth(1).locator('td[data-label="Failures in a row"]').inner_text().strip() == "2"
    assert page.locator("svg.trend").count() == 3
    shot(page, tmp_path, "overview")  # docs/dashboard-overview.png is a copy of one

    # filter by status
    page.select_option("#f-state", "Failed")
    go(page, "form.filters button[type=submit]")
    assert page.locator("table.schools tbody tr").count() == 1
    assert "Broken Elementary" in page.locator("table.schools").inner_text()
    shot(page, tmp_path, "overview-filtered")

    # the failing school: its sanitized error, and the run it belongs to
    go(page, "text=Broken Elementary")
    assert "Broken Elementary" in page.locator("h1").inner_text()
    assert page.locator("tr.message pre").count() >= 3
    shot(page, tmp_path, "school-failing")
    with page.expect_navigation():
        page.locator("table.history a code").first.click()
    assert "Schools (" in page.inner_text("main")
    shot(page, tmp_path, "run")

    # the healthy school, its history, and the update's old and new values
    page.goto(f"{dashboard_url}/")
    go(page, f"text={setup.district.schools[0].name}")
    assert page.locator("table.history tbody tr[id^=sync-]").count() == 6
    page.select_option("#f-entity", "Student")
    go(page, "form.filters button:has-text('Filter')")
    assert page.locator("table.history tbody tr[id^=sync-]").count() == 2
    with page.expect_navigation():
        page.locator("table.history tbody tr[id^=sync-]").first.locator("text=Changes").click()
    detail = page.locator("#changes").inner_text()
    assert "Updated" in detail and story["renamed"] in detail
    diff = page.locator("#changes table.diff").first.inner_text()
    assert "LastName" in diff and story["old"] in diff and story["new"] in diff
    shot(page, tmp_path, "school-changes")
    page.fill("#f-record", story["renamed"])
    go(page, "button:has-text('Show its changes')")
    mine = page.locator("#record").inner_text()
    assert story["old"] in mine and story["new"] in mine and "Inserted" in mine
    shot(page, tmp_path, "school")

    # accept the hold-back and see the deletes happen
    prefix = next(
        s.prefix for s in _schools(setup) if s.clever_school_id == setup.district.schools[1].id
    )
    before = setup.active_students(prefix)
    # first a preview: what a full sync would do, nothing changed
    page.goto(f"{dashboard_url}/")
    go(page, f"text={setup.district.schools[1].name}")
    go(page, "text=Preview a full sync")
    go(page, "button:has-text('Preview now')")
    assert "Would hold the removals back" in page.inner_text("main")
    assert f"Removals ({len(story['leaving'])})" in page.inner_text("main")
    shot(page, tmp_path, "preview")
    assert setup.active_students(prefix) == before
    page.goto(f"{dashboard_url}/")
    go(page, "text=Decide on the held-back deletes")
    assert "held back deleting" in page.inner_text("main")
    held = page.locator("table.held tbody tr")
    assert held.count() == len(story["leaving"])
    assert set(story["leaving"]) == {
        held.nth(i).locator("code").inner_text() for i in range(held.count())
    }
    shot(page, tmp_path, "accept-hold-back")
    go(page, "button:has-text('Remove them')")
    assert re.search(r"/admin/runs/\d+$", page.url)
    deadline = time.monotonic() + 90
    while "not yet" in page.inner_text("main") and time.monotonic() < deadline:
        time.sleep(1)
        page.reload()
    text = page.inner_text("main")
    assert "Success" in text, text
    shot(page, tmp_path, "run-accepted")
    after = setup.active_students(prefix)
    assert after == before - len(story["leaving"])
    page.goto(f"{dashboard_url}/")
    assert "Deletes held back" not in page.inner_text("table.schools")

    # register the second district against the sandbox, then its schools
    go(page, "text=Register a district")
    page.fill("#d-name", setup.other.name)
    page.fill("#d-clever", setup.other.id)
    page.fill("#d-prefix", "Second-District")
    page.fill("#d-client", setup.other.client_id)
    page.fill("#d-secret", setup.other.client_secret)
    shot(page, tmp_path, "district-new")
    go(page, "button:has-text('Verify with Clever and register')")
    assert "/discover" in page.url
    for school in setup.other.schools:
        assert school.name in page.inner_text("main")
    assert setup.other.client_secret not in page.content()
    go(page, "button:has-text('Register 2 school(s)')")
    assert "Every school Clever lists for this district is registered." in page.inner_text("main")
    shot(page, tmp_path, "discover")
    page.goto(f"{dashboard_url}/")
    assert page.locator("table.schools tbody tr").count() == 5
    assert setup.other.client_secret not in page.content()


def _schools(setup: Installation) -> list[Any]:
    from cleversync.services import Services
    from cleversync.settings import Settings

    services = Services(Settings.load())
    try:
        return services.registry.list_schools()
    finally:
        services.close()


def test_the_dashboard_reads_on_a_phone(
    installation: tuple[Installation, dict[str, Any]],
    dashboard_url: str,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            page = phone.new_page()
            page.goto(f"{dashboard_url}/")
            shot(page, tmp_path, "overview-phone")
            # no sideways scrolling of the whole page on a phone
            wide = page.evaluate(
                "[...document.querySelectorAll('body *')].filter(e => "
                "e.getBoundingClientRect().right > 400 && !e.closest('.scroll'))"
                ".map(e => e.tagName + '.' + e.className).slice(0, 5)"
            )
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 400, (width, wide)
            assert page.locator("label[for=f-state]").is_visible()
        finally:
            browser.close()
