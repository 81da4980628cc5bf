"""The ids a full sync has seen: Clever's own ids kept compact, and no two ids ever one."""

from __future__ import annotations

import pytest

from cleversync.sync.seen import SeenIds

CANONICAL = "6681f18001e314081e000830"


def test_an_id_added_is_seen_and_others_are_not() -> None:
    seen = SeenIds()
    for clever_id in (CANONICAL, "not-an-object-id", "", "7"):
        seen.add(clever_id)
    assert len(seen) == 4
    for clever_id in (CANONICAL, "not-an-object-id", "", "7"):
        assert clever_id in seen
    assert "6681f18001e314081e000831" not in seen
    assert "8" not in seen


def test_clever_ids_are_kept_as_the_bytes_they_spell() -> None:
    seen = SeenIds()
    seen.add(CANONICAL)
    seen.add("other id")
    assert seen._keys == {bytes.fromhex(CANONICAL), "other id"}


@pytest.mark.parametrize(
    "spelling",
    [
        CANONICAL.upper(),  # the same 12 bytes to bytes.fromhex
        CANONICAL[:5].upper() + CANONICAL[5:],
        CANONICAL[:22] + "  ",  # spaces, which fromhex skips
        " " + CANONICAL[:22] + " ",
    ],
)
def test_another_spelling_is_another_id(spelling: str) -> None:
    """A false "seen" would keep a row Clever removed; a false "not seen" would delete one
    it still has: a spelling of (nearly) the same bytes is its own id, whichever was added."""
    assert len(spelling) == len(CANONICAL)
    bytes.fromhex(spelling)  # each is one fromhex reads
    canonical_only, spelling_only = SeenIds(), SeenIds()
    canonical_only.add(CANONICAL)
    spelling_only.add(spelling)
    assert spelling not in canonical_only and spelling in spelling_only
    assert CANONICAL not in spelling_only and CANONICAL in canonical_only
    both = SeenIds()
    both.add(CANONICAL)
    both.add(spelling)
    assert len(both) == 2
    assert spelling_only._keys == {spelling}  # kept as the string it is


def test_what_is_not_a_string_is_never_seen() -> None:
    seen = SeenIds()
    seen.add(CANONICAL)
    assert bytes.fromhex(CANONICAL) not in seen
    assert None not in seen
