"""Who may see the dashboard on a laptop: loopback clients addressing a loopback host only
(the Azure gate is tested through function_app in tests/test_function_app_dashboard.py)."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from cleversync.dashboard.app import Dashboard
from cleversync.dashboard.auth import LocalGate, is_loopback_host
from cleversync.dashboard.csrf import Csrf
from tests.dashboard.conftest import CSRF_KEY, Story
from tests.world import World

# --- the laptop -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8765", True),
        ("localhost:8765", True),
        ("localhost", True),
        ("[::1]:8765", True),
        ("127.0.0.2", True),
        ("evil.example:8765", False),
        ("127.0.0.1.evil.example", False),
        ("192.168.1.10:8765", False),
        ("[::1", False),
        ("127.0.0.1:http", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, ok: bool) -> None:
    assert is_loopback_host(host) is ok


def test_the_laptop_dashboard_refuses_other_hosts_and_clients(world: World, story: Story) -> None:
    app = Dashboard(world.services, gate=LocalGate(), csrf=Csrf(CSRF_KEY))
    client = Client(app)
    rebinding = client.get(
        "/admin/", headers={"Host": "evil.example"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    assert rebinding.status_code == 403
    remote = client.get("/admin/", environ_base={"REMOTE_ADDR": "192.168.1.20"})
    assert remote.status_code == 403
    for response in (rebinding, remote):
        page = response.get_data(as_text=True)
        assert story.healthy.name not in page and "answers only on 127.0.0.1" in page
    ok = client.get("/admin/", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert ok.status_code == 200 and story.healthy.name in ok.get_data(as_text=True)
