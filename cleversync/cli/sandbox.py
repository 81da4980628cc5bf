"""``cleversync sandbox serve|change``: run the built-in Clever sandbox, and change its roster
by hand through its control API (``/sandbox/...``, see ``cleversync.sandbox.control``)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from cleversync.cli import CliContext

_KINDS = {"student": "students", "teacher": "teachers"}
_LISTS = ("students", "teachers", "sections", "schools")


def register(commands: Any) -> None:
    from cleversync.sandbox.cli import add_serve_arguments

    sandbox = commands.add_parser("sandbox", help="the built-in Clever sandbox (a local fake API)")
    actions = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve a generated Clever district on 127.0.0.1 until interrupted",
        description="Prints one JSON line (apiBaseUrl, tokenUrl, districts with their client "
        "ids and secrets) once it accepts connections.",
    )
    add_serve_arguments(serve)
    serve.set_defaults(handler=sandbox_serve)
    _register_change(actions)


def _register_change(actions: Any) -> None:
    change = actions.add_parser(
        "change",
        help="change a running sandbox's roster by hand (each change emits Clever's events)",
        description="Talks to the control API of a sandbox started with 'cleversync sandbox "
        "serve' (loopback only). Each change emits the events Clever would, so the next "
        "incremental sync picks it up.",
    )
    change.add_argument(
        "--url", required=True, help="the sandbox's apiBaseUrl, e.g. http://127.0.0.1:8765"
    )
    change.add_argument("--json", action="store_true", help="print the control API's answer")
    what = change.add_subparsers(dest="change_command", metavar="CHANGE", required=True)
    listing = what.add_parser("list", help="list the sandbox's schools, students, teachers...")
    listing.add_argument("kind", choices=_LISTS)
    listing.add_argument("--school", help="only this school's (a Clever school id)")
    add = what.add_parser("add", help="add a student or teacher (users.created)")
    add.add_argument("role", choices=sorted(_KINDS))
    add.add_argument("--school", required=True, help="the Clever school id")
    add.add_argument("--first-name", required=True)
    add.add_argument("--middle-name")
    add.add_argument("--last-name", required=True)
    add.add_argument("--email")
    add.add_argument("--grade", help="a student's grade, e.g. 3 or Kindergarten")
    add.add_argument("--title", help="a teacher's title")
    rename = what.add_parser("rename", help="rename a student or teacher (users.updated)")
    rename.add_argument("role", choices=sorted(_KINDS))
    rename.add_argument("id", help="the user's Clever id")
    rename.add_argument("--first-name")
    rename.add_argument("--middle-name", help="'' removes it")
    rename.add_argument("--last-name")
    move = what.add_parser(
        "move",
        help="move a student or teacher to another school of the district "
        "(sections.updated for each section left, users.updated)",
    )
    move.add_argument("role", choices=sorted(_KINDS))
    move.add_argument("id", help="the user's Clever id")
    move.add_argument("--school", required=True, help="the Clever id of the new school")
    remove = what.add_parser(
        "remove",
        help="remove a student or teacher (sections.updated for each section, users.deleted)",
    )
    remove.add_argument("role", choices=sorted(_KINDS))
    remove.add_argument("id", help="the user's Clever id")
    section = what.add_parser(
        "section", help="rename a section, add or remove students, change its teacher"
    )
    section.add_argument("id", help="the section's Clever id")
    section.add_argument("--name")
    section.add_argument(
        "--add-student", action="append", default=[], metavar="ID", help="repeatable"
    )
    section.add_argument(
        "--remove-student", action="append", default=[], metavar="ID", help="repeatable"
    )
    section.add_argument("--teacher", metavar="ID", help="the new primary teacher")
    change.set_defaults(handler=sandbox_change)


def sandbox_serve(args: argparse.Namespace, context: CliContext) -> int:
    from cleversync.sandbox.cli import run_serve

    return run_serve(args)


def sandbox_change(args: argparse.Namespace, context: CliContext) -> int:
    from cleversync.errors import UsageError

    base = _control_url(args.url)
    method, path, body, params = _request_of(args)
    if method == "PATCH" and not body:
        raise UsageError(f"nothing to change: give at least one option of '{args.change_command}'")
    answer = _call(base, method, path, body, params)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        print(_describe(args, answer))
    return 0


def _control_url(url: str) -> str:
    from cleversync.errors import UsageError

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r} is not an http URL like http://127.0.0.1:8765")
    path = parts.path.rstrip("/").removesuffix("/sandbox").removesuffix("/v3.0")
    return f"{parts.scheme}://{parts.netloc}{path}/sandbox"


def _request_of(
    args: argparse.Namespace,
) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
    command = args.change_command
    if command == "list":
        params = {"school": args.school} if args.school else {}
        return "GET", "" if args.kind == "schools" else f"/{args.kind}", None, params
    if command == "section":
        body: dict[str, Any] = {}
        if args.name is not None:
            body["name"] = args.name
        if args.add_student:
            body["add_students"] = args.add_student
        if args.remove_student:
            body["remove_students"] = args.remove_student
        if args.teacher is not None:
            body["teacher"] = args.teacher
        return "PATCH", f"/sections/{args.id}", body, {}
    kind = _KINDS[args.role]
    if command == "add":
        body = {"school": args.school, "first_name": args.first_name, "last_name": args.last_name}
        for key in ("middle_name", "email", "grade", "title"):
            if getattr(args, key) is not None:
                body[key] = getattr(args, key)
        return "POST", f"/{kind}", body, {}
    if command == "rename":
        names = ("first_name", "middle_name", "last_name")
        body = {key: getattr(args, key) for key in names if getattr(args, key) is not None}
        return "PATCH", f"/{kind}/{args.id}", body, {}
    if command == "move":
        return "POST", f"/{kind}/{args.id}/move", {"school": args.school}, {}
    return "DELETE", f"/{kind}/{args.id}", None, {}


def _call(
    base: str, method: str, path: str, body: dict[str, Any] | None, params: dict[str, str]
) -> dict[str, Any]:
    import httpx

    from cleversync.errors import CleverSyncError, UsageError

    try:
        with httpx.Client(timeout=10, trust_env=False) as client:
            response = client.request(method, base + path, json=body, params=params)
    except httpx.TimeoutException:
        raise CleverSyncError(f"the sandbox at {base} did not answer within 10 s") from None
    except httpx.TransportError as error:
        raise CleverSyncError(
            f"no sandbox answers at {base} ({type(error).__name__}): is "
            "'cleversync sandbox serve' running, and is --url its apiBaseUrl?"
        ) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise CleverSyncError(
            f"{base} is not a sandbox's control API (HTTP {response.status_code}, "
            f"{response.headers.get('content-type', 'no content type')})"
        )
    if response.status_code >= 400:
        message = str(answer.get("message", "no reason given"))
        refused = f"the sandbox refused {method} {path or '/'}: {message}"
        if response.status_code in (400, 404, 405, 415):
            raise UsageError(refused)
        raise CleverSyncError(f"{refused} (HTTP {response.status_code})")
    return answer


def _describe(args: argparse.Namespace, answer: dict[str, Any]) -> str:
    from cleversync.cli.output import table

    data = answer.get("data")
    if args.change_command == "list":
        return _listing(args.kind, data if isinstance(data, list) else [])
    record = data if isinstance(data, dict) else {}
    events = answer.get("events") or []
    if args.change_command == "section":
        done = "changed section"
    else:
        verb = {"add": "added", "rename": "renamed", "move": "moved", "remove": "removed"}
        done = f"{verb[args.change_command]} {args.role}"
    lines = [f"{done} {record.get('id', '?')}: {_label(record)}"]
    if events:
        lines.append(table(["EVENT", "TYPE"], [(e.get("id"), e.get("type")) for e in events]))
    else:
        lines.append("no change: no event emitted")
    return "\n".join(lines)


def _listing(kind: str, records: list[dict[str, Any]]) -> str:
    from cleversync.cli.output import table

    if kind == "schools":
        rows = [
            (school["id"], school["name"], district["id"])
            for district in records
            for school in district.get("schools", [])
        ]
        return table(["SCHOOL", "NAME", "DISTRICT"], rows)
    if kind == "sections":
        return table(
            ["SECTION", "NAME", "SCHOOL", "TEACHER", "STUDENTS"],
            [
                (
                    s["id"],
                    s.get("name"),
                    s.get("school"),
                    s.get("teacher"),
                    len(s.get("students", [])),
                )
                for s in records
            ],
        )
    role = kind.removesuffix("s")
    users: list[tuple[object, ...]] = []
    for user in records:
        details = user.get("roles", {}).get(role, {})
        extra = details.get("grade") if role == "student" else details.get("title")
        users.append((user["id"], _label(user), details.get("school"), extra))
    return table([role.upper(), "NAME", "SCHOOL", "GRADE" if role == "student" else "TITLE"], users)


def _label(record: dict[str, Any]) -> str:
    name = record.get("name")
    if isinstance(name, dict):
        parts = [name.get(key) for key in ("first", "middle", "last")]
        return " ".join(part for part in parts if part)
    return str(name) if name is not None else "-"
