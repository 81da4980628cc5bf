"""Onboarding and housekeeping: ``school set-connection-string``, ``school remove``,
``district deactivate|activate|remove``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cleversync.cli.args import identifier

if TYPE_CHECKING:
    from cleversync.cli import CliContext
    from cleversync.db.sessiondb.registry import Removal, SchoolRecord
    from cleversync.services import Services


def register_school(school_commands: Any) -> None:
    connection = school_commands.add_parser(
        "set-connection-string",
        help="store (or replace) a school database's connection string, after trying it",
        description="Reads the connection string from standard input (a prompt that does not "
        "echo on a terminal), never from the command line. Accepted forms: a SQLAlchemy URL "
        "(postgresql+psycopg://..., sqlite:///...), or the ADO.NET or ODBC string the Azure "
        "portal shows. It is checked, a connection is tried, and only then is it stored as "
        "the school's secret; the school's DatabaseName label follows it.",
    )
    connection.add_argument("--school-id", type=identifier, required=True)
    connection.add_argument(
        "--no-connect",
        action="store_true",
        help="store it without trying a connection (a server this machine cannot reach)",
    )
    connection.set_defaults(handler=school_set_connection_string)

    remove = school_commands.add_parser(
        "remove",
        help="unregister a school (its database is never dropped)",
        description="Refused while the school has sync history, unless --keep-history (the "
        "school is hidden, its history stays readable by 'cleversync history') or "
        "--purge-history (its history is deleted too). Refused while a sync runs for it. "
        "The school's database and its connection-string secret are left as they are.",
    )
    remove.add_argument("--school-id", type=identifier, required=True)
    _history_choice(remove)
    remove.set_defaults(handler=school_remove)


def register_district(district_commands: Any) -> None:
    add_active_toggles(
        district_commands,
        "--district-id",
        district_set_active,
        off="leave every school of a district out of the sync runs",
        on="put a deactivated district's schools back into the sync runs",
    )
    remove = district_commands.add_parser(
        "remove",
        help="unregister a district and all its schools (no database is dropped)",
        description="Refused while any of its schools has sync history, unless "
        "--keep-history or --purge-history (see 'cleversync school remove'). All or nothing: "
        "refused while a sync runs for any of its schools.",
    )
    remove.add_argument("--district-id", type=identifier, required=True)
    _history_choice(remove)
    remove.set_defaults(handler=district_remove)


def add_active_toggles(
    commands: Any, option: str, handler: Callable[..., int], *, off: str, on: str
) -> None:
    """The ``deactivate`` and ``activate`` subcommands of a district or a school."""
    for action, active, text in (("deactivate", False, off), ("activate", True, on)):
        toggle = commands.add_parser(action, help=text)
        toggle.add_argument(option, type=identifier, required=True)
        toggle.set_defaults(handler=handler, active=active)


def _history_choice(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--keep-history",
        action="store_true",
        help="keep the sync history: the row stays, marked removed, hidden from lists and runs",
    )
    which.add_argument(
        "--purge-history", action="store_true", help="delete the sync history with it"
    )


def _history_mode(args: argparse.Namespace) -> str:
    from cleversync.db.sessiondb.registry import KEEP, PURGE, REFUSE

    return KEEP if args.keep_history else PURGE if args.purge_history else REFUSE


# --- school set-connection-string -----------------------------------------------------------


def school_set_connection_string(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.cli.laptop import location
    from cleversync.connstr import database_name, to_url
    from cleversync.errors import ConfigurationError, UsageError

    services = ctx.services
    school = services.registry.get_school(args.school_id)
    connection_string = _read_connection_string(school)
    _register_secret_parts(services, connection_string)
    try:
        url = to_url(connection_string)
        derived = database_name(connection_string)
    except ConfigurationError as exc:
        raise UsageError(
            f"the connection string on standard input: {exc}; nothing was stored"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        from pathlib import Path

        if not Path(url.database).is_absolute() and "uri" not in url.query:  # same file later
            url = url.set(database=str(Path(url.database).absolute()))
            connection_string = url.render_as_string(hide_password=False)
    where = location(connection_string)
    if url.get_backend_name() == "mssql":
        from cleversync.db.engines import odbc_problem

        problem = odbc_problem(url)
        if problem is not None and not args.no_connect:
            raise ConfigurationError(
                f"{problem}; nothing was stored (--no-connect stores it untried, for a "
                "machine that has them)"
            )
    if args.no_connect:
        print(f"Not tried (--no-connect): {where}")
    else:
        _try_connection(services, school, connection_string, where)
    secret = school.connection_secret
    store = services.secret_store
    store.set(secret, connection_string)
    label = (derived or school.database_name)[:100]
    if label != school.database_name:
        services.registry.set_database_name(school.school_id, label)
    print(
        f"Stored {secret} in the {store.description} for school {school.school_id} "
        f"({school.name}): {where}"
    )
    if label != school.database_name:
        print(f"Database name label: {school.database_name} -> {label}")
    print(f"Next: 'cleversync db upgrade --school-id {school.school_id}' creates its tables")
    return 0


def _read_connection_string(school: SchoolRecord) -> str:
    import getpass

    from cleversync.errors import UsageError

    if sys.stdin.isatty():
        text = getpass.getpass(f"Connection string for school {school.school_id} ({school.name}): ")
    else:
        text = sys.stdin.readline()
    value = text.strip()
    if not value:
        raise UsageError("no connection string on standard input (one line); nothing was stored")
    if "\n" in value or "\r" in value or "\x00" in value:
        raise UsageError("the connection string must be one line; nothing was stored")
    return value


def _register_secret_parts(services: Services, connection_string: str) -> None:
    """Mask the string and its password in every message, before anything can fail."""
    from cleversync.connstr import parse_keyvalues, to_url

    redactor = services.redactor
    redactor.register(connection_string)
    with contextlib.suppress(Exception):  # an unreadable string is reported by the caller
        password = to_url(connection_string).password
        redactor.register(password if isinstance(password, str) else None)
    try:
        pairs = parse_keyvalues(connection_string)
    except Exception:
        return
    for key, value in pairs:
        if key.strip().lower() in ("password", "pwd"):
            redactor.register(value)


def _try_connection(
    services: Services, school: SchoolRecord, connection_string: str, where: str
) -> None:
    """Connect and ask the server a trivial question; a SQLite file that is not there yet is
    fine when its folder is (``db upgrade`` creates it)."""
    from pathlib import Path

    from sqlalchemy import text

    from cleversync.connstr import to_url
    from cleversync.db.engines import engine_for
    from cleversync.db.errors import database_error
    from cleversync.errors import CleverSyncError, DatabaseUnavailableError

    url = to_url(connection_string)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        file = Path(url.database).absolute()
        if not file.exists():
            if not file.parent.is_dir():
                raise DatabaseUnavailableError(
                    f"the folder {file.parent} of SQLite file {file} does not exist; nothing "
                    "was stored"
                )
            print(f"SQLite file {file} does not exist yet; 'cleversync db upgrade' creates it")
            return
    what = f"school {school.school_id}'s database ({where})"
    try:
        engine = engine_for(connection_string)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except CleverSyncError as exc:
        raise type(exc)(f"{what}: {exc}; nothing was stored") from None
    except Exception as exc:
        translated = database_error(exc, what)
        if translated is None:
            raise
        raise type(translated)(
            f"{translated}; nothing was stored (fix the string, or store it untried with "
            "--no-connect)"
        ) from None
    print(f"Connected: {where}")


# --- removal --------------------------------------------------------------------------------


def school_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    registry = ctx.services.registry
    removal = registry.remove_school(args.school_id, _history_mode(args))
    _report_removal(ctx, removal)
    return 0


def district_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    services = ctx.services
    registry = services.registry
    district = registry.get_district(args.district_id, include_removed=args.purge_history)
    removal = registry.remove_district(district.district_id, _history_mode(args))
    _report_removal(ctx, removal)
    state = "kept as removed (its schools' history stays)" if removal.kept else "removed"
    print(f"District {district.district_id} ({district.name}) {state}.")
    from cleversync.secrets import names

    print(
        f"Its credentials ({names.client_id(district.prefix)}, "
        f"{names.client_secret(district.prefix)}) are left in the secret store; delete them "
        "there when no longer needed."
    )
    return 0


def _report_removal(ctx: CliContext, removal: Removal) -> None:
    for school in removal.deleted:
        print(f"Removed school {school.school_id} ({school.name}).")
    for school in removal.kept:
        print(
            f"Removed school {school.school_id} ({school.name}); its sync history is kept "
            "('cleversync history' shows it)."
        )
    if removal.history_rows and not removal.kept:
        print(f"Deleted {removal.history_rows} sync history row(s).")
    schools = removal.deleted + removal.kept
    if schools:
        secrets = ", ".join(s.connection_secret for s in schools)
        print(
            "No database was dropped; their connection strings are left in the secret store "
            f"({secrets})."
        )


# --- district (de)activation ----------------------------------------------------------------


def district_set_active(args: argparse.Namespace, ctx: CliContext) -> int:
    registry = ctx.services.registry
    district = registry.set_district_active(args.district_id, args.active)
    schools = registry.list_schools(district_id=district.district_id)
    own = sum(1 for s in schools if s.is_active)
    named = f"District {district.district_id} ({district.name})"
    if district.is_active:
        held = len(schools) - own
        note = f"; {held} of them deactivated on their own stay out" if held else ""
        print(f"{named} is synced again: {own} school(s){note}.")
    else:
        print(f"{named} and its {len(schools)} school(s) are left out of every sync run now.")
    return 0
