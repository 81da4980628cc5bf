"""The Clever Data and Events API client: paged, paced, retried, and typed.

Pages are streamed to the caller one at a time (a school is never buffered whole), and a
data list is read to its confirmed end (see ``paging``). Each request takes the district's
token, waits its turn under the token's rate limit, must finish, body included, within
``Clever__TimeoutSeconds``, and is retried on tenacity for timeouts, connection errors, 5xx
and 429 (honouring ``Retry-After`` or ``X-Ratelimit-Reset``, at most
``Retry__MaxWaitSeconds``; ``cleversync.retrying``). A 401 drops the token and retries once
with a fresh one. Once a district's requests failed through every retry, the rest of the run
does not try again (``DistrictBreaker``). Other answers become the typed errors of
``cleversync.errors`` that the sync acts on (``http.error_for``); pages are parsed in
``pages``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
from tenacity import RetryCallState

from cleversync import runtally
from cleversync.clever.breaker import DistrictBreaker
from cleversync.clever.deadline import BodyTooLargeError
from cleversync.clever.http import Call, error_for, origin, retry_after_seconds, send
from cleversync.clever.models import CleverModel, Event, School, Section, User
from cleversync.clever.pages import FieldReport, Page, RawPage, checked_page, parse_raw, raw_page
from cleversync.clever.paging import CursorPaginator, limit_of
from cleversync.clever.ratelimit import RateLimitPacer
from cleversync.clever.tokens import TokenSource
from cleversync.errors import (
    CleverError,
    CleverIncompleteListError,
    CleverRateLimitedError,
    CleverRequestError,
    CleverResponseError,
    CleverTransientError,
)
from cleversync.retrying import retrying
from cleversync.settings import Settings
from cleversync.threads import bound

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=CleverModel)
_VERSION_IN_PATH = re.compile(r"^/(v\d+(?:\.\d+)?)/")

# The most bytes a page may take, per record asked for (with a floor): a page far past its
# limit is refused while it streams in, before parsing it could exhaust memory. Generous:
# a record is a few kilobytes, a section listing a thousand students some thirty.
_BYTES_PER_RECORD = 256 * 1024
_MIN_BODY_BYTES = 1024 * 1024


# kind -> (resource under /schools/{id}/, role filter, model, entity name)
_KINDS: dict[str, tuple[str, str | None, type[CleverModel], str]] = {
    "students": ("users", "student", User, "Student"),
    "teachers": ("users", "teacher", User, "Teacher"),
    "sections": ("sections", None, Section, "Section"),
}


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
        prefetch: bool = False,
    ) -> None:
        """``wait(seconds)`` does every wait (retries, rate limits; ``sleep`` by default)
        and is also called with 0 before each request, so the caller may renew its lease or
        stop there; ``breaker`` shares "Clever is down" with the run's other clients.

        ``prefetch``: while the caller works on a page, the next one is already being
        fetched (one page ahead, on a thread of the list's own), so waiting for Clever
        overlaps parsing and writing. Requests stay one at a time and in order; an error
        fetching a page is raised where that page is asked for."""
        self._prefetch = prefetch
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
        self._clock = clock
        self.field_report = field_report or FieldReport()
        self._origin = origin(self._base)
        self._version_warned = False
        self.requests = 0
        # 2, 4, 8 ... s plus up to half the base of jitter; a 429's own wait when it has one
        self._retrying = retrying(
            self._policy,
            retry_on=lambda exc: isinstance(exc, CleverTransientError),
            jitter=0.5,
            sleep=self._wait_for,
            before_sleep=self._log_retry,
            max_wait=self._max_wait,
            wait_for=lambda e: e.retry_after if isinstance(e, CleverRateLimitedError) else None,
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
        resource, role, _, entity = _KINDS[kind]
        params: dict[str, Any] = {"role": role} if role else {}
        path = self._path(f"schools/{school_id}/{resource}", **params, limit=page_size)
        call = Call(f"{kind} of Clever school {school_id}", school_id=school_id, entity=entity)
        return self._raw_pages(path, call, kind)

    def parse_records(self, kind: str, raws: list[dict[str, Any]]) -> Page[dict[str, Any]]:
        """The records of ``kind`` that fit its model, as dicts (``pages.checked_page``;
        unreadable ones as failures, other roles left out)."""
        _, role, model, entity = _KINDS[kind]
        return checked_page(raws, model, entity, role, self.field_report)

    def _parsed(self, kind: str, school_id: str, page_size: int) -> Iterator[Page[Any]]:
        _, role, model, entity = _KINDS[kind]
        for raw in self.raw_pages(kind, school_id, page_size=page_size):
            yield parse_raw(raw, model, entity, role, self.field_report)

    def schools(self, *, page_size: int = 100) -> Iterator[Page[School]]:
        path = self._path("schools", limit=page_size)
        return self._pages(path, Call("the district's schools"), School, entity="School")

    # --- events -------------------------------------------------------------------------

    def latest_event_id(self) -> str:
        """The newest event's id, or "" when the feed is empty (read before a full sync).

        EventsNotEnabledError when the district has not enabled the Events API.
        """
        path = self._path("events", ending_before="last", limit=1)
        body = self._get(path, Call("the newest Clever event", events=True))
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
        call = Call(f"events of Clever school {school_id}", events=True, cursor=after or None)
        # No end confirmation: the stored cursor is the last event applied, so a feed that
        # ends early only leaves the rest for the next run.
        return self._pages(path, call, Event, entity="Event", confirm_end=False)

    # --- paging -------------------------------------------------------------------------

    def _pages(
        self, first: str, call: Call, model: type[T], *, entity: str, confirm_end: bool = True
    ) -> Iterator[Page[T]]:
        for raw in self._raw_pages(first, call, f"{entity.lower()}s", confirm_end=confirm_end):
            yield parse_raw(raw, model, entity, None, self.field_report)

    def _raw_pages(
        self, first: str, call: Call, what: str, *, confirm_end: bool = True
    ) -> Iterator[RawPage]:
        paginator = CursorPaginator(first, what=what, confirm_end=confirm_end)
        ahead: Future[dict[str, Any]] | None = None
        pool = (
            ThreadPoolExecutor(1, thread_name_prefix="clever-prefetch") if self._prefetch else None
        )
        try:
            while paginator.next_path is not None:
                confirming = paginator.confirming
                try:
                    if ahead is not None:
                        body, ahead = ahead.result(), None
                    else:
                        body = self._get(paginator.next_path, call)
                except (CleverTransientError, CleverResponseError, CleverRequestError) as exc:
                    if not confirming:
                        raise
                    raise CleverIncompleteListError(
                        f"Clever's {what} list ended after a full or empty page, and its end "
                        f"could not be confirmed ({exc})"
                    ) from exc
                items = body.get("data")
                if not isinstance(items, list):
                    raise CleverResponseError(f"Clever's {what} page has no 'data' array")
                page = raw_page(items, what)
                paginator.advance(body, page.last_id)
                if pool is not None and paginator.next_path is not None:
                    # The caller's context (log dimensions, the invocation) goes along.
                    context = contextvars.copy_context()
                    ahead = pool.submit(context.run, bound(self._get), paginator.next_path, call)
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
        finally:
            if pool is not None:
                # The caller stopped early (or failed): a request already under way ends
                # before the list does, so nothing of this list outlives it.
                if ahead is not None:
                    ahead.cancel()
                pool.shutdown(wait=True)

    # --- one request --------------------------------------------------------------------

    def _get(self, path: str, call: Call) -> dict[str, Any]:
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
        call = Call("the district (checking that Clever answers)")
        try:
            response = self._send(self._path("districts"), self._tokens.token(), call)
        except CleverTransientError:
            return False
        except CleverError:
            return True  # an answer, if not a useful one
        return response.status_code < 500

    def _get_once(self, path: str, call: Call) -> dict[str, Any]:
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
        return self._interpret(response, call)

    def _send(self, path: str, token: str, call: Call) -> httpx.Response:
        url = self._url(path)
        waits, waited = self._pacer.acquire(wait=self._wait_for)
        if waits:
            runtally.count_rate_limit_wait(waited, call.entity, waits=waits)
        self.requests += 1
        limit = limit_of(path) or 1
        try:
            response = send(
                self._http,
                "GET",
                url,
                what=call.what,
                seconds=self._timeout,
                max_bytes=max(_MIN_BODY_BYTES, limit * _BYTES_PER_RECORD),
                headers={"Authorization": f"Bearer {token}"},
            )
        except BodyTooLargeError as exc:
            raise CleverIncompleteListError(
                f"Clever's answer to {call.what} is larger than {exc.limit} bytes for a page "
                f"of {limit} (a protocol error); it was not read"
            ) from None
        self._pacer.observe(response.headers)
        return response

    def _interpret(self, response: httpx.Response, call: Call) -> dict[str, Any]:
        status = response.status_code
        retry_after = self._retry_after(response) if status == 429 else None
        error = error_for(status, call, retry_after=retry_after)
        if error is not None:
            raise error
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

    def _retry_after(self, response: httpx.Response) -> float | None:
        if not self._respect_retry_after:
            return None
        header = response.headers.get("retry-after")
        if header is not None:
            return retry_after_seconds(header, now=self._clock(), cap=self._max_wait)
        return self._pacer.seconds_until_reset(response.headers)  # capped by the pacer

    def _log_retry(self, state: RetryCallState) -> None:
        call: Call = state.args[1]
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        runtally.count_retry(call.entity)
        if isinstance(exc, CleverRateLimitedError):
            runtally.count_rate_limit_wait(wait, call.entity)
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
        if origin(url) != self._origin:
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


__all__ = [
    "CleverClient",
    "CleverError",
]
