"""Alembic environment for the school database; the shared logic is in cleversync.db.migrate."""

from cleversync.db.migrate import run_environment

run_environment("school")
