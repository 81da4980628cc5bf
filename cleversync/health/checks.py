"""What health checks, what each outcome means, and the two views of a report.

Statuses. Each check reports ``Healthy``, ``Degraded`` or ``Unhealthy`` (or ``Pending``: not
finished yet, ``Skipped``: not run, ``Unknown``: nothing known yet); the overall status is the
worst of them, with ``Pending`` counting as Degraded and ``Skipped``/``Unknown`` as Healthy:

- Unhealthy: the configuration is invalid; SessionDb cannot be reached (or did not answer in
  time, or its schema is not current); every registered district fails to authenticate; the
  secret store is unreachable with nothing cached to serve from.
- Degraded: the secret store is unreachable while cached secrets still serve; some districts
  fail to authenticate (or only serve a cached token whose refresh failed); a check is still
  pending (a first call that did not see the first check finish in time).

Clever is never called per probe: districts are judged by the token cache's own state
(``TokenProvider.states()``). A district this instance has not used yet is ``Unknown`` when
it has credentials in the secret store and ``Unhealthy`` when it has none.

Two views. ``HealthReport.body`` is the detailed report (district names, errors, secret
names): it is served behind a function key. ``HealthReport.public_body()`` is what an
anonymous caller sees: the overall status, ``checkedAt`` and each check's status, nothing
that names a district, a secret, a path or a host. ``starting_report()`` is the answer while
the process is still building its clients: Degraded, every check Pending, so a fresh instance
answers 200 at once instead of flapping to 503 (or making the probe wait) while it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cleversync.db.errors import database_error
from cleversync.errors import CleverSyncError, ConfigurationError
from cleversync.vocabulary import HealthStatus

if TYPE_CHECKING:
    from cleversync.clever.tokens import TokenState
    from cleversync.db.sessiondb.registry import DistrictRecord, Registry
    from cleversync.secrets.base import SecretStore
    from cleversync.services import Services

logger = logging.getLogger(__name__)

_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}
_COUNTS_AS = {
    HealthStatus.HEALTHY: HealthStatus.HEALTHY,
    HealthStatus.UNKNOWN: HealthStatus.HEALTHY,
    HealthStatus.SKIPPED: HealthStatus.HEALTHY,
    HealthStatus.PENDING: HealthStatus.DEGRADED,
    HealthStatus.DEGRADED: HealthStatus.DEGRADED,
    HealthStatus.UNHEALTHY: HealthStatus.UNHEALTHY,
}

Check = dict[str, Any]
Record = Callable[[str, Check], None]


def overall(checks: Mapping[str, Check]) -> HealthStatus:
    """The worst check status (Pending counts as Degraded; nothing known is Degraded)."""
    if not checks:
        return HealthStatus.DEGRADED
    statuses = (
        _COUNTS_AS.get(check.get("status", ""), HealthStatus.DEGRADED) for check in checks.values()
    )
    return max(statuses, key=_RANK.__getitem__)


@dataclass(frozen=True)
class HealthReport:
    status: HealthStatus
    body: dict[str, Any]

    @property
    def http_status(self) -> int:
        return 503 if self.status == HealthStatus.UNHEALTHY else 200

    def public_body(self) -> dict[str, Any]:
        """The anonymous view: statuses and when they were checked, nothing else.

        Built by picking fields, not by removing them, so a detail added to a check later
        cannot reach an anonymous caller by accident.
        """
        checks = self.body.get("checks") or {}
        return {
            "status": self.status,
            "checkedAt": self.body.get("checkedAt"),
            "checks": {name: {"status": check.get("status")} for name, check in checks.items()},
        }


def starting_report(names: tuple[str, ...]) -> HealthReport:
    """The answer while the process is still building its clients: nothing is known yet.

    Degraded (200), like a first check that has not finished: a starting instance is not
    known to be broken, and a 503 here would make every cold start look like an outage.
    """
    checks: dict[str, Check] = {name: {"status": HealthStatus.PENDING} for name in names}
    body: dict[str, Any] = {
        "status": HealthStatus.DEGRADED,
        "checkedAt": None,
        "ageSeconds": None,
        "lastSuccessfulAuthentication": None,
        "lastError": None,
        "refresh": {
            "state": "Starting",
            "message": "CleverSync is still starting; the checks run once its clients are built",
        },
        "checks": checks,
    }
    return HealthReport(HealthStatus.DEGRADED, body)


@dataclass(frozen=True)
class ProbeTargets:
    """What the checks look at. The store, SessionDb and the token cache are reached only
    when their check runs: building the store or connecting to SessionDb can fail, and that
    failure is what the check reports."""

    # A health body leaves the process: it names the kind of store, not the vault's URL or
    # a path.
    store_kind: str
    unknown_settings: tuple[str, ...]
    secret_store: Callable[[], SecretStore]
    registry: Callable[[], Registry]  # connects, and checks the schema once
    token_states: Callable[[], Mapping[int, TokenState]]  # the cache's state: no call to Clever

    @classmethod
    def of(cls, services: Services) -> ProbeTargets:
        settings = services.settings
        return cls(
            store_kind="Key Vault" if settings.uses_key_vault else "local file",
            unknown_settings=tuple(settings.unknown_variables),
            secret_store=lambda: services.secret_store,
            registry=lambda: services.registry,
            token_states=lambda: services.token_provider.states(),
        )


class ServicesProbe:
    """What is checked: the installation's dependencies, or a configuration error."""

    names: tuple[str, ...] = ("configuration", "secretStore", "sessionDb", "cleverAuth")

    def __init__(
        self,
        targets: ProbeTargets | None,
        config_error: ConfigurationError | None,
        *,
        redact: Callable[[str], str],
    ) -> None:
        self._targets = targets
        self._config_error = config_error
        self._redact = redact

    def run(self, record: Record) -> None:
        targets = self._targets
        if targets is None:
            error = self._config_error or ConfigurationError("no services")
            check: Check = {"status": HealthStatus.UNHEALTHY, "error": self._redact(str(error))}
            if error.setting:
                check["setting"] = error.setting
            record("configuration", check)
            for name in self.names[1:]:
                record(
                    name, {"status": HealthStatus.SKIPPED, "reason": "the configuration is invalid"}
                )
            return
        record(
            "configuration",
            {
                "status": HealthStatus.HEALTHY,
                "store": targets.store_kind,
                "unknownSettings": list(targets.unknown_settings),
            },
        )
        record("secretStore", self._secret_store(targets))
        database, districts = self._session_db(targets)
        record("sessionDb", database)
        try:
            clever = self._clever_auth(targets, districts)
        except Exception as exc:
            clever = {"status": HealthStatus.DEGRADED, "error": self._message(exc)}
        record("cleverAuth", clever)

    def timed_out(self, name: str, seconds: float) -> Check:
        error = f"no answer within {seconds:g} s"
        if name == "sessionDb":
            return {"status": HealthStatus.UNHEALTHY, "reachable": False, "error": error}
        if name == "secretStore" and self._targets is not None:
            return _store_unreachable(self._targets, error)
        return {"status": HealthStatus.DEGRADED, "error": error}

    def summary(self, checks: Mapping[str, Check]) -> dict[str, Any]:
        clever = checks.get("cleverAuth", {})
        return {
            "lastSuccessfulAuthentication": clever.get("lastSuccessfulAuthentication"),
            "lastError": clever.get("lastError"),
        }

    # --- checks -------------------------------------------------------------------------

    def _secret_store(self, targets: ProbeTargets) -> Check:
        store = targets.secret_store()
        try:
            store.check()
        except Exception as exc:
            return _store_unreachable(targets, self._message(exc))
        return {"status": HealthStatus.HEALTHY, "store": targets.store_kind, "reachable": True}

    def _session_db(self, targets: ProbeTargets) -> tuple[Check, list[DistrictRecord] | None]:
        try:
            registry = targets.registry()
            districts = registry.list_districts()
            schools = len(registry.list_schools(active_only=True))
        except Exception as exc:
            return {
                "status": HealthStatus.UNHEALTHY,
                "reachable": False,
                "error": self._message(exc),
            }, None
        check = {"status": HealthStatus.HEALTHY, "reachable": True, "districts": len(districts)}
        # A deactivated district is not synced: its authentication is no one's concern now.
        active = [d for d in districts if d.is_active]
        return {**check, "activeSchools": schools}, active

    def _clever_auth(self, targets: ProbeTargets, districts: list[DistrictRecord] | None) -> Check:
        from cleversync.clever.tokens import TokenState

        states = targets.token_states()
        if districts is None and not states:
            return {"status": HealthStatus.SKIPPED, "reason": "the districts could not be read"}
        known: dict[int, DistrictRecord | None] = (
            {d.district_id: d for d in districts}
            if districts is not None
            else dict.fromkeys(sorted(states))
        )
        rows = [
            self._district(targets, i, d, states.get(i) or TokenState(), len(known))
            for i, d in known.items()
        ]
        # ISO-8601 UTC strings of one format sort as the times they stand for.
        latest = max(
            (r for r in rows if r["lastError"]), key=lambda r: r["lastErrorAt"] or "", default=None
        )
        return {
            "status": districts_status([r["status"] for r in rows]),
            "lastSuccessfulAuthentication": max(
                (r["lastSuccessAt"] for r in rows if r["lastSuccessAt"]), default=None
            ),
            "lastError": (
                {k: latest[k] for k in ("districtId", "lastErrorAt", "lastError")}
                if latest
                else None
            ),
            "districts": rows,
        }

    def _district(
        self,
        targets: ProbeTargets,
        district_id: int,
        record: DistrictRecord | None,
        state: TokenState,
        count: int,
    ) -> Check:
        error = self._redact(state.last_error) if state.last_error else None
        expires = state.expires_in_seconds if state.has_token else None
        row: Check = {
            "districtId": district_id,
            "name": record.name if record else None,
            "status": district_status(state),
            "hasToken": state.has_token,
            "source": state.source,
            "lastSuccessAt": iso_utc(state.last_success_at),
            "lastError": error,
            "lastErrorAt": iso_utc(state.last_error_at) if error else None,
            "expiresInSeconds": round(expires) if expires is not None else None,
        }
        if row["status"] == HealthStatus.UNKNOWN and record is not None:
            row.update(self._credentials(targets, record, count))
        return row

    def _credentials(self, targets: ProbeTargets, district: DistrictRecord, count: int) -> Check:
        """Not used on this instance yet: are there credentials? (the secret store, not Clever)"""
        from cleversync.secrets import names

        own = (names.client_id(district.prefix), names.client_secret(district.prefix))
        shared = (names.client_id(None), names.client_secret(None))
        token = names.access_token(district.prefix)
        candidates = [(token,), *([(names.access_token(None),)] * (count == 1)), own, shared]
        store = targets.secret_store()
        try:
            found = next((c for c in candidates if all(store.get(n) for n in c)), None)
        except Exception as exc:
            return {"credentials": None, "error": self._message(exc)}
        if found is None:
            return {
                "status": HealthStatus.UNHEALTHY,
                "credentials": None,
                "error": f"no Clever credentials: set {own[0]} and {own[1]}, or the global "
                f"{shared[0]} and {shared[1]}, or {token}",
            }
        return {"credentials": " and ".join(found)}

    def _message(self, exc: BaseException) -> str:
        if isinstance(exc, CleverSyncError):
            return self._redact(str(exc))
        translated = database_error(exc, "SessionDb")
        if translated is not None:
            return self._redact(str(translated))
        logger.warning("Unexpected error in a health check", exc_info=exc)
        return f"unexpected {type(exc).__name__} (see the logs)"


