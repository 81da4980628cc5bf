"""Connection strings: SQLAlchemy URLs, or the ADO.NET/ODBC strings the Azure portal shows.

Azure's portal offers ``Server=tcp:x.database.windows.net,1433;Initial Catalog=db;...``
(ADO.NET) and ``Driver={ODBC Driver 18 for SQL Server};Server=...;Database=...`` (ODBC).
Both become ``mssql+pyodbc:///?odbc_connect=...`` URLs for ODBC Driver 18. Errors name the
keyword at fault, never a value (a value may be a password).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

from cleversync.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ODBC_DRIVER = "ODBC Driver 18 for SQL Server"

# ADO.NET keyword (lower case) -> ODBC keyword. None: an ADO.NET-only keyword, dropped.
_ADO_TO_ODBC: dict[str, str | None] = {
    "server": "Server",
    "data source": "Server",
    "address": "Server",
    "addr": "Server",
    "network address": "Server",
    "initial catalog": "Database",
    "database": "Database",
    "user id": "UID",
    "userid": "UID",
    "uid": "UID",
    "user": "UID",
    "password": "PWD",
    "pwd": "PWD",
    "encrypt": "Encrypt",
    "trustservercertificate": "TrustServerCertificate",
    "trust server certificate": "TrustServerCertificate",
    "hostnameincertificate": "HostNameInCertificate",
    "host name in certificate": "HostNameInCertificate",
    "connection timeout": "Connection Timeout",
    "connect timeout": "Connection Timeout",
    "timeout": "Connection Timeout",
    "authentication": "Authentication",
    "application name": "APP",
    "app": "APP",
    "applicationintent": "ApplicationIntent",
    "application intent": "ApplicationIntent",
    "multisubnetfailover": "MultiSubnetFailover",
    "multi subnet failover": "MultiSubnetFailover",
    "persist security info": None,
    "persistsecurityinfo": None,
    "multipleactiveresultsets": None,
    "multiple active result sets": None,
    "pooling": None,
    "min pool size": None,
    "max pool size": None,
    "connect retry count": None,
    "connectretrycount": None,
    "connect retry interval": None,
    "connectretryinterval": None,
}

# ADO.NET/portal authentication names -> ODBC Driver 18 values.
_AUTHENTICATION: dict[str, str] = {
    "active directory managed identity": "ActiveDirectoryMsi",
    "active directory msi": "ActiveDirectoryMsi",
    "activedirectorymsi": "ActiveDirectoryMsi",
    "activedirectorymanagedidentity": "ActiveDirectoryMsi",
    "active directory password": "ActiveDirectoryPassword",
    "activedirectorypassword": "ActiveDirectoryPassword",
    "active directory integrated": "ActiveDirectoryIntegrated",
    "activedirectoryintegrated": "ActiveDirectoryIntegrated",
    "active directory interactive": "ActiveDirectoryInteractive",
    "activedirectoryinteractive": "ActiveDirectoryInteractive",
    "active directory service principal": "ActiveDirectoryServicePrincipal",
    "activedirectoryserviceprincipal": "ActiveDirectoryServicePrincipal",
    "sql password": "SqlPassword",
    "sqlpassword": "SqlPassword",
}

_NO_ODBC_EQUIVALENT = {"active directory default", "activedirectorydefault"}
_BOOLEANS = {"true": "yes", "yes": "yes", "false": "no", "no": "no"}
_PLACEHOLDER = re.compile(r"^\{?\s*your[_ ]?password[_ a-z]*\}?$", re.IGNORECASE)


def to_url(connection_string: str) -> URL:
    """A SQLAlchemy URL for a SQLAlchemy URL, an ADO.NET string or an ODBC string."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = connection_string.strip()
    if not text:
        raise ConfigurationError("the connection string is empty")
    if "://" in text.split(";", 1)[0]:
        try:
            url = make_url(text)
        except ArgumentError:
            raise ConfigurationError(
                "the connection string looks like a URL but SQLAlchemy cannot parse it"
            ) from None
        except ValueError:  # the only number in a URL is its port
            raise ConfigurationError(
                "the connection string's port is not a number (host:port, e.g. db.example.org:5432)"
            ) from None
        return _supported(url)
    return make_url("mssql+pyodbc:///?odbc_connect=" + quote_plus(to_odbc(text)))


# The databases CleverSync is built and tested for, with the driver each URL must use.
SUPPORTED_DRIVERS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "mssql": "mssql+pyodbc",
}
_SUPPORTED_TEXT = (
    "supported are SQLite (sqlite:///path), PostgreSQL (postgresql+psycopg://...) and SQL "
    "Server (mssql+pyodbc://..., or the ADO.NET or ODBC string the Azure portal shows)"
)


