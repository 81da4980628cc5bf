"""Argument types for the command line: bad values are usage errors (exit 2) naming the
option, never a traceback from deeper down."""

from __future__ import annotations

import argparse
from collections.abc import Callable

# Ids are SQL int identity keys on every supported database.
MAX_ID = 2**31 - 1


def identifier(text: str) -> int:
    """A district or school id: a whole number the databases' int keys can hold."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(
            f"{_shown(text)!r} is not an id (a whole number from 1 to {MAX_ID})"
        )
    return value


def positive(text: str) -> int:
    """A whole number of at least 1 (a count, a limit)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{_shown(text)!r} is not a positive whole number")
    return value


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number from ``minimum`` (to ``maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_shown(text)!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {value}")
        return value

    return parse


def _shown(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
