"""Clever's cursor paging: windows over sorted id lists and the relative links of a page."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
LAST = "last"  # ending_before=last: the final records, oldest first


class SortedIds:
    """Ids kept in ascending order, so a page is a bisect and a slice, not a scan."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, object_id: str) -> None:
        ids = self.ids
        if not ids or ids[-1] < object_id:  # the usual case: ids are made ascending
            ids.append(object_id)
            return
        index = bisect.bisect_left(ids, object_id)
        if index == len(ids) or ids[index] != object_id:
            ids.insert(index, object_id)

    def discard(self, object_id: str) -> None:
        index = bisect.bisect_left(self.ids, object_id)
        if index < len(self.ids) and self.ids[index] == object_id:
            del self.ids[index]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Window:
    """One page of ids and whether records exist beyond either end of it."""

    ids: list[str]
    more_after: bool
    more_before: bool


def window(
    ids: Sequence[str],
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
    keep: Callable[[str], bool] | None = None,
) -> Window:
    """Select a page the way Clever's cursors do: by comparing ids, not by position.

    ``starting_after`` takes the first ``limit`` ids above it (an id that no longer exists,
    or is older than everything kept, still works: paging goes on from the next id up);
    ``ending_before`` alone takes the last ``limit`` ids below it (``last``: below nothing),
    still in ascending order. ``keep`` filters ids (used by the events feed).
    """
    low = bisect.bisect_right(ids, starting_after) if starting_after else 0
    if ending_before is None or ending_before == LAST:
        high = len(ids)
    else:
        high = bisect.bisect_left(ids, ending_before)
    backwards = ending_before is not None and starting_after is None
    if keep is None:
        if backwards:
            start = max(low, high - limit)
            return Window(list(ids[start:high]), high < len(ids), start > 0)
        end = min(high, low + limit)
        return Window(list(ids[low:end]), end < len(ids), low > 0)
    picked: list[str] = []
    if backwards:
        index = high - 1
        while index >= low and len(picked) < limit:
            if keep(ids[index]):
                picked.append(ids[index])
            index -= 1
        picked.reverse()
        more_before = any(keep(ids[i]) for i in range(index, -1, -1))
        more_after = any(keep(ids[i]) for i in range(high, len(ids)))
        return Window(picked, more_after, more_before)
    index = low
    while index < high and len(picked) < limit:
        if keep(ids[index]):
            picked.append(ids[index])
        index += 1
    more_after = any(keep(ids[i]) for i in range(index, len(ids)))
    more_before = any(keep(ids[i]) for i in range(low - 1, -1, -1))
    return Window(picked, more_after, more_before)


def page_links(
    path: str,
    raw_query: str,
    params: list[tuple[str, str]],
    page: Window,
    limit: int,
    *,
    starting_after: str | None,
    ending_before: str | None,
    self_with_question_mark: bool = False,
    full_last_page_next: Callable[[], bool] | None = None,
) -> list[dict[str, str]]:
    """``self``, ``prev`` and ``next`` links as Clever writes them: relative, params carried.

    ``next``/``prev`` repeat the request's parameters in their order, minus its cursors, plus
    the new cursor. ``next`` is left out when no record follows the page (an exactly full
    last page included, unless ``full_last_page_next`` says to emit it anyway); ``prev``
    appears on every non-empty page reached with ``starting_after``. On ``ending_before``
    pages it is the other way round: ``next`` always, ``prev`` only when records precede.
    """
    self_uri = path + ("?" + raw_query if raw_query or self_with_question_mark else "")
    links = [{"rel": "self", "uri": self_uri}]
    if not page.ids:
        return links
    carried = [
        (key, value) for key, value in params if key not in ("starting_after", "ending_before")
    ]
    backwards = ending_before is not None and starting_after is None
    if backwards:
        show_prev, show_next = page.more_before, True
    else:
        show_prev = starting_after is not None
        show_next = page.more_after
        if not show_next and len(page.ids) == limit and full_last_page_next is not None:
            show_next = full_last_page_next()
    if show_prev:
        links.append({"rel": "prev", "uri": _uri(path, [*carried, ("ending_before", page.ids[0])])})
    if show_next:
        links.append(
            {"rel": "next", "uri": _uri(path, [*carried, ("starting_after", page.ids[-1])])}
        )
    return links


def _uri(path: str, params: list[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(params, quote_via=quote)}"
