"""Who may see the dashboard in Azure, through function_app's dashboard route: App Service
Authentication on, a principal, and a listed user or the admin role; any other request gets
401 or 403 and no data (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from cleversync import runtime
from cleversync.dashboard.csrf import Csrf
from cleversync.errors import ConfigurationError
from cleversync.runtime import Runtime
from cleversync.secrets import names
from tests.azure_worker import invoke
from tests.dashboard.conftest import RecordingQueue, Story, backend, sandbox, story, world
from tests.world import World

__all__ = ["backend", "sandbox", "story", "world"]

ADMIN = "ada@example.org"
ROLE = "CleverSync.Admin"


def principal(name: str, roles: tuple[str, ...] = (), **extra: Any) -> str:
    claims = [{"typ": "preferred_username", "val": name}]
    claims += [{"typ": "roles", "val": role} for role in roles]
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(body | extra).encode()).decode()


@pytest.fixture
def hosted(world: World, story: Story, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingQueue]:
    """The World as this process's runtime, with admins configured and Easy Auth on."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    services = world.make_services(
        CleverSync__Admin__AllowedUsers=f"{ADMIN.upper()}; someone@example.org",
        CleverSync__Admin__Role=ROLE,
    )
    queue = RecordingQueue()
    services.use_sync_queue(queue)
    runtime.reset(Runtime(services))
    yield queue
    runtime.reset()


def call(
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> func.HttpResponse:
    import function_app

    request = func.HttpRequest(
        method=method,
        url=f"https://cleversync.azurewebsites.net{path}",
        headers={"content-type": "application/x-www-form-urlencoded", **(headers or {})},
        body=body,
        route_params={"path": path.removeprefix("/dashboard/")},
    )
    response: func.HttpResponse = invoke(function_app.dashboard, request)
    return response


def signed_in(name: str = ADMIN, roles: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        "X-MS-CLIENT-PRINCIPAL": principal(name, roles),
        "X-MS-CLIENT-PRINCIPAL-NAME": name,
    }


def _no_data(response: func.HttpResponse, story: Story) -> None:
    page = response.get_body().decode()
    for school in (story.healthy, story.held_back, story.broken):
        assert school.name not in page
    assert "Cedar" not in page and "district" not in page.lower().replace("csrf", "")


def test_an_admin_by_name_sees_the_overview(hosted: RecordingQueue, story: Story) -> None:
    response = call("/dashboard/", headers=signed_in())
    assert response.status_code == 200
    page = response.get_body().decode()
    assert story.held_back.name in page and f"Signed in as {ADMIN}" in page
    assert 'href="/dashboard/schools/' in page  # links under the Functions route
    assert response.mimetype == "text/html" and response.charset == "utf-8"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    css = call("/dashboard/static/dashboard.css", headers=signed_in())
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_an_admin_by_role_sees_the_overview(hosted: RecordingQueue, story: Story) -> None:
    response = call("/dashboard/", headers=signed_in("grace@example.org", (ROLE,)))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-MS-CLIENT-PRINCIPAL-NAME": ADMIN}, 401),  # a name alone is not a principal
        ({"X-MS-CLIENT-PRINCIPAL": "%%%not base64", "X-MS-CLIENT-PRINCIPAL-NAME": ADMIN}, 401),
        ({"X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"[1, 2]").decode()}, 401),
        (signed_in("mallory@example.org"), 403),
        (signed_in("mallory@example.org", ("CleverSync.Reader",)), 403),
    ],
)
def test_anyone_else_gets_401_or_403_and_no_data(
    hosted: RecordingQueue, story: Story, headers: dict[str, str], status: int
) -> None:
    for path in (
        "/dashboard/",
        f"/dashboard/schools/{story.broken.school_id}",
        "/dashboard/runs/1",
    ):
        response = call(path, headers=headers)
        assert response.status_code == status
        _no_data(response, story)
    if status == 401:
        page = call("/dashboard/", headers=headers).get_body().decode()
        assert 'href="/.auth/login/aad?post_login_redirect_uri=%2Fdashboard%2F"' in page
    refused = call(
        f"/dashboard/schools/{story.healthy.school_id}/actions/flag-full-sync",
        method="POST",
        headers=headers,
        body=b"csrf_token=x",
    )
    assert refused.status_code == status
    assert hosted.sent == []


def test_without_easy_auth_the_headers_are_not_trusted(
    hosted: RecordingQueue, story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "False")
    runtime.reset(Runtime(runtime.current().services))  # a new build reads the environment
    response = call("/dashboard/", headers=signed_in())
    assert response.status_code == 403
    assert "App Service Authentication" in response.get_body().decode()
    _no_data(response, story)


def test_it_fails_closed_when_no_admin_is_configured(
    world: World, story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    runtime.reset(Runtime(world.make_services()))
    try:
        response = call("/dashboard/", headers=signed_in(ADMIN, (ROLE,)))
        assert response.status_code == 403
        assert "CleverSync__Admin__AllowedUsers" in response.get_body().decode()
        _no_data(response, story)
    finally:
        runtime.reset()


def test_it_fails_closed_when_it_cannot_start(world: World, story: Story) -> None:
    runtime.reset(Runtime(config_error=ConfigurationError("CleverSync__Sync__PageSize: bad")))
    try:
        response = call("/dashboard/", headers=signed_in())
        assert response.status_code == 503
        _no_data(response, story)
    finally:
        runtime.reset()


def test_an_admin_acts_through_the_functions_route(
    hosted: RecordingQueue, story: Story, world: World
) -> None:
    school = story.healthy.school_id
    path = f"/dashboard/schools/{school}/actions/flag-full-sync"
    page = call(path, headers=signed_in()).get_body().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    # the token is bound to the user: another admin cannot replay it
    replay = call(
        path,
        method="POST",
        headers=signed_in("someone@example.org"),
        body=f"csrf_token={token.group(1)}".encode(),
    )
    assert replay.status_code == 403
    assert not world.services.registry.get_school(school).requires_full_sync
    done = call(
        path, method="POST", headers=signed_in(), body=f"csrf_token={token.group(1)}".encode()
    )
    assert done.status_code == 303
    assert done.headers["Location"] == f"/dashboard/schools/{school}?done=flagged"
    assert world.services.registry.get_school(school).requires_full_sync


def test_the_csrf_key_is_shared_through_the_secret_store(
    hosted: RecordingQueue, story: Story, world: World
) -> None:
    world.secrets.set(names.DASHBOARD_CSRF_KEY, "a shared key of enough length")
    runtime.reset(Runtime(runtime.current().services))
    page = call("/dashboard/districts/new", headers=signed_in()).get_body().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    assert Csrf(b"a shared key of enough length").valid(ADMIN, token.group(1))
