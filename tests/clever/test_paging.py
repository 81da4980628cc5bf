"""Cursor paging as the client drives it: fetch ``next_path``, hand the body to ``advance``."""

from __future__ import annotations

from typing import Any

import pytest

from cleversync.clever.paging import CursorPaginator
from cleversync.errors import CleverResponseError

FIRST = "/v3.0/schools/s1/users?role=student&limit=2"


def page(ids: list[str], *links: Any) -> dict[str, Any]:
    return {"data": [{"data": {"id": i}} for i in ids], "links": list(links)}


def nxt(after: str, path: str = "/v3.0/schools/s1/users") -> dict[str, str]:
    return {"rel": "next", "uri": f"{path}?role=student&limit=2&starting_after={after}"}


def walk(pages: dict[str, dict[str, Any]], first: str = FIRST) -> tuple[list[str], list[str]]:
    """The paths fetched and the ids read, as the client's loop does it."""
    paginator = CursorPaginator(first)
    fetched: list[str] = []
    ids: list[str] = []
    while paginator.next_path is not None:
        assert paginator.next_path not in fetched, "a page was fetched twice"
        fetched.append(paginator.next_path)
        body = pages[paginator.next_path]
        ids += [record["data"]["id"] for record in body.get("data") or []]
        paginator.advance(body)
    assert paginator.pages == len(fetched)
    return fetched, ids


def at(after: str) -> str:
    return nxt(after)["uri"]


# name, pages keyed by path, the paths fetched, the ids read
ENDINGS = [
    ("one page, no links", {FIRST: page(["a", "b"])}, [FIRST], ["a", "b"]),
    (
        "no next link on the last page",
        {
            FIRST: page(["a", "b"], nxt("b")),
            at("b"): page(["c"], {"rel": "prev", "uri": at("a")}),
        },
        [FIRST, at("b")],
        ["a", "b", "c"],
    ),
    (
        "a next link on an empty last page",
        {
            FIRST: page(["a", "b"], nxt("b")),
            at("b"): page(["c", "d"], nxt("d")),
            at("d"): page([], nxt("zz")),
        },
        [FIRST, at("b"), at("d")],
        ["a", "b", "c", "d"],
    ),
    (
        "a page without data at all",
        {FIRST: page(["a", "b"], nxt("b")), at("b"): {"links": [nxt("c")]}},
        [FIRST, at("b")],
        ["a", "b"],
    ),
    ("data: null", {FIRST: {"data": None, "links": [nxt("x")]}}, [FIRST], []),
    (
        "links that are not a list",
        {FIRST: {"data": [{"data": {"id": "a"}}], "links": {"rel": "next", "uri": at("a")}}},
        [FIRST],
        ["a"],
    ),
    (
        "links without a usable next",
        {
            FIRST: page(
                ["a"],
                "next",
                {"rel": "next"},
                {"rel": "next", "uri": ""},
                {"rel": "self", "uri": FIRST},
            )
        },
        [FIRST],
        ["a"],
    ),
    (
        "the next link among others, in any order",
        {
            FIRST: page(["a", "b"], {"rel": "self", "uri": FIRST}, nxt("b")),
            at("b"): page(["c"], {"rel": "prev", "uri": FIRST}, {"rel": "self", "uri": at("b")}),
        },
        [FIRST, at("b")],
        ["a", "b", "c"],
    ),
    (
        "a next link with a different path is followed as given",
        {
            FIRST: page(["a", "b"], nxt("b", "/v3.0/users")),
            nxt("b", "/v3.0/users")["uri"]: page(["c"]),
        },
        [FIRST, nxt("b", "/v3.0/users")["uri"]],
        ["a", "b", "c"],
    ),
]


@pytest.mark.parametrize(
    ("pages", "fetched", "ids"),
    [case[1:] for case in ENDINGS],
    ids=[case[0] for case in ENDINGS],
)
def test_paging_follows_next_links_until_the_end(
    pages: dict[str, dict[str, Any]], fetched: list[str], ids: list[str]
) -> None:
    assert walk(pages) == (fetched, ids)


LOOPS = [
    ("a page links to itself", {FIRST: page(["a"], {"rel": "next", "uri": FIRST})}),
    (
        "a later page links back to an earlier one",
        {
            FIRST: page(["a", "b"], nxt("b")),
            at("b"): page(["c", "d"], nxt("d")),
            at("d"): page(["e"], nxt("b")),
        },
    ),
    (
        "the same cursor under another path",
        {
            FIRST: page(["a", "b"], nxt("b")),
            at("b"): page(["c", "d"], nxt("b", "/v3.0/users")),
        },
    ),
]


@pytest.mark.parametrize("pages", [c[1] for c in LOOPS], ids=[c[0] for c in LOOPS])
def test_a_next_link_already_followed_is_a_loop_not_an_endless_sync(
    pages: dict[str, dict[str, Any]],
) -> None:
    with pytest.raises(CleverResponseError):
        walk(pages)


def test_a_new_paginator_starts_at_the_first_path() -> None:
    paginator = CursorPaginator(FIRST)
    assert (paginator.next_path, paginator.pages) == (FIRST, 0)
