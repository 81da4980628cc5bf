"""The composition root: builds the real I/O clients lazily, once, and hands them out.

Only the entry points (the Functions app and the CLI) create a ``Services``; everything else
receives what it needs as arguments. Nothing here runs at import time.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from cleversync.errors import ConfigurationError
from cleversync.redaction import Redactor, process_redactor
from cleversync.secrets import names

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from cleversync.registry import Registry, SchoolRecord
    from cleversync.secrets.base import SecretStore
    from cleversync.settings import Settings


class Services:
    """Lazily built, cached clients for one process (or one test)."""

    def __init__(
        self,
        settings: Settings,
        *,
        secret_store: SecretStore | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.settings = settings
        self.redactor = redactor or process_redactor
        self._secret_store = secret_store
        self._session_engine: Engine | None = None
        self._school_engines: dict[str, tuple[str, Engine]] = {}
        self._lock = threading.RLock()

    # --- secrets ------------------------------------------------------------------------

    @cached_property
    def secret_store(self) -> SecretStore:
        if self._secret_store is not None:
            return self._secret_store
        cache = self.settings.secrets.cache_seconds
        if self.settings.uses_key_vault:
            from cleversync.secrets.keyvault import KeyVaultSecretStore

            return KeyVaultSecretStore(
                self.settings.key_vault.url,
                cache_seconds=cache,
                retry_attempts=self.settings.key_vault.retry_attempts,
                retry_delay_seconds=self.settings.key_vault.retry_delay_seconds,
                redactor=self.redactor,
            )
        from cleversync.secrets.local import LocalSecretStore

        return LocalSecretStore(
            self.settings.secrets_file, cache_seconds=cache, redactor=self.redactor
        )

    # --- SessionDb ----------------------------------------------------------------------

    def session_connection_string(self, *, create_local: bool = False) -> str:
        """SessionDb's connection string; on a laptop, ``create_local`` invents a SQLite one."""
        store = self.secret_store
        value = store.get(names.SESSIONDB_CONNECTION_STRING)
        if value:
            return value
        if self.settings.uses_key_vault:
            raise ConfigurationError(
                f"secret {names.SESSIONDB_CONNECTION_STRING} is missing from Key Vault "
                f"{self.settings.key_vault.url}; create it with SessionDb's connection string"
            )
        if not create_local:
            raise ConfigurationError(
                f"SessionDb is not set up ({names.SESSIONDB_CONNECTION_STRING} is not in "
                f"{store.description}); run 'cleversync db upgrade' first"
            )
        path = (self.settings.data_dir / "sessiondb.sqlite").resolve()
        url = f"sqlite:///{path}"
        store.set(names.SESSIONDB_CONNECTION_STRING, url)
        return url

    def session_engine(self, *, create: bool = False) -> Engine:
        """The SessionDb engine (``create``: allowed to create the SQLite file and secret)."""
        with self._lock:
            if self._session_engine is None:
                from cleversync.db.engines import engine_for

                connection_string = self.session_connection_string(create_local=create)
                self._session_engine = engine_for(connection_string, create_sqlite_file=create)
            return self._session_engine

    def checked_session_engine(self) -> Engine:
        """The SessionDb engine, after checking its schema is current."""
        from cleversync.db.migrate import require_current

        engine = self.session_engine()
        if not getattr(engine, "_cleversync_checked", False):
            require_current(engine, "sessiondb", "SessionDb", "cleversync db upgrade")
            engine._cleversync_checked = True  # type: ignore[attr-defined]
        return engine

    @property
    def registry(self) -> Registry:
        from cleversync.registry import Registry

        return Registry(self.checked_session_engine())

    # --- school databases ---------------------------------------------------------------

    def school_connection_string(self, school: SchoolRecord) -> str:
        return self.secret_store.require(school.connection_secret)

    def school_engine(self, school: SchoolRecord, *, create: bool = False) -> Engine:
        """The school's engine; a new one when its connection string was rotated."""
        from cleversync.db.engines import engine_for

        connection_string = self.school_connection_string(school)
        with self._lock:
            cached = self._school_engines.get(school.prefix)
            if cached is not None and cached[0] == connection_string:
                return cached[1]
            engine = engine_for(connection_string, create_sqlite_file=create)
            self._school_engines[school.prefix] = (connection_string, engine)
        if cached is not None:
            cached[1].dispose()
        return engine

    def local_school_connection_string(self, prefix: str) -> str:
        """The SQLite URL a laptop school gets when no connection string was given."""
        path = (self.settings.data_dir / f"school-{prefix}.sqlite").resolve()
        return f"sqlite:///{path}"

    def close(self) -> None:
        with self._lock:
            engines = [e for _, e in self._school_engines.values()]
            if self._session_engine is not None:
                engines.append(self._session_engine)
            self._school_engines.clear()
            self._session_engine = None
        for engine in engines:
            engine.dispose()
