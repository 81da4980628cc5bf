"""The one error tree: every error an operator can see says what failed, where, and what to do.

    CleverSyncError                    base; ``retryable`` says whether trying again may help,
    │                                  ``ends_school`` whether it ends a school's whole sync
    │                                  (marked *, with all under it) or one entity's only
    ├── ConfigurationError *           a setting is missing or wrong (names the variable)
    ├── UsageError                     bad command-line or HTTP input (exit 2 / HTTP 400)
    │   └── NotFoundError              an unknown district or school id (HTTP 404)
    ├── SecretError *
    │   ├── SecretNotFoundError        a named secret does not exist in the store
    │   └── SecretStoreUnavailableError  the store cannot be reached (retryable)
    ├── CleverError                    anything from Clever's API or token endpoint
    │   ├── CleverAuthError *          credentials or token refused
    │   ├── CleverTransientError       timeout, connection error, 5xx (retryable)
    │   │   └── CleverRateLimitedError 429; carries the wait Clever asked for
    │   ├── CleverRequestError         400, 413, 501 and other answers a retry cannot fix
    │   ├── CleverNotFoundError        404
    │   │   └── SchoolNotSharedError * the school is not (or no longer) shared with the app
    │   ├── EventsNotEnabledError      the district has not enabled the Events API
    │   ├── EventCursorExpiredError    the stored event cursor is past Clever's retention
    │   ├── CleverResponseError        an answer we cannot read (bad JSON, paging loop)
    │   │   └── CleverIncompleteListError  a list whose end could not be confirmed, or a page
    │   │                                  over its limit: nothing is deleted
    │   └── CleverUnreachableError *   Clever failed through every retry earlier in this run
    ├── DatabaseError *
    │   ├── DatabaseTransientError     deadlock, busy, dropped connection (retryable)
    │   └── DatabaseUnavailableError   a database that does not exist or cannot be reached
    ├── SyncError *
    │   ├── LeaseHeldError             another live run is syncing that school
    │   └── LeaseLostError             this run's lease was taken over (it ran too long)
    ├── NotifyError                    an email could not be sent (kept, sent at the next report)
    └── RecordError                    one record does not fit the schema (skipped, counted)

Messages never carry a secret or a person's data: they name secrets, settings, Clever ids and
database names, never values. Foreign errors are translated at the boundary with
``raise ... from exc``.
"""

from __future__ import annotations

from typing import ClassVar


class CleverSyncError(Exception):
    """Base of every error CleverSync raises on purpose."""

    retryable: ClassVar[bool] = False
    ends_school: ClassVar[bool] = False  # ends the school's sync, not just one entity's


class ConfigurationError(CleverSyncError):
    """A setting is missing or has a bad value."""

    ends_school = True

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class UsageError(CleverSyncError):
    """Bad input from the command line or an HTTP request."""


class NotFoundError(UsageError):
    """A district or school id that is not registered."""


class SecretError(CleverSyncError):
    """A secret could not be read or written."""

    ends_school = True


class SecretNotFoundError(SecretError):
    """The named secret does not exist."""

    def __init__(self, name: str, *, store: str) -> None:
        super().__init__(
            f"secret {name!r} was not found in the {store}; create it there "
            f"(see the README's 'Secrets' section)"
        )
        self.name = name


class SecretStoreUnavailableError(SecretError):
    """The secret store could not be reached."""

    retryable = True


class CleverError(CleverSyncError):
    """A failure talking to Clever."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CleverAuthError(CleverError):
    """Clever refused the credentials or the token."""

    ends_school = True


class CleverTransientError(CleverError):
    """A failure that may pass: timeout, connection error, 5xx."""

    retryable = True


class CleverRateLimitedError(CleverTransientError):
    """Clever answered 429; ``retry_after`` is the wait it asked for, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class CleverRequestError(CleverError):
    """An answer a retry cannot fix (400, 413, 501, ...)."""


class CleverNotFoundError(CleverError):
    """Clever answered 404."""


class SchoolNotSharedError(CleverNotFoundError):
    """The school is unknown to Clever or no longer shared with this app."""

    ends_school = True


class EventsNotEnabledError(CleverError):
    """The district has not enabled the Events API (Clever answers 403 or 404)."""


class EventCursorExpiredError(CleverError):
    """The stored event cursor is older than Clever keeps events."""


class CleverResponseError(CleverError):
    """Clever's answer could not be read."""


class CleverIncompleteListError(CleverResponseError):
    """A list that cannot be trusted whole: its end could not be confirmed, or a page held
    more records than asked for. What arrived is real; what is missing is unknown, so
    nothing may be deleted for it."""


class CleverUnreachableError(CleverError):
    """Requests to the district's Clever already failed through every retry in this run;
    the rest of the run does not try again (the next run does)."""

    retryable = True
    ends_school = True


class DatabaseError(CleverSyncError):
    """A database operation failed."""

    ends_school = True


class DatabaseTransientError(DatabaseError):
    """A database failure that may pass (busy, deadlock, dropped connection)."""

    retryable = True


class DatabaseUnavailableError(DatabaseError):
    """The database does not exist or cannot be reached."""


class SyncError(CleverSyncError):
    """The sync itself could not go on."""

    ends_school = True


class LeaseHeldError(SyncError):
    """Another live run holds the school's sync lease."""


class LeaseLostError(SyncError):
    """This run's lease expired and was taken over by another run."""


class NotifyError(CleverSyncError):
    """An email (run report, alert) could not be sent; it is kept and tried again."""

    retryable = True


class RecordError(CleverSyncError):
    """One Clever record does not fit the schema; it is skipped and counted."""

    def __init__(self, clever_id: str, problem: str) -> None:
        super().__init__(f"record {clever_id or '(no id)'}: {problem}")
        self.clever_id = clever_id
        self.problem = problem
