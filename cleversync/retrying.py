"""The one way CleverSync retries with backoff (tenacity): Clever's API and the database.

After the first call, up to ``policy.max_attempts`` retries. The waits start at the policy's
``backoff_base`` seconds and double (base, 2 x base, 4 x base ...), each plus a random jitter
of up to ``jitter`` x base, and are at most ``max_wait``; a base of 0 never waits. An error may
name its own wait (``wait_for``: Clever's ``Retry-After``), which is capped the same way.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from cleversync.settings import RetryPolicy

Uniform = Callable[[float, float], float]


def backoff_seconds(
    attempt: int,
    *,
    base: float,
    jitter: float,
    max_wait: float = math.inf,
    uniform: Uniform = random.uniform,
) -> float:
    """The wait after failed attempt ``attempt`` (1 for the first call)."""
    if base <= 0:
        return 0.0
    wait: float = base * 2 ** min(attempt - 1, 30) + uniform(0, base * jitter)
    return min(wait, max_wait)


def retrying(
    policy: RetryPolicy,
    *,
    retry_on: Callable[[BaseException], bool],
    jitter: float,
    sleep: Callable[[float], None] = time.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    max_wait: float = math.inf,
    wait_for: Callable[[BaseException], float | None] | None = None,
    uniform: Uniform = random.uniform,
) -> Retrying:
    """A tenacity ``Retrying`` that retries what ``retry_on`` accepts and re-raises the last
    error once the retries run out; ``sleep`` does every wait."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = wait_for(exc) if wait_for is not None and exc is not None else None
        if asked is not None:
            return min(asked, max_wait)
        return backoff_seconds(
            state.attempt_number,
            base=policy.backoff_base,
            jitter=jitter,
            max_wait=max_wait,
            uniform=uniform,
        )

    return Retrying(
        retry=retry_if_exception(retry_on),
        stop=stop_after_attempt(policy.max_attempts + 1),
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
