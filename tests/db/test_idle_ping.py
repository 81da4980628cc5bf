"""A pooled server connection is pinged before use only after sitting idle: a dead one is
replaced then; one that dies within the window fails its transaction, which the retry
layer runs again on a new connection. Real PostgreSQL, its backends really terminated."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from cleversync.db import engines
from cleversync.db.engines import engine_for
from cleversync.db.retry import in_transaction
from cleversync.settings import DatabaseRetry

pytestmark = pytest.mark.postgres


def _backend_pid(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pg_url: str, pid: int) -> None:
    killer = engine_for(pg_url)
    try:
        with killer.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        killer.dispose()


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced_before_use(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(pg_url)
    try:
        first = _backend_pid(engine)
        _terminate(pg_url, first)
        monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle
        # No retry layer here: the pool itself found the connection dead and replaced it.
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


def test_a_connection_used_just_before_is_not_pinged(pg_url: str) -> None:
    engine = engine_for(pg_url)
    try:
        first = _backend_pid(engine)
        _terminate(pg_url, first)
        # Within the window no ping: the statement meets the dead connection...
        with pytest.raises(OperationalError) as raised:
            _backend_pid(engine)
        assert raised.value.connection_invalidated
        # ...which the retry layer treats as transient: the transaction runs again.
        _terminate(pg_url, _backend_pid(engine))
        pid = in_transaction(
            engine,
            lambda conn: conn.execute(text("SELECT pg_backend_pid()")).scalar_one(),
            policy=DatabaseRetry(MaxAttempts=2, BackoffBase=0),
            what="reading",
        )
        assert pid not in (first, None)
    finally:
        engine.dispose()


def test_a_connection_is_not_pinged_while_it_is_in_use(pg_url: str) -> None:
    # The checkout stamp is taken away, so a connection held long is not mistaken for idle.
    engine = engine_for(pg_url)
    try:
        with engine.connect() as conn:
            record = conn.connection._connection_record
            assert record is not None
            assert engines._IDLE_SINCE not in record.info
        assert engines._IDLE_SINCE in record.info
    finally:
        engine.dispose()
