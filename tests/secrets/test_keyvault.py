"""The Key Vault store through the real SecretClient, with a fake vault at its HTTP seam."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import case_insensitive_dict

from cleversync.errors import SecretError, SecretNotFoundError, SecretStoreUnavailableError
from cleversync.redaction import Redactor
from cleversync.secrets import names
from cleversync.secrets.base import OUTAGE_RETRY_SECONDS
from cleversync.secrets.keyvault import KeyVaultSecretStore

REPO = Path(__file__).resolve().parents[2]
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TOKEN = "fake-access-token-for-the-vault"
NAME = "CleverSyncSOS--Lincoln--ConnectionString"
VALUE = "Server=tcp:lincoln.database.windows.net;Password=first-S3cret!"
# Planted in every error the fake vault gives: it must never reach one of our messages.
LEAK = "LEAKED-BODY-TEXT"
# Spelled out, not imported: these are the roles an operator grants in the portal.
READ_ROLE = "Key Vault Secrets User"
WRITE_ROLE = "Key Vault Secrets Officer"


class FakeResponse(HttpResponse):
    """A complete, already-read azure.core.rest response with a JSON body."""

    def __init__(self, request: HttpRequest, status: int, body: Any, headers: dict[str, str]):
        self._request = request
        self._status = status
        self._content = json.dumps(body).encode()
        self._headers = case_insensitive_dict(
            {"Content-Type": "application/json; charset=utf-8", **headers}
        )

    request = property(lambda self: self._request)
    url = property(lambda self: self._request.url)
    status_code = property(lambda self: self._status)
    reason = property(lambda self: HTTPStatus(self._status).phrase)
    headers = property(lambda self: self._headers)
    content_type = property(lambda self: self._headers["Content-Type"])
    content = property(lambda self: self._content)
    encoding = property(lambda self: "utf-8")
    is_closed = property(lambda self: True)
    is_stream_consumed = property(lambda self: True)

    def text(self, encoding: str | None = None) -> str:
        return self._content.decode(encoding or "utf-8")

    def json(self) -> Any:
        return json.loads(self._content)

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def raise_for_status(self) -> None:
        if self._status >= 400:
            raise HttpResponseError(response=self)

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *args: object) -> None:
        pass


class FakeVault(HttpTransport):
    """A Key Vault with its REST shapes and challenge auth, in memory.

    ``mode``: "up"; "unreachable" (every send raises ServiceRequestError); "unavailable"
    (503); "forbidden" (403 ForbiddenByRbac for an authenticated caller).
    """

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        # A fresh host per vault: the SDK caches challenges per host, process-wide.
        self.url = f"https://kv-{uuid.uuid4().hex[:12]}.vault.azure.net"
        self.secrets: dict[str, tuple[str, str, str]] = {}  # lower name -> (name, version, value)
        self.mode = "up"
        self.calls: list[tuple[str, str]] = []  # (method, path) of every send
        self.options: list[dict[str, Any]] = []  # the keyword arguments of every send
        self.sleeps: list[float] = []  # waits the SDK's retry policy asked for
        for name, value in (secrets or {}).items():
            self.put(name, value)

    def put(self, name: str, value: str) -> dict[str, Any]:
        """Create or rotate a secret (a new version), as the portal or the SDK would."""
        self.secrets[name.lower()] = (name, uuid.uuid4().hex, value)
        return self._bundle(name.lower())

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    def send(self, request: HttpRequest, **kwargs: Any) -> FakeResponse:
        parts = urlsplit(request.url)
        self.calls.append((request.method, parts.path))
        self.options.append(kwargs)
        if self.mode == "unreachable":
            raise ServiceRequestError(f"connection refused: {LEAK}")
        if self.mode == "unavailable":
            return self._error(request, 503, "ServiceUnavailable", f"Try again. {LEAK}")
        assert f"{parts.scheme}://{parts.netloc}" == self.url
        assert parse_qs(parts.query)["api-version"]
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                'resource="https://vault.azure.net"'
            )
            return self._error(
                request,
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                {"WWW-Authenticate": challenge},
            )
        if self.mode == "forbidden":
            return self._error(
                request,
                403,
                "Forbidden",
                f"Caller is not authorized to perform action on resource. {LEAK}",
                inner="ForbiddenByRbac",
            )
        segments = parts.path.strip("/").split("/")
        assert segments[0] == "secrets"
        key = segments[1].lower()
        if request.method == "GET" and len(segments) == 2:
            if key not in self.secrets:
                message = f"A secret with (name/id) {segments[1]} was not found in this key vault."
                return self._error(request, 404, "SecretNotFound", message)
            return FakeResponse(request, 200, self._bundle(key), {})
        if request.method == "PUT" and len(segments) == 2:
            body = json.loads(request.content)
            return FakeResponse(request, 200, self.put(segments[1], body["value"]), {})
        return self._error(request, 405, "BadParameter", "unsupported")

    def _bundle(self, key: str) -> dict[str, Any]:
        name, version, value = self.secrets[key]
        now = int(time.time())
        return {
            "value": value,
            "id": f"{self.url}/secrets/{name}/{version}",
            "attributes": {
                "enabled": True,
                "created": now,
                "updated": now,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
        }

    @staticmethod
    def _error(
        request: HttpRequest,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        inner: str | None = None,
    ) -> FakeResponse:
        error: dict[str, Any] = {"code": code, "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        return FakeResponse(request, status, {"error": error}, headers or {})

    def sleep(self, duration: float) -> None:
        self.sleeps.append(duration)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *args: object) -> None:
        pass


class FakeCredential:
    """Hands out one token and remembers what it was asked for; ``fail`` refuses instead."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.asked: list[tuple[tuple[str, ...], str | None]] = []

    def get_token_info(
        self, *scopes: str, options: dict[str, Any] | None = None
    ) -> AccessTokenInfo:
        self.asked.append((scopes, (options or {}).get("tenant_id")))
        if self.fail:
            raise ClientAuthenticationError("ManagedIdentityCredential: no identity endpoint")
        return AccessTokenInfo(TOKEN, int(time.time()) + 3600)

    def get_token(self, *scopes: str, tenant_id: str | None = None, **kwargs: Any) -> AccessToken:
        self.asked.append((scopes, tenant_id))
        if self.fail:
            raise ClientAuthenticationError("ManagedIdentityCredential: no identity endpoint")
        return AccessToken(TOKEN, int(time.time()) + 3600)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def vault() -> FakeVault:
    return FakeVault({NAME: VALUE})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_store(
    vault: FakeVault,
    clock: FakeClock | None = None,
    *,
    retry_attempts: int = 3,
    retry_delay_seconds: float = 0,
    redactor: Redactor | None = None,
    credential: FakeCredential | None = None,
) -> KeyVaultSecretStore:
    return KeyVaultSecretStore(
        vault.url,
        cache_seconds=900,
        retry_attempts=retry_attempts,
        retry_delay_seconds=retry_delay_seconds,
        redactor=redactor or Redactor(),
        clock=clock or FakeClock(),
        credential=credential or FakeCredential(),
        transport=vault,
    )


