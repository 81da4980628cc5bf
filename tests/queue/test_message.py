"""The sync message, the queue's connection settings and host.json's queue settings."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from cleversync.errors import ConfigurationError
from cleversync.queue import MessageError, StorageSyncQueue, SyncMessage
from cleversync.runs import MAX_DEQUEUE
from tests.azurite import Azurite

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = SyncMessage(7, 3, True, False, "abc-1", "timer")
GOOD = {
    "runId": 7,
    "schoolId": 3,
    "full": True,
    "allowMassDelete": False,
    "correlationId": "abc-1",
    "trigger": "timer",
}


def test_a_message_round_trips_through_json() -> None:
    assert json.loads(MESSAGE.to_json()) == GOOD
    assert SyncMessage.parse(MESSAGE.to_json()) == MESSAGE
    assert SyncMessage.parse(MESSAGE.to_json().encode()) == MESSAGE


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"\xff\xfe", "not JSON"),
        ("{", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({**GOOD, "runId": "7"}), "runId must be a positive integer"),
        (json.dumps({**GOOD, "schoolId": 0}), "schoolId must be a positive integer"),
        (json.dumps({**GOOD, "schoolId": True}), "schoolId must be a positive integer"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "runId"}), "has no runId"),
        (json.dumps({**GOOD, "full": "yes"}), "full must be true or false"),
        (json.dumps({**GOOD, "correlationId": ""}), "correlationId must be a string"),
        (json.dumps({**GOOD, "trigger": "cron"}), "trigger must be one of"),
    ],
)
def test_a_bad_body_is_a_clear_error(body: str | bytes, named: str) -> None:
    with pytest.raises(MessageError, match=named):
        SyncMessage.parse(body)


def test_the_queue_needs_a_connection_setting() -> None:
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage") as info:
        StorageSyncQueue.from_environment("cleversync-sync", {})
    assert info.value.setting == "AzureWebJobsStorage"
    with pytest.raises(ConfigurationError, match="not a valid") as info:
        StorageSyncQueue.from_environment("q", {"AzureWebJobsStorage": "AccountKey=secret"})
    assert "secret" not in str(info.value)


def test_the_identity_based_connection_needs_no_key() -> None:
    queue = StorageSyncQueue.from_environment(
        "cleversync-sync",
        {
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        },
    )
    assert queue.name == "cleversync-sync"


def test_messages_are_base64_as_the_host_expects_and_the_queue_is_created(
    azurite: Azurite,
) -> None:
    name = "sync-encoding-test"
    StorageSyncQueue.from_environment(
        name, {"AzureWebJobsStorage": azurite.connection_string}
    ).send(MESSAGE)
    plain = QueueClient.from_connection_string(azurite.connection_string, name)
    [stored] = list(plain.receive_messages())
    assert json.loads(base64.b64decode(stored.content)) == GOOD
    plain.delete_queue()


def test_host_json_retries_a_message_as_often_as_the_app_counts() -> None:
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE == 3
    # A school's sync takes minutes: few at once per instance; more instances scale out.
    assert queues["batchSize"] <= 8 and queues["newBatchThreshold"] < queues["batchSize"]
