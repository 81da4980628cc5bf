"""The Clever ids a full sync has seen, which decide what Clever no longer has.

This is the only structure that grows with the school: every id of an entity's list, kept
until the list's last page has arrived. Clever's ids are 24 lower-case hex digits (MongoDB
ObjectIds). Such an id is kept as the 12 bytes it spells, 48 bytes in memory where its
string takes 80, so that the string can go with its page; any other id is kept as it is.

Only the canonical spelling becomes bytes: the one ``bytes.hex`` gives back. Two different
ids therefore never share a key. An id in upper case, or with spaces (which
``bytes.fromhex`` would accept), stays a string, and no string equals bytes. A false "seen"
would keep a row Clever removed, and a false "not seen" would delete one it still has: the
mapping allows neither.
"""

from __future__ import annotations

ID_LENGTH = 24  # hex digits of an ObjectId


class SeenIds:
    """A set of Clever ids, compact for Clever's own ids (see the module)."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: set[bytes | str] = set()

    def add(self, clever_id: str) -> None:
        self._keys.add(_key(clever_id))

    def __contains__(self, clever_id: object) -> bool:
        return isinstance(clever_id, str) and _key(clever_id) in self._keys

    def __len__(self) -> int:
        return len(self._keys)


def _key(clever_id: str) -> bytes | str:
    if len(clever_id) != ID_LENGTH:
        return clever_id
    try:
        spelled = bytes.fromhex(clever_id)
    except ValueError:
        return clever_id
    return spelled if spelled.hex() == clever_id else clever_id