def test_get_answers_the_challenge_then_reads(vault: FakeVault) -> None:
    credential = FakeCredential()
    store = make_store(vault, credential=credential)
    assert store.get(NAME) == VALUE
    # Key Vault's protocol: an unauthenticated probe, a 401 challenge, then the real request.
    assert vault.calls == [("GET", f"/secrets/{NAME}/")] * 2
    assert credential.asked == [(("https://vault.azure.net/.default",), TENANT)]
    assert store.get(NAME) == VALUE
    assert len(vault.calls) == 2  # cached


def test_every_request_has_short_timeouts(vault: FakeVault) -> None:
    store = make_store(vault)
    store.get(NAME)
    store.set(names.client_secret("Lincoln"), "another-secret-value")
    assert len(vault.options) == 3
    for options in vault.options:
        assert 0 < options["connection_timeout"] <= 10
        assert 0 < options["read_timeout"] <= 30


def test_a_missing_secret_is_none_and_require_names_it(vault: FakeVault) -> None:
    store = make_store(vault)
    missing = "CleverSyncSOS--Nowhere--ClientId"
    assert store.get(missing) is None
    store.invalidate()
    with pytest.raises(SecretNotFoundError) as info:
        store.require(missing)
    assert missing in str(info.value)
    assert vault.url in str(info.value)


