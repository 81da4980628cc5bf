"""Settings from environment variables (``CleverSync__Section__Key``), validated, with defaults.

Two traps are closed here: nested settings are matched to the model by their
PascalCase names, case-insensitively, by our own source rather than by field-name guessing;
and a ``CleverSync__`` variable that matches no setting is collected in
``Settings.unknown_variables`` so the entry points can warn about a misspelling.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo

from cleversync.errors import ConfigurationError

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

PREFIX = "CleverSync"
SEPARATOR = "__"
SCHEDULE_VARIABLE = "CleverSyncSchedule"
QUEUE_VARIABLE = "CleverSyncQueueName"
APPINSIGHTS_VARIABLE = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# Settings read by their own flat names: binding expressions (%CleverSyncSchedule%) do not
# resolve names with "__" reliably on Linux, and the Azure Monitor exporter reads its own.
FLAT_VARIABLES = (SCHEDULE_VARIABLE, QUEUE_VARIABLE, APPINSIGHTS_VARIABLE)
# A Storage queue name (3-63 lowercase letters, digits, single hyphens), short enough for the
# host's "<name>-poison" queue to be one too.
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){2,55}$")

# .NET's level names (what Azure operators know) and Python's, to logging levels.
LOG_LEVELS: dict[str, int] = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "information": logging.INFO,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
}


class _Section(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class CleverSettings(_Section):
    api_base_url: str = Field("https://api.clever.com", alias="ApiBaseUrl")
    api_version: str = Field("v3.0", alias="ApiVersion")
    token_url: str = Field("https://clever.com/oauth/tokens", alias="TokenUrl")
    token_mode: Literal["district_tokens", "client_credentials"] = Field(
        "district_tokens", alias="TokenMode"
    )
    token_max_age_minutes: float = Field(60, gt=0, alias="TokenMaxAgeMinutes")
    timeout_seconds: float = Field(30, gt=0, alias="TimeoutSeconds")

    @field_validator("api_base_url", "token_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an absolute http(s) URL")
        parts = urlsplit(value)
        host = parts.hostname
        try:
            parts.port  # noqa: B018 (parsing it is the check)
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        if value.startswith("http://") and host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"must use https for {host}: plain http is only for loopback hosts (the sandbox)"
            )
        return value.rstrip("/") if value.count("/") <= 2 else value

    @field_validator("token_mode", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class KeyVaultSettings(_Section):
    url: str = Field("", alias="Url")
    retry_attempts: int = Field(3, ge=0, le=10, alias="RetryAttempts")
    retry_delay_seconds: float = Field(2, ge=0, alias="RetryDelaySeconds")

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith("https://"):
            raise ValueError("must be the vault's https:// URL (or empty for the local file)")
        return value


class SecretsSettings(_Section):
    file: str = Field("", alias="File")
    cache_seconds: float = Field(900, ge=0, alias="CacheSeconds")


class ConcurrencySettings(_Section):
    max_schools_in_parallel: int = Field(5, ge=1, le=20, alias="MaxSchoolsInParallel")


class SyncSettings(_Section):
    page_size: int = Field(1000, ge=1, le=10000, alias="PageSize")
    batch_size: int = Field(500, ge=1, le=2000, alias="BatchSize")
    timeout_minutes: float = Field(30, gt=0, alias="TimeoutMinutes")
    # A run inside the Functions host starts no school after this many minutes (host.json's
    # functionTimeout, 30, minus a margin for the schools still running); 0 = no deadline.
    run_deadline_minutes: float = Field(25, ge=0, allow_inf_nan=False, alias="RunDeadlineMinutes")
    max_delete_percent: float = Field(40, ge=0, le=100, alias="MaxDeletePercent")
    delete_mode: Literal["Delete", "Deactivate"] = Field("Delete", alias="DeleteMode")
    event_retention_days: float = Field(29, gt=0, alias="EventRetentionDays")

    @field_validator("delete_mode", mode="before")
    @classmethod
    def _capitalize(cls, value: Any) -> Any:
        return value.strip().capitalize() if isinstance(value, str) else value


class RetryPolicy(_Section):
    """Retries after the first call; waits start at ``backoff_base`` seconds and double."""

    max_attempts: int = Field(ge=0, le=20, alias="MaxAttempts")
    backoff_base: float = Field(ge=0, alias="BackoffBase")


class CleverApiRetry(RetryPolicy):
    max_attempts: int = Field(5, ge=0, le=20, alias="MaxAttempts")
    backoff_base: float = Field(2, ge=0, alias="BackoffBase")


class DatabaseRetry(RetryPolicy):
    max_attempts: int = Field(3, ge=0, le=20, alias="MaxAttempts")
    backoff_base: float = Field(1, ge=0, alias="BackoffBase")


class RetrySettings(_Section):
    clever_api: CleverApiRetry = Field(CleverApiRetry(), alias="CleverApi")
    database: DatabaseRetry = Field(DatabaseRetry(), alias="Database")
    rate_limit_respect_retry_after: bool = Field(True, alias="RateLimitRespectRetryAfter")
    # The longest any wait for Clever may be (Retry-After, rate-limit reset, backoff).
    max_wait_seconds: float = Field(120, ge=0, allow_inf_nan=False, alias="MaxWaitSeconds")


class HealthSettings(_Section):
    cache_duration_seconds: float = Field(30, ge=0, alias="CacheDurationSeconds")


class MonitoringSettings(_Section):
    alert_after_consecutive_failures: int = Field(3, ge=1, alias="AlertAfterConsecutiveFailures")


class HistorySettings(_Section):
    retention_days: int = Field(90, ge=1, alias="RetentionDays")
    # Records whose change a run details in SyncChanges; past it, only counted (0: none).
    max_change_details_per_run: int = Field(
        5000, ge=0, le=1_000_000, alias="MaxChangeDetailsPerRun"
    )


class LoggingSettings(_Section):
    log_level: str = Field("Information", alias="LogLevel")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.strip().lower() not in LOG_LEVELS:
            names = "Trace, Debug, Information, Warning, Error, Critical"
            raise ValueError(f"must be one of {names} (or Python's DEBUG, INFO, ...)")
        return value.strip()

    @property
    def python_level(self) -> int:
        return LOG_LEVELS[self.log_level.lower()]


class AdminSettings(_Section):
    """Who may use the dashboard in Azure (behind App Service Authentication): users named in
    ``AllowedUsers`` (sign-in names, separated by commas or semicolons, matched ignoring case)
    or holding the app role ``Role``. Neither set: nobody (the dashboard fails closed)."""

    allowed_users: str = Field("", alias="AllowedUsers")
    role: str = Field("", alias="Role")

    @field_validator("role")
    @classmethod
    def _one_role(cls, value: str) -> str:
        value = value.strip()
        if any(c.isspace() or c in ",;" for c in value):
            raise ValueError("must be one app role name (no spaces, commas or semicolons)")
        return value

    @property
    def users(self) -> frozenset[str]:
        return frozenset(
            name.strip().lower() for name in re.split(r"[,;]", self.allowed_users) if name.strip()
        )


# An address as SMTP takes it: one local part, one domain, nothing a header could be built from.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)


def _check_address(address: str) -> str:
    address = address.strip()
    if not _ADDRESS.match(address) or ".." in address:
        # The value is an address, not a secret, but a typo could hold one: name the position.
        raise ValueError(
            "must be email addresses like ops@example.org (comma-separated for several)"
        )
    return address


class NotifySettings(_Section):
    """Email run reports: SMTP when ``SmtpHost`` is set, else .eml files in DataDir/outbox."""

    # Validated in this order: SmtpHost's check reads On, To and From.
    on: Literal["failures", "always", "never"] = Field("failures", alias="On")
    to: str = Field("", alias="To")  # comma-separated addresses
    from_address: str = Field("", alias="From")
    smtp_host: str = Field("", alias="SmtpHost")
    smtp_port: int = Field(587, ge=1, le=65535, alias="SmtpPort")
    smtp_user: str = Field("", alias="SmtpUser")
    dashboard_url: str = Field("", alias="DashboardUrl")
    timeout_seconds: float = Field(10, gt=0, le=120, allow_inf_nan=False, alias="TimeoutSeconds")

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: str) -> str:
        return ", ".join(_check_address(a) for a in value.split(",") if a.strip())

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        return _check_address(value) if value.strip() else ""

    @field_validator("smtp_host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):  # an IPv6 address as URLs write it
            value = value[1:-1]
        if value and not re.fullmatch(r"[A-Za-z0-9.:-]+", value):
            raise ValueError("must be a host name or IP address, e.g. smtp.example.org")
        if value and info.data.get("on") != "never":
            # A value that failed its own check is absent here: it is reported already.
            missing = [
                variable_name(("Notify", key))
                for key, field in (("To", "to"), ("From", "from_address"))
                if field in info.data and not info.data[field]
            ]
            if missing:
                raise ValueError(f"is set, so {' and '.join(missing)} must be set too")
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an absolute http(s) URL (or empty)")
        return value

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.to.split(",") if a.strip())

    @property
    def uses_smtp(self) -> bool:
        return bool(self.smtp_host)

    @property
    def smtp_is_loopback(self) -> bool:
        return self.smtp_host in LOOPBACK_HOSTS


class Settings(BaseModel):
    """Every setting of the README's 'Configuration', with its default and range.

    A plain model, not pydantic-settings' BaseSettings: ``load`` reads the environment
    itself (``read_environment``), so BaseSettings added nothing but about 0.1 s of CPU to
    every process's start-up. ``validate_default`` is what BaseSettings set.
    """

    model_config = ConfigDict(
        populate_by_name=True, extra="forbid", frozen=True, validate_default=True
    )

    clever: CleverSettings = Field(CleverSettings(), alias="Clever")
    key_vault: KeyVaultSettings = Field(KeyVaultSettings(), alias="KeyVault")
    data_dir: Path = Field(Path(".cleversync"), alias="DataDir")
    secrets: SecretsSettings = Field(SecretsSettings(), alias="Secrets")
    token_refresh_threshold: float = Field(0.75, gt=0, lt=1, alias="TokenRefreshThreshold")
    concurrency: ConcurrencySettings = Field(ConcurrencySettings(), alias="Concurrency")
    sync: SyncSettings = Field(SyncSettings(), alias="Sync")
    retry: RetrySettings = Field(RetrySettings(), alias="Retry")
    health: HealthSettings = Field(HealthSettings(), alias="Health")
    monitoring: MonitoringSettings = Field(MonitoringSettings(), alias="Monitoring")
    history: HistorySettings = Field(HistorySettings(), alias="History")
    logging: LoggingSettings = Field(LoggingSettings(), alias="Logging")
    admin: AdminSettings = Field(AdminSettings(), alias="Admin")
    notify: NotifySettings = Field(NotifySettings(), alias="Notify")
    schedule: str = Field("0 0 2 * * *", alias=SCHEDULE_VARIABLE)
    queue_name: str = Field("cleversync-sync", alias=QUEUE_VARIABLE)
    appinsights_connection_string: str = Field("", alias=APPINSIGHTS_VARIABLE, repr=False)

    _unknown: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("schedule")
    @classmethod
    def _ncrontab(cls, value: str) -> str:
        if len(value.split()) != 6:
            raise ValueError(
                "must be a six-field NCRONTAB expression "
                "(second minute hour day month day-of-week), e.g. '0 0 2 * * *'"
            )
        return value.strip()

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        value = value.strip()
        if not _QUEUE_NAME.match(value):
            raise ValueError(
                "must be a Storage queue name: 3 to 56 lowercase letters, digits and single "
                "hyphens, starting with a letter or digit (the host adds '-poison' for its "
                "poison queue), e.g. 'cleversync-sync'"
            )
        return value

    @property
    def unknown_variables(self) -> tuple[str, ...]:
        """``CleverSync__`` variables that matched no setting (misspellings)."""
        return self._unknown

    @property
    def secrets_file(self) -> Path:
        return Path(self.secrets.file) if self.secrets.file else self.data_dir / "secrets.json"

    @property
    def uses_key_vault(self) -> bool:
        return bool(self.key_vault.url)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default: the process environment).

        Raises ConfigurationError naming every bad variable as the operator spelled it.
        """
        env = os.environ if environ is None else environ
        values, spelled, unknown = read_environment(env)
        try:
            settings = cls(**values)
        except ValidationError as exc:
            raise _configuration_error(exc, spelled) from None
        settings._unknown = tuple(sorted(unknown))
        for name in settings._unknown:
            logger.warning(
                "Ignoring unknown setting %s: no CleverSync setting has that name "
                "(check the spelling against the README's configuration table)",
                name,
                extra={"Setting": name},
            )
        return settings


