"""``cleversync history`` shows each row's retries and rate-limit waits (RETRY, WAIT; the
JSON has the columns), for a sync through the CLI against the sandbox with injected faults."""

from __future__ import annotations

import json

from cleversync.sandbox import Fault, Sandbox
from tests.cli.test_operate import cli, env, registered, sandbox  # noqa: F401 (fixtures)


def test_history_shows_retries_and_rate_limit_waits(registered: Sandbox, capsys) -> None:  # noqa: F811
    school = registered.districts[0].schools[0].id
    registered.faults.add(
        Fault("status", path=f"/v3.0/schools/{school}/users", query="role=student", times=3)
    )
    registered.faults.add(
        Fault(
            "status",
            path=f"/v3.0/schools/{school}/sections",
            status=429,
            headers={"Retry-After": "0.4"},
            times=1,
        )
    )
    code, _, err = cli(capsys, "sync", "--school-id", "1")
    assert code == 0, err
    code, out, _ = cli(capsys, "history", "--school-id", "1", "--json")
    assert code == 0
    rows = {r["EntityType"]: r for r in json.loads(out)}
    got = {
        e: (r["Retries"], r["RateLimitWaits"], r["RateLimitWaitSeconds"]) for e, r in rows.items()
    }
    assert got == {"Student": (3, 0, 0), "Teacher": (0, 0, 0), "Section": (1, 1, 0.4)}
    code, out, _ = cli(capsys, "history", "--school-id", "1")
    header, _, *body = out.splitlines()

    def column(line: str, name: str, following: str) -> str:
        return line[header.index(name) : header.index(following)].strip()

    cells = {
        column(line, "ENTITY", "TYPE"): (
            column(line, "RETRY", "WAIT"),
            column(line, "WAIT", "MESSAGE"),
        )
        for line in body
    }
    assert cells == {"Student": ("3", "0"), "Teacher": ("0", "0"), "Section": ("1", "1/0.4s")}
