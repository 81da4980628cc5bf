"""Sync runs and their schools

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "SyncRuns",
        sa.Column("RunId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("CorrelationId", sa.Unicode(length=64), nullable=False),
        sa.Column("Trigger", sa.Unicode(length=20), nullable=False),
        sa.Column(
            "RequestedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column("Full", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("AllowMassDelete", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "FinishedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.Column(
            "ReportedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.CheckConstraint(
            sa.column("Trigger").in_(["timer", "http", "cli"]), name=op.f("CK_SyncRuns_Trigger")
        ),
        sa.PrimaryKeyConstraint("RunId", name=op.f("PK_SyncRuns")),
        sa.UniqueConstraint("CorrelationId", name=op.f("UQ_SyncRuns_CorrelationId")),
    )
    with op.batch_alter_table("SyncRuns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("IX_SyncRuns_RequestedAt"), ["RequestedAt"], unique=False)

    op.create_table(
        "SyncRunSchools",
        sa.Column("RunId", sa.Integer(), nullable=False),
        sa.Column("SchoolId", sa.Integer(), nullable=False),
        sa.Column("Status", sa.Unicode(length=20), nullable=False),
        sa.Column("Attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "QueuedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column(
            "StartedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.Column(
            "FinishedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.Column("Error", sa.UnicodeText().with_variant(sa.NVARCHAR(), "mssql"), nullable=True),
        sa.CheckConstraint(
            sa.column("Status").in_(
                ["Queued", "Running", "Success", "Partial", "Failed", "Skipped"]
            ),
            name=op.f("CK_SyncRunSchools_Status"),
        ),
        sa.ForeignKeyConstraint(
            ["RunId"],
            ["SyncRuns.RunId"],
            name=op.f("FK_SyncRunSchools_RunId_SyncRuns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["SchoolId"],
            ["Schools.SchoolId"],
            name=op.f("FK_SyncRunSchools_SchoolId_Schools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("RunId", "SchoolId", name=op.f("PK_SyncRunSchools")),
    )
    with op.batch_alter_table("SyncRunSchools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("IX_SyncRunSchools_SchoolId"), ["SchoolId"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("SyncRunSchools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_SyncRunSchools_SchoolId"))

    op.drop_table("SyncRunSchools")
    with op.batch_alter_table("SyncRuns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_SyncRuns_RequestedAt"))

    op.drop_table("SyncRuns")
