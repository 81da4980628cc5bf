"""Secret names (``CleverSyncSOS--{Component}--{Property}``) and the rules for prefixes."""

from __future__ import annotations

import re
import unicodedata

from cleversync.errors import UsageError

ROOT = "CleverSyncSOS"
SESSIONDB_CONNECTION_STRING = f"{ROOT}--SessionDb--ConnectionString"
# The key the dashboard signs its CSRF tokens with (shared by every instance of the app).
DASHBOARD_CSRF_KEY = f"{ROOT}--AdminPortal--CsrfKey"
NOTIFY_SMTP_PASSWORD = f"{ROOT}--Notify--SmtpPassword"  # the SMTP login for run reports
GLOBAL_COMPONENT = "Clever"
RESERVED_PREFIXES = frozenset({"clever", "sessiondb", "adminportal"})
# Key Vault names are at most 127 characters of [0-9A-Za-z-]; the longest name built from a
# prefix is "CleverSyncSOS--{prefix}--ConnectionString" (33 characters around the prefix).
MAX_PREFIX_LENGTH = 127 - len(f"{ROOT}----ConnectionString")
_PREFIX = re.compile(r"^[0-9A-Za-z-]+$")


def secret_name(component: str, prop: str) -> str:
    return f"{ROOT}--{component}--{prop}"


def connection_string(school_prefix: str) -> str:
    return secret_name(school_prefix, "ConnectionString")


def client_id(district_prefix: str | None) -> str:
    return secret_name(district_prefix or GLOBAL_COMPONENT, "ClientId")


def client_secret(district_prefix: str | None) -> str:
    return secret_name(district_prefix or GLOBAL_COMPONENT, "ClientSecret")


def access_token(district_prefix: str | None) -> str:
    return secret_name(district_prefix or GLOBAL_COMPONENT, "AccessToken")


def validate_prefix(prefix: str, *, what: str = "prefix") -> str:
    """Check a district or school prefix against Key Vault's rules; return it unchanged."""
    if not prefix:
        raise UsageError(f"{what} must not be empty")
    if not _PREFIX.match(prefix):
        raise UsageError(
            f"{what} {prefix!r} may hold only letters (A-Z, a-z), digits and '-' "
            "(Key Vault's rule for secret names)"
        )
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise UsageError(
            f"{what} is {len(prefix)} characters long; at most {MAX_PREFIX_LENGTH} keep "
            "its secret names within Key Vault's 127"
        )
    if "--" in prefix or prefix.startswith("-") or prefix.endswith("-"):
        raise UsageError(
            f"{what} {prefix!r} must not start or end with '-' or hold '--' "
            "(it would make secret names ambiguous)"
        )
    if prefix.lower() in RESERVED_PREFIXES:
        raise UsageError(f"{what} {prefix!r} is reserved; choose another")
    return prefix


def prefix_from_name(name: str) -> str:
    """A valid prefix derived from a display name: 'École St. Mary's' -> 'Ecole-St-Marys'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"['’]", "", ascii_name)
    words = re.findall(r"[0-9A-Za-z]+", ascii_name)
    prefix = "-".join(words)[:MAX_PREFIX_LENGTH].strip("-") or "School"
    if prefix.lower() in RESERVED_PREFIXES:
        prefix += "-School"
    return prefix
