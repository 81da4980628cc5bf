"""Districts can be deactivated; districts and schools can be removed with their history kept

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")


def upgrade() -> None:
    with op.batch_alter_table("Districts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("IsActive", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(sa.Column("RemovedAt", _UTC, nullable=True))
    with op.batch_alter_table("Schools", schema=None) as batch_op:
        batch_op.add_column(sa.Column("RemovedAt", _UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("Schools", schema=None) as batch_op:
        batch_op.drop_column("RemovedAt")
    with op.batch_alter_table("Districts", schema=None) as batch_op:
        batch_op.drop_column("RemovedAt")
        # SQL Server: the column's default is a constraint of its own, dropped first.
        batch_op.drop_column("IsActive", mssql_drop_default=True)