def test_set_then_get_goes_through_the_vault(vault: FakeVault) -> None:
    store = make_store(vault)
    name = names.client_secret("Lincoln")
    store.set(name, "brand-new-secret")
    assert vault.count("PUT") == 2  # the bodiless challenge probe, then the write
    assert vault.secrets[name.lower()][2] == "brand-new-secret"
    store.invalidate()
    assert store.get(name) == "brand-new-secret"
    assert vault.count("GET") == 1  # the PUT already answered the challenge


def test_a_rotated_secret_is_picked_up_when_the_cache_expires(
    vault: FakeVault, clock: FakeClock
) -> None:
    store = make_store(vault, clock)
    assert store.get(NAME) == VALUE
    vault.put(NAME, "rotated-S3cret-value")
    clock.now += 899
    assert store.get(NAME) == VALUE
    clock.now += 2
    assert store.get(NAME) == "rotated-S3cret-value"


@pytest.mark.parametrize("retry_attempts", [0, 2, 3])
def test_an_unreachable_vault_fails_after_the_configured_attempts(
    retry_attempts: int, vault: FakeVault
) -> None:
    vault.mode = "unreachable"
    store = make_store(vault, retry_attempts=retry_attempts)
    with pytest.raises(SecretStoreUnavailableError) as info:
        store.get(NAME)
    assert len(vault.calls) == retry_attempts + 1  # the SDK's retries, no loop of ours
    message = str(info.value)
    assert vault.url in message and NAME in message
    assert LEAK not in message and VALUE not in message
    assert info.value.retryable
    assert store.last_error == message


def test_a_vault_answering_503_is_unavailable_after_retries(vault: FakeVault) -> None:
    vault.mode = "unavailable"
    store = make_store(vault, retry_attempts=2)
    with pytest.raises(SecretStoreUnavailableError, match="HTTP 503") as info:
        store.get(NAME)
    assert len(vault.calls) == 3
    assert vault.url in str(info.value)
    assert LEAK not in str(info.value)
    assert info.value.__cause__ is None  # the response body stays out of tracebacks too


def test_the_retry_delay_configures_the_sdk_backoff(vault: FakeVault) -> None:
    vault.mode = "unreachable"
    store = make_store(vault, retry_attempts=3, retry_delay_seconds=2)
    with pytest.raises(SecretStoreUnavailableError):
        store.get(NAME)
    # azure-core's exponential backoff: no wait before the first retry, then factor * 2**n.
    assert vault.sleeps == [4, 8]


def test_a_cached_value_serves_while_the_vault_is_unreachable(
    vault: FakeVault, clock: FakeClock
) -> None:
    store = make_store(vault, clock)
    assert store.get(NAME) == VALUE
    vault.mode = "unreachable"
    clock.now += 901
    before = len(vault.calls)
    assert store.get(NAME) == VALUE
    assert len(vault.calls) - before == 4
    assert store.last_error is not None and vault.url in store.last_error
    assert store.has_cached_values()
    vault.mode = "up"
    vault.put(NAME, "after-the-outage")
    assert store.get(NAME) == VALUE  # the vault is asked again only after a pause
    clock.now += OUTAGE_RETRY_SECONDS + 1
    assert store.get(NAME) == "after-the-outage"
    assert store.last_error is None


