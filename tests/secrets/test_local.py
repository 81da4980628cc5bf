"""The local secrets file: read, cache, write, rotation, bad files, redaction."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from cleversync.errors import SecretError, SecretNotFoundError
from cleversync.redaction import Redactor
from cleversync.secrets.local import LocalSecretStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def store_at(path: Path, clock: FakeClock, redactor: Redactor | None = None) -> LocalSecretStore:
    return LocalSecretStore(path, cache_seconds=900, clock=clock, redactor=redactor or Redactor())


def test_get_require_and_missing(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"CleverSyncSOS--Clever--ClientId": "abc123"}))
    store = store_at(path, clock)
    assert store.get("CleverSyncSOS--Clever--ClientId") == "abc123"
    assert store.get("CleverSyncSOS--X--ClientId") is None
    with pytest.raises(SecretNotFoundError, match="CleverSyncSOS--X--ClientId") as info:
        store.require("CleverSyncSOS--X--ClientId")
    assert str(path) in str(info.value)


def test_a_missing_file_is_an_empty_store(tmp_path: Path, clock: FakeClock) -> None:
    assert store_at(tmp_path / "none.json", clock).get("anything") is None


def test_set_writes_atomically_and_privately(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "sub" / "secrets.json"
    store = store_at(path, clock)
    store.set("CleverSyncSOS--A--ClientSecret", "s3cret-value")
    store.set("CleverSyncSOS--B--ClientSecret", "other-value")
    assert json.loads(path.read_text()) == {
        "CleverSyncSOS--A--ClientSecret": "s3cret-value",
        "CleverSyncSOS--B--ClientSecret": "other-value",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secrets.json"]


def test_values_are_cached_until_they_expire(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"N": "first-value"}))
    store = store_at(path, clock)
    assert store.get("N") == "first-value"
    path.write_text(json.dumps({"N": "rotated-value"}))
    clock.now += 899
    assert store.get("N") == "first-value"
    clock.now += 2
    assert store.get("N") == "rotated-value"


def test_missing_secrets_are_cached_too(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "secrets.json"
    store = store_at(path, clock)
    assert store.get("N") is None
    path.write_text(json.dumps({"N": "created-later"}))
    assert store.get("N") is None
    clock.now += 901
    assert store.get("N") == "created-later"


def test_values_read_are_registered_for_redaction(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"N": "very-secret-value"}))
    redactor = Redactor()
    store_at(path, clock, redactor).get("N")
    assert redactor.redact("x very-secret-value y") == "x *** y"


def test_access_is_logged_by_name_only(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"CleverSyncSOS--A--ClientSecret": "very-secret-value"}))
    with caplog.at_level(logging.INFO, logger="cleversync.secrets"):
        store_at(path, clock).get("CleverSyncSOS--A--ClientSecret")
    assert "CleverSyncSOS--A--ClientSecret" in caplog.text
    assert "very-secret-value" not in caplog.text


def test_invalid_json_names_the_file_not_the_content(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"N": "hunter2-secret",')
    with pytest.raises(SecretError, match="not valid JSON") as info:
        store_at(path, clock).get("N")
    assert "hunter2" not in str(info.value)


def test_a_list_is_not_a_store(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "secrets.json"
    path.write_text("[1, 2]")
    with pytest.raises(SecretError, match="JSON object"):
        store_at(path, clock).get("N")


def test_cached_values_serve_while_the_store_is_unreachable(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"N": "cached-value"}))
    store = store_at(path, clock)
    assert store.get("N") == "cached-value"
    path.unlink()
    path.mkdir()  # reading a folder fails like an unreachable store
    clock.now += 1000
    assert store.get("N") == "cached-value"
    assert store.last_error is not None
    assert store.has_cached_values()
    from cleversync.errors import SecretStoreUnavailableError

    with pytest.raises(SecretStoreUnavailableError):
        store.get("Other")


def test_an_outage_is_not_retried_on_every_read(tmp_path: Path, clock: FakeClock) -> None:
    from cleversync.secrets.base import OUTAGE_RETRY_SECONDS

    reads = []

    class Counting(LocalSecretStore):
        def _fetch(self, name: str) -> str | None:
            reads.append(name)
            return super()._fetch(name)

    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"N": "cached-value"}))
    store = Counting(path, cache_seconds=900, clock=clock, redactor=Redactor())
    store.get("N")
    path.unlink()
    path.mkdir()
    clock.now += 1000
    assert store.get("N") == "cached-value"
    assert store.get("N") == "cached-value"
    assert len(reads) == 2  # the first read and one failed try
    clock.now += OUTAGE_RETRY_SECONDS + 1
    store.get("N")
    assert len(reads) == 3
