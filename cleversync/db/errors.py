"""Our error for anything a database call raised, importable without loading SQLAlchemy."""

from __future__ import annotations

from cleversync.errors import DatabaseError


def database_error(exc: BaseException, what: str) -> DatabaseError | None:
    """``exc`` as our DatabaseError (sanitized, naming ``what``) if SQLAlchemy raised it;
    None for anything else. The translation itself is ``db.retry.translate``."""
    if not type(exc).__module__.startswith("sqlalchemy"):
        return None
    from cleversync.db.retry import translate

    return translate(exc, what)
