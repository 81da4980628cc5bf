"""Cursor paging as Clever does it: follow ``rel: next`` links; stop on no ``next`` or no data.

A small state object with no I/O. A ``next`` link that was already followed is a loop, not
an endless sync: it raises.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cleversync.errors import CleverResponseError


class CursorPaginator:
    """Yields the path of each page to fetch; feed it each page's body with ``advance``."""

    def __init__(self, first: str) -> None:
        self.next_path: str | None = first
        self._seen: set[str] = {first}
        self.pages = 0

    def advance(self, body: dict[str, Any]) -> None:
        """Read the page's links; ``next_path`` becomes the next page, or None at the end."""
        self.pages += 1
        data = body.get("data")
        link = next_link(body)
        if not data or link is None:
            self.next_path = None
            return
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