@pytest.mark.parametrize(
    ("action", "role"), [("read", READ_ROLE), ("write", WRITE_ROLE)], ids=["get", "set"]
)
def test_access_denied_is_a_secret_error_naming_the_role(
    action: str, role: str, vault: FakeVault
) -> None:
    vault.mode = "forbidden"
    store = make_store(vault)
    attempt = store.get if action == "read" else lambda name: store.set(name, "new-secret-value")
    with pytest.raises(SecretError) as info:
        attempt(NAME)
    assert not isinstance(info.value, SecretStoreUnavailableError)
    assert not info.value.retryable
    message = str(info.value)
    assert f"'{role}'" in message and "managed identity" in message
    assert "HTTP 403 ForbiddenByRbac" in message
    assert vault.url in message and NAME in message
    assert LEAK not in message and "new-secret-value" not in message
    assert vault.count("GET") + vault.count("PUT") == 2  # challenge + refusal: no retries


def test_a_credential_that_cannot_get_a_token_is_a_secret_error(vault: FakeVault) -> None:
    store = make_store(vault, credential=FakeCredential(fail=True))
    with pytest.raises(SecretError) as info:
        store.get(NAME)
    assert not isinstance(info.value, SecretStoreUnavailableError)
    assert "managed identity" in str(info.value)
    assert READ_ROLE in str(info.value)
    assert len(vault.calls) == 1  # the challenge probe; a refused credential is not retried


def test_check_proves_the_vault_answers(vault: FakeVault) -> None:
    redactor = Redactor()
    store = make_store(FakeVault(), redactor=redactor)
    store.check()  # the SessionDb secret is missing: a 404 still proves access

    vault.put(names.SESSIONDB_CONNECTION_STRING, "sqlite:///sessiondb-secret-path")
    make_store(vault, redactor=redactor).check()
    assert ("GET", f"/secrets/{names.SESSIONDB_CONNECTION_STRING}/") in vault.calls

    vault.mode = "forbidden"
    with pytest.raises(SecretError, match=READ_ROLE):
        make_store(vault).check()
    vault.mode = "unreachable"
    with pytest.raises(SecretStoreUnavailableError, match=vault.url):
        make_store(vault).check()


def test_values_read_and_written_are_registered_with_the_redactor(vault: FakeVault) -> None:
    redactor = Redactor()
    store = make_store(vault, redactor=redactor)
    assert VALUE not in redactor
    store.get(NAME)
    store.set(names.client_secret("Lincoln"), "written-secret-value")
    assert VALUE in redactor
    assert "written-secret-value" in redactor
    assert redactor.redact(f"connect with {VALUE}") == "connect with ***"


def test_the_audit_log_names_secrets_never_values(
    vault: FakeVault, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(vault)
    with caplog.at_level(logging.DEBUG):
        store.get(NAME)
        store.set(names.client_secret("Lincoln"), "written-secret-value")
    ours = [r for r in caplog.records if r.name.startswith("cleversync")]
    assert any(NAME in r.getMessage() and getattr(r, "SecretName", None) == NAME for r in ours), (
        "a read is logged by name"
    )
    assert any(names.client_secret("Lincoln") in r.getMessage() for r in ours)
    for record in caplog.records:  # the SDK's own logging included
        assert VALUE not in record.getMessage()
        assert "written-secret-value" not in record.getMessage()


def test_constructing_the_store_does_no_network_call(vault: FakeVault) -> None:
    credential = FakeCredential()
    store = make_store(vault, credential=credential)
    assert store.description == f"Key Vault {vault.url}"
    assert vault.calls == [] and credential.asked == []


def test_importing_and_constructing_imports_no_azure_module() -> None:
    code = (
        "import sys\n"
        "from cleversync.secrets.keyvault import KeyVaultSecretStore\n"
        "store = KeyVaultSecretStore('https://example.vault.azure.net/')\n"
        "assert store.description == 'Key Vault https://example.vault.azure.net', store.description\n"
        "print(sorted(m for m in sys.modules if m == 'azure' or m.startswith('azure.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
