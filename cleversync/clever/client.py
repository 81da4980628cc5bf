"""The Clever Data and Events API client: paged, paced, retried, and typed.

Pages are streamed to the caller one at a time (a school is never buffered whole), and a
data list is read to its confirmed end (see ``paging``). Each request takes the district's
token, waits its turn under the token's rate limit, must finish, body included, within
``Clever__TimeoutSeconds``, and is retried on tenacity for timeouts, connection errors, 5xx
and 429 (honouring ``Retry-After`` or ``X-Ratelimit-Reset``, at most
``Retry__MaxWaitSeconds``). A 401 drops the token and retries once with a fresh one. Once a
district's requests failed through every retry, the rest of the run does not try again
(``DistrictBreaker``). Other answers become the typed errors of ``cleversync.errors`` that
the sync acts on.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from cleversync.clever.deadline import BodyTooLargeError, request_within
from cleversync.clever.models import (
    CleverModel,
    Event,
    School,
    Section,
    User,
    parse,
    parse_event,
    unknown_fields,
)
from cleversync.clever.paging import CursorPaginator, limit_of
from cleversync.clever.ratelimit import RateLimitPacer
from cleversync.clever.tokens import TokenSource
from cleversync.errors import (
    CleverAuthError,
    CleverError,
    CleverIncompleteListError,
    CleverNotFoundError,
    CleverRateLimitedError,
    CleverRequestError,
    CleverResponseError,
    CleverTransientError,
    CleverUnreachableError,
    EventCursorExpiredError,
    EventsNotEnabledError,
    RecordError,
    SchoolNotSharedError,
)
from cleversync.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=CleverModel)
_VERSION_IN_PATH = re.compile(r"^/(v\d+(?:\.\d+)?)/")

# The most bytes a page may take, per record asked for (with a floor): a page far past its
# limit is refused while it streams in, before parsing it could exhaust memory. Generous:
# a record is a few kilobytes, a section listing a thousand students some thirty.
_BYTES_PER_RECORD = 256 * 1024
_MIN_BODY_BYTES = 1024 * 1024


class DistrictBreaker:
    """Whether this run already found the district's Clever down (thread-safe).

    Tripped when a request failed through every retry with a connection error, a timeout
    or a 5xx, and one more request to a district-wide endpoint fails the same way; from then
    on every request of the run fails at once, untried. One per run and district
    (``RunBreakers``): the next run tries again.
    """

    def __init__(self) -> None:
        self._error: str | None = None
        self._lock = threading.Lock()

    @property
    def error(self) -> str | None:
        return self._error

    def trip(self, error: str) -> None:
        with self._lock:
            if self._error is None:
                self._error = error

    def check(self) -> None:
        error = self._error
        if error is not None:
            raise CleverUnreachableError(f"Clever unreachable: {error}; not tried")


class RunBreakers:
    """One ``DistrictBreaker`` per district, for one run's schools (thread-safe)."""

    def __init__(self) -> None:
        self._breakers: dict[int, DistrictBreaker] = {}
        self._lock = threading.Lock()

    def district(self, district_id: int) -> DistrictBreaker:
        with self._lock:
            return self._breakers.setdefault(district_id, DistrictBreaker())


@dataclass
class Page(Generic[T]):
    """One page of records: the readable ones, the ones that failed to parse, and how many
    records were skipped because they do not hold the role asked for."""

    records: list[T] = field(default_factory=list)
    failures: list[RecordError] = field(default_factory=list)
    off_role: int = 0
    last_id: str | None = None  # the id of the page's last entry, readable or not


@dataclass
class RawPage:
    """One page as Clever sent it: the record objects, and the entries that are not objects."""

    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[RecordError] = field(default_factory=list)
    last_id: str | None = None


# kind -> (resource under /schools/{id}/, role filter, model, entity name)
_KINDS: dict[str, tuple[str, str | None, type[CleverModel], str]] = {
    "students": ("users", "student", User, "Student"),
    "teachers": ("users", "teacher", User, "Teacher"),
    "sections": ("sections", None, Section, "Section"),
}


