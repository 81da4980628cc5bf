"""The Data API v3.0 and Events API endpoints, answered from one district's state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

from cleversync.sandbox.faults import FaultKind, FaultSet
from cleversync.sandbox.ids import OBJECT_ID
from cleversync.sandbox.messages import ApiError, NoRouteError, Request, Response
from cleversync.sandbox.paging import DEFAULT_LIMIT, LAST, MAX_LIMIT, Window, page_links, window
from cleversync.sandbox.store import ROLES, DistrictState, user_schools

_T = TypeVar("_T")

RECORD_TYPES = ("users", "sections", "schools", "terms", "courses", "districts", "resources")
_NOT_FOUND = "Resource not found"
_EMPTY = Window([], more_after=False, more_before=False)

# Which single-object links each kind carries (Clever also links terms, courses and
# contacts, which the sandbox does not serve).
_OBJECT_LINKS = {
    "schools": ("district", "sections", "users"),
    "users": ("district", "sections", "schools"),
    "sections": ("district", "school", "users"),
    "districts": (),
}


class DataApi:
    """Routes ``/v3.0/...`` for a token's district. Runs under the sandbox's state lock."""

    def __init__(
        self,
        states: Mapping[str, DistrictState],
        lock: threading.RLock,
        faults: FaultSet,
        clock: Callable[[], float],
    ) -> None:
        self._states = states
        self._lock = lock
        self._faults = faults
        self._clock = clock

    def handle(self, request: Request, district_id: str) -> Response:
        if request.method != "GET":  # the API is read-only; Express answers "Cannot POST"
            raise NoRouteError
        parts = request.path.split("/")[2:]
        with self._lock:
            return self._dispatch(self._states[district_id], request, parts)

    def _dispatch(self, state: DistrictState, request: Request, parts: list[str]) -> Response:
        match parts:
            case ["districts"]:
                table = {state.id: state.district}
                return self._list(request, [state.id], table, "districts", links_first=False)
            case ["schools"]:
                return self._list(
                    request, state.school_ids(), state.schools, "schools", links_first=False
                )
            case ["users"]:
                ids = state.ids(("users", _role(request)))
                return self._list(request, ids, state.users, "users", links_first=True)
            case ["sections"]:
                return self._list(
                    request, state.ids(("sections",)), state.sections, "sections", links_first=True
                )
            case ["events"]:
                return self._events(state, request)
            case ["events", event_id]:
                return self._event(state, request, event_id)
            case [("districts" | "schools" | "users" | "sections") as kind, object_id]:
                return _single(request, kind, _found(state.object(kind, object_id)))
            case ["schools", school_id, "users"]:
                _found(state.schools.get(school_id))
                primary = _flag(request, "primary")
                ids = state.ids(("school_users", school_id, _role(request), primary))
                return self._list(request, ids, state.users, "users", links_first=True)
            case ["schools", school_id, "sections"]:
                _found(state.schools.get(school_id))
                ids = state.ids(("school_sections", school_id))
                return self._list(request, ids, state.sections, "sections", links_first=True)
            case [("schools" | "users" | "sections") as kind, object_id, "district"]:
                _found(state.object(kind, object_id))
                return _single(request, "districts", state.district)
            case ["sections", section_id, "school"]:
                section = _found(state.sections.get(section_id))
                return _single(request, "schools", _found(state.schools.get(section["school"])))
            case ["sections", section_id, "users"]:
                section = _found(state.sections.get(section_id))
                members = {*section.get("teachers", ()), *section.get("students", ())}
                role = _role(request)
                ids = sorted(
                    member
                    for member in members
                    if member in state.users
                    and (role is None or role in state.users[member]["roles"])
                )
                return self._list(request, ids, state.users, "users", links_first=True)
            case ["users", user_id, "sections"]:
                _found(state.users.get(user_id))
                ids = state.sections_of_user(user_id)
                return self._list(request, ids, state.sections, "sections", links_first=True)
            case ["users", user_id, "schools"]:
                user = _found(state.users.get(user_id))
                ids = sorted(s for s in user_schools(user) if s in state.schools)
                return self._list(request, ids, state.schools, "schools", links_first=True)
        raise NoRouteError

    def _list(
        self,
        request: Request,
        ids: Sequence[str],
        table: Mapping[str, dict[str, Any]],
        kind: str,
        *,
        links_first: bool,
    ) -> Response:
        limit, after, before = paging_params(request)
        size = self._page_size(request, limit)
        page = window(ids, size, after, before) if size else _EMPTY
        items = [
            {"data": table[object_id], "uri": f"/v3.0/{kind}/{object_id}"} for object_id in page.ids
        ]
        links = self._links(request, page, limit, after, before, question_mark=False)
        return Response(
            200, {"links": links, "data": items} if links_first else {"data": items, "links": links}
        )

    def _page_size(self, request: Request, limit: int) -> int:
        """How many records a list page holds: ``limit``, none when an ``empty_page`` fault
        fires, twice ``limit`` when an ``oversize_page`` one does."""
        if self._take(request, FaultKind.EMPTY_PAGE):
            return 0
        if self._take(request, FaultKind.OVERSIZE_PAGE):
            return limit * 2
        return limit

    def _links(
        self,
        request: Request,
        page: Window,
        limit: int,
        after: str | None,
        before: str | None,
        *,
        question_mark: bool,
    ) -> list[dict[str, str]]:
        def full_last_page_next() -> bool:
            return bool(self._take(request, FaultKind.FULL_LAST_PAGE_NEXT))

        links = page_links(
            request.path,
            request.query,
            request.params,
            page,
            limit,
            starting_after=after,
            ending_before=before,
            self_with_question_mark=question_mark,
            full_last_page_next=full_last_page_next,
        )
        if any(link["rel"] == "next" for link in links) and self._take(
            request, FaultKind.LOSE_NEXT
        ):
            links = [link for link in links if link["rel"] != "next"]
        if (
            request.param("role") is not None
            and any(link["rel"] == "next" for link in links)
            and self._take(request, FaultKind.DROP_ROLE_IN_NEXT)
        ):
            links = [
                _without_param(link, "role") if link["rel"] == "next" else link for link in links
            ]
        return links

    def _take(self, request: Request, kind: FaultKind) -> bool:
        return bool(self._faults.take(request.method, request.path, request.query, (kind,)))

    def _events(self, state: DistrictState, request: Request) -> Response:
        _require_events(state)
        limit, after, before = paging_params(request)
        record_types = request.params_named("record_type")
        unknown = [value for value in record_types if value not in RECORD_TYPES]
        if unknown:
            raise ApiError(400, f"invalid record_type: {unknown[0]}")
        school = request.param("school") or None
        state.events.prune(self._clock())
        # An expired cursor: real Clever answered 200 from its oldest kept event (the
        # window below does that); a 404 is scriptable.
        expired = after is not None and state.events.is_expired(after)
        if expired and self._take(request, FaultKind.EXPIRED_CURSOR_404):
            raise ApiError(404, _NOT_FOUND)
        size = self._page_size(request, limit)
        events, page = (
            state.events.page(size, after, before, school, record_types) if size else ([], _EMPTY)
        )
        items = [{"data": event.to_json(), "uri": f"/v3.0/events/{event.id}"} for event in events]
        # The recorded first events page has self "/v3.0/events?" even with no query.
        links = self._links(request, page, limit, after, before, question_mark=True)
        return Response(200, {"data": items, "links": links})

    def _event(self, state: DistrictState, request: Request, event_id: str) -> Response:
        _require_events(state)
        state.events.prune(self._clock())
        event = _found(state.events.get(event_id))
        return Response(
            200, {"data": event.to_json(), "links": [{"rel": "self", "uri": request.path}]}
        )


def paging_params(request: Request) -> tuple[int, str | None, str | None]:
    """``limit`` (default 100; 400 if not a positive integer, 413 above 10000) and cursors."""
    raw = request.param("limit")
    limit = DEFAULT_LIMIT
    if raw is not None and raw != "":
        try:
            limit = int(raw)
        except ValueError:
            raise ApiError(400, f"limit must be an integer, got {raw!r}") from None
        if limit < 1:
            raise ApiError(400, "limit must be at least 1")
        if limit > MAX_LIMIT:
            raise ApiError(413, f"limit must be at most {MAX_LIMIT}")
    after = request.param("starting_after") or None
    before = request.param("ending_before") or None
    if after is not None and not OBJECT_ID.fullmatch(after):
        raise ApiError(400, f"starting_after is not a valid id: {after!r}")
    if before is not None and before != LAST and not OBJECT_ID.fullmatch(before):
        raise ApiError(400, f"ending_before is not a valid id: {before!r}")
    return limit, after, before


def _role(request: Request) -> str | None:
    role = request.param("role")
    if role is None or role == "":
        return None
    if role not in ROLES:
        raise ApiError(400, f"invalid role: {role!r}")
    return role


def _flag(request: Request, name: str) -> bool:
    value = request.param(name)
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    raise ApiError(400, f"{name} must be true or false")


def _require_events(state: DistrictState) -> None:
    if not state.events_enabled:
        if state.events_disabled_status == 404:
            raise ApiError(404, _NOT_FOUND)
        raise ApiError(
            state.events_disabled_status, "Events API is not enabled for this application"
        )


def _found(value: _T | None) -> _T:
    if value is None:
        raise ApiError(404, _NOT_FOUND)
    return value


def _single(request: Request, kind: str, obj: dict[str, Any]) -> Response:
    base = f"/v3.0/{kind}/{obj['id']}"
    links = [{"rel": "self", "uri": request.path}]
    links += [{"rel": rel, "uri": f"{base}/{rel}"} for rel in _OBJECT_LINKS[kind]]
    return Response(200, {"data": obj, "links": links})


def _without_param(link: dict[str, str], name: str) -> dict[str, str]:
    path, _, query = link["uri"].partition("?")
    kept = [(key, value) for key, value in parse_qsl(query, keep_blank_values=True) if key != name]
    return {"rel": link["rel"], "uri": f"{path}?{urlencode(kept, quote_via=quote)}"}
