"""School commands: ``school add|list|flag-full-sync|(de)activate|release-lease|discover``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cleversync.cli import housekeeping
from cleversync.cli.args import identifier
from cleversync.cli.laptop import known_school_connection_string
from cleversync.cli.output import TtyProgress, table

if TYPE_CHECKING:
    from cleversync.cli import CliContext
    from cleversync.db.sessiondb.registry import SchoolRecord


def register(commands: Any) -> None:
    school = commands.add_parser("school", help="register and list schools")
    school_commands = school.add_subparsers(dest="school_command", metavar="ACTION", required=True)
    add = school_commands.add_parser("add", help="register a school")
    add.add_argument("--district-id", type=identifier, required=True)
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
    school_list.add_argument("--district-id", type=identifier)
    school_list.set_defaults(handler=school_list_command)
    flag = school_commands.add_parser(
        "flag-full-sync",
        help="make the school's next sync a full one (with deletes), e.g. at the start of a year",
    )
    flag.add_argument("--school-id", type=identifier, required=True)
    flag.set_defaults(handler=school_flag_full_sync)
    housekeeping.add_active_toggles(
        school_commands,
        "--school-id",
        school_set_active,
        off="leave a school out of every sync run (its data stays)",
        on="put a deactivated school back into the sync runs",
    )
    release = school_commands.add_parser(
        "release-lease",
        help="free a school's sync lease whose run is gone (a killed or crashed sync)",
        description="A run holds its school's lease for 5 minutes and renews it every 30 s; "
        "the lease of a run that died expires by itself. This frees it now when its process "
        "no longer exists on this machine; a lease held from another machine needs --force.",
    )
    release.add_argument("--school-id", type=identifier, required=True)
    release.add_argument(
        "--force",
        action="store_true",
        help="also free a lease held from another machine (its run, if alive, then stops)",
    )
    release.set_defaults(handler=school_release_lease)
    discover = school_commands.add_parser(
        "discover", help="list a district's schools in Clever (and register the missing ones)"
    )
    discover.add_argument("--district-id", type=identifier, required=True)
    discover.add_argument(
        "--register", action="store_true", help="register the schools not registered yet"
    )
    discover.set_defaults(handler=school_discover)
    housekeeping.register_school(school_commands)


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
    if args.connection_string_stdin:
        connection_string: str | None = sys.stdin.readline().strip()
        if not connection_string:
            raise UsageError("no connection string on standard input")
        is_new = True
    else:
        connection_string, is_new = known_school_connection_string(services, args.prefix)
        if connection_string is None:
            raise UsageError(
                f"secret {secret} is not in the {store.description}; create it there first, "
                "or pass the connection string with --connection-string-stdin"
            )
    try:
        url = to_url(connection_string)
        derived = database_name(connection_string)
    except ConfigurationError as exc:
        raise UsageError(f"the school's connection string: {exc}") from None
    if url.get_backend_name() == "mssql":
        from cleversync.db.engines import odbc_problem

        problem = odbc_problem(url)
        if problem is not None:  # fine to register; the machine that syncs needs them
            print(f"Note: {problem}", file=sys.stderr)
    school = registry.add_school(
        district_id=args.district_id,
        clever_id=args.clever_id,
        name=args.name,
        prefix=args.prefix,
        database_name=args.database_name or derived or args.prefix,
    )
    if is_new:
        store.set(secret, connection_string)
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
    full_next = _full_sync_next(ctx, schools)
    rows = [
        (
            s.school_id,
            s.district_id,
            s.name,
            s.clever_school_id,
            s.prefix,
            s.database_name,
            s.is_active if s.district_active else "no (district)",
            full_next[s.school_id],
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


def _full_sync_next(ctx: CliContext, schools: list[SchoolRecord]) -> dict[int, bool]:
    """Whether each school's next run is full, as the sync decides it: flagged, never synced
    successfully, or its event cursor expired (an emptied database is found at sync time)."""
    from cleversync.sync.plan import choose_mode
    from cleversync.vocabulary import SyncMode

    history = ctx.services.history
    now = ctx.services.utc_clock()
    days = ctx.settings.sync.event_retention_days
    return {
        s.school_id: choose_mode(
            requested_full=False,
            requires_full_sync=s.requires_full_sync,
            last=history.last_good_run(s.school_id),
            now=now,
            retention_days=days,
        ).mode
        == SyncMode.FULL
        for s in schools
    }


def school_flag_full_sync(args: argparse.Namespace, ctx: CliContext) -> int:
    registry = ctx.services.registry
    school = registry.get_school(args.school_id)
    registry.set_requires_full_sync(school.school_id, True)
    print(f"School {school.school_id} ({school.name}) will get a full sync on its next run")
    return 0


def school_set_active(args: argparse.Namespace, ctx: CliContext) -> int:
    school = ctx.services.registry.set_active(args.school_id, args.active)
    state = "is synced again" if school.is_active else "is left out of every sync run now"
    print(f"School {school.school_id} ({school.name}) {state}")
    return 0


def school_release_lease(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.db.sessiondb.lease import (
        ALIVE,
        GONE,
        REMOTE,
        Leases,
        owner_process,
        owner_state,
    )
    from cleversync.timeutil import iso, utcnow

    services = ctx.services
    school = services.registry.get_school(args.school_id)
    policy = services.settings.retry.database
    leases = Leases(services.checked_session_engine(), policy=policy)
    holder, expires = leases.holder(school.school_id)
    named = f"School {school.school_id} ({school.name})"
    if holder is None:
        print(f"{named} holds no sync lease; nothing to release.")
        return 0
    state = owner_state(holder)
    expired = expires is not None and expires < utcnow()
    process = owner_process(holder)
    if state == ALIVE and not expired:
        pid = process[1] if process else "?"
        print(
            f"cleversync: error: {named}'s lease is held by {holder}, process {pid} on this "
            "machine, which is still running: a sync is in progress; stop it (Ctrl-C, or "
            f"kill {pid}) rather than freeing its lease",
            file=sys.stderr,
        )
        return 1
    if state == REMOTE and not expired and not args.force:
        print(
            f"cleversync: error: {named}'s lease is held by {holder} from another machine "
            f"until {iso(expires)}; CleverSync cannot tell from here whether that run is "
            "alive. Wait until then, or free it with --force if you are sure it is gone",
            file=sys.stderr,
        )
        return 1
    if not leases.release_held(school.school_id, holder):
        print(f"{named}'s lease changed hands meanwhile; nothing was released.")
        return 1
    if state == REMOTE and not expired:
        print(
            f"Warning: freed a lease held from another machine ({holder}); if that run is "
            "still going, it stops at its next lease renewal (within 30 s)",
            file=sys.stderr,
        )
    why = (
        "it had expired"
        if expired
        else "its process no longer exists"
        if state == GONE
        else "--force"
    )
    closed = services.history.close_abandoned(
        school.school_id,
        f"abandoned: the run holding this school's lease ({holder}) stopped without "
        "finishing; lease released with 'cleversync school release-lease'",
    )
    rows = f"; closed its {closed} unfinished history row(s) as Failed" if closed else ""
    print(f"Released {named}'s sync lease, held by {holder} ({why}){rows}.")
    return 0


def school_discover(args: argparse.Namespace, ctx: CliContext) -> int:
    services = ctx.services
    registry = services.registry
    district = registry.get_district(args.district_id)
    client = services.clever_client(district)
    progress = TtyProgress(sys.stderr, 0, "registering")
    found = []
    for page in client.schools(page_size=100):
        found.extend(page.records)
        progress.note(
            f"Reading district {district.clever_district_id}'s schools from Clever: "
            f"{len(found)} so far..."
        )
    progress.clear()
    registered = {s.clever_school_id: s for s in registry.list_schools(include_removed=True)}
    removed = {s.school_id for s in registered.values()} - {
        s.school_id for s in registry.list_schools()
    }
    rows = []
    added: list[SchoolRecord] = []
    to_add = [s for s in found if s.id not in registered] if args.register else []
    progress = TtyProgress(sys.stderr, len(to_add), "registering")
    for school in found:
        known = registered.get(school.id)
        if known is None and args.register:
            progress.show(len(added) + 1, school.name or school.id)
            known = services.register_discovered_school(
                district.district_id, school.id, school.name or school.id
            )
            added.append(known)
        rows.append(
            (
                school.id,
                school.name,
                (f"{known.school_id} (removed)" if known.school_id in removed else known.school_id)
                if known
                else None,
                known.prefix if known else None,
            )
        )
    progress.clear()
    if not found:
        print(f"Clever lists no schools for district {district.clever_district_id}.")
        return 0
    print(table(["CLEVER ID", "NAME", "SCHOOL ID", "PREFIX"], rows))
    if added:
        print(f"Registered {len(added)} school(s).")
        _say_missing_connection_strings(ctx, added)
    elif not args.register and len(registered.keys() & {s.id for s in found}) < len(found):
        print("Add the unregistered ones with --register.")
    return 0


def _say_missing_connection_strings(ctx: CliContext, added: list[SchoolRecord]) -> None:
    """Which new schools still need a connection string, and how to give each one."""
    store = ctx.services.secret_store
    missing = [s for s in added if not store.get(s.connection_secret)]
    if not missing:
        print("Next: 'cleversync db upgrade --all-schools' creates their tables.")
        return
    print(
        f"{len(missing)} of them have no connection string yet (SessionDb is not a local "
        "SQLite file, so none was invented); give each its own database's:"
    )
    print(
        table(
            ["SCHOOL ID", "PREFIX", "SECRET"],
            [(s.school_id, s.prefix, s.connection_secret) for s in missing],
        )
    )
    print(
        "  cleversync school set-connection-string --school-id N   (reads it from standard input)"
    )
    if ctx.services.settings.uses_key_vault:
        print("  or create each secret above in Key Vault directly.")
    print("Then: 'cleversync db upgrade --all-schools' creates their tables.")