def _supported(url: URL) -> URL:
    """The URL if it is for a supported database; a plain ``postgresql://`` gets psycopg
    (the driver CleverSync installs), any other database or driver is refused."""
    backend = url.get_backend_name()
    wanted = SUPPORTED_DRIVERS.get(backend)
    if wanted is None:
        raise ConfigurationError(
            f"the connection string is for {_plain(backend)}, which CleverSync does not "
            f"support; {_SUPPORTED_TEXT}"
        )
    if url.drivername in (backend, wanted) or (
        backend == "sqlite" and "+pysqlite" in url.drivername
    ):
        return url.set(drivername=wanted) if backend == "postgresql" else url
    raise ConfigurationError(
        f"the connection string asks for the driver {_plain(url.drivername)}; use {wanted} "
        f"({_SUPPORTED_TEXT})"
    )


def _plain(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+_.-]", "?", text)[:40]


def to_odbc(connection_string: str) -> str:
    """The ODBC Driver 18 connection string for an ADO.NET or ODBC connection string."""
    pairs = parse_keyvalues(connection_string)
    keys = {key.lower() for key, _ in pairs}
    if "driver" in keys:
        out = [(key, value) for key, value in pairs if key.lower() != "driver"]
        out = [(_canonical_odbc_key(key), value) for key, value in out]
    else:
        out = []
        for key, value in pairs:
            lowered = " ".join(key.lower().split())
            if lowered in _ADO_TO_ODBC:
                mapped = _ADO_TO_ODBC[lowered]
                if mapped is not None:
                    out.append((mapped, value))
            else:
                raise ConfigurationError(
                    f"the connection string has the keyword {key!r}, which has no ODBC "
                    "equivalent CleverSync knows; remove it or give an ODBC string"
                )
    result: dict[str, str] = {}
    for key, value in out:
        if key == "Authentication":
            value = _authentication(value)
        elif key in ("Encrypt", "TrustServerCertificate", "MultiSubnetFailover"):
            value = _BOOLEANS.get(value.lower(), value)
        elif key == "PWD" and _PLACEHOLDER.match(value):
            raise ConfigurationError(
                "the connection string still holds the Azure portal's placeholder password; "
                "put the real password in, or use Authentication=Active Directory Managed Identity"
            )
        result[key] = value
    if "Server" not in result:
        raise ConfigurationError("the connection string names no Server (or Data Source)")
    if "Database" not in result:
        raise ConfigurationError(
            "the connection string names no database (Initial Catalog or Database)"
        )
    result.setdefault("Encrypt", "yes")
    body = ";".join(f"{key}={_quote(value)}" for key, value in result.items())
    return f"Driver={{{ODBC_DRIVER}}};{body}"


def database_name(connection_string: str) -> str | None:
    """The database's name on its server (what operators see), if the string says."""
    url = to_url(connection_string)
    if url.drivername.startswith("sqlite"):
        return url.database.rsplit("/", 1)[-1] if url.database else None
    if "odbc_connect" in url.query:
        odbc = url.query["odbc_connect"]
        text = odbc if isinstance(odbc, str) else odbc[0]
        return {k.lower(): v for k, v in parse_keyvalues(text)}.get("database")
    return url.database


def parse_keyvalues(text: str) -> list[tuple[str, str]]:
    """Split ``key=value;key="v;1";key={v;}}2}`` into pairs (ADO.NET and ODBC quoting)."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in "; \t\r\n":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ConfigurationError(
                f"the connection string has a part without '=' (near keyword position {i})"
            )
        key = text[i:eq].strip()
        if not key:
            raise ConfigurationError("the connection string has an empty keyword")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        value, i = _read_value(text, i, key)
        pairs.append((key, value))
    return pairs


def _read_value(text: str, i: int, key: str) -> tuple[str, int]:
    n = len(text)
    if i < n and text[i] in "\"'{":
        close = "}" if text[i] == "{" else text[i]
        j = i + 1
        chars: list[str] = []
        while j < n:
            if text[j] == close:
                if j + 1 < n and text[j + 1] == close:  # doubled closer = literal
                    chars.append(close)
                    j += 2
                    continue
                break
            chars.append(text[j])
            j += 1
        else:
            raise ConfigurationError(f"the value of {key!r} in the connection string is not closed")
        j += 1
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] != ";":
            raise ConfigurationError(f"unexpected text after the quoted value of {key!r}")
        return "".join(chars), j
    end = text.find(";", i)
    end = n if end < 0 else end
    return text[i:end].strip(), end


def _canonical_odbc_key(key: str) -> str:
    lowered = " ".join(key.lower().split())
    mapped = _ADO_TO_ODBC.get(lowered)
    return mapped if mapped else key


def _authentication(value: str) -> str:
    lowered = " ".join(value.lower().split())
    if lowered in _NO_ODBC_EQUIVALENT:
        raise ConfigurationError(
            'Authentication="Active Directory Default" has no ODBC equivalent; use '
            '"Active Directory Managed Identity" (ActiveDirectoryMsi) in Azure'
        )
    if lowered in _AUTHENTICATION:
        return _AUTHENTICATION[lowered]
    raise ConfigurationError(
        f"Authentication value {value!r} is not one ODBC Driver 18 supports "
        "(use Active Directory Managed Identity, Active Directory Password or Sql Password)"
    )


def _quote(value: str) -> str:
    if value and not any(ch in value for ch in ";{}=") and value == value.strip():
        return value
    return "{" + value.replace("}", "}}") + "}"
