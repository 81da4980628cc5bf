"""``cleversync demo``: the whole cycle on a laptop, against the built-in Clever sandbox.

It starts the sandbox on loopback, then runs the real commands an operator would type
(echoed, so they can be copied): set up SQLite databases and a secrets file in a local
folder, register the district and its schools, a full sync, changes in Clever, an
incremental sync by events, and a year-end full sync that removes the graduates.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleversync.cli.args import whole_number
from cleversync.errors import UsageError
from cleversync.files import private_dir

if TYPE_CHECKING:
    from cleversync.cli import CliContext
    from cleversync.sandbox import Sandbox

MARKER = ".cleversync-demo"
# The story needs a few students to rename, one to leave and a class to graduate.
MIN_STUDENTS = 10
MAX_STUDENTS = 100_000


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="run the whole cycle locally against the built-in Clever sandbox"
    )
    demo.add_argument(
        "--folder",
        default=".cleversync-demo",
        help="where the demo's SQLite databases and secrets file go (recreated each run)",
    )
    demo.add_argument(
        "--students",
        type=whole_number(MIN_STUDENTS, MAX_STUDENTS),
        default=300,
        help=f"students per school ({MIN_STUDENTS} to {MAX_STUDENTS:,}; 300)",
    )
    demo.set_defaults(handler=demo_command)


def demo_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from cleversync.sandbox import Sandbox

    folder = _fresh_folder(Path(args.folder))
    say(f"CleverSync demo: everything lives in {folder} and a Clever sandbox on 127.0.0.1.\n")
    sandbox = Sandbox(
        seed=2026, districts=1, schools=3, students=args.students, teachers=20, sections=15
    )
    district = sandbox.districts[0]
    with sandbox.serve() as running:
        say(f"Started the Clever sandbox at {running.api_base_url}: district {district.name!r}")
        for school in district.schools:
            say(f"  school {school.name!r} (Clever id {school.id})")
        env = {
            "CleverSync__DataDir": str(folder),
            "CleverSync__Clever__ApiBaseUrl": running.api_base_url,
            "CleverSync__Clever__TokenUrl": running.token_url,
            "CleverSync__KeyVault__Url": "",
            "CleverSync__Secrets__File": "",
            # Every run's report, as .eml files in the demo folder (never an SMTP server).
            "CleverSync__Notify__On": "always",
            "CleverSync__Notify__SmtpHost": "",
        }
        with _environment(env):
            _run_steps(sandbox, folder)
    _show_report(folder / "outbox")
    say("\nThe sandbox has stopped; the databases stay. To look around (from this folder):")
    say(f"  export CleverSync__DataDir={folder}")
    say("  .venv/bin/cleversync school list; .venv/bin/cleversync history --school-id 3")
    say("To run the commands yourself against a sandbox, start 'cleversync sandbox serve' and")
    say("set CleverSync__Clever__ApiBaseUrl and CleverSync__Clever__TokenUrl as it prints.")
    say("\nTo see all of it in the dashboard (with the variable above set):")
    say("  .venv/bin/cleversync dashboard")
    say("then open http://127.0.0.1:8765/admin/ in a browser (Ctrl-C stops it).")
    return 0


def _run_steps(sandbox: Sandbox, folder: Path) -> None:
    district = sandbox.districts[0]
    section("1. Set up the databases and register the district")
    command("db", "upgrade")
    command(
        "district",
        "add",
        "--name",
        district.name,
        "--clever-id",
        district.id,
        "--prefix",
        "Demo-District",
    )
    say("(the client secret goes in on standard input, never on the command line)")
    command(
        "district",
        "set-credentials",
        "--district-id",
        "1",
        "--client-id",
        district.client_id,
        "--verify",
        stdin=district.client_secret + "\n",
    )
    command("school", "discover", "--district-id", "1", "--register")
    command("db", "upgrade", "--all-schools")
    command("health", "--authenticate")

    section("2. The first sync: every school is new, so it is a full sync")
    command("sync")

    section("3. Meanwhile, in Clever")
    first = district.schools[0].id
    for n, (given, family) in enumerate(
        [("Zoë", "O'Brien"), ("José", "Núñez"), ("Nguyễn", "Văn An")]
    ):
        sandbox.add_student(first, first_name=given, last_name=family, grade=str(3 + n))
    say(f"  3 students enrolled at {district.schools[0].name}")
    renamed = sandbox.students(first)[:2]
    for student in renamed:
        sandbox.update_user(student["id"], {"name": {"last": student["name"]["last"] + "-Smith"}})
        old = f"{student['name']['first']} {student['name']['last']}"
        say(f"  {old} changed their last name to {student['name']['last']}-Smith")
    teacher = sandbox.teachers(first)[0]
    sandbox.update_user(teacher["id"], {"roles": {"teacher": {"title": "Assistant Principal"}}})
    say(f"  {teacher['name']['first']} {teacher['name']['last']} became Assistant Principal")
    leaver = sandbox.students(first)[5]
    sandbox.remove_user(leaver["id"])
    who = f"{leaver['name']['first']} {leaver['name']['last']}"
    say(f"  {who} left the district (a delete: it waits for the next full sync)")

    section("4. The nightly run: incremental, from Clever's Events API")
    command("sync")
    say("  (PROCESSED counts every event that touched a student: the new ones, the renames")
    say("  and the leaver, whose delete is left for the next full sync; the section row is")
    say("  the leaver's unenrolment.)")

    section("5. Year end: the seniors graduate")
    high = district.schools[-1]
    graduates = _graduating_class(sandbox, high.id)
    for student in graduates:
        sandbox.remove_user(student["id"])
    grade = graduates[0]["roles"]["student"]["grade"]
    say(
        f"  {len(graduates)} students of {high.name} graduated (grade {grade}); Clever removed them"
    )
    say("  The administrator flags the school for a full sync at the start of the year:")
    command("school", "flag-full-sync", "--school-id", "3")
    command("sync")
    say("  (The other schools processed the graduates' delete events too: some graduates")
    say("  were also enrolled there, and stay until those schools' next full sync.)")
    command("history", "--school-id", "3", "--limit", "6")


def _show_report(outbox: Path) -> None:
    """The last run's report: with no SMTP host, each one is an .eml file in DataDir/outbox."""
    from email import message_from_bytes, policy

    reports = sorted(outbox.glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    if not reports:
        return
    latest = reports[-1]
    message = message_from_bytes(latest.read_bytes(), policy=policy.default)
    section("6. The run reports")
    say(f"  With no CleverSync__Notify__SmtpHost, each report is an .eml file in {outbox}")
    say(f"  ({len(reports)} here; open one in a mail program). The last one:")
    say(f"  {latest}")
    say(f"  Subject: {message['Subject']}")
    say("  With CleverSync__Notify__SmtpHost set they are emailed (README: 'Notifications').")


def _graduating_class(sandbox: Sandbox, school_id: str) -> list[dict[str, Any]]:
    """The school's oldest grade that is a real class (at least 5 % of its students)."""
    students = sandbox.students(school_id)
    order = ["PreKindergarten", "TransitionalKindergarten", "Kindergarten", *map(str, range(1, 14))]
    by_grade: dict[str, list[dict[str, Any]]] = {}
    for student in students:
        by_grade.setdefault(student["roles"]["student"].get("grade") or "", []).append(student)
    classes = [g for g in order if len(by_grade.get(g, ())) >= len(students) * 0.05]
    # A normal rollover removes 15-30 %: within CleverSync__Sync__MaxDeletePercent.
    return by_grade[classes[-1]][: int(len(students) * 0.3)]


def command(*argv: str, stdin: str | None = None) -> None:
    """Echo and run one `cleversync` command in-process; stop the demo if it fails."""
    from cleversync.cli import main

    shown = " ".join(_quote(a) for a in argv)
    say(f"\n$ cleversync {shown}")
    with _stdin(stdin):
        code = main(list(argv))
    sys.stdout.flush()
    if code != 0:
        raise UsageError(f"the demo stopped: 'cleversync {shown}' exited with {code}")


def section(title: str) -> None:
    say(f"\n=== {title} ===")


def say(text: str) -> None:
    print(text, flush=True)


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./:=" for c in arg) else repr(arg)


def _fresh_folder(folder: Path) -> Path:
    folder = folder.resolve()
    try:
        if folder.exists():
            if not (folder / MARKER).exists():
                raise UsageError(
                    f"{folder} exists and was not made by the demo; choose another --folder"
                )
            shutil.rmtree(folder)
        private_dir(folder)  # it holds the demo's student data and secrets
        (folder / MARKER).write_text(
            "made by 'cleversync demo'; deleted and recreated by each run\n"
        )
    except OSError as exc:
        raise UsageError(
            f"cannot create the demo folder {folder}: {exc.strerror or exc}; choose another "
            "--folder"
        ) from None
    return folder


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _stdin(text: str | None) -> Iterator[None]:
    if text is None:
        yield
        return
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved
