"""The composition root: builds the real I/O clients lazily, once, and hands them out.

Only the entry points (the Functions app, through ``runtime``, and the CLI) create a
``Services``; everything else receives what it needs as arguments. It owns the process's one
``Redactor``: the secret store and token provider register secrets in it, and the logging
filter, SyncHistory, the HTTP bodies and the CLI's output are cleaned with it. Nothing here
runs at import time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from cleversync.errors import ConfigurationError, DatabaseUnavailableError
from cleversync.redaction import Redactor
from cleversync.secrets import names

if TYPE_CHECKING:
    import ssl

    from sqlalchemy.engine import Engine

    from cleversync.clever.breaker import DistrictBreaker
    from cleversync.clever.client import CleverClient
    from cleversync.clever.pages import FieldReport
    from cleversync.clever.ratelimit import RateLimitPacer
    from cleversync.clever.tokens import TokenProvider
    from cleversync.db.sessiondb.changes import ChangeLog
    from cleversync.db.sessiondb.history import History
    from cleversync.db.sessiondb.overview import Overview
    from cleversync.db.sessiondb.registry import DistrictRecord, Registry, SchoolRecord
    from cleversync.enrol import DiscoveredSchool
    from cleversync.notify.notifier import Notifier
    from cleversync.orchestrator import Orchestrator
    from cleversync.queue import SyncQueue
    from cleversync.runs import QueuedRuns
    from cleversync.secrets.base import SecretStore
    from cleversync.settings import Settings
    from cleversync.sync.preview import Preview
    from cleversync.sync.school import Progress, SchoolSync


# The cyclic collector's thresholds once a process is loaded (Python's: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)


def prepare_process() -> None:
    """For the entry points, once their modules are loaded: take the heap out of the GC's way.

    A sync makes many short-lived objects, and the cyclic collector's full sweeps then walk
    every object the imports left (SQLAlchemy, pydantic, Azure SDKs: about 100,000), again
    and again: a fifth of a school's sync time in the benchmarks. ``gc.freeze`` moves what
    is alive now to a generation the collector skips. No full collection first: it cost a
    run's start-up 0.05-0.1 s, to free the few cycles the imports left behind.

    Then the collector runs less often (``GC_THRESHOLDS``): at Python's 700 allocations a
    young collection, a district run of 20 schools made some 600 collections, each pausing
    every school's thread while it walked the pages and rows then alive; at 50,000, a few,
    for a quarter less CPU. Memory is freed by reference counting as before; only garbage
    cycles wait longer, and full collections still come (every 20 x 10 young ones). The
    collector is turned on (an entry point may have held it off while its modules loaded).
    """
    import gc

    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.enable()


class Services:
    """Lazily built, cached clients for one process (or one test).

    ``settings`` may be a loader (``Settings.load``), called on first use: the CLI needs the
    Redactor for its logging and error messages before it knows whether the settings are valid.
    """

    def __init__(
        self,
        settings: Settings | Callable[[], Settings],
        *,
        secret_store: SecretStore | None = None,
        redactor: Redactor | None = None,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        utc_clock: Callable[[], datetime] | None = None,
        smtp_context: ssl.SSLContext | None = None,
    ) -> None:
        """``smtp_context``: the TLS context for the SMTP server (default: the system's CAs)."""
        from cleversync.timeutil import utcnow

        self._settings = settings
        self.redactor = redactor or Redactor()
        self._secret_store = secret_store
        self._http_transport = http_transport
        self._smtp_context = smtp_context
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.utc_clock = utc_clock or utcnow
        self._pacers: dict[int, RateLimitPacer] = {}
        self._http: httpx.Client | None = None
        self._token_provider: TokenProvider | None = None
        self._session_engine: Engine | None = None
        self._session_checked = False
        self._school_engines: dict[str, tuple[str, Engine]] = {}
        self._lock = threading.RLock()

    @property
    def settings(self) -> Settings:
        settings = self._settings
        if callable(settings):
            with self._lock:
                if callable(self._settings):
                    self._settings = self._settings()
                settings = self._settings
        return settings

    # --- secrets ------------------------------------------------------------------------

    @property
    def secret_store(self) -> SecretStore:
        with self._lock:
            if self._secret_store is None:
                self._secret_store = self._build_secret_store()
            return self._secret_store

    def _build_secret_store(self) -> SecretStore:
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
            self.settings.secrets_file,
            cache_seconds=cache,
            redactor=self.redactor,
            named_by="CleverSync__Secrets__File" if self.settings.secrets.file else None,
        )

    # --- SessionDb ----------------------------------------------------------------------

    def session_connection_string(self) -> str:
        """SessionDb's connection string, from the secret store."""
        store = self.secret_store
        value = store.get(names.SESSIONDB_CONNECTION_STRING)
        if value:
            return value
        if self.settings.uses_key_vault:
            raise ConfigurationError(
                f"secret {names.SESSIONDB_CONNECTION_STRING} is missing from Key Vault "
                f"{self.settings.key_vault.url}; create it with SessionDb's connection string"
            )
        raise ConfigurationError(
            f"SessionDb is not set up ({names.SESSIONDB_CONNECTION_STRING} is not in "
            f"{store.description}); run 'cleversync db upgrade' first"
        )

    def session_engine(self, *, create: bool = False) -> Engine:
        """The SessionDb engine (``create``: allowed to create a SQLite file)."""
        if self._session_engine is not None:
            return self._session_engine
        from cleversync.db.engines import engine_for

        # Read the secret outside the lock: a slow vault must not block other threads.
        connection_string = self.session_connection_string()
        with self._lock:
            if self._session_engine is None:
                try:
                    engine = engine_for(connection_string, create_sqlite_file=create, durable=False)
                except DatabaseUnavailableError as exc:
                    raise DatabaseUnavailableError(
                        f"SessionDb: {exc}; create it with 'cleversync db upgrade'"
                    ) from exc
                self._session_engine = engine
            return self._session_engine

    def checked_session_engine(self) -> Engine:
        """The SessionDb engine, after checking its schema is current."""
        from cleversync.db.engines import named
        from cleversync.db.migrate import require_current

        engine = self.session_engine()
        if not self._session_checked:
            what = named("SessionDb", engine)
            require_current(engine, "sessiondb", what, "cleversync db upgrade")
            self._session_checked = True
        return engine

    @property
    def registry(self) -> Registry:
        from cleversync.db.sessiondb.registry import Registry

        return Registry(self.checked_session_engine())

    @property
    def history(self) -> History:
        from cleversync.db.sessiondb.history import History

        return History(
            self.checked_session_engine(),
            policy=self.settings.retry.database,
            redactor=self.redactor,
            clock=self.utc_clock,
            sleep=self.sleep,
        )

    @property
    def overview(self) -> Overview:
        """The dashboard's read-only queries."""
        from cleversync.db.sessiondb.overview import Overview

        return Overview(
            self.checked_session_engine(),
            policy=self.settings.retry.database,
            clock=self.utc_clock,
            sleep=self.sleep,
        )

    # --- registering districts and schools (the CLI and the dashboard share these) ------

    def verify_clever_credentials(
        self, *, clever_district_id: str, prefix: str, client_id: str, client_secret: str
    ) -> None:
        from cleversync import enrol

        enrol.verify_credentials(self, clever_district_id, prefix, client_id, client_secret)

    def store_district_credentials(
        self, prefix: str, client_id: str, client_secret: str
    ) -> tuple[str, str]:
        from cleversync import enrol

        return enrol.store_credentials(self, prefix, client_id, client_secret)

    def register_district(
        self, *, name: str, clever_id: str, prefix: str, client_id: str, client_secret: str
    ) -> DistrictRecord:
        from cleversync import enrol

        return enrol.register_district(self, name, clever_id, prefix, client_id, client_secret)

    def new_school_connection_string(self, prefix: str) -> tuple[str | None, bool]:
        from cleversync import enrol

        return enrol.new_school_connection_string(self, prefix)

    def register_discovered_school(
        self, district_id: int, clever_id: str, name: str
    ) -> SchoolRecord:
        from cleversync import enrol

        return enrol.register_school(self, district_id, clever_id, name)

    def discover_schools(self, district_id: int, *, register: bool) -> list[DiscoveredSchool]:
        from cleversync import enrol

        return enrol.discover(self, district_id, register=register)

    @property
    def changes(self) -> ChangeLog:
        """The change detail of sync runs (what each run did to each record)."""
        from cleversync.db.sessiondb.changes import ChangeLog

        return ChangeLog(
            self.checked_session_engine(), policy=self.settings.retry.database, sleep=self.sleep
        )

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

    # --- Clever -------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                from cleversync.clever.http import build_http_client

                self._http = build_http_client(self.settings, transport=self._http_transport)
            return self._http

    @property
    def token_provider(self) -> TokenProvider:
        """One token cache per process: every school of a district shares its token."""
        with self._lock:
            if self._token_provider is None:
                from cleversync.clever.tokens import TokenProvider

                self._token_provider = TokenProvider(
                    settings=self.settings,
                    secret_store=self.secret_store,
                    http=self.http,
                    district_count=lambda: self.registry.district_count(),
                    wall_clock=self.wall_clock,
                    redactor=self.redactor,
                )
            return self._token_provider

    def pacer(self, district_id: int) -> RateLimitPacer:
        """One pacer per district token, shared by every school of the district."""
        from cleversync.clever.ratelimit import RateLimitPacer

        with self._lock:
            if district_id not in self._pacers:
                self._pacers[district_id] = RateLimitPacer(
                    clock=self.wall_clock,
                    sleep=self.sleep,
                    max_wait=self.settings.retry.max_wait_seconds,
                )
            return self._pacers[district_id]

    def clever_client(
        self,
        district: DistrictRecord,
        field_report: FieldReport | None = None,
        *,
        wait: Callable[[float], None] | None = None,
        breaker: DistrictBreaker | None = None,
    ) -> CleverClient:
        from cleversync.clever.client import CleverClient
        from cleversync.clever.tokens import DistrictRef

        ref = DistrictRef(district.district_id, district.clever_district_id, district.prefix)
        return CleverClient(
            http=self.http,
            settings=self.settings,
            tokens=self.token_provider.for_district(ref),
            pacer=self.pacer(district.district_id),
            field_report=field_report,
            sleep=self.sleep,
            clock=self.wall_clock,
            wait=wait,
            breaker=breaker,
            prefetch=True,
        )

    # --- sync ---------------------------------------------------------------------------

    def school_sync(
        self,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        owner: str | None = None,
    ) -> SchoolSync:
        from cleversync.db.sessiondb.lease import new_owner
        from cleversync.sync.school import SchoolSync

        return SchoolSync(
            settings=self.settings,
            session_engine=self.checked_session_engine(),
            school_engine=self.school_engine,
            clever=self.clever_client,
            owner=owner or new_owner(),
            redactor=self.redactor,
            clock=self.utc_clock,
            sleep=self.sleep,
            on_progress=on_progress,
        )

    def preview_full_sync(self, school_id: int) -> Preview:
        """What a full sync of the school would insert, update and delete now; writes only
        its ``DryRun`` history rows (nothing to the school database, no lease)."""
        from cleversync.db.sessiondb.registry import Registry
        from cleversync.sync.preview import preview_full_sync

        return preview_full_sync(
            school_id,
            settings=self.settings,
            registry=Registry(self.checked_session_engine(), clock=self.utc_clock),
            history=self.history,
            school_engine=self.school_engine,
            clever=self.clever_client,
            clock=self.utc_clock,
        )

    def orchestrator(
        self, *, on_progress: Callable[[Progress], None] | None = None
    ) -> Orchestrator:
        from cleversync.orchestrator import Orchestrator

        return Orchestrator(
            settings=self.settings,
            school_sync=self.school_sync(on_progress=on_progress),
            clock=self.utc_clock,
            notifier=self.notifier(),
        )

    # --- email --------------------------------------------------------------------------

    _notifier: Notifier | None = None

    def notifier(self) -> Notifier:
        """Run reports and alerts: SMTP when ``Notify__SmtpHost`` is set; otherwise .eml files
        in ``DataDir/outbox`` on a laptop (local secrets file), and nothing with Key Vault
        (an app in Azure has no folder an operator reads)."""
        with self._lock:
            if self._notifier is None:
                self._notifier = self._build_notifier()
            return self._notifier

    def use_notifier(self, notifier: Notifier) -> None:
        """Report through ``notifier`` instead (tests, tools)."""
        with self._lock:
            self._notifier = notifier

    def _build_notifier(self) -> Notifier:
        from cleversync.db.sessiondb.outbox import Outbox
        from cleversync.notify.notifier import Notifier
        from cleversync.notify.transport import FolderTransport, SmtpTransport, Transport

        settings = self.settings.notify
        transport: Transport | None = None
        if settings.on == "never":
            pass
        elif settings.uses_smtp:
            transport = SmtpTransport(
                settings,
                password=lambda: self.secret_store.get(names.NOTIFY_SMTP_PASSWORD),
                redactor=self.redactor,
                context=self._smtp_context,
            )
        elif not self.settings.uses_key_vault:
            transport = FolderTransport(self.settings.data_dir / "outbox", clock=self.utc_clock)
        return Notifier(
            settings,
            outbox=lambda: Outbox(
                self.checked_session_engine(),
                policy=self.settings.retry.database,
                redactor=self.redactor,
                clock=self.utc_clock,
                sleep=self.sleep,
            ),
            transport=transport,
            redactor=self.redactor,
            clock=self.utc_clock,
        )

    # --- the sync queue -----------------------------------------------------------------

    _sync_queue: SyncQueue | None = None

    def sync_queue(self) -> SyncQueue:
        """The queue of school sync messages (``CleverSyncQueueName`` on the host's storage)."""
        with self._lock:
            queue = self._sync_queue
            if queue is None:
                from cleversync.queue import StorageSyncQueue

                queue = StorageSyncQueue.from_environment(self.settings.queue_name)
                self._sync_queue = queue
            return queue

    def use_sync_queue(self, queue: SyncQueue) -> None:
        """Send to ``queue`` instead (tests, tools)."""
        with self._lock:
            self._sync_queue = queue

    def queued_runs(self) -> QueuedRuns:
        from cleversync.db.sessiondb.lease import Leases
        from cleversync.db.sessiondb.runs import Runs
        from cleversync.runs import QueuedRuns

        engine = self.checked_session_engine()
        policy = self.settings.retry.database
        return QueuedRuns(
            orchestrator=self.orchestrator(),
            runs=Runs(
                engine,
                policy=policy,
                redactor=self.redactor,
                clock=self.utc_clock,
                sleep=self.sleep,
            ),
            leases=Leases(engine, policy=policy, clock=self.utc_clock, sleep=self.sleep),
            queue=self.sync_queue(),
            school_sync=lambda owner: self.school_sync(owner=owner),
            clock=self.utc_clock,
        )

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        with self._lock:
            engines = [e for _, e in self._school_engines.values()]
            if self._session_engine is not None:
                engines.append(self._session_engine)
            self._school_engines.clear()
            self._session_engine = None
        for engine in engines:
            engine.dispose()
