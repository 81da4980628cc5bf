"""Retry history: SyncHistory.Retries, RateLimitWaits and RateLimitWaitSeconds

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("SyncHistory", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("Retries", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("RateLimitWaits", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "RateLimitWaitSeconds", sa.Float(), server_default=sa.text("0"), nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("SyncHistory", schema=None) as batch_op:
        # SQL Server: each column's default is a constraint of its own, dropped first.
        batch_op.drop_column("RateLimitWaitSeconds", mssql_drop_default=True)
        batch_op.drop_column("RateLimitWaits", mssql_drop_default=True)
        batch_op.drop_column("Retries", mssql_drop_default=True)
