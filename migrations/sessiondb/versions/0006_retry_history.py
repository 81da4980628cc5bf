"""Retry history: SyncHistory.Retries, RateLimitWaits and RateLimitWaitSeconds

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Plain ALTER TABLE ... ADD/DROP COLUMN on every database, SQLite included (no batch copy of
SyncHistory): a copy drops the old table, which on SQLite with foreign keys enforced takes
each row's SyncChanges with it, and costs time on a long history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("Retries", "RateLimitWaits", "RateLimitWaitSeconds")


def upgrade() -> None:
    op.add_column(
        "SyncHistory",
        sa.Column("Retries", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "SyncHistory",
        sa.Column("RateLimitWaits", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "SyncHistory",
        sa.Column("RateLimitWaitSeconds", sa.Float(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        # No DROP COLUMN before SQLite 3.35: Alembic's copy of the table (run it with
        # foreign keys off, as cleversync.db.migrate does, or SyncChanges rows go with it).
        with op.batch_alter_table("SyncHistory", schema=None) as batch_op:
            for name in reversed(_COLUMNS):
                batch_op.drop_column(name)
        return
    for name in reversed(_COLUMNS):
        # SQL Server: each column's default is a constraint of its own, dropped first.
        op.drop_column("SyncHistory", name, mssql_drop_default=True)
