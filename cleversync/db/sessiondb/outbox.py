"""NotifyOutbox in SessionDb: email messages kept until sent, and the claim of a run's report.

A run's report is claimed with a conditional update (``SyncRuns.ReportedAt IS NULL``) in the
same transaction that keeps its message, so with several instances finishing a run's last
schools at once exactly one of them reports it, and a message once claimed is not lost if
sending fails. A message being sent is claimed too (``ClaimedUntil``), so two instances
emptying the outbox at once never send it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from cleversync.db.schema import NotifyOutbox, SyncRun
from cleversync.db.sessiondb import SessionTables
from cleversync.db.sessiondb.history import sanitize

_OUTBOX = NotifyOutbox.__table__
_RUNS = SyncRun.__table__
_T = TypeVar("_T")

SUBJECT_WIDTH = 300


@dataclass(frozen=True)
class Pending:
    """A message to keep: what it is about and its whole MIME text."""

    kind: str  # report | alert
    subject: str
    message: str
    run_id: int | None = None


@dataclass(frozen=True)
class Kept:
    message_id: int
    kind: str
    subject: str
    message: str
    created_at: datetime
    attempts: int
    last_error: str | None


class Outbox(SessionTables):
    """Reads and writes NotifyOutbox; each write one transaction, retried if transient."""

    def _row(self, pending: Pending) -> dict[str, object]:
        return {
            "Kind": pending.kind,
            "RunId": pending.run_id,
            "Subject": pending.subject[:SUBJECT_WIDTH],
            "Message": pending.message,
            "CreatedAt": self._clock(),
            "Attempts": 0,
        }

    def add(self, pending: Pending) -> int:
        """Keep a message; its id."""
        return self._tx(
            "keeping an email message",
            lambda conn: int(
                conn.execute(
                    insert(_OUTBOX).returning(_OUTBOX.c.MessageId), self._row(pending)
                ).scalar_one()
            ),
        )

    def claim_report(self, run_id: int, pending: Pending | None) -> bool:
        """Claim the finished run's report (``ReportedAt``) and keep its message, if any, in
        one transaction; False when the run is not finished or another caller claimed it."""
        now = self._clock()

        def write(conn: Connection) -> bool:
            claimed = conn.execute(
                update(_RUNS)
                .where(
                    _RUNS.c.RunId == run_id,
                    _RUNS.c.FinishedAt.is_not(None),
                    _RUNS.c.ReportedAt.is_(None),
                )
                .values(ReportedAt=now)
            ).rowcount
            if claimed != 1:
                return False
            if pending is not None:
                conn.execute(insert(_OUTBOX), self._row(pending))
            return True

        return self._tx("claiming a sync run's report", write)

    def take(self, *, limit: int, hold_seconds: float) -> list[Kept]:
        """Claim up to ``limit`` kept messages, oldest first, for ``hold_seconds`` (others
        skip them meanwhile; a sender that dies leaves them to the next one after that)."""
        now = self._clock()

        def read(conn: Connection) -> list[Kept]:
            rows = conn.execute(
                select(_OUTBOX)
                .where(or_(_OUTBOX.c.ClaimedUntil.is_(None), _OUTBOX.c.ClaimedUntil < now))
                .order_by(_OUTBOX.c.MessageId)
                .limit(limit)
            ).all()
            return [_kept(r) for r in rows]

        candidates = self._read("reading kept email messages", read)
        until = now + timedelta(seconds=hold_seconds)

        def claim(message_id: int) -> bool:
            statement = (
                update(_OUTBOX)
                .where(
                    _OUTBOX.c.MessageId == message_id,
                    or_(_OUTBOX.c.ClaimedUntil.is_(None), _OUTBOX.c.ClaimedUntil < now),
                )
                .values(ClaimedUntil=until)
            )
            return self._tx(
                "claiming an email message", lambda c: c.execute(statement).rowcount == 1
            )

        return [kept for kept in candidates if claim(kept.message_id)]

    def sent(self, message_id: int) -> None:
        self._tx(
            "removing a sent email message",
            lambda c: c.execute(delete(_OUTBOX).where(_OUTBOX.c.MessageId == message_id)),
        )

    def failed(self, message_id: int, error: str) -> None:
        """One more failed attempt; released for the next sender."""
        statement = (
            update(_OUTBOX)
            .where(_OUTBOX.c.MessageId == message_id)
            .values(
                Attempts=_OUTBOX.c.Attempts + 1,
                LastError=sanitize(error, self._redact),
                ClaimedUntil=None,
            )
        )
        self._tx("recording a failed email attempt", lambda c: c.execute(statement))

    def release(self, message_id: int) -> None:
        """Give a claimed message back untried (the server went away before its turn)."""
        statement = (
            update(_OUTBOX).where(_OUTBOX.c.MessageId == message_id).values(ClaimedUntil=None)
        )
        self._tx("releasing an email message", lambda c: c.execute(statement))

    def drop_excess(self, *, keep: int, max_attempts: int) -> list[Kept]:
        """Delete what is past the bounds: messages tried ``max_attempts`` times, and the oldest
        beyond the newest ``keep``. The messages dropped (to be logged)."""

        def write(conn: Connection) -> list[Kept]:
            rows = conn.execute(select(_OUTBOX).order_by(_OUTBOX.c.MessageId.desc())).all()
            doomed = [
                r for n, r in enumerate(rows) if n >= keep or (r.Attempts or 0) >= max_attempts
            ]
            if doomed:
                conn.execute(
                    delete(_OUTBOX).where(_OUTBOX.c.MessageId.in_([r.MessageId for r in doomed]))
                )
            return [
                Kept(r.MessageId, r.Kind, r.Subject, "", r.CreatedAt, r.Attempts or 0, r.LastError)
                for r in doomed
            ]

        return self._tx("trimming kept email messages", write)

    def pending(self) -> list[Kept]:
        """Every kept message, oldest first (for tests and the CLI)."""

        def read(conn: Connection) -> list[Kept]:
            rows = conn.execute(select(_OUTBOX).order_by(_OUTBOX.c.MessageId)).all()
            return [_kept(r) for r in rows]

        return self._read("reading kept email messages", read)


def _kept(row: Any) -> Kept:
    return Kept(
        row.MessageId,
        row.Kind,
        row.Subject,
        row.Message,
        row.CreatedAt,
        row.Attempts or 0,
        row.LastError,
    )
