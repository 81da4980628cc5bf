"""Ctrl-C and SIGTERM during ``cleversync sync``: stop after the current batch, or at once.

The first signal sets a stop flag that each school's run checks between batches (its
history rows close Failed "interrupted", its lease is released, a full sync stays flagged)
and that keeps schools not started yet from starting. A second signal exits at once,
after a bounded, best-effort release of this process's leases.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

EXIT_INTERRUPTED = 130
FIRST = b"\nStopping after the current batch (Ctrl-C again to stop now)\n"
SECOND = b"\nStopping now; the schools being synced are left unfinished\n"
RELEASE_TIMEOUT_SECONDS = 3.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """While entered (in the main thread), SIGINT and SIGTERM stop the run as above."""

    def __init__(self, stop: threading.Event, *, release: Callable[[], object]) -> None:
        self.stop = stop
        self._release = release
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        # Python runs signal handlers in the main thread only, and only there can they be set.
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # os.write, not print: the handler may run while the main thread is inside a print.
        if not self.stop.is_set():
            self.stop.set()
            os.write(2, FIRST)
            return
        os.write(2, SECOND)
        self._release_leases()
        os._exit(EXIT_INTERRUPTED)  # worker threads cannot be stopped; leave without them

    def _release_leases(self) -> None:
        """Free this process's leases, waiting a few seconds at most (SessionDb may hang)."""

        def release() -> None:
            try:
                self._release()
            except Exception:  # best effort: the leases expire by themselves
                os.write(2, b"Could not release the sync leases; they expire in 5 minutes\n")

        worker = threading.Thread(target=release, name="release-leases", daemon=True)
        worker.start()
        worker.join(RELEASE_TIMEOUT_SECONDS)
