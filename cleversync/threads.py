"""Threads the app starts during an invocation log to that invocation.

The Azure Functions Python worker sends a log record to the invocation's log only when the
thread that logs it has ``context.thread_local_storage.invocation_id`` set; it sets it on the
thread it runs a handler on, and on no other. A record from any other thread (a school's sync
in the pool, the background build, a health check, a token refresh) goes nowhere the
invocation's logs are looked for. So a handler binds its invocation here
(``bind_invocation``), and every thread or pool task the app starts runs through ``bound``
(or ``start_thread``), which sets the id in the new thread from the invocation that was bound
when the work was handed over. Outside the Functions host (the CLI, tests) nothing is bound
and ``bound`` returns the work unchanged.

No ``azure.functions`` import: the context is anything with ``invocation_id`` and
``thread_local_storage``.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from cleversync import runtally

P = ParamSpec("P")
R = TypeVar("R")


class InvocationContext(Protocol):
    """What this module reads of ``azure.functions.Context``."""

    @property
    def invocation_id(self) -> str: ...

    @property
    def thread_local_storage(self) -> Any: ...


@dataclass(frozen=True)
class Invocation:
    invocation_id: str
    storage: Any  # the worker's threading.local, read by its log handler in each thread


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "cleversync_invocation", default=None
)


@contextlib.contextmanager
def bind_invocation(context: InvocationContext) -> Iterator[Invocation]:
    """Bind ``context``'s invocation for the block (a handler's body): threads started inside
    it log to this invocation."""
    invocation = Invocation(context.invocation_id, context.thread_local_storage)
    token = _current.set(invocation)
    try:
        yield invocation
    finally:
        _current.reset(token)


def bound(work: Callable[P, R]) -> Callable[P, R]:
    """``work`` carrying the invocation bound now: wherever it runs, the id is set on that
    thread while it runs (and the invocation is bound there, for the threads it starts).
    It also carries the school run's retry tally and entity (``cleversync.runtally``), so
    retries and waits in that thread count for the run that handed the work over."""
    invocation = _current.get()
    run_tally, entity = runtally.current()
    if invocation is None and run_tally is None:
        return work

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with runtally.tally(run_tally), runtally.entity(entity):
            if invocation is None:
                return work(*args, **kwargs)
            storage = invocation.storage
            # A pool thread is reused by later tasks: put back what it had.
            previous = getattr(storage, "invocation_id", None)
            token = _current.set(invocation)
            storage.invocation_id = invocation.invocation_id
            try:
                return work(*args, **kwargs)
            finally:
                storage.invocation_id = previous
                _current.reset(token)

    return run


def start_thread(target: Callable[[], Any], *, name: str, daemon: bool = True) -> threading.Thread:
    """Start a thread running ``target`` that logs to the invocation bound now."""
    thread = threading.Thread(target=bound(target), name=name, daemon=daemon)
    thread.start()
    return thread
