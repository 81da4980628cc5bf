"""Admin commands: ``db upgrade``, ``district add|list``, ``school add|list``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cleversync.cli.output import table

if TYPE_CHECKING:
    from cleversync.cli import CliContext


def register(commands: Any) -> None:
    db = commands.add_parser("db", help="create or upgrade databases")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade", help="bring SessionDb (and optionally school databases) to the latest schema"
    )
    which = upgrade.add_mutually_exclusive_group()
    which.add_argument("--school-id", type=int, help="also upgrade this school's database")
    which.add_argument("--all-schools", action="store_true", help="also upgrade every school's")
    upgrade.set_defaults(handler=db_upgrade)

    district = commands.add_parser("district", help="register and list districts")
    district_commands = district.add_subparsers(
        dest="district_command", metavar="ACTION", required=True
    )
    add = district_commands.add_parser("add", help="register a district")
    add.add_argument("--name", required=True)
    add.add_argument("--clever-id", required=True, help="the district's Clever id")
    add.add_argument(
        "--prefix", required=True, help="secret-name prefix, e.g. Lincoln-District ([0-9A-Za-z-])"
    )
    add.set_defaults(handler=district_add)
    district_list = district_commands.add_parser("list", help="list registered districts")
    district_list.set_defaults(handler=district_list_command)

    school = commands.add_parser("school", help="register and list schools")
    school_commands = school.add_subparsers(dest="school_command", metavar="ACTION", required=True)
    add = school_commands.add_parser("add", help="register a school")
    add.add_argument("--district-id", type=int, required=True)
    add.add_argument("--clever-id", required=True, help="the school's Clever id")
    add.add_argument("--name", required=True)
    add.add_argument("--prefix", required=True, help="secret-name prefix, e.g. Lincoln-Elementary")
    add.add_argument(
        "--database-name", help="the database's name on its server (shown to operators)"
    )
    add.add_argument(
        "--connection-string-stdin",
        action="store_true",
        help="read the school database's connection string from standard input and store it",
    )
    add.set_defaults(handler=school_add)
    school_list = school_commands.add_parser("list", help="list registered schools")
    school_list.add_argument("--district-id", type=int)
    school_list.set_defaults(handler=school_list_command)


def db_upgrade(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.db.migrate import upgrade
    from cleversync.redaction import redact

    services = ctx.services
    engine = services.session_engine(create=True)
    before, after = upgrade(engine, "sessiondb")
    print(_upgrade_line("SessionDb", before, after))
    if args.school_id is None and not args.all_schools:
        return 0
    registry = services.registry
    schools = (
        [registry.get_school(args.school_id)]
        if args.school_id is not None
        else registry.list_schools()
    )
    failed: list[str] = []
    for school in schools:
        label = f"school {school.school_id} ({school.name}, database {school.database_name})"
        try:
            before, after = upgrade(services.school_engine(school, create=True), "school")
        except Exception as exc:  # one school's failure must not stop the others
            if not args.all_schools:
                raise
            print(f"{label}: FAILED: {redact(str(exc))}", file=sys.stderr)
            failed.append(f"{school.school_id} ({school.name})")
            continue
        print(_upgrade_line(label, before, after))
    if failed:
        print(f"could not upgrade: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _upgrade_line(label: str, before: str | None, after: str | None) -> str:
    if before == after:
        return f"{label}: already at revision {after}"
    return f"{label}: upgraded from {before or 'empty'} to revision {after}"


def district_add(args: argparse.Namespace, ctx: CliContext) -> int:
    district = ctx.services.registry.add_district(
        name=args.name, clever_id=args.clever_id, prefix=args.prefix
    )
    print(
        f"Registered district {district.district_id}: {district.name} "
        f"(Clever id {district.clever_district_id}, prefix {district.prefix})"
    )
    print(
        f"Next: store its Clever app credentials with "
        f"'cleversync district set-credentials --district-id {district.district_id}'"
    )
    return 0


def district_list_command(args: argparse.Namespace, ctx: CliContext) -> int:
    districts = ctx.services.registry.list_districts()
    if not districts:
        print("No districts registered. Add one with 'cleversync district add'.")
        return 0
    rows = [(d.district_id, d.name, d.clever_district_id, d.prefix) for d in districts]
    print(table(["ID", "NAME", "CLEVER ID", "PREFIX"], rows))
    return 0


def school_add(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.connstr import database_name, to_url
    from cleversync.errors import ConfigurationError, UsageError
    from cleversync.secrets import names

    names.validate_prefix(args.prefix, what="school prefix")
    services = ctx.services
    registry = services.registry
    registry.get_district(args.district_id)
    store = services.secret_store
    secret = names.connection_string(args.prefix)
    new_value: str | None = None
    if args.connection_string_stdin:
        new_value = sys.stdin.readline().strip()
        if not new_value:
            raise UsageError("no connection string on standard input")
        connection_string = new_value
    elif (existing := store.get(secret)) is not None:
        connection_string = existing
    elif services.settings.uses_key_vault:
        raise UsageError(
            f"secret {secret} is not in Key Vault; create it there first, or pass the "
            "connection string with --connection-string-stdin"
        )
    else:
        new_value = connection_string = services.local_school_connection_string(args.prefix)
    try:
        to_url(connection_string)
        derived = database_name(connection_string)
    except ConfigurationError as exc:
        raise UsageError(f"the school's connection string: {exc}") from None
    school = registry.add_school(
        district_id=args.district_id,
        clever_id=args.clever_id,
        name=args.name,
        prefix=args.prefix,
        database_name=args.database_name or derived or args.prefix,
    )
    if new_value is not None:
        store.set(secret, new_value)
    print(
        f"Registered school {school.school_id}: {school.name} (Clever id "
        f"{school.clever_school_id}, database {school.database_name}, secret {secret})"
    )
    print(f"Next: create its tables with 'cleversync db upgrade --school-id {school.school_id}'")
    return 0


def school_list_command(args: argparse.Namespace, ctx: CliContext) -> int:
    registry = ctx.services.registry
    if args.district_id is not None:
        registry.get_district(args.district_id)
    schools = registry.list_schools(district_id=args.district_id)
    if not schools:
        print("No schools registered. Add one with 'cleversync school add'.")
        return 0
    rows = [
        (
            s.school_id,
            s.district_id,
            s.name,
            s.clever_school_id,
            s.prefix,
            s.database_name,
            s.is_active,
            s.requires_full_sync,
        )
        for s in schools
    ]
    headers = [
        "ID",
        "DISTRICT",
        "NAME",
        "CLEVER ID",
        "PREFIX",
        "DATABASE",
        "ACTIVE",
        "FULL SYNC NEXT",
    ]
    print(table(headers, rows))
    return 0
