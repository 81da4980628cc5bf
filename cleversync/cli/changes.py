"""``cleversync changes`` (what runs did to each record) and ``sync --full --dry-run`` (what a
full sync would do)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cleversync.cli.args import identifier, positive
from cleversync.cli.output import table

if TYPE_CHECKING:
    from cleversync.cli import CliContext
    from cleversync.db.sessiondb.changes import Change
    from cleversync.sync.preview import Preview

ENTITIES = ("Student", "Teacher", "Section")
DEFAULT_LIMIT = 200
# Clever's values reach a terminal: control characters (escape sequences, line breaks that
# would forge a row) are shown escaped.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def shown(value: str | None) -> str | None:
    """``value`` with its control characters escaped (``\\x1b``), fit for one table cell."""
    if value is None:
        return None
    return _UNPRINTABLE.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"
        ),
        value,
    )


def register(commands: Any) -> None:
    changes = commands.add_parser(
        "changes",
        help="show what sync runs did to each record (newest first)",
        description="The change detail of a school's sync runs: each record inserted, updated "
        "(old and new values), deleted, deactivated, reactivated or held back by the "
        "mass-delete guard, newest first. A run details at most "
        "CleverSync__History__MaxChangeDetailsPerRun changes; the rest are counted.",
    )
    changes.add_argument("--school-id", type=identifier, required=True, help="the school")
    changes.add_argument(
        "--since", type=since_date, help="only changes recorded on or after (YYYY-MM-DD, UTC)"
    )
    changes.add_argument("--clever-id", type=clever_id, help="only this record's changes")
    changes.add_argument("--entity", choices=ENTITIES, help="only this entity type")
    changes.add_argument(
        "--limit",
        type=positive,
        default=DEFAULT_LIMIT,
        help=f"at most this many ({DEFAULT_LIMIT})",
    )
    changes.add_argument("--json", action="store_true", help="print the changes as JSON")
    changes.set_defaults(handler=changes_command)


def since_date(text: str) -> datetime:
    """A date or ISO date-time; one with a zone is converted to UTC (SessionDb's times)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        shown = text if len(text) <= 30 else text[:27] + "..."
        raise argparse.ArgumentTypeError(
            f"{shown!r} is not a date (YYYY-MM-DD, or YYYY-MM-DDTHH:MM in UTC)"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def clever_id(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 50:
        raise argparse.ArgumentTypeError("a Clever id is 1 to 50 characters")
    return value


def changes_command(args: argparse.Namespace, ctx: CliContext) -> int:
    services = ctx.services
    services.registry.get_school(args.school_id)  # an unknown school is an error, not "none"
    log = services.changes
    found = log.for_school(
        args.school_id,
        since=args.since,
        clever_id=args.clever_id,
        entity=args.entity,
        limit=args.limit,
    )
    runs = sorted({c.history_id for c in found})
    omitted = {run: n for run in runs if (n := log.omitted(run))}
    redact = services.redactor.redact
    if args.json:
        body = {
            "schoolId": args.school_id,
            "changes": [c.as_json() for c in found],
            "omitted": {str(run): n for run, n in omitted.items()},
        }
        sys.stdout.write(redact(json.dumps(body, indent=2, ensure_ascii=False)) + "\n")
        return 0
    if not found:
        print("No recorded changes match.")
        return 0
    headers = ["RECORDED (UTC)", "SYNC", "ENTITY", "CLEVER ID", "KIND", "NAME", "CHANGES"]
    rows = [
        (
            _when(c.recorded_at),
            c.history_id,
            c.entity,
            shown(c.clever_id),
            c.kind,
            shown(c.name),
            shown(describe_fields(c)),
        )
        for c in found
    ]
    print(redact(table(headers, rows)))
    if len(found) == args.limit:
        print(f"(the newest {args.limit}; --limit shows more)")
    for run, n in omitted.items():
        print(
            f"Sync {run}: {n} more change(s) were counted but not detailed "
            "(over CleverSync__History__MaxChangeDetailsPerRun)"
        )
    return 0


def describe_fields(change: Change) -> str | None:
    """``Email: a@x -> b@x; Grade: 3 -> 4`` (``-`` for no value)."""
    if not change.fields:
        return None
    return "; ".join(
        f"{column}: {old if old is not None else '-'} -> {new if new is not None else '-'}"
        for column, (old, new) in change.fields.items()
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def dry_run_command(args: argparse.Namespace, ctx: CliContext) -> int:
    """``sync --school-id N --full --dry-run``: the preview, as a table or JSON."""
    from cleversync.errors import UsageError

    if args.school_id is None or not args.full or args.allow_mass_delete:
        raise UsageError(
            "--dry-run previews a full sync of one school: use it as "
            "'cleversync sync --school-id N --full --dry-run' (without --district-id or "
            "--allow-mass-delete)"
        )
    preview = ctx.services.preview_full_sync(args.school_id)
    redact = ctx.services.redactor.redact
    if args.json:
        text = json.dumps(preview.as_json(), indent=2, ensure_ascii=False)
        sys.stdout.write(redact(text) + "\n")
        return 0
    print(redact(render_preview(preview)))
    return 0


def render_preview(preview: Preview) -> str:
    lines = [
        f"Preview of a full sync of school {preview.school_id} (nothing was written to its "
        f"database): {preview.inserted} to insert, {preview.updated} to update, "
        f"{preview.deleted} to remove"
    ]
    changes = [*preview.inserts, *preview.updates, *preview.deletes]
    if changes:
        headers = ["ACTION", "ENTITY", "CLEVER ID", "NAME", "CHANGES"]
        rows = [
            (c.kind, c.entity, shown(c.clever_id), shown(c.name), shown(describe_fields(c)))
            for c in changes
        ]
        lines.append(table(headers, rows))
    if preview.omitted:
        lines.append(
            f"{preview.omitted} more change(s) not listed "
            "(over CleverSync__History__MaxChangeDetailsPerRun)"
        )
    if preview.skipped:
        lines.append(f"{preview.skipped} record(s) from Clever cannot be stored as they are")
    if preview.held_back:
        lines.append("The mass-delete guard would hold the removals back:")
    lines += [f"  {shown(message)}" for message in preview.messages]
    return "\n".join(lines)