def variable_name(path: tuple[str, ...]) -> str:
    """The variable for a path of PascalCase names, e.g. ``CleverSync__Sync__PageSize``."""
    if len(path) == 1 and path[0] in FLAT_VARIABLES:
        return path[0]
    return SEPARATOR.join((PREFIX, *path))


def all_variables() -> dict[str, Any]:
    """Every setting's variable name and its default (for docs, examples and tests)."""
    out: dict[str, Any] = {}

    def walk(model: type[BaseModel], instance: BaseModel, path: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            alias = field.alias or name
            value = getattr(instance, name)
            sub = _model_type(field)
            if sub is not None:
                walk(sub, value, (*path, alias))
            else:
                out[variable_name((*path, alias))] = value

    walk(Settings, Settings(), ())
    return out


def read_environment(
    env: Mapping[str, str],
) -> tuple[dict[str, Any], dict[tuple[str, ...], str], set[str]]:
    """Split ``CleverSync__`` variables into nested values keyed by the model's aliases.

    Returns the values, the operator's spelling of each variable by alias path, and the
    variables that matched no setting.
    """
    values: dict[str, Any] = {}
    spelled: dict[tuple[str, ...], str] = {}
    unknown: set[str] = set()
    prefix = (PREFIX + SEPARATOR).lower()
    for key, raw in env.items():
        lowered = key.lower()
        flat = next((name for name in FLAT_VARIABLES if name.lower() == lowered), None)
        if flat is not None:
            alias = flat
            values[alias] = raw
            spelled[(alias,)] = key
            continue
        if not lowered.startswith(prefix):
            continue
        path = _resolve(key[len(prefix) :].split(SEPARATOR))
        if path is None:
            unknown.add(key)
            continue
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = raw
        spelled[path] = key
    return values, spelled, unknown


def _resolve(parts: list[str]) -> tuple[str, ...] | None:
    """Map case-insensitive name parts to the model's alias path, or None if no setting matches."""
    model: type[BaseModel] | None = Settings
    path: list[str] = []
    for part in parts:
        if model is None:
            return None
        match = next(
            (
                (field.alias or name, field)
                for name, field in model.model_fields.items()
                if (field.alias or name).lower() == part.lower()
                and (field.alias or name) not in FLAT_VARIABLES
            ),
            None,
        )
        if match is None:
            return None
        path.append(match[0])
        model = _model_type(match[1])
    if model is not None:  # a section named without a key, e.g. CleverSync__Sync
        return None
    return tuple(path)


def _model_type(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _configuration_error(
    exc: ValidationError, spelled: Mapping[tuple[str, ...], str]
) -> ConfigurationError:
    problems = []
    first: str | None = None
    for error in exc.errors(include_input=False, include_url=False):
        path = tuple(str(part) for part in error["loc"])
        name = spelled.get(path, variable_name(path))
        first = first or name
        # pydantic's messages describe the constraint, never the rejected value.
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}: {message}")
    return ConfigurationError("invalid configuration: " + "; ".join(problems), setting=first)
