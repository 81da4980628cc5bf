"""``cleversync dashboard``: the dashboard on a laptop, on 127.0.0.1 only, with no sign-in.

Syncs asked for from the pages are queued runs as in Azure (a SyncRuns row, one message per
school), delivered to a thread pool of this process instead of a Storage queue; a delivery
that fails in a way that may pass is tried again, up to the host's 3 attempts, as the
Functions host would.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cleversync.queue import SyncMessage
from cleversync.runs import MAX_DEQUEUE, RetryLaterError

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

    from cleversync.dashboard.app import Dashboard
    from cleversync.services import Services

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
RETRY_WAIT_SECONDS = 10.0  # before a failed delivery's next attempt (times the attempt)
MOUNT = "/admin"


class LocalSyncQueue:
    """The laptop's stand-in for the Storage queue: each message is synced in a thread."""

    def __init__(
        self,
        deliver: Callable[[str, int], object],
        *,
        workers: int,
        max_dequeue: int = MAX_DEQUEUE,
        retry_wait: float = RETRY_WAIT_SECONDS,
    ) -> None:
        self._deliver = deliver
        self._max = max_dequeue
        self._retry_wait = retry_wait
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dashboard-sync")

    def send(self, message: SyncMessage) -> None:
        self._pool.submit(self._run, message.to_json())

    def _run(self, body: str) -> None:
        for attempt in range(1, self._max + 1):
            try:
                self._deliver(body, attempt)
                return
            except RetryLaterError as exc:
                logger.warning("%s", exc)
                # As the host's visibility timeout does: give the failure time to pass.
                if attempt < self._max and self._stopping.wait(self._retry_wait * attempt):
                    return
            except Exception:  # a bug: logged, the run's part stays open until it expires
                logger.exception("A dashboard sync crashed")
                return

    def close(self, *, wait: bool = True) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def local_dashboard(services: Services) -> tuple[Dashboard, LocalSyncQueue]:
    """The dashboard over ``services`` with the loopback gate and a local sync queue."""
    from cleversync.dashboard.app import Dashboard
    from cleversync.dashboard.auth import LocalGate
    from cleversync.dashboard.csrf import Csrf

    queue = LocalSyncQueue(
        lambda body, attempt: services.queued_runs().process_message(body, attempt),
        workers=services.settings.concurrency.max_schools_in_parallel,
    )
    services.use_sync_queue(queue)
    app = Dashboard(
        services,
        gate=LocalGate(),
        csrf=Csrf(secrets.token_bytes(32)),
        mount=MOUNT,
        trigger="cli",
    )
    return app, queue


@dataclass
class RunningDashboard:
    url: str
    server: BaseWSGIServer


@contextmanager
def serve(services: Services, port: int = 0) -> Iterator[RunningDashboard]:
    """Serve the dashboard on 127.0.0.1:``port`` (0: any free port) in a thread."""
    from werkzeug.serving import make_server

    app, queue = local_dashboard(services)
    server = make_server(HOST, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    try:
        yield RunningDashboard(f"http://{HOST}:{server.port}{MOUNT}", server)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        queue.close(wait=False)
