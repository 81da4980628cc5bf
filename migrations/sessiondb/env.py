"""Alembic environment for the sessiondb database; the shared logic is in cleversync.db.migrate."""

from cleversync.db.migrate import run_environment

run_environment("sessiondb")
