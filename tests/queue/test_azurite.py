"""The queue the tests use is the real Storage queue API (Azurite), reached with the SDK."""

from __future__ import annotations

from azure.storage.queue import QueueClient

from tests.azurite import Azurite


def test_azurite_serves_a_queue_the_sdk_can_use(azurite: Azurite) -> None:
    queue = QueueClient.from_connection_string(azurite.connection_string, "smoke")
    queue.create_queue()
    queue.send_message("hello")
    [message] = list(queue.receive_messages(visibility_timeout=5))
    assert message.content == "hello" and message.dequeue_count == 1
    queue.delete_message(message)
    assert list(queue.receive_messages()) == []
    queue.delete_queue()
