"""Operator safety through the CLI entry point: the one-school override."""

from __future__ import annotations

import json

import pytest

from cleversync.sandbox import Sandbox
from tests.cli.test_operate import cli, env, registered, sandbox  # noqa: F401 (fixtures)


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "--allow-mass-delete"],
        ["sync", "--district-id", "1", "--allow-mass-delete"],
        ["sync", "--full", "--allow-mass-delete", "--json"],
    ],
)
def test_allow_mass_delete_needs_one_school(
    registered: Sandbox,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert "--allow-mass-delete" in err and "--school-id" in err
    assert "Traceback" not in err
    code, out, _ = cli(capsys, "history", "--json")
    assert json.loads(out) == []  # nothing ran: no school lost its guard
