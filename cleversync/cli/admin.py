"""Admin commands: ``db upgrade``, ``district add|list|set-credentials`` (schools: ``schools``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cleversync.cli import housekeeping
from cleversync.cli.args import identifier
from cleversync.cli.output import TtyProgress, table

if TYPE_CHECKING:
    from cleversync.cli import CliContext


def register(commands: Any) -> None:
    db = commands.add_parser("db", help="create or upgrade databases")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade", help="bring SessionDb (and optionally school databases) to the latest schema"
    )
    which = upgrade.add_mutually_exclusive_group()
    which.add_argument("--school-id", type=identifier, help="also upgrade this school's database")
    which.add_argument("--all-schools", action="store_true", help="also upgrade every school's")
    upgrade.set_defaults(handler=db_upgrade)

    district = commands.add_parser("district", help="register and list districts")
    district_commands = district.add_subparsers(
        dest="district_command", metavar="ACTION", required=True
    )
    add = district_commands.add_parser("add", help="register a district")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--clever-id", required=True, help="the district's Clever id (24 hexadecimal digits)"
    )
    add.add_argument(
        "--prefix", required=True, help="secret-name prefix, e.g. Lincoln-District ([0-9A-Za-z-])"
    )
    add.set_defaults(handler=district_add)
    district_list = district_commands.add_parser("list", help="list registered districts")
    district_list.set_defaults(handler=district_list_command)
    credentials = district_commands.add_parser(
        "set-credentials",
        help="store a district's Clever app id and secret in the secret store",
        description="The client secret is read from a prompt on a terminal, otherwise from "
        "standard input: one line with the secret when --client-id is given, else two lines, "
        "the client id then the secret. Never from the command line.",
    )
    credentials.add_argument("--district-id", type=identifier, required=True)
    credentials.add_argument(
        "--client-id", help="the Clever app's client id (prompted if left out)"
    )
    credentials.add_argument(
        "--verify", action="store_true", help="fetch a token from Clever to check them"
    )
    credentials.set_defaults(handler=district_set_credentials)
    housekeeping.register_district(district_commands)


def db_upgrade(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.cli.laptop import ensure_local_sessiondb, location
    from cleversync.db.migrate import upgrade

    services = ctx.services
    schools_too = args.school_id is not None or args.all_schools
    if schools_too:
        _require_sessiondb(ctx)
    else:
        ensure_local_sessiondb(services)  # only a bare 'db upgrade' creates SessionDb
    engine = services.session_engine(create=not schools_too)
    before, after = upgrade(engine, "sessiondb")
    print(
        _upgrade_line(
            f"SessionDb ({location(services.session_connection_string())})", before, after
        )
    )
    if not schools_too:
        return 0
    registry = services.registry
    if args.school_id is not None:
        schools = [registry.get_school(args.school_id)]
    else:
        every = registry.list_schools()
        schools = [s for s in every if s.is_active]
        for school in every:
            if not school.is_active:
                why = "its district is inactive" if not school.district_active else "inactive"
                print(f"school {school.school_id} ({school.name}): skipped ({why})")
    progress = TtyProgress(sys.stderr, len(schools), "upgrading") if args.all_schools else None
    failed: list[str] = []
    for n, school in enumerate(schools, start=1):
        if progress is not None:
            progress.show(n, school.name)
        label = f"school {school.school_id} ({school.name}, database {school.database_name}"
        try:
            where = location(services.school_connection_string(school))
            label += f", {where})"
            before, after = upgrade(
                services.school_engine(school, create=True),
                "school",
                what=f"school database {school.database_name} ({where})",
            )
        except Exception as exc:  # one school's failure must not stop the others
            if not args.all_schools:
                raise
            if not label.endswith(")"):
                label += ")"
            if progress is not None:
                progress.clear()
            print(f"{label}: FAILED: {services.redactor.redact(str(exc))}", file=sys.stderr)
            failed.append(f"{school.school_id} ({school.name})")
            continue
        if progress is not None:
            progress.clear()
        print(_upgrade_line(label, before, after))
    if failed:
        print(f"could not upgrade: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _require_sessiondb(ctx: CliContext) -> None:
    """``db upgrade --school-id/--all-schools`` upgrades SessionDb but never creates it."""
    from cleversync.errors import ConfigurationError
    from cleversync.secrets import names

    services = ctx.services
    store = services.secret_store
    if not store.get(names.SESSIONDB_CONNECTION_STRING):
        where = (
            f"Key Vault {services.settings.key_vault.url}"
            if services.settings.uses_key_vault
            else store.description
        )
        raise ConfigurationError(
            f"SessionDb is not set up ({names.SESSIONDB_CONNECTION_STRING} is not in {where}); "
            "nothing was created. Create it with 'cleversync db upgrade' (no school option) "
            "and register the schools first"
        )


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
        "Next: store its Clever app's credentials with 'cleversync district set-credentials "
        f"--district-id {district.district_id} --client-id <client id> --verify'"
    )
    return 0


def district_list_command(args: argparse.Namespace, ctx: CliContext) -> int:
    districts = ctx.services.registry.list_districts()
    if not districts:
        print("No districts registered. Add one with 'cleversync district add'.")
        return 0
    rows = [(d.district_id, d.name, d.clever_district_id, d.prefix, d.is_active) for d in districts]
    print(table(["ID", "NAME", "CLEVER ID", "PREFIX", "ACTIVE"], rows))
    return 0


def district_set_credentials(args: argparse.Namespace, ctx: CliContext) -> int:
    import getpass

    from cleversync.errors import CleverSyncError, UsageError

    services = ctx.services
    district = services.registry.get_district(args.district_id)
    interactive = sys.stdin.isatty()
    client_id = args.client_id
    if not client_id:
        client_id = (
            input("Clever client id: ").strip() if interactive else sys.stdin.readline().strip()
        )
    secret = (
        getpass.getpass("Clever client secret: ") if interactive else sys.stdin.readline().strip()
    )
    if not client_id or not secret:
        raise UsageError("the client id and the client secret must not be empty")
    services.redactor.register_basic(client_id, secret)
    if args.verify:
        # Check them before they replace anything: a wrong secret must not break the syncs.
        try:
            services.verify_clever_credentials(
                clever_district_id=district.clever_district_id,
                prefix=district.prefix,
                client_id=client_id,
                client_secret=secret,
            )
        except CleverSyncError as exc:
            raise CleverSyncError(f"{exc}; nothing was stored") from None
        print(f"Verified: Clever issued a token for district {district.clever_district_id}")
    store = services.secret_store
    id_name, secret_name = services.store_district_credentials(district.prefix, client_id, secret)
    print(f"Stored {id_name} and {secret_name} in the {store.description}")
    return 0
