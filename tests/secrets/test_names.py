"""Secret names and their prefix rules (README: 'Secrets')."""

from __future__ import annotations

import pytest

from cleversync.errors import UsageError
from cleversync.secrets import names


def test_secret_names() -> None:
    assert names.SESSIONDB_CONNECTION_STRING == "CleverSyncSOS--SessionDb--ConnectionString"
    assert (
        names.connection_string("Lincoln-Elementary")
        == "CleverSyncSOS--Lincoln-Elementary--ConnectionString"
    )
    assert names.client_id("Lincoln-District") == "CleverSyncSOS--Lincoln-District--ClientId"
    assert (
        names.client_secret("Lincoln-District") == "CleverSyncSOS--Lincoln-District--ClientSecret"
    )
    assert names.access_token("Lincoln-District") == "CleverSyncSOS--Lincoln-District--AccessToken"
    assert names.client_id(None) == "CleverSyncSOS--Clever--ClientId"
    assert names.client_secret(None) == "CleverSyncSOS--Clever--ClientSecret"
    assert names.access_token(None) == "CleverSyncSOS--Clever--AccessToken"


def test_longest_prefix_fits_key_vault() -> None:
    prefix = "a" * names.MAX_PREFIX_LENGTH
    assert names.MAX_PREFIX_LENGTH == 94
    assert len(names.connection_string(names.validate_prefix(prefix))) == 127
    with pytest.raises(UsageError, match="at most 94"):
        names.validate_prefix(prefix + "a")


@pytest.mark.parametrize(
    ("prefix", "fragment"),
    [
        ("", "empty"),
        ("Lincoln_Elementary", "only letters"),
        ("Lincoln Elementary", "only letters"),
        ("École", "only letters"),
        ("Lincoln--East", "'--'"),
        ("-Lincoln", "'-'"),
        ("Clever", "reserved"),
        ("sessiondb", "reserved"),
        ("AdminPortal", "reserved"),
    ],
)
def test_bad_prefixes(prefix: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        names.validate_prefix(prefix)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("Lincoln Elementary School", "Lincoln-Elementary-School"),
        ("École St. Mary's", "Ecole-St-Marys"),
        ("Nguyễn Academy #3", "Nguyen-Academy-3"),
        ("Clever", "Clever-School"),
        ("!!!", "School"),
    ],
)
def test_prefix_from_name_is_valid(name: str, prefix: str) -> None:
    assert names.prefix_from_name(name) == prefix
    names.validate_prefix(prefix)
