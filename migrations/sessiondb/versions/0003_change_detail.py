"""Change detail: SyncChanges, SyncHistory.ChangesOmitted and the DryRun status

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ["InProgress", "Success", "Failed", "Partial"]
NEW_STATUSES = [*OLD_STATUSES, "DryRun"]


def upgrade() -> None:
    with op.batch_alter_table("SyncHistory", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ChangesOmitted", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.drop_constraint(batch_op.f("CK_SyncHistory_Status"), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("CK_SyncHistory_Status"), sa.column("Status").in_(NEW_STATUSES)
        )

    op.create_table(
        "SyncChanges",
        sa.Column("ChangeId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("SyncId", sa.Integer(), nullable=False),
        sa.Column("SchoolId", sa.Integer(), nullable=False),
        sa.Column("EntityType", sa.Unicode(length=50), nullable=False),
        sa.Column("CleverId", sa.Unicode(length=50), nullable=False),
        sa.Column("ChangeKind", sa.Unicode(length=20), nullable=False),
        sa.Column("Name", sa.Unicode(length=200), nullable=True),
        sa.Column("Fields", sa.UnicodeText().with_variant(sa.NVARCHAR(), "mssql"), nullable=True),
        sa.Column(
            "RecordedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.CheckConstraint(
            sa.column("EntityType").in_(["Student", "Teacher", "Section"]),
            name=op.f("CK_SyncChanges_EntityType"),
        ),
        sa.CheckConstraint(
            sa.column("ChangeKind").in_(
                ["Inserted", "Updated", "Deleted", "Deactivated", "Reactivated", "HeldBack"]
            ),
            name=op.f("CK_SyncChanges_ChangeKind"),
        ),
        sa.ForeignKeyConstraint(
            ["SyncId"],
            ["SyncHistory.SyncId"],
            name=op.f("FK_SyncChanges_SyncId_SyncHistory"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ChangeId", name=op.f("PK_SyncChanges")),
    )
    with op.batch_alter_table("SyncChanges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("IX_SyncChanges_SyncId"), ["SyncId"], unique=False)
        batch_op.create_index(
            batch_op.f("IX_SyncChanges_SchoolId_CleverId"), ["SchoolId", "CleverId"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("SyncChanges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_SyncChanges_SchoolId_CleverId"))
        batch_op.drop_index(batch_op.f("IX_SyncChanges_SyncId"))

    op.drop_table("SyncChanges")
    # A preview's rows cannot be kept under the older check constraint.
    history = sa.table("SyncHistory", sa.column("Status"))
    op.execute(history.delete().where(history.c.Status == "DryRun"))
    with op.batch_alter_table("SyncHistory", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("CK_SyncHistory_Status"), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("CK_SyncHistory_Status"), sa.column("Status").in_(OLD_STATUSES)
        )
        batch_op.drop_column("ChangesOmitted", mssql_drop_default=True)
