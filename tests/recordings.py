"""The real Clever responses recorded from Clever's demo district (tests/fixtures/clever_recordings)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).parent / "fixtures" / "clever_recordings"
SCHOOL_07 = "58da8c58155b940248000007"
DEMO_DISTRICT = "58da8a43cc70ab00017a1a87"


@cache
def interactions(name: str) -> tuple[dict[str, Any], ...]:
    """Every recorded request/response of one cassette, in order."""
    return tuple(json.loads((RECORDINGS / f"{name}.json").read_text()))


def body(name: str, index: int = 0) -> dict[str, Any]:
    return interactions(name)[index]["response"]["body"]
