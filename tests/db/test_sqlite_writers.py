"""SQLite files shared by a process's threads (SessionDb, written by every school at once):
one writer at a time, handed over by this process at once rather than by SQLite's polling;
reads take no write lock. Real SQLite files, real threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine

from cleversync.db import engines
from cleversync.db.engines import engine_for, one_writer
from cleversync.db.retry import in_transaction
from cleversync.db.sessiondb.history import History
from cleversync.errors import DatabaseTransientError
from cleversync.redaction import Redactor
from cleversync.settings import DatabaseRetry
from tests.databases import sqlite_clone

POLICY = DatabaseRetry(MaxAttempts=0, BackoffBase=0)


def _begins(engine: Engine) -> list[str]:
    """The BEGIN statements ``engine`` sends, as it sends them."""
    sent: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("BEGIN"):
            sent.append(statement)

    return sent


@contextmanager
def _a_write_held(engine: Engine) -> Iterator[None]:
    """Another thread inside a write transaction on ``engine`` (through the retry layer, so
    holding this process's lock of the file) for as long as the block runs."""
    inside, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        inside.set()
        assert release.wait(30)

    holder = threading.Thread(
        target=in_transaction, args=(engine, hold), kwargs={"policy": POLICY, "what": "hold"}
    )
    holder.start()
    try:
        assert inside.wait(30)
        yield
    finally:
        release.set()
        holder.join(30)


def test_a_second_writer_waits_for_this_process_to_hand_the_file_over(tmp_path: Path) -> None:
    url = sqlite_clone("sessiondb", tmp_path / "sessiondb.sqlite")
    first, second = engine_for(url), engine_for(url)  # two stores, one file
    second_begins = _begins(second)
    with _a_write_held(first):
        done: list[int] = []
        writer = threading.Thread(
            target=lambda: done.append(
                in_transaction(
                    second,
                    lambda conn: conn.execute(text("SELECT 1")).scalar_one(),
                    policy=POLICY,
                    what="second",
                )
            )
        )
        writer.start()
        writer.join(1.0)
        # Still waiting, and on this process's lock: it has not begun a SQLite transaction
        # (SQLite would have it poll its lock with sleeps of up to 100 ms).
        assert writer.is_alive() and second_begins == []
    writer.join(30)
    assert done == [1] and second_begins == ["BEGIN IMMEDIATE"]
    first.dispose()
    second.dispose()


def test_a_read_takes_no_write_lock(tmp_path: Path) -> None:
    url = sqlite_clone("sessiondb", tmp_path / "sessiondb.sqlite")
    writer, reader = engine_for(url), engine_for(url)
    begins = _begins(reader)
    history = History(reader, policy=POLICY, redactor=Redactor())
    with writer.begin() as conn:  # a writer holds SQLite's lock (another process, say)
        conn.execute(text("UPDATE SyncHistory SET Status = Status"))
        # The read does not wait for it (it would for 30 s, then fail, with IMMEDIATE).
        assert history.last_good_run(1) is None
    assert begins == ["BEGIN"]
    writer.dispose()
    reader.dispose()


def test_the_handover_is_per_file_and_only_for_sqlite_files(tmp_path: Path) -> None:
    one = engine_for(sqlite_clone("sessiondb", tmp_path / "a.sqlite"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    # The same file, another engine, through a symbolic link and a "..".
    again = engine_for(f"sqlite:///{tmp_path / 'link' / 'sub' / '..' / 'a.sqlite'}")
    other = engine_for(sqlite_clone("school", tmp_path / "b.sqlite"))
    entered: dict[str, threading.Event] = {"again": threading.Event(), "other": threading.Event()}

    def enter(name: str, engine: Engine) -> None:
        with one_writer(engine):
            entered[name].set()

    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with one_writer(one), one_writer(one):  # reentrant for the thread that holds it
            holding.set()
            assert release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(30)
    threads = [
        threading.Thread(target=enter, args=item) for item in (("again", again), ("other", other))
    ]
    for thread in threads:
        thread.start()
    try:
        assert entered["other"].wait(30)  # another file: free
        assert not entered["again"].wait(0.5)  # the same file: held
    finally:
        release.set()
        holder.join(30)
    assert entered["again"].wait(30)
    for thread in threads:
        thread.join(30)
    memory = engine_for("sqlite://")
    with one_writer(memory):  # nothing to hand over in memory
        pass
    for engine in (one, again, other, memory):
        engine.dispose()


def test_a_writer_waits_no_longer_than_sqlite_would_then_fails_as_it_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sqlite_clone("sessiondb", tmp_path / "sessiondb.sqlite")
    first, second = engine_for(url), engine_for(url)
    second_begins = _begins(second)
    monkeypatch.setattr(engines, "BUSY_TIMEOUT_SECONDS", 0.2)
    with _a_write_held(first):
        # SQLite's own error after its own wait: transient, so retried by the caller's policy;
        # the writer did not then wait for SQLite's lock as long again.
        with pytest.raises(DatabaseTransientError, match="database is locked"):
            in_transaction(second, lambda conn: None, policy=POLICY, what="writing")
        assert second_begins == []
    first.dispose()
    second.dispose()
