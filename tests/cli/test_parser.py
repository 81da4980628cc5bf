"""The command line's parser is built for the command given: only that command's module is
loaded (start-up), and nothing an operator sees changes for it."""

from __future__ import annotations

import argparse
import ast

import pytest

from cleversync.cli import COMMAND_MODULES, build_parser
from tests.child import python_output


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_is_mapped_to_the_module_that_registers_it() -> None:
    full = _commands(build_parser())
    assert list(full) == list(COMMAND_MODULES)  # the order --help lists them in
    for command, module in COMMAND_MODULES.items():
        alone = _commands(build_parser([command]))
        mates = [c for c, m in COMMAND_MODULES.items() if m == module]
        assert list(alone) == mates, command
        # The command's own parser is the same as in the full one.
        assert alone[command].format_help() == full[command].format_help(), command


@pytest.mark.parametrize(
    ("argv", "full"),
    [
        (["sync", "--school-id", "1"], False),
        (["-v", "sync"], False),
        (["-vv", "--verbose", "history"], False),
        (["--help"], True),
        (["-h", "sync"], True),  # the top-level help lists every command
        (["-vh", "sync"], True),
        (["--he", "sync"], True),  # argparse takes an abbreviation of --help
        (["--verb", "sync"], False),
        (["sycn"], True),  # a misspelt command: argparse lists the real ones
        (["--", "sync"], True),
        ([], True),
    ],
)
def test_the_parser_has_every_command_unless_the_line_names_one(
    argv: list[str], full: bool
) -> None:
    commands = _commands(build_parser(argv))
    assert (set(commands) == set(COMMAND_MODULES)) is full


def test_a_sync_loads_no_other_command_module() -> None:
    code = (
        "import sys\n"
        "from cleversync.cli import build_parser\n"
        "build_parser(['sync', '--school-id', '1']).parse_args(['sync', '--school-id', '1'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('cleversync.cli.')))\n"
    )
    loaded = set(ast.literal_eval(python_output(code)))
    others = {f"cleversync.cli.{m}" for m in COMMAND_MODULES.values()} - {"cleversync.cli.run"}
    assert "cleversync.cli.run" in loaded and not loaded & others
