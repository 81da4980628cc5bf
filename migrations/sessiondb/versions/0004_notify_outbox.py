"""Email messages not sent yet (run reports and alerts)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "NotifyOutbox",
        sa.Column("MessageId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("Kind", sa.Unicode(length=20), nullable=False),
        sa.Column("RunId", sa.Integer(), nullable=True),
        sa.Column("Subject", sa.Unicode(length=300), nullable=False),
        sa.Column("Message", sa.UnicodeText().with_variant(sa.NVARCHAR(), "mssql"), nullable=False),
        sa.Column(
            "CreatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column("Attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "LastError", sa.UnicodeText().with_variant(sa.NVARCHAR(), "mssql"), nullable=True
        ),
        sa.Column(
            "ClaimedUntil", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.PrimaryKeyConstraint("MessageId", name=op.f("PK_NotifyOutbox")),
    )
    with op.batch_alter_table("NotifyOutbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("IX_NotifyOutbox_CreatedAt"), ["CreatedAt"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("NotifyOutbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_NotifyOutbox_CreatedAt"))

    op.drop_table("NotifyOutbox")
