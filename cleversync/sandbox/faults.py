"""Scripted faults: which requests they hit, how many times, and after how many matches."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    """What a fault does to a matching request."""

    STATUS = "status"  # answer `status` with `headers` and `body` instead
    RATE_LIMIT = "rate_limit"  # 429 with X-Ratelimit-* (remaining 0, reset at window end)
    DELAY = "delay"  # sleep `seconds`, then answer normally
    DROP = "drop"  # no complete answer: cut the body (`partial`) or close at once
    MALFORMED_JSON = "malformed_json"  # 200 whose body is not JSON
    EXTRA_FIELDS = "extra_fields"  # unknown `fields` added to every record
    DROP_ROLE_IN_NEXT = "drop_role_in_next"  # the next link loses role=
    FULL_LAST_PAGE_NEXT = "full_last_page_next"  # exactly full last page still gets a next
    EXPIRED_CURSOR_404 = "expired_cursor_404"  # expired event cursor answers 404, not 200
    BAD_VALUE = "bad_value"  # `value` put into `record_field` of matching records
    LOSE_NEXT = "lose_next"  # a page that has a next link loses it
    EMPTY_PAGE = "empty_page"  # a list page answers an empty `data` (only a self link)
    OVERSIZE_PAGE = "oversize_page"  # a list page holds up to twice the limit asked for
    TRICKLE = "trickle"  # the body is sent one byte every `seconds`


# Kinds decided when a request arrives; the others fire only when their situation arises
# (a next link carrying role=, an exactly full last page, an expired cursor, an answer
# holding the record a bad value is for, a page with a next link, a list page), so `times`
# and `after` count those situations rather than every matching request.
UPFRONT_KINDS = frozenset(
    {
        FaultKind.STATUS,
        FaultKind.RATE_LIMIT,
        FaultKind.DELAY,
        FaultKind.DROP,
        FaultKind.MALFORMED_JSON,
        FaultKind.EXTRA_FIELDS,
        FaultKind.TRICKLE,
    }
)

DEFAULT_EXTRA_FIELDS: dict[str, Any] = {
    "x_sandbox_unknown": "added by the extra_fields fault",
    "x_sandbox_nested": {"note": "Clever may add fields at any time", "level": 1},
}


@dataclass(eq=False)
class Fault:
    """One scripted misbehaviour.

    Matches ``method`` (``*`` for any) and ``path`` (an fnmatch glob on the path without
    the query, e.g. ``/v3.0/schools/*/users``) and, if given, a substring of the raw query.
    Lets ``after`` matching requests through, then fires ``times`` times (``None``: for
    ever). Over a socket a ``drop`` sends the headers and half the body (``partial=True``)
    or nothing, then closes; in-process it raises ``error()`` (default
    ``ConnectionResetError``) from the app, since a WSGI app has no socket to close. A
    ``trickle`` sends the status and headers at once, then the body one byte every
    ``seconds``; ``lose_next``, ``empty_page`` and ``oversize_page`` change list pages.
    A ``bad_value`` sets ``record_field`` (dotted: ``name.last``) to ``value`` in every
    record of an answer (list, single object or event), or only in the record whose id is
    ``record_id``; a lone surrogate in ``value`` is sent as its JSON escape (``\\ud800``).
    """

    kind: FaultKind | str
    path: str = "*"
    method: str = "*"
    query: str | None = None
    times: int | None = 1
    after: int = 0
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes | None = None
    seconds: float = 0.0
    fields: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_EXTRA_FIELDS))
    partial: bool = True
    error: Callable[[], BaseException] | None = None
    value: str = "\x00"
    record_field: str = "name.last"
    record_id: str | None = None
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if (self.times is not None and self.times < 0) or self.after < 0:
            raise ValueError("times and after must not be negative")

    def matches(self, method: str, path: str, query: str) -> bool:
        if self.method != "*" and self.method.upper() != method:
            return False
        if not fnmatch.fnmatchcase(path, self.path):
            return False
        return self.query is None or self.query in query

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times


class FaultSet:
    """The sandbox's active faults (thread-safe)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def take(
        self,
        method: str,
        path: str,
        query: str,
        kinds: Collection[FaultKind],
        applies: Callable[[Fault], bool] | None = None,
    ) -> list[Fault]:
        """Count this request against matching faults of ``kinds`` (for which ``applies``,
        when given, holds); return those that fire."""
        fired = []
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds or fault.spent or not fault.matches(method, path, query):
                    continue
                if applies is not None and not applies(fault):
                    continue
                fault.seen += 1
                if fault.seen > fault.after:
                    fault.fired += 1
                    fired.append(fault)
        return fired
