"""SessionDb: the school registry, sync history and leases (every statement on SessionDb)."""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy.engine import Engine

# What the sync modules hold SessionDb by, without importing SQLAlchemy themselves.
SessionEngine: TypeAlias = Engine
