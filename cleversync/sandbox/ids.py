"""Clever-style ObjectId ids, ISO-8601 timestamps and hex secrets for the sandbox."""

from __future__ import annotations

import functools
import random
import re
import threading
import time

OBJECT_ID = re.compile(r"[0-9a-f]{24}")


class IdFactory:
    """Makes 24-hex ObjectId-like ids that ascend strictly in creation order.

    Like a MongoDB ObjectId the first 8 hex digits are Unix seconds; the rest is a fixed
    "machine" part and a counter. The seconds never go backwards (a fake clock may), so every
    id is greater than the one made before it and cursors by id stay in creation order.
    """

    def __init__(self, rng: random.Random) -> None:
        self._machine = rng.getrandbits(40)
        self._counter = rng.getrandbits(12)
        self._seconds = 0
        self._lock = threading.Lock()

    def new(self, at: float) -> str:
        with self._lock:
            seconds = max(int(at), self._seconds)
            self._counter += 1
            if self._counter > 0xFFFFFF:  # counter exhausted: move to the next second
                self._counter = 0
                seconds = max(seconds, self._seconds + 1)
            self._seconds = seconds
            return f"{seconds:08x}{self._machine:010x}{self._counter:06x}"


def object_id_seconds(object_id: str) -> int:
    """The Unix seconds encoded in an ObjectId's first 8 hex digits."""
    return int(object_id[:8], 16)


@functools.lru_cache(maxsize=1024)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def iso_ms(at: float) -> str:
    """``2023-04-12T23:05:01.315Z``: how Clever writes ``created``/``last_modified``."""
    seconds, ms = divmod(round(at * 1000), 1000)
    return f"{_second(seconds)}.{ms:03d}Z"


def iso_seconds(at: float) -> str:
    """``2023-03-26T16:09:40.000Z``: event timestamps have second precision."""
    return f"{_second(int(at))}.000Z"


def hex_string(rng: random.Random, length: int) -> str:
    return f"{rng.getrandbits(length * 4):0{length}x}"
