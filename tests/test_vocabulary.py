"""The enums' values are contract strings: SyncHistory rows, JSON bodies and CLI output use them."""

from __future__ import annotations

import json
from enum import StrEnum

import pytest

from cleversync.vocabulary import (
    GOOD_STATUSES,
    STORED_STATUSES,
    ChangeKind,
    HealthStatus,
    RunStatus,
    SyncMode,
    SyncType,
)

CONTRACT: list[tuple[StrEnum, str]] = [
    (RunStatus.IN_PROGRESS, "InProgress"),
    (RunStatus.SUCCESS, "Success"),
    (RunStatus.PARTIAL, "Partial"),
    (RunStatus.FAILED, "Failed"),
    (RunStatus.SKIPPED, "Skipped"),
    (RunStatus.DRY_RUN, "DryRun"),
    (ChangeKind.INSERTED, "Inserted"),
    (ChangeKind.UPDATED, "Updated"),
    (ChangeKind.DELETED, "Deleted"),
    (ChangeKind.DEACTIVATED, "Deactivated"),
    (ChangeKind.REACTIVATED, "Reactivated"),
    (ChangeKind.HELD_BACK, "HeldBack"),
    (SyncType.FULL, "Full"),
    (SyncType.INCREMENTAL, "Incremental"),
    (SyncMode.FULL, "full"),
    (SyncMode.EVENTS, "events"),
    (SyncMode.DATA, "data"),
    (HealthStatus.HEALTHY, "Healthy"),
    (HealthStatus.DEGRADED, "Degraded"),
    (HealthStatus.UNHEALTHY, "Unhealthy"),
    (HealthStatus.PENDING, "Pending"),
    (HealthStatus.SKIPPED, "Skipped"),
    (HealthStatus.UNKNOWN, "Unknown"),
]


@pytest.mark.parametrize(("member", "text"), CONTRACT, ids=[text for _, text in CONTRACT])
def test_a_member_is_written_as_its_contract_string(member: StrEnum, text: str) -> None:
    assert member == text and hash(member) == hash(text)
    assert (str(member), f"{member}", "%s" % member) == (text, text, text)  # noqa: UP031
    assert json.dumps({member: member}) == json.dumps({text: text})


def test_every_member_is_in_the_contract() -> None:
    members = [
        m for enum in (RunStatus, SyncType, SyncMode, HealthStatus, ChangeKind) for m in enum
    ]
    assert sorted(members, key=repr) == sorted((m for m, _ in CONTRACT), key=repr)


def test_what_is_stored_and_what_counts_as_good() -> None:
    # never Skipped; DryRun is a preview's row
    assert STORED_STATUSES == ("InProgress", "Success", "Failed", "Partial", "DryRun")
    assert GOOD_STATUSES == ("Success", "Partial")
