"""The ``cleversync sandbox serve`` command: options, the JSON line, run until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import IO


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, not {value}")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cleversync sandbox serve`` (README: 'Command line')."""
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument(
        "--port", type=_port, default=0, help="port, 0 to 65535 (default 0: any free one)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the generated district data (1)"
    )
    parser.add_argument("--districts", type=_count(1), default=1, help="number of districts (1)")
    parser.add_argument("--schools", type=_count(0), default=3, help="schools per district (3)")
    parser.add_argument("--students", type=_count(0), default=300, help="students per school (300)")
    parser.add_argument("--teachers", type=_count(0), default=20, help="teachers per school (20)")
    parser.add_argument("--sections", type=_count(0), default=15, help="sections per school (15)")
    parser.add_argument(
        "--events-disabled",
        action="store_true",
        help="answer /v3.0/events with 403 as if the app had not enabled events",
    )
    parser.add_argument(
        "--rate-limit",
        type=_count(1),
        default=1200,
        help="requests a minute per token before 429 (default 1200, as Clever)",
    )


def run_serve(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    """Serve until interrupted; print one JSON line saying how to connect once listening."""
    from cleversync.sandbox.sandbox import Sandbox
    from cleversync.sandbox.server import is_loopback

    out = out if out is not None else sys.stdout
    if not is_loopback(args.host):
        print(
            f"error: the sandbox only listens on loopback addresses, not {args.host!r}",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()
    restore = _stop_on_sigterm(stop)
    try:
        sandbox = Sandbox(
            seed=args.seed,
            districts=args.districts,
            schools=args.schools,
            students=args.students,
            teachers=args.teachers,
            sections=args.sections,
            rate_limit=args.rate_limit,
            events_enabled=not args.events_disabled,
        )
        try:
            running = sandbox.serve(args.host, args.port)
        except OSError as error:
            print(
                f"error: cannot listen on {args.host}:{args.port}: {error.strerror}",
                file=sys.stderr,
            )
            return 1
        with running:
            print(
                json.dumps(sandbox.connection_info(running), ensure_ascii=False),
                file=out,
                flush=True,
            )
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        restore()
    return 0


def _stop_on_sigterm(stop: threading.Event) -> Callable[[], object]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    return lambda: signal.signal(signal.SIGTERM, previous)
