"""Copy-on-write merges of nested partial changes and Clever's ``previous_attributes``."""

from __future__ import annotations

import copy
from typing import Any

_ABSENT = object()


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A new object: ``base`` with the nested partial ``changes`` applied.

    Dicts merge key by key, anything else (lists included) replaces the old value, and
    ``None`` removes the key (Clever leaves absent fields out rather than sending null).
    Only the changed branches are copied, so stored objects can be shared read-only by
    pages being served and by event snapshots.
    """
    result = dict(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def previous_attributes(
    old: dict[str, Any], new: dict[str, Any], *, top: bool = True
) -> dict[str, Any]:
    """The nested partial of ``old`` values on every path that differs in ``new``.

    As in Clever's events, arrays come whole and ``last_modified`` is not reported. A key
    that did not exist before is reported as ``None`` (JSON null): Clever's behaviour for
    that case was never observed, and a consumer can still see the key changed.
    """
    result: dict[str, Any] = {}
    keys = list(old) + [key for key in new if key not in old]
    for key in keys:
        if top and key == "last_modified":
            continue
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            nested = previous_attributes(before, after, top=False)
            if nested:
                result[key] = nested
        else:
            result[key] = None if before is _ABSENT else before
    return result
