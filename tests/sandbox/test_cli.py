"""``sandbox serve``: its options, the JSON line it prints, serving, and a quiet exit."""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cleversync.sandbox import Sandbox, add_serve_arguments, run_serve

ROOT = Path(__file__).resolve().parents[2]
RUN = (
    "import argparse, sys\n"
    "from cleversync.sandbox import add_serve_arguments, run_serve\n"
    "parser = argparse.ArgumentParser()\n"
    "add_serve_arguments(parser)\n"
    "sys.exit(run_serve(parser.parse_args()))\n"
)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_are_those_of_the_design() -> None:
    args = _parse()
    assert (args.host, args.port, args.seed) == ("127.0.0.1", 0, 1)
    assert (args.districts, args.schools, args.students, args.teachers, args.sections) == (
        1,
        3,
        300,
        20,
        15,
    )
    assert (args.events_disabled, args.rate_limit) == (False, 1200)


def test_negative_counts_are_usage_errors() -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("--students", "-1")
    assert exit_info.value.code == 2


def test_a_non_loopback_host_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_serve(_parse("--host", "0.0.0.0")) == 2  # noqa: S104 - the point of the test
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loopback" in captured.err


def _read_line(process: subprocess.Popen[str], timeout: float = 20) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "no JSON line from sandbox serve"
    return process.stdout.readline()


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            [sys.executable, "-c", RUN, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        started.append(process)
        return process, json.loads(_read_line(process))

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_one_json_line_serves_and_exits_quietly(serve: Any, stop: int) -> None:
    process, info = serve(
        "--schools", "2", "--students", "12", "--teachers", "2", "--sections", "2"
    )
    assert set(info) == {"apiBaseUrl", "tokenUrl", "districts"}
    assert info["apiBaseUrl"].startswith("http://127.0.0.1:")
    assert info["tokenUrl"] == info["apiBaseUrl"] + "/oauth/tokens"
    [district] = info["districts"]
    assert set(district) == {"id", "name", "clientId", "clientSecret", "schools"}
    assert [set(s) for s in district["schools"]] == [{"id", "name"}] * 2
    with httpx.Client(timeout=10) as client:
        listing = client.get(
            info["tokenUrl"],
            params={"owner_type": "district", "district": district["id"]},
            auth=(district["clientId"], district["clientSecret"]),
        )
        token = listing.json()["data"][0]["access_token"]
        school = district["schools"][0]["id"]
        users = client.get(
            f"{info['apiBaseUrl']}/v3.0/schools/{school}/users?role=student",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert users.status_code == 200
    assert len(users.json()["data"]) >= 12
    process.send_signal(stop)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert out == ""  # exactly one line was printed, before
    assert err == ""  # no request logging, no traceback


def test_serve_options_reach_the_sandbox(serve: Any) -> None:
    process, info = serve(
        "--seed",
        "9",
        "--districts",
        "2",
        "--schools",
        "1",
        "--students",
        "3",
        "--teachers",
        "1",
        "--sections",
        "1",
        "--events-disabled",
        "--rate-limit",
        "7",
    )
    assert len(info["districts"]) == 2
    expected = Sandbox(seed=9, districts=2, schools=1, students=3, teachers=1, sections=1)
    assert [d["id"] for d in info["districts"]] == [d.id for d in expected.districts]
    district = info["districts"][1]
    with httpx.Client(base_url=info["apiBaseUrl"], timeout=10) as client:
        token = client.get(
            "/oauth/tokens", auth=(district["clientId"], district["clientSecret"])
        ).json()["data"][0]["access_token"]
        events = client.get("/v3.0/events", headers={"Authorization": f"Bearer {token}"})
    assert events.status_code == 403
    assert events.headers["x-ratelimit-limit"] == "7"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


def test_connection_info_of_an_in_process_server() -> None:
    sandbox = Sandbox(schools=1, students=2, teachers=1, sections=1)
    with sandbox.serve() as running:
        info = sandbox.connection_info(running)
        response = httpx.get(
            info["tokenUrl"],
            auth=(info["districts"][0]["clientId"], info["districts"][0]["clientSecret"]),
        )
    assert response.status_code == 200
    assert info["apiBaseUrl"] == running.api_base_url == f"http://127.0.0.1:{running.port}"
    with pytest.raises(ValueError, match="loopback"):
        sandbox.serve(host="192.0.2.1")
