"""The error tree's class attributes: what may be retried, what ends a school's sync."""

from __future__ import annotations

import pytest

from cleversync import errors


@pytest.mark.parametrize(
    ("error", "ends_school"),
    [
        (errors.ConfigurationError, True),
        (errors.UsageError, False),
        (errors.NotFoundError, False),
        (errors.SecretError, True),
        (errors.SecretNotFoundError, True),
        (errors.SecretStoreUnavailableError, True),
        (errors.CleverError, False),
        (errors.CleverAuthError, True),
        (errors.CleverTransientError, False),
        (errors.CleverRateLimitedError, False),
        (errors.CleverRequestError, False),
        (errors.CleverNotFoundError, False),
        (errors.SchoolNotSharedError, True),
        (errors.EventsNotEnabledError, False),
        (errors.EventCursorExpiredError, False),
        (errors.CleverResponseError, False),
        (errors.CleverIncompleteListError, False),
        (errors.CleverUnreachableError, True),
        (errors.DatabaseError, True),
        (errors.DatabaseTransientError, True),
        (errors.DatabaseUnavailableError, True),
        (errors.SyncError, True),
        (errors.LeaseHeldError, True),
        (errors.LeaseLostError, True),
        (errors.RecordError, False),
    ],
)
def test_which_errors_end_the_whole_school(
    error: type[errors.CleverSyncError], ends_school: bool
) -> None:
    assert error.ends_school is ends_school
