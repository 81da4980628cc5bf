"""``cleversync dashboard``: serve the operator's dashboard on 127.0.0.1 until interrupted."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING, Any

from cleversync.cli.args import whole_number

if TYPE_CHECKING:
    from cleversync.cli import CliContext


DEFAULT_PORT = 8765


def register(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="serve the web dashboard on 127.0.0.1 (no sign-in: this machine only)",
        description="Serves the dashboard's pages at http://127.0.0.1:PORT/admin over the "
        "same SessionDb as the other commands, until interrupted (Ctrl-C). It answers only "
        "on the loopback interface, and only to requests addressed to 127.0.0.1 or localhost.",
    )
    dashboard.add_argument(
        "--port",
        type=whole_number(0, 65535),
        default=DEFAULT_PORT,
        help=f"the TCP port ({DEFAULT_PORT}; 0 = any free port)",
    )
    dashboard.set_defaults(handler=dashboard_command)


def dashboard_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.dashboard.local import serve
    from cleversync.errors import UsageError

    services = ctx.services
    services.checked_session_engine()  # SessionDb set up and current, or a clear error now
    try:
        server = serve(services, args.port)
        running = server.__enter__()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}; "
            "choose another port with --port"
        ) from None
    try:
        print(f"CleverSync dashboard: open {running.url}/ (Ctrl-C to stop)", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
    finally:
        server.__exit__(None, None, None)
    return 0