def district_status(state: TokenState) -> HealthStatus:
    """One district from its token cache state (Unknown: not used on this instance yet)."""
    if state.has_token:
        # a failed refresh; the token serves
        return HealthStatus.DEGRADED if state.last_error else HealthStatus.HEALTHY
    if state.last_error:
        return HealthStatus.UNHEALTHY
    # aged out unused
    return HealthStatus.HEALTHY if state.last_success_at is not None else HealthStatus.UNKNOWN


def districts_status(statuses: list[str]) -> HealthStatus:
    """Unhealthy when no district can authenticate, Degraded when some cannot."""
    if statuses and all(s == HealthStatus.UNHEALTHY for s in statuses):
        return HealthStatus.UNHEALTHY
    return (
        HealthStatus.DEGRADED
        if any(s in (HealthStatus.UNHEALTHY, HealthStatus.DEGRADED) for s in statuses)
        else HealthStatus.HEALTHY
    )


def _store_unreachable(targets: ProbeTargets, error: str) -> Check:
    cached = targets.secret_store().has_cached_values()
    return {
        "status": HealthStatus.DEGRADED if cached else HealthStatus.UNHEALTHY,
        "store": targets.store_kind,
        "reachable": False,
        "cachedValuesServe": cached,
        "error": error,
    }


def iso_utc(timestamp: float | None) -> str | None:
    """A Unix time as ISO-8601 UTC to the second, ``Z``-suffixed (None stays None)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
