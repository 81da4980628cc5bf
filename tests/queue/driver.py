"""Delivers Storage queue messages to handlers the way the Functions host's queue trigger does
(the host itself cannot run here).

A message is received with a visibility timeout (invisible to other receivers meanwhile) and
its dequeue count; on success it is deleted; on an exception it is made visible again at
once (host.json's ``visibilityTimeout`` is the wait before a retry: 0 here) unless it was the
``max_dequeue``-th delivery, when it is copied to ``<name>-poison`` and deleted, and the
poison queue's own trigger handler gets it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

Handler = Callable[[str, int], object]  # (body, dequeue count)
PoisonHandler = Callable[[str], object]


def client(connection_string: str, name: str) -> QueueClient:
    """A queue client coding messages as the host does (base64 text)."""
    return QueueClient.from_connection_string(
        connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


@dataclass
class Delivery:
    body: str
    dequeue_count: int
    error: BaseException | None = None


@dataclass
class Driver:
    connection_string: str
    name: str
    handler: Handler
    poison_handler: PoisonHandler
    max_dequeue: int = 3
    visibility_timeout: int = 30  # longer than any delivery takes, even on a loaded machine
    deliveries: list[Delivery] = field(default_factory=list)
    poisoned: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.queue = client(self.connection_string, self.name)
        self.poison = client(self.connection_string, f"{self.name}-poison")
        self._lock = threading.Lock()

    def deliver_one(self) -> bool:
        """Deliver one message of the queue, if one is visible; whether one was."""
        messages = self.queue.receive_messages(
            messages_per_page=1, visibility_timeout=self.visibility_timeout
        )
        message = next(iter(messages), None)
        if message is None:
            return False
        delivery = Delivery(message.content, message.dequeue_count or 1)
        with self._lock:
            self.deliveries.append(delivery)
        try:
            self.handler(delivery.body, delivery.dequeue_count)
        except Exception as exc:
            delivery.error = exc
            if delivery.dequeue_count >= self.max_dequeue:
                self._to_poison(message)
            else:
                self.queue.update_message(message, visibility_timeout=0)
            return True
        self.queue.delete_message(message)
        return True

    def _to_poison(self, message: object) -> None:
        from contextlib import suppress

        from azure.core.exceptions import ResourceExistsError

        with suppress(ResourceExistsError):
            self.poison.create_queue()
        body = message.content  # type: ignore[attr-defined]
        self.poison.send_message(body)
        self.queue.delete_message(message)  # type: ignore[arg-type]
        with self._lock:
            self.poisoned.append(body)
        for poisoned in self.poison.receive_messages(visibility_timeout=self.visibility_timeout):
            self.poison_handler(poisoned.content)
            self.poison.delete_message(poisoned)

    def drain(self, *, instances: int = 1, timeout: float = 60.0) -> None:
        """Deliver until the queue is empty (no message visible or in flight), with
        ``instances`` receivers at once (like as many Functions instances)."""
        deadline = time.monotonic() + timeout
        errors: list[BaseException] = []

        def run() -> None:
            try:
                while time.monotonic() < deadline:
                    if self.deliver_one():
                        continue
                    if self.queue.get_queue_properties().approximate_message_count == 0:
                        return
                    time.sleep(0.05)  # a message in flight elsewhere, or not visible yet
            except BaseException as exc:  # reported to the test below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(instances)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        assert self.queue.get_queue_properties().approximate_message_count == 0, "not drained"