class FieldReport:
    """Unknown fields, reported once per run per entity (names only, EC-008)."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def observe(self, entity: str, fields: set[str]) -> None:
        if not fields:
            return
        with self._lock:
            seen = self._seen.setdefault(entity, set())
            new = fields - seen
            seen |= new
        if new:
            logger.warning(
                "Clever sent %s fields this version of CleverSync does not know: %s; the "
                "fields it maps are still synced (review the schema change)",
                entity,
                ", ".join(sorted(new)),
                extra={"EntityType": entity, "UnknownFields": ",".join(sorted(new))},
            )

    def fields(self, entity: str) -> set[str]:
        with self._lock:
            return set(self._seen.get(entity, ()))


@dataclass(frozen=True)
class _Call:
    """What a request is for: names it in messages and decides what a 403/404 means."""

    what: str
    school_id: str | None = None
    events: bool = False
    cursor: str | None = None


class CleverClient:
    """Clever's API for one district (one token); cheap to create per run."""

    def __init__(
        self,
        *,
        http: httpx.Client,
        settings: Settings,
        tokens: TokenSource,
        pacer: RateLimitPacer,
        field_report: FieldReport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        wait: Callable[[float], None] | None = None,
        breaker: DistrictBreaker | None = None,
    ) -> None:
        """``wait(seconds)`` does every wait (retries, rate limits; ``sleep`` by default)
        and is also called with 0 before each request, so the caller may renew its lease or
        stop there; ``breaker`` shares "Clever is down" with the run's other clients."""
        self._http = http
        self._base = settings.clever.api_base_url.rstrip("/")
        self._version = settings.clever.api_version.strip("/")
        self._policy = settings.retry.clever_api
        self._respect_retry_after = settings.retry.rate_limit_respect_retry_after
        self._max_wait = settings.retry.max_wait_seconds
        self._timeout = settings.clever.timeout_seconds
        self._wait_for = wait or sleep
        self._checkpoint = wait  # called with 0 before each request, when the caller asks
        self._breaker = breaker
        self._tokens = tokens
        self._pacer = pacer
        self._sleep = sleep
        self._clock = clock
        self.field_report = field_report or FieldReport()
        self._origin = _origin(self._base)
        self._version_warned = False
        self.requests = 0
        self._retrying = Retrying(
            retry=retry_if_exception_type(CleverTransientError),
            stop=stop_after_attempt(self._policy.max_attempts + 1),
            wait=self._backoff,
            sleep=self._wait_for,
            before_sleep=self._log_retry,
            reraise=True,
        )

    # --- data ---------------------------------------------------------------------------

    def students(self, school_id: str, *, page_size: int) -> Iterator[Page[User]]:
        return self._parsed("students", school_id, page_size)

    def teachers(self, school_id: str, *, page_size: int) -> Iterator[Page[User]]:
        return self._parsed("teachers", school_id, page_size)

    def sections(self, school_id: str, *, page_size: int) -> Iterator[Page[Section]]:
        return self._parsed("sections", school_id, page_size)

    def raw_pages(self, kind: str, school_id: str, *, page_size: int) -> Iterator[RawPage]:
        """A school's ``students``, ``teachers`` or ``sections`` as Clever sent them, page by
        page, for a caller that parses only some (``parse_records``)."""
        resource, role, _, _ = _KINDS[kind]
        params: dict[str, Any] = {"role": role} if role else {}
        path = self._path(f"schools/{school_id}/{resource}", **params, limit=page_size)
        call = _Call(f"{kind} of Clever school {school_id}", school_id=school_id)
        return self._raw_pages(path, call, kind)

    def parse_records(self, kind: str, raws: list[dict[str, Any]]) -> Page[Any]:
        """Typed records of ``kind`` (unreadable ones as failures, other roles left out)."""
        _, role, model, entity = _KINDS[kind]
        return self._page(raws, model, entity, role)

    def _parsed(self, kind: str, school_id: str, page_size: int) -> Iterator[Page[Any]]:
        for raw in self.raw_pages(kind, school_id, page_size=page_size):
            page = self.parse_records(kind, raw.records)
            page.failures[:0] = raw.failures
            page.last_id = raw.last_id
            yield page

    def schools(self, *, page_size: int = 100) -> Iterator[Page[School]]:
        path = self._path("schools", limit=page_size)
        return self._pages(path, _Call("the district's schools"), School, entity="School")

    # --- events -------------------------------------------------------------------------

    def latest_event_id(self) -> str:
        """The newest event's id, or "" when the feed is empty (read before a full sync).

        EventsNotEnabledError when the district has not enabled the Events API.
        """
        path = self._path("events", ending_before="last", limit=1)
        body = self._get(path, _Call("the newest Clever event", events=True))
        data = body.get("data")
        if not isinstance(data, list):
            raise CleverResponseError("Clever's events answer has no 'data' array")
        if not data:
            return ""
        item = data[-1].get("data") if isinstance(data[-1], dict) else None
        if not isinstance(item, dict) or not item.get("id"):
            raise CleverResponseError("Clever's newest event has no id")
        return str(item["id"])

    def events(self, school_id: str, *, after: str | None, page_size: int) -> Iterator[Page[Event]]:
        """The school's user and section events after ``after`` (from the start when empty)."""
        params: dict[str, Any] = {"school": school_id, "limit": page_size}
        if after:
            params["starting_after"] = after
        path = self._path("events", **params) + "&record_type=users&record_type=sections"
        call = _Call(f"events of Clever school {school_id}", events=True, cursor=after or None)
        # No end confirmation: the stored cursor is the last event applied, so a feed that
        # ends early only leaves the rest for the next run.
        return self._pages(path, call, Event, entity="Event", confirm_end=False)

    # --- paging -------------------------------------------------------------------------

    def _pages(
        self, first: str, call: _Call, model: type[T], *, entity: str, confirm_end: bool = True
    ) -> Iterator[Page[T]]:
        for raw in self._raw_pages(first, call, f"{entity.lower()}s", confirm_end=confirm_end):
            page = self._page(raw.records, model, entity, None)
            page.failures[:0] = raw.failures
            page.last_id = raw.last_id
            yield page

    def _raw_pages(
        self, first: str, call: _Call, what: str, *, confirm_end: bool = True
    ) -> Iterator[RawPage]:
        paginator = CursorPaginator(first, what=what, confirm_end=confirm_end)
        while paginator.next_path is not None:
            confirming = paginator.confirming
            try:
                body = self._get(paginator.next_path, call)
            except (CleverTransientError, CleverResponseError, CleverRequestError) as exc:
                if not confirming:
                    raise
                raise CleverIncompleteListError(
                    f"Clever's {what} list ended after a full or empty page, and its end could "
                    f"not be confirmed ({exc})"
                ) from exc
            items = body.get("data")
            if not isinstance(items, list):
                raise CleverResponseError(f"Clever's {what} page has no 'data' array")
            page = RawPage()
            for item in items:
                raw = item.get("data") if isinstance(item, dict) else None
                if not isinstance(raw, dict):
                    page.failures.append(RecordError("", f"an entry of {what} is not an object"))
                    continue
                if isinstance(raw.get("id"), str):
                    page.last_id = raw["id"]
                page.records.append(raw)
            paginator.advance(body, page.last_id)
            if confirming and not items:
                continue  # the end is confirmed; nothing to hand on
            if confirming:
                logger.warning(
                    "Clever's list of %s ended early (a full or empty page without a next "
                    "link); the request confirming its end found more, so paging goes on",
                    call.what,
                    extra={"PagesRead": paginator.pages},
                )
            yield page

    def _page(
        self, raws: list[dict[str, Any]], model: type[T], entity: str, role: str | None
    ) -> Page[T]:
        page: Page[T] = Page()
        unknown: set[str] = set()
        for raw in raws:
            try:
                record = parse_event(raw) if model is Event else parse(model, raw)
            except RecordError as exc:
                page.failures.append(exc)
                continue
            if (
                role is not None
                and isinstance(record, User)
                and getattr(record.roles, role) is None
            ):
                page.off_role += 1  # `next` links may not carry the role filter
                continue
            if model is not Event:
                unknown |= unknown_fields(record)
            page.records.append(record)  # type: ignore[arg-type]
        self.field_report.observe(entity, unknown)
        return page

    # --- one request --------------------------------------------------------------------

    def _get(self, path: str, call: _Call) -> dict[str, Any]:
        try:
            return self._retrying(self._get_once, path, call)
        except CleverRateLimitedError:
            raise  # Clever is up, only busy
        except CleverTransientError as exc:
            breaker = self._breaker
            if breaker is not None and breaker.error is None and not self._clever_answers():
                breaker.trip(str(exc))
            raise

    def _clever_answers(self) -> bool:
        """Whether Clever answers at all: one request, not retried, to a district-wide
        endpoint. A request that failed through every retry may concern one school alone
        (a 500 on its pages): that must not stop the district's other schools."""
        call = _Call("the district (checking that Clever answers)")
        try:
            response = self._send(self._path("districts"), self._tokens.token(), call)
        except CleverTransientError:
            return False
        except CleverError:
            return True  # an answer, if not a useful one
        return response.status_code < 500

    def _get_once(self, path: str, call: _Call) -> dict[str, Any]:
        if self._breaker is not None:
            self._breaker.check()  # another school may have found Clever down meanwhile
        if self._checkpoint is not None:
            self._checkpoint(0)
        token = self._tokens.token()
        response = self._send(path, token, call)
        if response.status_code == 401:
            # The token was revoked or rotated: drop it and try once with a fresh one.
            self._tokens.invalidate(token)
            response = self._send(path, self._tokens.token(), call)
            if response.status_code == 401:
                raise CleverAuthError(
                    f"Clever refused a freshly fetched token for {call.what} (HTTP 401); "
                    "the district may have disconnected the app",
                    status=401,
                )
        return self._interpret(response, call)

    def _send(self, path: str, token: str, call: _Call) -> httpx.Response:
        url = self._url(path)
        self._pacer.acquire(wait=self._wait_for)
        self.requests += 1
        limit = limit_of(path) or 1
        try:
            response = request_within(
                self._http,
                "GET",
                url,
                seconds=self._timeout,
                max_bytes=max(_MIN_BODY_BYTES, limit * _BYTES_PER_RECORD),
                headers={"Authorization": f"Bearer {token}"},
            )
        except BodyTooLargeError as exc:
            raise CleverIncompleteListError(
                f"Clever's answer to {call.what} is larger than {exc.limit} bytes for a page "
                f"of {limit} (a protocol error); it was not read"
            ) from None
        except httpx.TimeoutException:
            raise CleverTransientError(
                f"Clever timed out answering {call.what} (no complete answer within "
                f"CleverSync__Clever__TimeoutSeconds={self._timeout:g})"
            ) from None
        except httpx.TransportError as exc:
            raise CleverTransientError(
                f"Clever could not be reached for {call.what} ({type(exc).__name__})"
            ) from None
        self._pacer.observe(response.headers)
        return response

    def _interpret(self, response: httpx.Response, call: _Call) -> dict[str, Any]:
        status = response.status_code
        if status == 200:
            try:
                body = json.loads(response.content)  # bytes: no decode to str first
            except ValueError:
                raise CleverResponseError(
                    f"Clever answered {call.what} with a body that is not JSON"
                ) from None
            if not isinstance(body, dict):
                raise CleverResponseError(f"Clever answered {call.what} with a non-object body")
            self._check_version(body)
            return body
        if status == 429:
            raise CleverRateLimitedError(
                f"Clever rate-limited {call.what} (HTTP 429)",
                retry_after=self._retry_after(response),
            )
        if status >= 500 and status != 501:
            raise CleverTransientError(
                f"Clever failed answering {call.what} (HTTP {status})", status=status
            )
        if call.events and status in (403, 404):
            if call.cursor and status == 404:
                raise EventCursorExpiredError(
                    f"Clever no longer has event {call.cursor} (HTTP 404): the cursor is older "
                    "than Clever keeps events",
                    status=status,
                )
            raise EventsNotEnabledError(
                f"the Events API is not enabled for this district (HTTP {status} on {call.what})",
                status=status,
            )
        if status == 404 and call.school_id is not None:
            raise SchoolNotSharedError(
                f"Clever does not share school {call.school_id} with this app (HTTP 404 on "
                f"{call.what}); check the school's Clever id and the district's sharing rules",
                status=status,
            )
        if status == 404:
            raise CleverNotFoundError(f"Clever has no {call.what} (HTTP 404)", status=status)
        if status == 403:
            raise CleverAuthError(
                f"Clever refused access to {call.what} (HTTP 403): the app may lack a scope",
                status=status,
            )
        if status == 413:
            raise CleverRequestError(
                f"Clever refused the page size for {call.what} (HTTP 413); lower "
                "CleverSync__Sync__PageSize (at most 10000)",
                status=status,
            )
        raise CleverRequestError(f"Clever answered {call.what} with HTTP {status}", status=status)

    def _retry_after(self, response: httpx.Response) -> float | None:
        if not self._respect_retry_after:
            return None
        header = response.headers.get("retry-after")
        if header is not None:
            return retry_after_seconds(header, now=self._clock(), cap=self._max_wait)
        reset = self._pacer.seconds_until_reset(response.headers)
        return None if reset is None else min(reset, self._max_wait)

    def _backoff(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, CleverRateLimitedError) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_wait)
        base = self._policy.backoff_base
        if base <= 0:
            return 0.0
        wait: float = base * 2 ** min(state.attempt_number - 1, 30) + random.uniform(0, base / 2)
        return min(wait, self._max_wait)

    def _log_retry(self, state: RetryCallState) -> None:
        call: _Call = state.args[1]
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "Retrying %s in %.1f s (attempt %d of %d failed: %s)",
            call.what,
            wait,
            state.attempt_number,
            self._policy.max_attempts + 1,
            exc,
            extra={"Attempt": state.attempt_number, "WaitSeconds": round(wait, 2)},
        )

    # --- URLs ---------------------------------------------------------------------------

    def _path(self, resource: str, **params: Any) -> str:
        return f"/{self._version}/{resource}?{urlencode(params)}"

    def _url(self, path: str) -> str:
        url = urljoin(self._base + "/", path)
        if _origin(url) != self._origin:
            # A `next` link to another host would carry the district's token there.
            raise CleverResponseError(
                f"Clever's paging link points at another host ({urlsplit(url).netloc}); refused"
            )
        return url

    def _check_version(self, body: dict[str, Any]) -> None:
        if self._version_warned:
            return
        for link in body.get("links") or []:
            uri = link.get("uri") if isinstance(link, dict) else None
            match = _VERSION_IN_PATH.match(urlsplit(uri).path) if isinstance(uri, str) else None
            if match and match.group(1) != self._version:
                self._version_warned = True
                logger.warning(
                    "Clever answered with API version %s, not the configured %s "
                    "(CleverSync__Clever__ApiVersion)",
                    match.group(1),
                    self._version,
                )
                return


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


def _origin(url: str) -> tuple[str, str]:
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


__all__ = [
    "CleverClient",
    "CleverError",
    "DistrictBreaker",
    "FieldReport",
    "Page",
    "RunBreakers",
    "build_http_client",
]
