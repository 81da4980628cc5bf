"""Operating commands: ``sync`` (with progress and a summary table) and ``history``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from cleversync.cli.args import identifier, positive
from cleversync.cli.output import table
from cleversync.vocabulary import STORED_STATUSES, HealthStatus, RunStatus

if TYPE_CHECKING:
    from cleversync.cli import CliContext
    from cleversync.orchestrator import RunResult
    from cleversync.sync.school import Progress

STATUSES = [s.value for s in STORED_STATUSES]  # values: argparse shows repr() of a bad one


def register(commands: Any) -> None:
    sync = commands.add_parser(
        "sync",
        help="sync schools from Clever now",
        description="Sync every active school (or one school, or one district's). Each school "
        "gets a full sync when asked, when flagged, or when it has none yet; otherwise an "
        "incremental one. Exit status: 0 all succeeded, 1 a school failed or was partial, "
        "or nothing was synced (every school skipped: another run holds its lease).",
    )
    which = sync.add_mutually_exclusive_group()
    which.add_argument("--school-id", type=identifier, help="only this school")
    which.add_argument("--district-id", type=identifier, help="only this district's active schools")
    sync.add_argument("--full", action="store_true", help="a full sync (with deletes)")
    sync.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="let a full sync remove more than CleverSync__Sync__MaxDeletePercent of the school "
        "given with --school-id (one school only; implies --full)",
    )
    sync.add_argument(
        "--dry-run",
        action="store_true",
        help="with --school-id and --full: read Clever and show what the full sync would "
        "insert, update and remove, writing nothing to the school database",
    )
    sync.add_argument("--json", action="store_true", help="print the result as JSON")
    # The collector stays off while the sync's modules load (prepare_process turns it on).
    sync.set_defaults(handler=sync_command, gc_off_while_loading=True)

    history = commands.add_parser("history", help="show recent sync history")
    history.add_argument("--school-id", type=identifier)
    history.add_argument("--since", type=_date, help="only runs started on or after (YYYY-MM-DD)")
    history.add_argument(
        "--status", type=_status, help=f"only rows of this status ({', '.join(STATUSES)}; any case)"
    )
    history.add_argument("--limit", type=positive, default=50, help="at most this many rows (50)")
    history.add_argument("--json", action="store_true", help="print the rows as JSON")
    history.set_defaults(handler=history_command)

    health = commands.add_parser(
        "health", help="check the configuration, secret store, SessionDb and Clever auth"
    )
    health.add_argument(
        "--authenticate", action="store_true", help="fetch each district's Clever token first"
    )
    health.add_argument("--json", action="store_true", help="print the report as JSON")
    health.set_defaults(handler=health_command)


def _status(text: str) -> str:
    """A stored status, in any case (as the HTTP API's ``status`` parameter takes it)."""
    for status in STATUSES:
        if status.lower() == text.strip().lower():
            return status
    raise argparse.ArgumentTypeError(
        f"{text[:30]!r} is not a status (one of {', '.join(STATUSES)}; any case)"
    )


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def sync_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.cli.interrupt import EXIT_INTERRUPTED, Interrupts
    from cleversync.db.sessiondb.lease import Leases
    from cleversync.report import SUMMARY_HEADERS, problems, run_json, summary_rows
    from cleversync.services import prepare_process

    if args.dry_run:
        from cleversync.cli.changes import dry_run_command

        return dry_run_command(args, ctx)
    if args.allow_mass_delete and args.school_id is None:
        from cleversync.errors import UsageError

        raise UsageError(
            "--allow-mass-delete applies to exactly one school: give it with --school-id "
            "(e.g. 'cleversync sync --school-id 7 --allow-mass-delete', with the id the "
            "held-back message names)"
        )
    out = sys.stdout
    progress = ProgressDisplay(sys.stderr)
    orchestrator = ctx.services.orchestrator(on_progress=progress.update)
    prepare_process()
    targets = orchestrator.targets(school_id=args.school_id, district_id=args.district_id)
    if not targets:
        print("No active schools to sync. Register one with 'cleversync school add'.")
        return 0
    progress.start(len(targets))
    leases = Leases(ctx.services.session_engine(), policy=ctx.settings.retry.database)
    stop = threading.Event()
    try:
        with Interrupts(stop, release=leases.release_this_process):
            run = orchestrator.run(
                school_id=args.school_id,
                district_id=args.district_id,
                full=args.full,
                allow_mass_delete=args.allow_mass_delete,
                trigger="cli",
                stop=stop,
                within_deadline=False,  # no host timeout stops the CLI
            )
    finally:
        progress.stop()
    redact = ctx.services.redactor.redact
    if args.json:
        json.dump(run_json(run, redact), out, indent=2)
        out.write("\n")
    else:
        print(table(SUMMARY_HEADERS, summary_rows(run, redact)), file=out)
        for line in problems(run, redact):
            print(f"  {line}", file=out)
        print(_verdict(run), file=out)
    if stop.is_set():
        print(
            "Interrupted: stopped after the current batch; the schools above that did not "
            "finish are Failed (interrupted) and get a full sync next time if theirs was one",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return exit_status(run, single_school=args.school_id is not None)


def exit_status(run: RunResult, *, single_school: bool) -> int:
    """0 when every school succeeded (skipped ones aside), 1 when one failed or was partial,
    or when no school ran at all (the run is Skipped)."""
    if run.status != RunStatus.SUCCESS:
        return 1
    if single_school and any(s.status == RunStatus.SKIPPED for s in run.schools):
        return 1
    return 0


def _verdict(run: RunResult) -> str:
    counts: dict[str, int] = {}
    for school in run.schools:
        counts[school.status] = counts.get(school.status, 0) + 1
    parts = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
    verdict = f"Run {run.correlation_id}: {run.status} in {run.duration_ms / 1000:.1f} s ({parts})"
    if run.status == RunStatus.SKIPPED:
        verdict += ": nothing was synced; every school was skipped (the reasons are above)"
    return verdict


class ProgressDisplay:
    """Live progress on a terminal (one rewritten line); plain lines when not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._lock = threading.Lock()
        self._current: dict[int, tuple[str, int]] = {}
        self._announced: set[tuple[int, str]] = set()
        self._last_draw = 0.0
        self._schools = 0

    def start(self, schools: int) -> None:
        self._schools = schools
        self._stream.write(f"Syncing {schools} school(s)...\n")
        self._stream.flush()

    def update(self, progress: Progress) -> None:
        with self._lock:
            self._current[progress.school_id] = (progress.entity, progress.processed)
            key = (progress.school_id, progress.entity)
            if not self._tty:
                if key not in self._announced:
                    self._announced.add(key)
                    self._stream.write(
                        f"school {progress.school_id}: {progress.entity.lower()}s...\n"
                    )
                    self._stream.flush()
                return
            now = time.monotonic()
            if now - self._last_draw < 0.1:
                return
            self._last_draw = now
            shown = "  ".join(
                f"#{school} {entity.lower()}s {count:,}"
                for school, (entity, count) in sorted(self._current.items())[-4:]
            )
            self._stream.write("\r\x1b[2K" + shown[:150])
            self._stream.flush()

    def stop(self) -> None:
        if self._tty:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()


def history_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.timeutil import iso

    services = ctx.services
    if args.school_id is not None:
        services.registry.get_school(args.school_id)
    history = services.history
    rows = history.rows(
        school_id=args.school_id, since=args.since, status=args.status, limit=args.limit
    )
    if args.json:
        records = [
            {
                key: (iso(value) if isinstance(value, datetime) else value)
                for key, value in row.items()
            }
            for row in rows
        ]
        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print("No sync history matches.")
        return 0
    names = {s.school_id: s.name for s in services.registry.list_schools(include_removed=True)}
    body = []
    for row in rows:
        ended = row["SyncEndTime"]
        seconds = (ended - row["SyncStartTime"]).total_seconds() if ended else None
        body.append(
            (
                row["SyncId"],
                f"{row['SchoolId']} {names.get(row['SchoolId'], '')}".strip(),
                row["EntityType"],
                row["SyncType"],
                row["Status"],
                iso(row["SyncStartTime"]),
                f"{seconds:.1f}s" if seconds is not None else "-",
                row["RecordsProcessed"],
                row["RecordsInserted"],
                row["RecordsUpdated"],
                row["RecordsDeleted"],
                row["RecordsFailed"],
                row["Retries"],
                _waits(row["RateLimitWaits"], row["RateLimitWaitSeconds"]),
                _first_line(row["ErrorMessage"]),
            )
        )
    headers = [
        "SYNC",
        "SCHOOL",
        "ENTITY",
        "TYPE",
        "STATUS",
        "STARTED (UTC)",
        "TOOK",
        "PROC",
        "INS",
        "UPD",
        "DEL",
        "FAIL",
        "RETRY",
        "WAIT",
        "MESSAGE",
    ]
    print(table(headers, body))
    return 0


def _waits(count: int | None, seconds: float | None) -> str:
    """Rate-limit waits as ``count/seconds``: ``2/7.5s``; ``0`` for none."""
    if not count:
        return "0"
    return f"{count}/{float(seconds or 0):.1f}s"


def _first_line(text: str | None, width: int = 70) -> str:
    if not text:
        return ""
    line = text.splitlines()[0]
    return line if len(line) <= width else line[: width - 3] + "..."


def health_command(args: argparse.Namespace, ctx: CliContext) -> int:
    """The checks of GET /health/clever-auth, run now; exit 1 when Unhealthy."""
    from cleversync.errors import ConfigurationError
    from cleversync.health.checks import ProbeTargets, ServicesProbe, overall

    services = ctx.services
    redact = services.redactor.redact
    try:
        services.settings  # noqa: B018 (read now: a bad setting is reported as a check)
    except ConfigurationError as exc:
        probe = ServicesProbe(None, exc, redact=redact)
    else:
        probe = ServicesProbe(ProbeTargets.of(services), None, redact=redact)
        if args.authenticate:
            _authenticate_all(services)
    checks: dict[str, dict[str, Any]] = {}
    probe.run(checks.__setitem__)
    status = overall(checks)
    if args.json:
        report = {"status": status, **probe.summary(checks), "checks": checks}
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(f"CleverSync is {status}")
        for name, check in checks.items():
            print(f"  {name}: {_check_line(name, check)}")
            reason = check.get("error") or check.get("reason")
            if reason and check.get("status") != HealthStatus.HEALTHY:
                print(f"    reason: {redact(str(reason))}")
            for row in check.get("districts") or [] if name == "cleverAuth" else []:
                error = f" - {row['lastError']}" if row.get("lastError") else ""
                if row["status"] == HealthStatus.UNKNOWN and not error:
                    error = " - credentials present, not used yet (--authenticate tries them)"
                label = f"{row['districtId']} {row.get('name') or ''}".strip()
                print(f"    district {label}: {row['status']}{error}")
    return 1 if status == HealthStatus.UNHEALTHY else 0


def _authenticate_all(services: Any) -> None:
    """Fetch each district's token, so the check reports real authentication results."""
    from cleversync.clever.tokens import DistrictRef
    from cleversync.errors import CleverSyncError

    try:
        districts = services.registry.list_districts()
    except CleverSyncError:
        return  # the SessionDb check reports it
    for d in districts:
        # A failure is recorded in the token cache's state, which the check reports.
        with contextlib.suppress(CleverSyncError):
            services.token_provider.token(
                DistrictRef(d.district_id, d.clever_district_id, d.prefix)
            )


def _check_line(name: str, check: dict[str, Any]) -> str:
    hidden = {"status", "error", "reason", "districts", "lastError"}
    shown = {k: v for k, v in check.items() if k not in hidden and v not in (None, [], "")}
    details = ", ".join(f"{k}={v}" for k, v in shown.items())
    return f"{check.get('status')}{f' ({details})' if details else ''}"
