"""The laptop's sync queue: each message delivered in a thread, again (up to the host's 3
attempts) when the failure may pass, and not after it was closed."""

from __future__ import annotations

import threading

from cleversync.dashboard.local import LocalSyncQueue
from cleversync.queue import SyncMessage
from cleversync.runs import RetryLaterError

MESSAGE = SyncMessage(
    run_id=1, school_id=2, full=False, allow_mass_delete=False, correlation_id="c-1", trigger="cli"
)


def test_a_failure_that_may_pass_is_delivered_again_up_to_three_times() -> None:
    attempts: list[int] = []
    done = threading.Event()

    def deliver(body: str, attempt: int) -> None:
        assert SyncMessage.parse(body) == MESSAGE
        attempts.append(attempt)
        if attempt == 3:
            done.set()
        raise RetryLaterError("Clever unreachable")

    queue = LocalSyncQueue(deliver, workers=1, retry_wait=0)
    queue.send(MESSAGE)
    assert done.wait(10)
    queue.close()
    assert attempts == [1, 2, 3]


def test_a_delivery_that_succeeds_or_crashes_is_not_repeated() -> None:
    attempts: list[int] = []

    def deliver(body: str, attempt: int) -> None:
        attempts.append(attempt)
        if len(attempts) == 2:
            raise ValueError("a bug")

    queue = LocalSyncQueue(deliver, workers=1, retry_wait=0)
    queue.send(MESSAGE)
    queue.send(MESSAGE)
    queue.close()
    assert attempts == [1, 1]


def test_closing_stops_the_wait_before_another_attempt() -> None:
    attempts: list[int] = []
    first = threading.Event()

    def deliver(body: str, attempt: int) -> None:
        attempts.append(attempt)
        first.set()
        raise RetryLaterError("database unreachable")

    queue = LocalSyncQueue(deliver, workers=1, retry_wait=3600)
    queue.send(MESSAGE)
    assert first.wait(10)
    queue.close()  # returns at once: the hour-long wait is cut short
    assert attempts == [1]
