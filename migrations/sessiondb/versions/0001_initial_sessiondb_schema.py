"""Initial SessionDb schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "Districts",
        sa.Column("DistrictId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("CleverDistrictId", sa.Unicode(length=50), nullable=False),
        sa.Column("Name", sa.Unicode(length=200), nullable=False),
        sa.Column("DistrictPrefix", sa.Unicode(length=100), nullable=False),
        sa.Column(
            "CreatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column(
            "UpdatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("DistrictId", name=op.f("PK_Districts")),
        sa.UniqueConstraint("CleverDistrictId", name=op.f("UQ_Districts_CleverDistrictId")),
    )
    with op.batch_alter_table("Districts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("IX_Districts_DistrictPrefix"), ["DistrictPrefix"], unique=False
        )

    op.create_table(
        "Schools",
        sa.Column("SchoolId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("DistrictId", sa.Integer(), nullable=False),
        sa.Column("CleverSchoolId", sa.Unicode(length=50), nullable=False),
        sa.Column("Name", sa.Unicode(length=200), nullable=False),
        sa.Column("DatabaseName", sa.Unicode(length=100), nullable=False),
        sa.Column("SchoolPrefix", sa.Unicode(length=100), nullable=False),
        sa.Column("IsActive", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("RequiresFullSync", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("SyncLeaseOwner", sa.Unicode(length=200), nullable=True),
        sa.Column(
            "SyncLeaseExpiresAt",
            sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"),
            nullable=True,
        ),
        sa.Column(
            "CreatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column(
            "UpdatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["DistrictId"], ["Districts.DistrictId"], name=op.f("FK_Schools_DistrictId_Districts")
        ),
        sa.PrimaryKeyConstraint("SchoolId", name=op.f("PK_Schools")),
        sa.UniqueConstraint("CleverSchoolId", name=op.f("UQ_Schools_CleverSchoolId")),
    )
    with op.batch_alter_table("Schools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("IX_Schools_DistrictId"), ["DistrictId"], unique=False)
        batch_op.create_index(batch_op.f("IX_Schools_SchoolPrefix"), ["SchoolPrefix"], unique=False)

    op.create_table(
        "SyncHistory",
        sa.Column("SyncId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("SchoolId", sa.Integer(), nullable=False),
        sa.Column("EntityType", sa.Unicode(length=50), nullable=False),
        sa.Column("SyncType", sa.Unicode(length=20), nullable=False),
        sa.Column(
            "SyncStartTime", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column(
            "SyncEndTime", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.Column("Status", sa.Unicode(length=20), nullable=False),
        sa.Column("RecordsProcessed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("RecordsInserted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("RecordsUpdated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("RecordsDeleted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("RecordsFailed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "ErrorMessage", sa.UnicodeText().with_variant(sa.NVARCHAR(), "mssql"), nullable=True
        ),
        sa.Column(
            "LastSyncTimestamp",
            sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"),
            nullable=True,
        ),
        sa.Column("LastEventId", sa.Unicode(length=100), nullable=True),
        sa.Column("CorrelationId", sa.Unicode(length=64), nullable=True),
        sa.CheckConstraint(
            sa.column("EntityType").in_(["Student", "Teacher", "Section"]),
            name=op.f("CK_SyncHistory_EntityType"),
        ),
        sa.CheckConstraint(
            sa.column("Status").in_(["InProgress", "Success", "Failed", "Partial"]),
            name=op.f("CK_SyncHistory_Status"),
        ),
        sa.CheckConstraint(
            sa.column("SyncType").in_(["Full", "Incremental"]), name=op.f("CK_SyncHistory_SyncType")
        ),
        sa.ForeignKeyConstraint(
            ["SchoolId"],
            ["Schools.SchoolId"],
            name=op.f("FK_SyncHistory_SchoolId_Schools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("SyncId", name=op.f("PK_SyncHistory")),
    )
    with op.batch_alter_table("SyncHistory", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("IX_SyncHistory_SchoolId_SyncStartTime"),
            ["SchoolId", "SyncStartTime"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("SyncHistory", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_SyncHistory_SchoolId_SyncStartTime"))

    op.drop_table("SyncHistory")
    with op.batch_alter_table("Schools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_Schools_SchoolPrefix"))
        batch_op.drop_index(batch_op.f("IX_Schools_DistrictId"))

    op.drop_table("Schools")
    with op.batch_alter_table("Districts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_Districts_DistrictPrefix"))

    op.drop_table("Districts")
