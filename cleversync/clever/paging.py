"""Cursor paging as Clever does it: follow ``rel: next`` links to the list's confirmed end.

A small state object with no I/O. A ``next`` link that was already followed is a loop, not
an endless sync: it raises. A data list whose last page is full (as many records as the
``limit`` asked for) or empty may have ended early (real Clever has sent such pages
mid-list), so its end is confirmed with one more request, ``starting_after`` the last id
seen; only an empty answer to that request ends the list. A page with more records than
the limit is a protocol error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from cleversync.errors import CleverIncompleteListError, CleverResponseError


class CursorPaginator:
    """Yields the path of each page to fetch; feed it each page's body with ``advance``.

    ``confirming`` says that ``next_path`` is the request confirming the list's end (the
    caller treats its failure as an incomplete list). ``confirm_end=False`` (the events
    feed) ends the list where Clever says it ends.
    """

    def __init__(self, first: str, *, what: str = "records", confirm_end: bool = True) -> None:
        self.next_path: str | None = first
        self._first = first
        self._what = what
        self._seen: set[str] = {first}
        self._confirm_end = confirm_end
        self._confirmed: set[str] = set()
        self.limit = limit_of(first)
        self.last_id: str | None = None
        self.confirming = False
        self.pages = 0

    def advance(self, body: dict[str, Any], last_id: str | None = None) -> None:
        """Read the page's links; ``next_path`` becomes the next page, or None at the end.

        ``last_id`` is the id of the page's last record (the confirmation's cursor).
        """
        self.pages += 1
        data = body.get("data")
        count = len(data) if isinstance(data, list) else 0
        if self.limit is not None and count > self.limit:
            raise CleverIncompleteListError(
                f"Clever sent {count} {self._what} on a page asked for {self.limit} "
                "(a protocol error); the rest of the list was not read"
            )
        confirming, self.confirming = self.confirming, False
        if last_id:
            self.last_id = last_id
        link = next_link(body)
        if count and link is not None:
            cursor = _cursor(link)
            if link in self._seen or cursor in self._seen:
                raise CleverResponseError(
                    f"Clever's paging repeats itself (next link {_path_only(link)} was already "
                    "followed); stopping instead of looping"
                )
            self._seen.add(link)
            if cursor:
                self._seen.add(cursor)
            self.next_path = link
            return
        self.next_path = None
        if confirming and not count:
            return  # the end is confirmed
        suspicious = count == 0 or count == self.limit
        if self._confirm_end and suspicious and self.last_id is not None:
            path = self.after(self.last_id)
            if path in self._confirmed:
                raise CleverResponseError(
                    f"Clever's paging repeats itself (the {self._what} after {self.last_id} "
                    "were already asked for); stopping instead of looping"
                )
            self._confirmed.add(path)
            self.next_path, self.confirming = path, True

    def after(self, last_id: str) -> str:
        """The first request's path (its filters and limit kept) from after ``last_id``."""
        parts = urlsplit(self._first)
        query = [
            (key, value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key not in ("starting_after", "ending_before")
        ]
        return f"{parts.path}?{urlencode([*query, ('starting_after', last_id)])}"


def limit_of(path: str) -> int | None:
    value = dict(parse_qsl(urlsplit(path).query)).get("limit")
    return int(value) if value and value.isdigit() else None


def next_link(body: dict[str, Any]) -> str | None:
    links = body.get("links")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("uri"):
            return str(link["uri"])
    return None


def _cursor(link: str) -> str | None:
    query = dict(parse_qsl(urlsplit(link).query))
    value = query.get("starting_after")
    return f"starting_after={value}" if value else None


def _path_only(link: str) -> str:
    return urlsplit(link).path
