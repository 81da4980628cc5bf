"""The Azure Key Vault secret store: azure-keyvault-secrets behind the SecretStore interface."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

from cleversync.errors import SecretError, SecretStoreUnavailableError
from cleversync.redaction import Redactor
from cleversync.secrets import names
from cleversync.secrets.base import SecretStore

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.exceptions import AzureError
    from azure.core.pipeline.transport import HttpTransport
    from azure.keyvault.secrets import SecretClient


class _Timeouts(TypedDict):
    """azure-core's per-request transport options (SecretClient takes them as **kwargs)."""

    connection_timeout: float
    read_timeout: float


# A vault that does not answer must fail a sync in seconds, not minutes: the SDK's defaults
# (300 s to connect, 10 retries, waits up to 120 s) would hold a school's thread for long.
# Passed with every call, so they reach whichever transport the client has.
TIMEOUTS: _Timeouts = {"connection_timeout": 5.0, "read_timeout": 15.0}
MAX_BACKOFF_SECONDS = 30.0

READ_ROLE = "Key Vault Secrets User"
WRITE_ROLE = "Key Vault Secrets Officer"
# Key Vault's error codes are plain words; anything else in the body stays out of messages.
_ERROR_CODE = re.compile(r"^[A-Za-z]{1,64}$")
_HINTS = {
    "ForbiddenByFirewall": "allow the Function App's outbound addresses or virtual network "
    "in the vault's Networking settings",
    "SecretDisabled": "enable the secret (its current version) in the vault",
}


class KeyVaultSecretStore(SecretStore):
    """Secrets in Azure Key Vault, read with the app's managed identity (DefaultAzureCredential).

    Nothing touches the network or imports the Azure SDK until the first read or write, so the
    app starts with the vault down; retries are the SDK's own, configured from the settings.
    """

    def __init__(
        self,
        vault_url: str,
        *,
        cache_seconds: float = 900,
        retry_attempts: int = 3,
        retry_delay_seconds: float = 2,
        redactor: Redactor | None = None,
        clock: Callable[[], float] | None = None,
        credential: TokenCredential | None = None,
        transport: HttpTransport[Any, Any] | None = None,  # azure-core's own are unparametrized
    ) -> None:
        kwargs = {"clock": clock} if clock is not None else {}
        super().__init__(cache_seconds=cache_seconds, redactor=redactor, **kwargs)
        self.vault_url = vault_url.strip().rstrip("/")
        self.description = f"Key Vault {self.vault_url}"
        self._retry_attempts = retry_attempts
        self._retry_delay_seconds = retry_delay_seconds
        self._credential = credential
        self._transport = transport
        self._client: SecretClient | None = None
        self._client_lock = threading.Lock()

    def check(self) -> None:
        # Reading a secret the app needs anyway proves the vault answers and lets us read;
        # "not found" proves it too. The value is dropped here, never returned or logged.
        self._fetch(names.SESSIONDB_CONNECTION_STRING)

    def _fetch(self, name: str) -> str | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            secret = self._secret_client().get_secret(name, **TIMEOUTS)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            self._raise(exc, "read", name)
        return secret.value

    def _store(self, name: str, value: str) -> None:
        from azure.core.exceptions import AzureError

        try:
            self._secret_client().set_secret(name, value, **TIMEOUTS)
        except AzureError as exc:
            self._raise(exc, "write", name)

    def _secret_client(self) -> SecretClient:
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                from azure.keyvault.secrets import SecretClient

                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                n = self._retry_attempts
                extra = {"transport": self._transport} if self._transport is not None else {}
                self._client = SecretClient(
                    self.vault_url,
                    credential,
                    retry_total=n,
                    retry_connect=n,
                    retry_read=n,
                    retry_status=n,
                    retry_backoff_factor=self._retry_delay_seconds,
                    retry_backoff_max=MAX_BACKOFF_SECONDS,
                    **extra,
                )
            return self._client

    def _raise(self, exc: AzureError, action: str, name: str) -> NoReturn:
        """Translate an azure-core error; a response body never reaches a message or a cause."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        where = f"Key Vault {self.vault_url}"
        attempts = f"{self._retry_attempts + 1} attempt(s)"
        role = READ_ROLE if action == "read" else WRITE_ROLE
        # Transport errors carry no body, so they may stay as the cause (for the traceback).
        cause = None if getattr(exc, "response", None) is not None else exc
        status = exc.status_code if isinstance(exc, HttpResponseError) else None
        error: SecretError
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            error = SecretStoreUnavailableError(
                f"cannot reach {where} to {action} secret {name} ({type(exc).__name__} after "
                f"{attempts}); check the vault URL (CleverSync__KeyVault__Url), the vault's "
                "network rules and the app's outbound network, then try again"
            )
        elif isinstance(exc, ClientAuthenticationError):  # the credential failed, or a 401
            error = SecretError(
                f"{where} did not accept the app's identity to {action} secret {name} "
                f"({type(exc).__name__}{f', HTTP {status}' if status else ''}); make sure the "
                "Function App's managed identity is on (on a laptop: 'az login') and grant it "
                f"the '{role}' role on the vault"
            )
        elif status is not None and (status in (408, 429) or status >= 500):
            error = SecretStoreUnavailableError(
                f"{where} answered {_answer(exc, status)} to {action} secret {name} after "
                f"{attempts}; try again later (Azure status: https://status.azure.com)"
            )
        elif status is not None:
            code = _error_code(exc)
            hint = _HINTS.get(code or "") or (
                f"grant the Function App's managed identity the '{role}' role on the vault"
                if status in (401, 403)
                else "see Key Vault's error code; the request was not retried"
            )
            error = SecretError(
                f"{where} refused to {action} secret {name} ({_answer(exc, status)}); {hint}"
            )
        else:
            error = SecretError(
                f"{where} failed to {action} secret {name} ({type(exc).__name__}); try again, "
                "and check the vault URL if it persists"
            )
        raise error from cause


def _error_code(exc: AzureError) -> str | None:
    """Key Vault's inner error code (ForbiddenByRbac, SecretDisabled...) or its outer one."""
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None)
    for code in (
        inner.get("code") if isinstance(inner, dict) else None,
        getattr(error, "code", None),
    ):
        if isinstance(code, str) and _ERROR_CODE.match(code):
            return code
    return None


def _answer(exc: AzureError, status: int) -> str:
    code = _error_code(exc)
    return f"HTTP {status} {code}" if code else f"HTTP {status}"
