"""HTTP to Clever: the shared client, one request within its deadline, and what a status means.

``send`` is the one way a request goes out, for the API client and the token provider alike:
the whole answer, body included, within ``Clever__TimeoutSeconds`` (``deadline``), with
timeouts and connection errors as ``CleverTransientError``. ``error_for`` is a pure table from
an API answer's status to the typed error of ``cleversync.errors`` the sync acts on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from cleversync.clever.deadline import request_within
from cleversync.errors import (
    CleverAuthError,
    CleverError,
    CleverNotFoundError,
    CleverRateLimitedError,
    CleverRequestError,
    CleverTransientError,
    EventCursorExpiredError,
    EventsNotEnabledError,
    SchoolNotSharedError,
)
from cleversync.settings import Settings


@dataclass(frozen=True)
class Call:
    """What a request is for: names it in messages and decides what a 403/404 means."""

    what: str
    school_id: str | None = None
    events: bool = False
    cursor: str | None = None
    entity: str | None = None  # the entity whose list this reads (its run's retry counts)


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    seconds: float,
    max_bytes: int,
    who: str = "Clever",
    **kwargs: Any,
) -> httpx.Response:
    """``who``'s whole answer to ``what``, within ``seconds``; ``BodyTooLargeError`` past
    ``max_bytes``, ``CleverTransientError`` for a timeout or a connection error."""
    try:
        return request_within(http, method, url, seconds=seconds, max_bytes=max_bytes, **kwargs)
    except httpx.TimeoutException:
        raise CleverTransientError(
            f"{who} timed out answering {what} (no complete answer within "
            f"CleverSync__Clever__TimeoutSeconds={seconds:g})"
        ) from None
    except httpx.TransportError as exc:
        raise CleverTransientError(
            f"{who} could not be reached for {what} ({type(exc).__name__})"
        ) from None


def error_for(status: int, call: Call, *, retry_after: float | None = None) -> CleverError | None:
    """The error Clever's API means by ``status`` for ``call`` (None for 200). A 401 here
    came with a freshly fetched token; a 429 carries ``retry_after``."""
    if status == 200:
        return None
    if status == 401:
        return CleverAuthError(
            f"Clever refused a freshly fetched token for {call.what} (HTTP 401); "
            "the district may have disconnected the app",
            status=401,
        )
    if status == 429:
        return CleverRateLimitedError(
            f"Clever rate-limited {call.what} (HTTP 429)", retry_after=retry_after
        )
    if status >= 500 and status != 501:
        return CleverTransientError(
            f"Clever failed answering {call.what} (HTTP {status})", status=status
        )
    if call.events and status in (403, 404):
        if call.cursor and status == 404:
            return EventCursorExpiredError(
                f"Clever no longer has event {call.cursor} (HTTP 404): the cursor is older "
                "than Clever keeps events",
                status=status,
            )
        return EventsNotEnabledError(
            f"the Events API is not enabled for this district (HTTP {status} on {call.what})",
            status=status,
        )
    if status == 404 and call.school_id is not None:
        return SchoolNotSharedError(
            f"Clever does not share school {call.school_id} with this app (HTTP 404 on "
            f"{call.what}); check the school's Clever id and the district's sharing rules",
            status=status,
        )
    if status == 404:
        return CleverNotFoundError(f"Clever has no {call.what} (HTTP 404)", status=status)
    if status == 403:
        return CleverAuthError(
            f"Clever refused access to {call.what} (HTTP 403): the app may lack a scope",
            status=status,
        )
    if status == 413:
        return CleverRequestError(
            f"Clever refused the page size for {call.what} (HTTP 413); lower "
            "CleverSync__Sync__PageSize (at most 10000)",
            status=status,
        )
    return CleverRequestError(f"Clever answered {call.what} with HTTP {status}", status=status)


def retry_after_seconds(value: str, *, now: float, cap: float) -> float:
    """The wait a ``Retry-After`` value asks for, at most ``cap``: delta-seconds or an HTTP
    date (a past date: no wait). Anything unreadable, negative or not finite (``inf``,
    ``nan``, ``1e400``) counts as the cap: Clever asked for a wait, just not a usable one."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
            if when.tzinfo is None:  # "-0000": UTC, origin unknown
                when = when.replace(tzinfo=UTC)
            seconds = max(0.0, when.timestamp() - now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return cap
    if not math.isfinite(seconds) or seconds < 0:
        return cap
    return min(seconds, cap)


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def build_http_client(
    settings: Settings, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The shared HTTP client: pooled, TLS 1.2 or newer, plain http only to loopback."""
    import ssl

    # TLS 1.2 at least; plain http (loopback only: the settings allow no other) needs none.
    verify: ssl.SSLContext | bool = False
    if any(
        urlsplit(u).scheme == "https"
        for u in (settings.clever.api_base_url, settings.clever.token_url)
    ):
        verify = ssl.create_default_context()
        verify.minimum_version = ssl.TLSVersion.TLSv1_2
    timeout = httpx.Timeout(
        settings.clever.timeout_seconds, connect=min(10.0, settings.clever.timeout_seconds)
    )
    parallel = settings.concurrency.max_schools_in_parallel
    return httpx.Client(
        timeout=timeout,
        verify=verify,
        transport=transport,
        limits=httpx.Limits(
            max_connections=parallel * 2 + 4, max_keepalive_connections=parallel * 2
        ),
        headers={"User-Agent": "CleverSync/0.1"},
        follow_redirects=False,
    )
