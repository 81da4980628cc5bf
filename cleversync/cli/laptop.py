"""The laptop's defaults (no Key Vault): SQLite files under the data folder, created on demand.

Only the CLI's set-up commands invent connection strings; with Key Vault nothing is invented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cleversync.secrets import names

if TYPE_CHECKING:
    from cleversync.services import Services


def ensure_local_sessiondb(services: Services) -> None:
    """On a laptop with no SessionDb yet, store a connection string for a SQLite file."""
    store = services.secret_store
    if services.settings.uses_key_vault or store.get(names.SESSIONDB_CONNECTION_STRING):
        return
    path = (services.settings.data_dir / "sessiondb.sqlite").resolve()
    store.set(names.SESSIONDB_CONNECTION_STRING, f"sqlite:///{path}")
