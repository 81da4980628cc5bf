"""The ``cleversync`` command line: set up databases, register schools, sync, inspect, demo.

Importing this module is cheap (argparse only): ``cleversync --help`` must start fast, so
each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cleversync.redaction import Redactor
    from cleversync.services import Services
    from cleversync.settings import Settings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace, "CliContext"], int]


class CliContext:
    """One command's arguments and the Services (the composition root) it asks for the rest.

    The Services read the settings on first use, so a command that needs none (``sandbox``)
    runs without them, and a bad setting is reported like any other error.
    """

    def __init__(self, args: argparse.Namespace, services: Services) -> None:
        self.args = args
        self.services = services

    @property
    def settings(self) -> Settings:
        return self.services.settings


# The module that registers each command, in the order ``--help`` lists them. A command line
# naming one loads only that module and builds only its parsers: loading every command's
# module and building some 100 parsers cost each `cleversync sync` 10-15 ms of start-up.
COMMAND_MODULES: dict[str, str] = {
    "db": "admin",
    "district": "admin",
    "school": "schools",
    "sync": "run",
    "history": "run",
    "health": "run",
    "changes": "changes",
    "demo": "demo",
    "dashboard": "dashboard",
    "sandbox": "sandbox",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (the arguments after the program name): only its command's,
    when it names a known one before any help option; every command's otherwise (no
    ``argv``, top-level help, a misspelt command: argparse lists them all)."""
    import importlib

    from cleversync import __version__

    parser = argparse.ArgumentParser(
        prog="cleversync",
        description="Keep each school's SQL database in step with its Clever roster.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="show log lines (-vv: debug)"
    )
    parser.add_argument("--version", action="version", version=f"cleversync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    command = None if argv is None else _command_in(argv)
    if command in COMMAND_MODULES:
        modules = [COMMAND_MODULES[command]]
    else:
        modules = list(dict.fromkeys(COMMAND_MODULES.values()))
    for module in modules:
        importlib.import_module(f"cleversync.cli.{module}").register(commands)
    _verbosity_after_the_command(parser)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word, after the top-level options (which take
    no values); None if a help option (``-h`` alone or among short options, ``--help`` or
    an abbreviation of it) or ``--`` comes first."""
    for word in argv:
        if word == "--" or word.startswith("--h"):
            return None
        if word.startswith("-") and not word.startswith("--") and "h" in word:
            return None
        if not word.startswith("-"):
            return word
    return None


def _verbosity_after_the_command(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-vv`` also after the (sub)command, where an operator adds it to a command
    line they just ran: every leaf command takes it too, and the counts add up."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        parser.add_argument(
            "-v",
            "--verbose",
            dest="verbose_after",
            action="count",
            default=0,
            help="show log lines (-vv: debug)",
        )
        return
    for action in subparsers:
        for child in set(action.choices.values()):
            _verbosity_after_the_command(child)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    if getattr(args, "gc_off_while_loading", False):
        # Loading a sync's modules makes some 100,000 objects that live as long as the
        # process, and the collector would sweep them again and again while they load;
        # prepare_process() freezes them and turns it back on.
        gc.disable()
    from cleversync.services import Services
    from cleversync.settings import Settings

    services = Services(Settings.load)
    context = CliContext(args, services)
    try:
        _configure_logging(context)
        return handler(args, context)
    except BrokenPipeError:
        # The reader left (`cleversync sync --json | head`): nothing more to tell it.
        _discard_stdout()
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every error is reported, sanitized, with an exit status
        return report_error(exc, services.redactor)
    finally:
        gc.enable()
        services.close()


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing to flush
        pass


def report_error(exc: BaseException, redactor: Redactor) -> int:
    from cleversync.db.errors import database_error
    from cleversync.errors import CleverSyncError, UsageError

    redact = redactor.redact
    exc = database_error(exc, "SessionDb") or exc
    if isinstance(exc, UsageError):
        print(f"cleversync: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, CleverSyncError):
        print(f"cleversync: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    logger.error("Unexpected error", exc_info=exc)
    print(
        f"cleversync: internal error ({type(exc).__name__}): {redact(str(exc))}",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _configure_logging(context: CliContext) -> None:
    from cleversync.telemetry import configure_logging

    # Human output is separate from logs: the CLI shows warnings unless asked for more
    # (CleverSync__Logging__LogLevel governs the Functions app).
    verbosity = context.args.verbose + getattr(context.args, "verbose_after", 0)
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    configure_logging(None, stream=sys.stderr, level=level, redactor=context.services.redactor)
