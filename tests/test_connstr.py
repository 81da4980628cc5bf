"""Connection strings as the Azure portal shows them become ODBC Driver 18 URLs."""

from __future__ import annotations

from urllib.parse import unquote_plus

import pytest

from cleversync.connstr import database_name, parse_keyvalues, to_odbc, to_url
from cleversync.errors import ConfigurationError

# Copied from the Azure portal's "Connection strings" blade (ADO.NET and ODBC tabs).
PORTAL_ADO_SQL_AUTH = (
    "Server=tcp:sos-sql.database.windows.net,1433;Initial Catalog=School_Lincoln_Db;"
    "Persist Security Info=False;User ID=syncadmin;Password=Sup3r;Secr=t;"
    "MultipleActiveResultSets=False;Encrypt=True;TrustServerCertificate=False;"
    "Connection Timeout=30;"
)
PORTAL_ADO_MANAGED_IDENTITY = (
    "Server=tcp:sos-sql.database.windows.net,1433;Initial Catalog=School_Lincoln_Db;"
    "Encrypt=True;TrustServerCertificate=False;Connection Timeout=30;"
    'Authentication="Active Directory Managed Identity";'
)
PORTAL_ADO_PASSWORDLESS = (
    "Server=tcp:sos-sql.database.windows.net,1433;Initial Catalog=School_Lincoln_Db;"
    "Encrypt=True;TrustServerCertificate=False;Connection Timeout=30;"
    'Authentication="Active Directory Default";'
)
PORTAL_ODBC = (
    "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sos-sql.database.windows.net,1433;"
    "Database=School_Lincoln_Db;Uid=syncadmin;Pwd={your_password_here};Encrypt=yes;"
    "TrustServerCertificate=no;Connection Timeout=30;"
)


def odbc_of(url: object) -> str:
    return unquote_plus(str(url.render_as_string(hide_password=False)).split("odbc_connect=", 1)[1])


def test_ado_net_with_sql_authentication() -> None:
    # The password holds ';': in ADO.NET it must be quoted, so quote it as a user would.
    text = PORTAL_ADO_SQL_AUTH.replace("Password=Sup3r;Secr=t;", 'Password="Sup3r;Secr=t";')
    odbc = to_odbc(text)
    assert odbc == (
        "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sos-sql.database.windows.net,1433;"
        "Database=School_Lincoln_Db;UID=syncadmin;PWD={Sup3r;Secr=t};Encrypt=yes;"
        "TrustServerCertificate=no;Connection Timeout=30"
    )
    url = to_url(text)
    assert url.drivername == "mssql+pyodbc"
    assert odbc_of(url) == odbc


def test_ado_net_with_managed_identity() -> None:
    odbc = to_odbc(PORTAL_ADO_MANAGED_IDENTITY)
    assert "Authentication=ActiveDirectoryMsi" in odbc
    assert "PWD" not in odbc and "UID" not in odbc
    assert "Database=School_Lincoln_Db" in odbc


def test_user_assigned_managed_identity_keeps_the_client_id() -> None:
    odbc = to_odbc(PORTAL_ADO_MANAGED_IDENTITY + "User Id=6f8e2b1c-0000-4000-8000-123456789abc;")
    assert "UID=6f8e2b1c-0000-4000-8000-123456789abc" in odbc
    assert "Authentication=ActiveDirectoryMsi" in odbc


def test_active_directory_default_has_no_odbc_equivalent() -> None:
    with pytest.raises(ConfigurationError, match="ActiveDirectoryMsi"):
        to_url(PORTAL_ADO_PASSWORDLESS)


def test_odbc_string_is_kept_with_driver_18() -> None:
    real = PORTAL_ODBC.replace("{your_password_here}", "{p@ss;word}")
    odbc = to_odbc(real)
    assert odbc.startswith("Driver={ODBC Driver 18 for SQL Server};")
    assert "PWD={p@ss;word}" in odbc
    assert "Encrypt=yes" in odbc


def test_odbc_driver_17_is_upgraded_to_18() -> None:
    odbc = to_odbc(PORTAL_ODBC.replace("18", "17").replace("{your_password_here}", "x"))
    assert odbc.startswith("Driver={ODBC Driver 18 for SQL Server};")


def test_the_portal_placeholder_password_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="placeholder password"):
        to_url(PORTAL_ODBC)
    with pytest.raises(ConfigurationError, match="placeholder password"):
        to_url(PORTAL_ADO_SQL_AUTH.replace("Sup3r;Secr=t", "{your_password}"))


def test_sqlalchemy_urls_pass_through() -> None:
    assert to_url("sqlite:///tmp/x.sqlite").drivername == "sqlite"
    url = to_url("postgresql+psycopg://u:p@localhost:5432/school")
    assert (url.drivername, url.database, url.password) == ("postgresql+psycopg", "school", "p")


def test_database_names() -> None:
    assert database_name(PORTAL_ADO_MANAGED_IDENTITY) == "School_Lincoln_Db"
    assert database_name("sqlite:////data/school-lincoln.sqlite") == "school-lincoln.sqlite"
    assert database_name("postgresql+psycopg://u@h/school_db") == "school_db"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Initial Catalog=x;Encrypt=True", "no Server"),
        ("Server=tcp:x,1433;Encrypt=True", "no database"),
        ("Server=x;Database=y;Flavour=vanilla", "'Flavour'"),
        ('Server=x;Database=y;Password="unclosed', "not closed"),
        ("Server=x;Database=y;Authentication=Magic", "Authentication value"),
        ("Server=x;Database", "without '='"),
    ],
)
def test_bad_strings_name_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        to_url(text)


def test_errors_never_carry_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        to_url('Server=x;Password="hunter2-secret;Database')
    assert "hunter2" not in str(info.value)


def test_parse_handles_quotes_and_doubled_braces() -> None:
    assert parse_keyvalues("a=1; b = \"x;y\" ;c={p}}q};d='it''s'") == [
        ("a", "1"),
        ("b", "x;y"),
        ("c", "p}q"),
        ("d", "it's"),
    ]


def test_only_supported_databases_and_drivers() -> None:
    assert to_url("postgresql://u:p@db.example.org/school").drivername == "postgresql+psycopg"
    assert to_url("sqlite+pysqlite:///x.sqlite").drivername == "sqlite+pysqlite"
    assert to_url("mssql://u:p@db.example.org/school").drivername == "mssql"
    for text, named in [
        ("mysql+pymysql://u:hunter2@db.example.org/school", "mysql"),
        ("oracle://u:hunter2@db.example.org/school", "oracle"),
        ("postgresql+psycopg2://u:hunter2@db.example.org/school", "postgresql+psycopg2"),
        ("mssql+pymssql://u:hunter2@db.example.org/school", "mssql+pymssql"),
    ]:
        with pytest.raises(ConfigurationError, match="SQLite") as info:
            to_url(text)
        assert named in str(info.value) and "hunter2" not in str(info.value)


def test_a_port_that_is_not_a_number() -> None:
    with pytest.raises(ConfigurationError, match="port is not a number") as info:
        to_url("postgresql+psycopg://u:hunter2@db.example.org:notaport/school")
    assert "hunter2" not in str(info.value) and "notaport" not in str(info.value)
