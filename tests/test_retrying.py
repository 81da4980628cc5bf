"""The shared retry: backoff doubling from the base with jitter, capped, and an error's own wait."""

from __future__ import annotations

import math

import pytest

from cleversync.retrying import backoff_seconds, retrying
from cleversync.settings import RetryPolicy


class FlakyError(Exception):
    def __init__(self, wait: float | None = None) -> None:
        super().__init__("flaky")
        self.wait = wait


def policy(max_attempts: int, backoff_base: float) -> RetryPolicy:
    return RetryPolicy(MaxAttempts=max_attempts, BackoffBase=backoff_base)


@pytest.mark.parametrize(
    ("attempt", "base", "jitter", "max_wait", "lowest", "highest"),
    [
        (1, 2, 0.5, math.inf, 2, 3),
        (2, 2, 0.5, math.inf, 4, 5),
        (5, 2, 0.5, math.inf, 32, 33),
        (1, 1, 0.25, math.inf, 1, 1.25),
        (3, 1, 0.25, math.inf, 4, 4.25),
        (1, 0, 0.5, math.inf, 0, 0),  # a base of 0 never waits
        (4, 100, 0.5, 9, 9, 9),  # capped by MaxWaitSeconds
        (99, 1, 0, math.inf, 2**30, 2**30),  # the doubling stops somewhere
    ],
)
@pytest.mark.parametrize("draw", [0.0, 1.0])
def test_backoff_doubles_from_the_base_plus_jitter_and_is_capped(
    attempt: int,
    base: float,
    jitter: float,
    max_wait: float,
    lowest: float,
    highest: float,
    draw: float,
) -> None:
    # ``draw`` picks the least and the most jitter the random source can give
    wait = backoff_seconds(
        attempt,
        base=base,
        jitter=jitter,
        max_wait=max_wait,
        uniform=lambda lo, hi: lo + draw * (hi - lo),
    )
    assert wait == (highest if draw else lowest)


def run(errors: list[FlakyError], **options: object) -> tuple[str, list[float]]:
    sleeps: list[float] = []

    def operation() -> str:
        if errors:
            raise errors.pop(0)
        return "done"

    retry = retrying(
        options.pop("policy", policy(5, 2)),  # type: ignore[arg-type]
        retry_on=lambda exc: isinstance(exc, FlakyError),
        jitter=0.5,
        sleep=sleeps.append,
        uniform=lambda lo, hi: lo,
        **options,  # type: ignore[arg-type]
    )
    return retry(operation), sleeps


def test_retries_with_doubling_waits_until_it_works() -> None:
    assert run([FlakyError(), FlakyError(), FlakyError()]) == ("done", [2, 4, 8])


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    errors = [FlakyError() for _ in range(4)]
    third, unused = errors[2:]
    with pytest.raises(FlakyError) as raised:
        run(errors, policy=policy(2, 1))
    assert raised.value is third  # the first call and two retries
    assert errors == [unused]


def test_other_errors_are_not_retried() -> None:
    sleeps: list[float] = []

    def operation() -> None:
        raise ValueError("a bug")

    retry = retrying(policy(5, 2), retry_on=lambda exc: False, jitter=0.5, sleep=sleeps.append)
    with pytest.raises(ValueError, match="a bug"):
        retry(operation)
    assert sleeps == []


def test_an_error_may_name_its_own_wait_which_is_capped() -> None:
    result = run(
        [FlakyError(wait=7), FlakyError(wait=500), FlakyError(wait=None), FlakyError(wait=0)],
        max_wait=60,
        wait_for=lambda exc: exc.wait if isinstance(exc, FlakyError) else None,
    )
    assert result == ("done", [7, 60, 8, 0])  # the third: the backoff of attempt 3


def test_before_sleep_sees_each_failed_attempt_and_its_wait() -> None:
    seen: list[tuple[int, float]] = []
    run(
        [FlakyError(), FlakyError()],
        before_sleep=lambda state: seen.append(
            (state.attempt_number, state.next_action.sleep if state.next_action else -1)
        ),
    )
    assert seen == [(1, 2), (2, 4)]
