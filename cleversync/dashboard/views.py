"""The dashboard's pages and actions: each gathers its data through ``db/`` queries (the
``Overview``, ``Registry``, ``QueuedRuns``) and the shared registration code, and renders.

Actions are POSTs behind a confirmation page (the GET of the same URL), each protected by
the CSRF token the app checks before the handler runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from werkzeug.exceptions import NotFound

from cleversync.dashboard.app import Context, Page
from cleversync.dashboard.trend import trend_svg
from cleversync.db.sessiondb.overview import ENTITY_ORDER, STATE_LABELS, STATES
from cleversync.errors import CleverSyncError, NotFoundError, UsageError
from cleversync.vocabulary import STORED_STATUSES, RunStatus

MAX_ID = 2**31 - 1
_CLEVER_ID = re.compile(r"[0-9A-Za-z_-]{1,50}")
SCHOOL = f"<int(min=1, max={MAX_ID}):school_id>"  # SQL int keys
DISTRICT = f"<int(min=1, max={MAX_ID}):district_id>"
HISTORY_LIMIT = 300

# Notices after an action, by a fixed code (never text from the request).
NOTICES = {
    "flagged": "Flagged: the school's next run will be a full sync.",
    "activated": "Activated: the school is synced again.",
    "deactivated": "Deactivated: the school is left out of every sync run (its data stays).",
    "district": "District registered and its credentials stored in the secret store.",
    "schools": "Schools registered. Give any without a database its connection string "
    "('cleversync school set-connection-string'), then create their tables with "
    "'cleversync db upgrade --all-schools'.",
}


@dataclass(frozen=True)
class Action:
    title: str
    explain: str
    button: str
    full: bool = False
    allow_mass_delete: bool = False


ACTIONS = {
    "sync": Action(
        "Sync now",
        "Queue a sync of this school now: incremental, or full if the school needs one.",
        "Sync now",
    ),
    "full-sync": Action(
        "Full sync now",
        "Queue a full sync of this school now: every record is read again and rows Clever no "
        "longer has are removed (within the mass-delete guard).",
        "Run a full sync",
        full=True,
    ),
    "accept-hold-back": Action(
        "Accept the held-back deletes",
        "Run a full sync of this one school with the mass-delete guard lifted: the rows Clever "
        "no longer lists are removed, however many they are.",
        "Remove them: sync with the guard lifted",
        full=True,
        allow_mass_delete=True,
    ),
    "preview": Action(
        "Preview a full sync",
        "Read Clever now and show what a full sync would insert, update (old and new values) "
        "and delete, without changing anything: the school database is only read, and the "
        "history gets one DryRun row per entity.",
        "Preview now",
        full=True,
    ),
    "flag-full-sync": Action(
        "Flag for a full sync",
        "Make the school's next run (scheduled or manual) a full sync, e.g. at the start of a "
        "school year.",
        "Flag for a full sync",
    ),
    "deactivate": Action(
        "Deactivate",
        "Leave this school out of every sync run. Its database and history stay.",
        "Deactivate the school",
    ),
    "activate": Action(
        "Activate", "Put this school back into the sync runs.", "Activate the school"
    ),
}


def routes() -> list[tuple[str, str, Callable[..., Page], list[str]]]:
    return [
        ("/", "overview", overview, ["GET"]),
        ("/schools/<int(min=1, max=2147483647):school_id>", "school", school, ["GET"]),
        (
            "/schools/<int(min=1, max=2147483647):school_id>/actions/<action>",
            "action",
            action,
            ["GET", "POST"],
        ),
        ("/runs", "find_run", find_run, ["GET"]),
        ("/runs/<key>", "run", run, ["GET"]),
        ("/districts/new", "district_new", district_new, ["GET", "POST"]),
        (
            "/districts/<int(min=1, max=2147483647):district_id>/discover",
            "discover",
            discover,
            ["GET", "POST"],
        ),
    ]


# --- pages --------------------------------------------------------------------------------


def overview(ctx: Context) -> Page:
    query = ctx.request.args
    problems: list[str] = []
    district_id = _id_param(query.get("district"), "district", problems)
    state = query.get("state") or None
    if state is not None and state not in STATES:
        problems.append(f"status filter {state!r} is not one of {', '.join(STATES)}")
        state = None
    data = ctx.services.overview
    districts = data.districts()
    schools = data.schools(district_id=district_id)
    counts = {s: sum(1 for x in schools if x.state == s) for s in STATES}
    shown = [s for s in schools if state is None or s.state == state]
    per_district: dict[int, dict[str, int]] = {}
    for s in data.schools() if district_id is not None else schools:
        per_district.setdefault(s.district_id, {}).setdefault(s.state, 0)
        per_district[s.district_id][s.state] += 1
    trends = {
        s.school_id: trend_svg(s.runs, ctx.now, label=f"{s.name}, last 30 days") for s in shown
    }
    return Page(
        "overview.html",
        status=400 if problems else 200,
        schools=shown,
        districts=districts,
        per_district=per_district,
        counts=counts,
        trends=trends,
        district_id=district_id,
        state=state,
        problems=problems,
        notice=NOTICES.get(query.get("done", "")),
    )


def school(ctx: Context, school_id: int) -> Page:
    query = ctx.request.args
    problems: list[str] = []
    states = ctx.services.overview.schools(school_id=school_id)
    if not states:
        raise NotFoundError(f"no school has id {school_id}")
    state = states[0]
    since = _date_param(query.get("since"), "from", problems)
    until = _date_param(query.get("until"), "to", problems)
    entity = query.get("entity") or None
    if entity is not None and entity not in ENTITY_ORDER:
        problems.append(f"entity {entity!r} is not one of {', '.join(ENTITY_ORDER)}")
        entity = None
    status = query.get("status") or None
    if status is not None and status not in STORED_STATUSES:
        problems.append(f"status {status!r} is not one of {', '.join(STORED_STATUSES)}")
        status = None
    log = ctx.services.changes
    detail_id = _id_param(query.get("changes"), "changes", problems)
    detail = None
    if detail_id is not None:
        listed = [c for c in log.for_history(detail_id) if c.school_id == school_id]
        detail = {"history_id": detail_id, "changes": listed, "omitted": log.omitted(detail_id)}
    record = (query.get("record") or "").strip() or None
    record_changes = None
    if record is not None:
        if _CLEVER_ID.fullmatch(record):
            record_changes = log.for_school(school_id, clever_id=record, limit=HISTORY_LIMIT)
        else:
            problems.append(f"Clever id {record!r} is not one (up to 50 letters, digits, - or _)")
            record = None
    rows = ctx.services.overview.history(
        school_id,
        since=datetime.combine(since, datetime.min.time()) if since else None,
        until=datetime.combine(until, datetime.min.time()) + timedelta(days=1) if until else None,
        entity=entity,
        status=status,
        limit=HISTORY_LIMIT,
    )
    return Page(
        "school.html",
        status=400 if problems else 200,
        school=state,
        rows=rows,
        trend=trend_svg(state.runs, ctx.now, label=f"{state.name}, last 30 days"),
        filters={
            "since": since.isoformat() if since else "",
            "until": until.isoformat() if until else "",
            "entity": entity or "",
            "status": status or "",
        },
        entities=ENTITY_ORDER,
        statuses=STORED_STATUSES,
        limit=HISTORY_LIMIT,
        problems=problems,
        actions=ACTIONS,
        notice=NOTICES.get(query.get("done", "")),
        detail=detail,
        record=record or "",
        record_changes=record_changes,
        held_records=log.held_back(school_id) if state.held_back else [],
    )


def find_run(ctx: Context) -> Page:
    key = (ctx.request.args.get("key") or "").strip()
    if not key:
        return Page(redirect=ctx.url("/"))
    if not _run_key_ok(key):
        return Page(
            "error.html",
            status=400,
            code=400,
            message="A run is found by its run id (digits) or its correlation id "
            "(up to 64 letters, digits and dashes).",
        )
    return Page(redirect=ctx.url(f"/runs/{key}"))


def run(ctx: Context, key: str) -> Page:
    if not _run_key_ok(key):
        raise NotFoundError(
            "no such run: a run id is digits, a correlation id up to 64 letters, digits and dashes"
        )
    found = ctx.services.overview.run(key)
    if found is None:
        raise NotFoundError(f"no run has id or correlation id {key}")
    return Page("run.html", run=found)


# --- actions ------------------------------------------------------------------------------


def action(ctx: Context, school_id: int, action: str) -> Page:
    chosen = ACTIONS.get(action)
    if chosen is None:
        raise NotFound()
    states = ctx.services.overview.schools(school_id=school_id)
    if not states:
        raise NotFoundError(f"no school has id {school_id}")
    state = states[0]
    values: dict[str, Any] = {"school": state, "action": chosen, "name": action}
    if action == "accept-hold-back":
        values["held_records"] = ctx.services.changes.held_back(school_id)
    if ctx.request.method == "GET":
        return Page("confirm.html", **values)
    try:
        return _perform(ctx, state.school_id, action, chosen)
    except CleverSyncError as exc:
        return Page("confirm.html", status=_status(exc), error=ctx.redact(str(exc)), **values)


def _perform(ctx: Context, school_id: int, name: str, chosen: Action) -> Page:
    registry = ctx.services.registry
    if name == "preview":
        preview = ctx.services.preview_full_sync(school_id)
        return Page("preview.html", school=registry.get_school(school_id), preview=preview)
    if name == "flag-full-sync":
        registry.set_requires_full_sync(school_id, True)
        return Page(redirect=ctx.url(f"/schools/{school_id}", done="flagged"))
    if name in ("activate", "deactivate"):
        registry.set_active(school_id, name == "activate")
        return Page(redirect=ctx.url(f"/schools/{school_id}", done=f"{name}d"))
    queued = ctx.services.queued_runs()
    targets = queued.orchestrator.targets(school_id=school_id)
    queued.check_not_leased(school_id)
    record = queued.enqueue_run(
        targets,
        full=chosen.full,
        allow_mass_delete=chosen.allow_mass_delete,
        trigger=ctx.app.trigger,
    )
    return Page(redirect=ctx.url(f"/runs/{record.run_id}"))


def district_new(ctx: Context) -> Page:
    form = ctx.request.form
    fields = {k: (form.get(k) or "").strip() for k in ("name", "clever_id", "prefix", "client_id")}
    if ctx.request.method == "GET":
        return Page("district_new.html", fields=fields)
    secret = form.get("client_secret") or ""
    missing = [
        label for key, label in _DISTRICT_LABELS.items() if not (form.get(key) or "").strip()
    ]
    if missing:
        return Page(
            "district_new.html",
            status=400,
            fields=fields,
            error="Fill in: " + ", ".join(missing) + ".",
        )
    try:
        district = ctx.services.register_district(
            name=fields["name"],
            clever_id=fields["clever_id"],
            prefix=fields["prefix"],
            client_id=fields["client_id"],
            client_secret=secret,
        )
    except CleverSyncError as exc:
        # The secret is never sent back: the operator types it again.
        return Page(
            "district_new.html", status=_status(exc), fields=fields, error=ctx.redact(str(exc))
        )
    return Page(redirect=ctx.url(f"/districts/{district.district_id}/discover", done="district"))


_DISTRICT_LABELS = {
    "name": "name",
    "clever_id": "Clever district id",
    "prefix": "secret-name prefix",
    "client_id": "client id",
    "client_secret": "client secret",
}


def discover(ctx: Context, district_id: int) -> Page:
    district = ctx.services.registry.get_district(district_id)
    register = ctx.request.method == "POST"
    notice = NOTICES.get(ctx.request.args.get("done", ""))
    try:
        found = ctx.services.discover_schools(district.district_id, register=register)
    except CleverSyncError as exc:
        return Page(
            "discover.html",
            status=_status(exc),
            district=district,
            found=[],
            error=ctx.redact(str(exc)),
            notice=notice,
        )
    if register:
        return Page(redirect=ctx.url(f"/districts/{district_id}/discover", done="schools"))
    return Page(
        "discover.html",
        district=district,
        found=found,
        missing=sum(1 for s in found if s.school is None),
        notice=notice,
    )


# --- helpers ------------------------------------------------------------------------------


def _status(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, UsageError):
        return 400
    from cleversync.errors import LeaseHeldError

    if isinstance(exc, LeaseHeldError):
        return 409
    return 502


def _run_key_ok(key: str) -> bool:
    return 0 < len(key) <= 64 and all(c.isalnum() or c == "-" for c in key) and key.isascii()


def _id_param(value: str | None, name: str, problems: list[str]) -> int | None:
    if not value:
        return None
    if value.isdigit() and 0 < int(value) <= MAX_ID:
        return int(value)
    problems.append(f"{name} must be a positive whole number, not {value!r}")
    return None


def _date_param(value: str | None, name: str, problems: list[str]) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(f"the {name!r} date must be YYYY-MM-DD, not {value!r}")
        return None


def _age(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    seconds = (now - value).total_seconds()
    if seconds < 90:
        return "just now"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min ago"
    hours = minutes / 60
    if hours < 36:
        return f"{hours:.0f} h ago"
    return f"{hours / 24:.0f} days ago"


def _timestamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _status_class(status: str) -> str:
    return {
        RunStatus.SUCCESS: "ok",
        RunStatus.PARTIAL: "warn",
        RunStatus.FAILED: "bad",
        RunStatus.IN_PROGRESS: "run",
        RunStatus.SKIPPED: "muted",
        "HeldBack": "bad",
        "NeverSynced": "muted",
        "Inactive": "muted",
        "Running": "run",
        "Queued": "muted",
        RunStatus.DRY_RUN: "muted",
        "Inserted": "ok",
        "Updated": "run",
        "Reactivated": "ok",
        "Deleted": "bad",
        "Deactivated": "warn",
    }.get(status, "muted")


def _state_label(state: str) -> str:
    return STATE_LABELS.get(state, state)


FILTERS: dict[str, Callable[..., Any]] = {
    "age": _age,
    "ts": _timestamp,
    "duration": _duration,
    "status_class": _status_class,
    "state_label": _state_label,
}
