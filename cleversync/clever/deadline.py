"""One HTTP exchange, body included, within a wall-clock deadline and a size cap.

httpx's timeouts bound each read, not the whole answer: a body trickled a byte at a time
never trips them. So the response is streamed, and the deadline and the size are checked
as each piece of the body arrives. (A read that brings nothing still ends at httpx's own
read timeout, which is the same number of seconds.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


class BodyTooLargeError(Exception):
    """The answer's body passed the size cap; the rest was not read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


def request_within(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    seconds: float,
    max_bytes: int | None = None,
    timer: Callable[[], float] = time.monotonic,
    **kwargs: Any,
) -> httpx.Response:
    """The whole response, read within ``seconds`` of the call: ``httpx.ReadTimeout``
    after that, ``BodyTooLargeError`` past ``max_bytes`` (decoded) bytes."""
    deadline = timer() + seconds
    with http.stream(method, url, **kwargs) as response:
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if max_bytes is not None and len(body) > max_bytes:
                raise BodyTooLargeError(max_bytes)
            if timer() > deadline:
                raise httpx.ReadTimeout(
                    f"the answer took longer than {seconds:g} s", request=response.request
                )
    # Already decoded: the headers must not make httpx decode it again.
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(
        response.status_code, headers=headers, content=bytes(body), request=response.request
    )
