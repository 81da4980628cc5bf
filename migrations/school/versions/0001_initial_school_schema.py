"""Initial school schema

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
        "Sections",
        sa.Column("SectionId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("CleverSectionId", sa.Unicode(length=50), nullable=False),
        sa.Column("Name", sa.Unicode(length=200), nullable=False),
        sa.Column("Period", sa.Unicode(length=50), nullable=True),
        sa.Column("Subject", sa.Unicode(length=100), nullable=True),
        sa.Column("Grade", sa.Unicode(length=50), nullable=True),
        sa.Column("SectionNumber", sa.Unicode(length=50), nullable=True),
        sa.Column("CleverTermId", sa.Unicode(length=50), nullable=True),
        sa.Column("CleverCourseId", sa.Unicode(length=50), nullable=True),
        sa.Column("CleverTeacherId", sa.Unicode(length=50), nullable=True),
        sa.Column("IsActive", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "DeactivatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.Column(
            "LastModifiedInClever",
            sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"),
            nullable=True,
        ),
        sa.Column(
            "CreatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column(
            "UpdatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("SectionId", name=op.f("PK_Sections")),
        sa.UniqueConstraint("CleverSectionId", name=op.f("UQ_Sections_CleverSectionId")),
    )
    op.create_table(
        "Students",
        sa.Column("StudentId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("CleverStudentId", sa.Unicode(length=50), nullable=False),
        sa.Column("FirstName", sa.Unicode(length=100), nullable=False),
        sa.Column("LastName", sa.Unicode(length=100), nullable=False),
        sa.Column("Email", sa.Unicode(length=200), nullable=True),
        sa.Column("Grade", sa.Unicode(length=50), nullable=True),
        sa.Column("StudentNumber", sa.Unicode(length=50), nullable=True),
        sa.Column("IsActive", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "DeactivatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.Column(
            "LastModifiedInClever",
            sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"),
            nullable=True,
        ),
        sa.Column(
            "CreatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column(
            "UpdatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("StudentId", name=op.f("PK_Students")),
        sa.UniqueConstraint("CleverStudentId", name=op.f("UQ_Students_CleverStudentId")),
    )
    op.create_table(
        "Teachers",
        sa.Column("TeacherId", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("CleverTeacherId", sa.Unicode(length=50), nullable=False),
        sa.Column("FirstName", sa.Unicode(length=100), nullable=False),
        sa.Column("LastName", sa.Unicode(length=100), nullable=False),
        sa.Column("Email", sa.Unicode(length=200), nullable=True),
        sa.Column("Title", sa.Unicode(length=100), nullable=True),
        sa.Column("IsActive", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "DeactivatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True
        ),
        sa.Column(
            "LastModifiedInClever",
            sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"),
            nullable=True,
        ),
        sa.Column(
            "CreatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.Column(
            "UpdatedAt", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("TeacherId", name=op.f("PK_Teachers")),
        sa.UniqueConstraint("CleverTeacherId", name=op.f("UQ_Teachers_CleverTeacherId")),
    )
    op.create_table(
        "SectionStudents",
        sa.Column("SectionId", sa.Integer(), nullable=False),
        sa.Column("StudentId", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["SectionId"],
            ["Sections.SectionId"],
            name=op.f("FK_SectionStudents_SectionId_Sections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["StudentId"],
            ["Students.StudentId"],
            name=op.f("FK_SectionStudents_StudentId_Students"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("SectionId", "StudentId", name=op.f("PK_SectionStudents")),
    )
    with op.batch_alter_table("SectionStudents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("IX_SectionStudents_StudentId"), ["StudentId"], unique=False
        )

    op.create_table(
        "SectionTeachers",
        sa.Column("SectionId", sa.Integer(), nullable=False),
        sa.Column("TeacherId", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["SectionId"],
            ["Sections.SectionId"],
            name=op.f("FK_SectionTeachers_SectionId_Sections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["TeacherId"],
            ["Teachers.TeacherId"],
            name=op.f("FK_SectionTeachers_TeacherId_Teachers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("SectionId", "TeacherId", name=op.f("PK_SectionTeachers")),
    )
    with op.batch_alter_table("SectionTeachers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("IX_SectionTeachers_TeacherId"), ["TeacherId"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("SectionTeachers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_SectionTeachers_TeacherId"))

    op.drop_table("SectionTeachers")
    with op.batch_alter_table("SectionStudents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("IX_SectionStudents_StudentId"))

    op.drop_table("SectionStudents")
    op.drop_table("Teachers")
    op.drop_table("Students")
    op.drop_table("Sections")
