"""Registering districts and schools: what ``district set-credentials``, ``school discover
--register`` and the dashboard's "register a district" share (through ``Services``).

Credentials are verified against Clever before anything is stored, and never echoed: they
are registered with the Redactor first, so no error or log line can carry them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cleversync.errors import CleverSyncError, UsageError
from cleversync.secrets import names

if TYPE_CHECKING:
    from cleversync.db.sessiondb.registry import DistrictRecord, SchoolRecord
    from cleversync.services import Services


@dataclass(frozen=True)
class DiscoveredSchool:
    """A school Clever lists for a district, and its registration here (if any)."""

    clever_id: str
    name: str
    school: SchoolRecord | None
    added: bool  # registered by this call


def verify_credentials(
    services: Services, clever_district_id: str, prefix: str, client_id: str, client_secret: str
) -> None:
    """Fetch a token with these credentials, stored nowhere; CleverSyncError (naming nothing
    secret) when Clever refuses them or cannot be reached."""
    from cleversync.clever.tokens import DistrictRef, TokenProvider
    from cleversync.secrets.memory import MemorySecretStore

    if not client_id.strip() or not client_secret.strip():
        raise UsageError("the client id and the client secret must not be empty")
    services.redactor.register_basic(client_id, client_secret)
    candidate = MemorySecretStore(
        {names.client_id(prefix): client_id, names.client_secret(prefix): client_secret},
        redactor=services.redactor,
    )
    checker = TokenProvider(
        settings=services.settings,
        secret_store=candidate,
        http=services.http,
        district_count=lambda: 0,
        redactor=services.redactor,
    )
    checker.token(DistrictRef(0, clever_district_id, prefix))


def store_credentials(
    services: Services, prefix: str, client_id: str, client_secret: str
) -> tuple[str, str]:
    """Write a district's Clever app credentials to the secret store; their names."""
    services.redactor.register_basic(client_id, client_secret)
    id_name, secret_name = names.client_id(prefix), names.client_secret(prefix)
    store = services.secret_store
    store.set(id_name, client_id)
    store.set(secret_name, client_secret)
    return id_name, secret_name


def register_district(
    services: Services,
    name: str,
    clever_id: str,
    prefix: str,
    client_id: str,
    client_secret: str,
) -> DistrictRecord:
    """Check the values, verify the credentials against Clever, then register the district
    and store its credentials. Nothing is written when a step before fails."""
    client_id, client_secret = client_id.strip(), client_secret.strip()
    if not client_id or not client_secret:
        raise UsageError("the client id and the client secret must not be empty")
    services.redactor.register_basic(client_id, client_secret)
    registry = services.registry
    name, clever_id = registry.check_new_district(name=name, clever_id=clever_id, prefix=prefix)
    try:
        verify_credentials(services, clever_id, prefix, client_id, client_secret)
    except CleverSyncError as exc:
        raise CleverSyncError(
            f"Clever did not accept these credentials for district {clever_id}: "
            f"{services.redactor.redact(str(exc))}; nothing was stored"
        ) from None
    district = registry.add_district(name=name, clever_id=clever_id, prefix=prefix)
    store_credentials(services, district.prefix, client_id, client_secret)
    return district


def new_school_connection_string(services: Services, prefix: str) -> tuple[str | None, bool]:
    """The school's connection string if the store has one, else (on a laptop) a new local
    SQLite one; see ``cli.laptop.known_school_connection_string``."""
    from cleversync.cli.laptop import known_school_connection_string

    return known_school_connection_string(services, prefix)


def discover(services: Services, district_id: int, *, register: bool) -> list[DiscoveredSchool]:
    """The district's schools in Clever with their registrations; the missing ones are
    registered (prefix derived from the name) when ``register``."""
    registry = services.registry
    district = registry.get_district(district_id)
    client = services.clever_client(district)
    found = [school for page in client.schools(page_size=100) for school in page.records]
    # Removed schools keep their Clever ids: they count as registered.
    registered = {s.clever_school_id: s for s in registry.list_schools(include_removed=True)}
    out: list[DiscoveredSchool] = []
    for school in found:
        known = registered.get(school.id)
        added = False
        if known is None and register:
            known = register_school(
                services, district.district_id, school.id, school.name or school.id
            )
            registered[school.id] = known
            added = True
        out.append(DiscoveredSchool(school.id, school.name or school.id, known, added))
    return out


def register_school(
    services: Services, district_id: int, clever_id: str, name: str
) -> SchoolRecord:
    """Register a school found in Clever with a prefix derived from its name."""
    from cleversync.connstr import database_name

    registry = services.registry
    base = names.prefix_from_name(name)[: names.MAX_PREFIX_LENGTH - 4]
    taken = {s.prefix.lower() for s in registry.list_schools(include_removed=True)} | {
        d.prefix.lower() for d in registry.list_districts(include_removed=True)
    }
    prefix, n = base, 2
    while prefix.lower() in taken:
        prefix, n = f"{base}-{n}", n + 1
    connection_string, is_new = new_school_connection_string(services, prefix)
    try:
        derived = database_name(connection_string) if connection_string else None
    except Exception:  # a bad stored string is reported by db upgrade and sync, not here
        derived = None
    school = registry.add_school(
        district_id=district_id,
        clever_id=clever_id,
        name=name[:200] if name.strip() else clever_id,
        prefix=prefix,
        database_name=(derived or prefix)[:100],
    )
    if is_new and connection_string is not None:
        services.secret_store.set(names.connection_string(prefix), connection_string)
    return school
