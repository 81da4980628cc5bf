"""The Clever Data and Events API client: paged, paced, retried, and typed.

Pages are streamed to the caller one at a time (a school is never buffered whole). Each
request takes the district's token, waits its turn under the token's rate limit, and is
retried on tenacity for timeouts, connection errors, 5xx and 429 (honouring ``Retry-After``
or ``X-Ratelimit-Reset``). A 401 drops the token and retries once with a fresh one. Other
answers become the typed errors of ``cleversync.errors`` that the sync acts on.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

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
from cleversync.clever.paging import CursorPaginator
from cleversync.clever.ratelimit import RateLimitPacer
from cleversync.clever.tokens import TokenSource
from cleversync.errors import (
    CleverAuthError,
    CleverError,
    CleverNotFoundError,
    CleverRateLimitedError,
    CleverRequestError,
    CleverResponseError,
    CleverTransientError,
    EventCursorExpiredError,
    EventsNotEnabledError,
    RecordError,
    SchoolNotSharedError,
)
from cleversync.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=CleverModel)
_VERSION_IN_PATH = re.compile(r"^/(v\d+(?:\.\d+)?)/")


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
    ) -> None:
        self._http = http
        self._base = settings.clever.api_base_url.rstrip("/")
        self._version = settings.clever.api_version.strip("/")
        self._policy = settings.retry.clever_api
        self._respect_retry_after = settings.retry.rate_limit_respect_retry_after
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
            wait=self._wait,
            sleep=sleep,
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
        return self._pages(path, call, Event, entity="Event")

    # --- paging -------------------------------------------------------------------------

    def _pages(self, first: str, call: _Call, model: type[T], *, entity: str) -> Iterator[Page[T]]:
        for raw in self._raw_pages(first, call, entity.lower()):
            page = self._page(raw.records, model, entity, None)
            page.failures[:0] = raw.failures
            page.last_id = raw.last_id
            yield page

    def _raw_pages(self, first: str, call: _Call, what: str) -> Iterator[RawPage]:
        paginator = CursorPaginator(first)
        while paginator.next_path is not None:
            body = self._get(paginator.next_path, call)
            paginator.advance(body)
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
            if role is not None and getattr(record.roles, role) is None:  # type: ignore[attr-defined]
                page.off_role += 1  # `next` links may not carry the role filter
                continue
            if model is not Event:
                unknown |= unknown_fields(record)
            page.records.append(record)  # type: ignore[arg-type]
        self.field_report.observe(entity, unknown)
        return page

    # --- one request --------------------------------------------------------------------

    def _get(self, path: str, call: _Call) -> dict[str, Any]:
        return self._retrying(self._get_once, path, call)

    def _get_once(self, path: str, call: _Call) -> dict[str, Any]:
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
        self._pacer.acquire()
        self.requests += 1
        try:
            response = self._http.get(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException:
            raise CleverTransientError(f"Clever timed out answering {call.what}") from None
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
        if header:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass  # an HTTP date: fall through to Clever's own reset header
        return self._pacer.seconds_until_reset(response.headers)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, CleverRateLimitedError) and exc.retry_after is not None:
            return exc.retry_after
        base = self._policy.backoff_base
        if base <= 0:
            return 0.0
        return base * 2 ** (state.attempt_number - 1) + random.uniform(0, base / 2)

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


__all__ = ["CleverClient", "CleverError", "FieldReport", "Page", "build_http_client"]
