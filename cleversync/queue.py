"""The sync queue: one Storage queue message per school of a run.

The message is JSON, ``{"runId", "schoolId", "full", "allowMassDelete", "correlationId",
"trigger"}``, base64-encoded as the Functions host's queue trigger expects by default. The
queue is named by the flat app setting ``CleverSyncQueueName``; the host moves a message
that failed ``maxDequeueCount`` times to ``<name>-poison``. Nothing here imports
azure.functions; the Storage SDK is imported on first use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cleversync.errors import CleverSyncError, ConfigurationError
from cleversync.vocabulary import RUN_TRIGGERS

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

logger = logging.getLogger(__name__)

STORAGE_SETTING = "AzureWebJobsStorage"
QUEUE_URI_SETTING = "AzureWebJobsStorage__queueServiceUri"
CLIENT_ID_SETTING = "AzureWebJobsStorage__clientId"
_MAX_ID = 2**31 - 1


class MessageError(CleverSyncError):
    """A queue message that is not a sync message: it can never succeed."""


class QueueUnavailableError(CleverSyncError):
    """The sync queue could not be reached or written to."""

    retryable = True


@dataclass(frozen=True)
class SyncMessage:
    run_id: int
    school_id: int
    full: bool
    allow_mass_delete: bool
    correlation_id: str
    trigger: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "runId": self.run_id,
                "schoolId": self.school_id,
                "full": self.full,
                "allowMassDelete": self.allow_mass_delete,
                "correlationId": self.correlation_id,
                "trigger": self.trigger,
            },
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, body: str | bytes) -> SyncMessage:
        """The message in ``body`` (JSON text); MessageError saying what is wrong with it."""
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
            data = json.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MessageError(f"sync message is not JSON ({type(exc).__name__})") from exc
        if not isinstance(data, Mapping):
            raise MessageError("sync message is not a JSON object")
        return cls(
            run_id=_id(data, "runId"),
            school_id=_id(data, "schoolId"),
            full=_flag(data, "full"),
            allow_mass_delete=_flag(data, "allowMassDelete"),
            correlation_id=_text(data, "correlationId", 64),
            trigger=_trigger(data),
        )


def _field(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise MessageError(f"sync message has no {name}")
    return data[name]


def _id(data: Mapping[str, Any], name: str) -> int:
    value = _field(data, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ID:
        raise MessageError(f"sync message's {name} must be a positive integer")
    return value


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise MessageError(f"sync message's {name} must be true or false")
    return value


def _text(data: Mapping[str, Any], name: str, width: int) -> str:
    value = _field(data, name)
    if not isinstance(value, str) or not 1 <= len(value) <= width:
        raise MessageError(f"sync message's {name} must be a string of 1 to {width} characters")
    return value


def _trigger(data: Mapping[str, Any]) -> str:
    value = _field(data, "trigger")
    if value not in RUN_TRIGGERS:
        raise MessageError(f"sync message's trigger must be one of {', '.join(RUN_TRIGGERS)}")
    return str(value)


class SyncQueue(Protocol):
    """Where a run's messages go (the Storage queue; a list in tests)."""

    def send(self, message: SyncMessage) -> None: ...


class StorageSyncQueue:
    """The Storage queue the ``sync_school`` trigger reads, through azure-storage-queue.

    Connects as the host does: the ``AzureWebJobsStorage`` connection string, or the
    identity-based ``AzureWebJobsStorage__queueServiceUri`` with ``DefaultAzureCredential``
    (``AzureWebJobsStorage__clientId``: the user-assigned managed identity to use). The queue
    is created on first use if it does not exist.
    """

    def __init__(self, name: str, client: QueueClient) -> None:
        self.name = name
        self._client = client
        self._created = False

    @classmethod
    def from_environment(
        cls, name: str, environ: Mapping[str, str] | None = None
    ) -> StorageSyncQueue:
        env = os.environ if environ is None else environ
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        encode = TextBase64EncodePolicy()
        connection = (env.get(STORAGE_SETTING) or "").strip()
        uri = (env.get(QUEUE_URI_SETTING) or "").strip()
        if connection:
            if connection == "UseDevelopmentStorage=true":
                connection = DEVELOPMENT_STORAGE
            try:
                client = QueueClient.from_connection_string(
                    connection, name, message_encode_policy=encode
                )
            except ValueError as exc:  # the SDK's message may quote the string: not shown
                raise ConfigurationError(
                    f"{STORAGE_SETTING} is not a valid Storage connection string",
                    setting=STORAGE_SETTING,
                ) from exc
            return cls(name, client)
        if uri:
            from azure.identity import DefaultAzureCredential

            client_id = (env.get(CLIENT_ID_SETTING) or "").strip() or None
            credential = DefaultAzureCredential(managed_identity_client_id=client_id)
            return cls(
                name,
                QueueClient(uri, name, credential=credential, message_encode_policy=encode),
            )
        raise ConfigurationError(
            f"the sync queue has no connection: set {STORAGE_SETTING} (a connection string) or "
            f"{QUEUE_URI_SETTING} (identity-based)",
            setting=STORAGE_SETTING,
        )

    def send(self, message: SyncMessage) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        try:
            if not self._created:
                with contextlib.suppress(ResourceExistsError):  # made by another instance
                    self._client.create_queue()
                self._created = True
            self._client.send_message(message.to_json())
        except AzureError as exc:
            raise QueueUnavailableError(
                f"could not write to queue {self.name} ({type(exc).__name__})"
            ) from exc


# Azurite's well-known development account, which "UseDevelopmentStorage=true" stands for
# (published by Microsoft; not a secret).
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)
