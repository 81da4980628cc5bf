"""The floor: the same pages with a bare httpx loop, the same rows with one executemany a table.

No models, no retries, no pacing, no lease, no history, no change detection: what any sync of
the same data must at least spend. Keys are assigned here, so enrolment links need no read
back. Everything runs in the child process that ``bench.child`` starts.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

STUDENT_COLUMNS = ("FirstName", "LastName", "Email", "Grade", "StudentNumber")
TEACHER_COLUMNS = ("FirstName", "LastName", "Email", "Title")
SECTION_COLUMNS = (
    "Name",
    "Period",
    "Subject",
    "Grade",
    "SectionNumber",
    "CleverTermId",
    "CleverCourseId",
    "CleverTeacherId",
)
TRAILER = ("IsActive", "DeactivatedAt", "LastModifiedInClever", "CreatedAt", "UpdatedAt")


@dataclass
class Fetched:
    """One school's records as Clever sent them (the JSON objects), and the requests made."""

    students: list[dict[str, Any]] = field(default_factory=list)
    teachers: list[dict[str, Any]] = field(default_factory=list)
    sections: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0

    @property
    def records(self) -> int:
        return len(self.students) + len(self.teachers) + len(self.sections)


class Fetcher:
    """GET, follow ``next``: the bare loop."""

    def __init__(self, client: httpx.Client, base: str, token: str) -> None:
        self.client = client
        self.base = base.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    def pages(self, path: str, counter: list[int]) -> Iterator[list[dict[str, Any]]]:
        next_path: str | None = path
        while next_path:
            response = self.client.get(self.base + next_path, headers=self.headers)
            counter[0] += 1
            response.raise_for_status()
            body = response.json()
            data = body["data"]
            if not data:
                return
            yield [item["data"] for item in data]
            next_path = next((link["uri"] for link in body["links"] if link["rel"] == "next"), None)

    def school(self, clever_id: str, page_size: int) -> Fetched:
        fetched = Fetched()
        counter = [0]
        lists = (
            (fetched.students, f"/v3.0/schools/{clever_id}/users?role=student&limit={page_size}"),
            (fetched.teachers, f"/v3.0/schools/{clever_id}/users?role=teacher&limit={page_size}"),
            (fetched.sections, f"/v3.0/schools/{clever_id}/sections?limit={page_size}"),
        )
        for target, path in lists:
            for page in self.pages(path, counter):
                target.extend(page)
        fetched.requests = counter[0]
        return fetched


# --- writing ------------------------------------------------------------------------------


class Target:
    """One open transaction on a school database through the bare driver."""

    def __init__(self, backend: str, target: str) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.conn: Any = sqlite3.connect(target, isolation_level=None)
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("BEGIN IMMEDIATE")
            self.mark = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(target)  # psycopg opens the transaction itself
            self.mark = "%s"

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        cursor = self.conn.cursor()
        cursor.executemany(sql, rows)
        cursor.close()
        return len(rows)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.conn.execute(sql, params)

    def commit(self) -> None:
        self.conn.execute("COMMIT") if self.backend == "sqlite" else self.conn.commit()
        self.conn.close()

    def insert_sql(self, table: str, columns: tuple[str, ...]) -> str:
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join([self.mark] * len(columns))
        return f'INSERT INTO "{table}" ({names}) VALUES ({marks})'  # noqa: S608 (our names)

    def upsert_sql(self, table: str, key: str, columns: tuple[str, ...]) -> str:
        updates = ", ".join(
            f'"{c}" = excluded."{c}"' for c in columns if c not in (key, "CreatedAt")
        )
        return f'{self.insert_sql(table, columns)} ON CONFLICT ("{key}") DO UPDATE SET {updates}'


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)


def _student(user: dict[str, Any]) -> tuple[Any, ...]:
    name, role = user.get("name") or {}, user["roles"]["student"]
    return (
        user["id"],
        name.get("first"),
        name.get("last"),
        user.get("email"),
        role.get("grade"),
        role.get("student_number"),
    )


def _teacher(user: dict[str, Any]) -> tuple[Any, ...]:
    name, role = user.get("name") or {}, user["roles"]["teacher"]
    return (user["id"], name.get("first"), name.get("last"), user.get("email"), role.get("title"))


def _section(section: dict[str, Any]) -> tuple[Any, ...]:
    return (
        section["id"],
        section.get("name"),
        section.get("period"),
        section.get("subject"),
        section.get("grade"),
        section.get("section_number"),
        section.get("term_id"),
        section.get("course"),
        section.get("teacher"),
    )


def load(backend: str, target: str, fetched: Fetched) -> int:
    """Insert one school's records and links in one transaction; returns the rows written."""
    now = datetime.now(UTC).replace(tzinfo=None)
    db = Target(backend, target)
    written = 0
    student_keys: dict[str, int] = {}
    teacher_keys: dict[str, int] = {}
    plan = (
        ("Students", "StudentId", "CleverStudentId", STUDENT_COLUMNS, fetched.students, _student),
        ("Teachers", "TeacherId", "CleverTeacherId", TEACHER_COLUMNS, fetched.teachers, _teacher),
    )
    for table, key, clever_key, columns, records, mapper in plan:
        keys = student_keys if table == "Students" else teacher_keys
        rows = []
        for n, record in enumerate(records, start=1):
            keys[record["id"]] = n
            rows.append(
                (n, *mapper(record), True, None, _time(record.get("last_modified")), now, now)
            )
        sql = db.insert_sql(table, (key, clever_key, *columns, *TRAILER))
        written += db.executemany(sql, rows)
    section_rows = []
    student_links: list[tuple[int, int]] = []
    teacher_links: list[tuple[int, int]] = []
    for n, section in enumerate(fetched.sections, start=1):
        section_rows.append(
            (n, *_section(section), True, None, _time(section.get("last_modified")), now, now)
        )
        for member in dict.fromkeys(section.get("students") or ()):
            if member in student_keys:
                student_links.append((n, student_keys[member]))
        lead = [section["teacher"]] if section.get("teacher") else []
        for member in dict.fromkeys([*lead, *(section.get("teachers") or ())]):
            if member in teacher_keys:
                teacher_links.append((n, teacher_keys[member]))
    section_columns = ("SectionId", "CleverSectionId", *SECTION_COLUMNS, *TRAILER)
    written += db.executemany(db.insert_sql("Sections", section_columns), section_rows)
    links = db.insert_sql("SectionStudents", ("SectionId", "StudentId"))
    written += db.executemany(links, student_links)
    links = db.insert_sql("SectionTeachers", ("SectionId", "TeacherId"))
    written += db.executemany(links, teacher_links)
    if backend == "postgresql":  # explicit keys: move the identity sequences past them
        for table, key, count in (
            ("Students", "StudentId", len(fetched.students)),
            ("Teachers", "TeacherId", len(fetched.teachers)),
            ("Sections", "SectionId", len(fetched.sections)),
        ):
            if count:
                db.execute(
                    f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{key}'), %s)", (count,)
                )
    db.commit()
    return written


# --- the three floors -----------------------------------------------------------------------


def _client() -> httpx.Client:
    return httpx.Client(timeout=60)


def full(spec: dict[str, Any]) -> dict[str, Any]:
    """Fetch every school's lists and insert them, ``workers`` schools at a time."""
    began = time.perf_counter()
    with _client() as client:
        fetcher = Fetcher(client, spec["api_base_url"], spec["token"])

        def one(school: dict[str, Any]) -> tuple[int, int, int]:
            fetched = fetcher.school(school["clever_id"], spec["page_size"])
            written = load(spec["backend"], school["target"], fetched)
            return fetched.records, fetched.requests, written

        with ThreadPoolExecutor(max_workers=spec.get("workers", 1)) as pool:
            results = list(pool.map(one, spec["schools"]))
    return {
        "wall": time.perf_counter() - began,
        "rows": sum(r[0] for r in results),
        "requests": sum(r[1] for r in results),
        "written": sum(r[2] for r in results),
    }


def fetch_only(spec: dict[str, Any]) -> dict[str, Any]:
    """Fetch the school's lists and nothing else (what a no-change comparison must read)."""
    began = time.perf_counter()
    with _client() as client:
        fetcher = Fetcher(client, spec["api_base_url"], spec["token"])
        fetched = [fetcher.school(s["clever_id"], spec["page_size"]) for s in spec["schools"]]
    return {
        "wall": time.perf_counter() - began,
        "rows": sum(f.records for f in fetched),
        "requests": sum(f.requests for f in fetched),
        "written": 0,
    }


def events(spec: dict[str, Any]) -> dict[str, Any]:
    """Fetch the school's events after the cursor and upsert the latest state of each record,
    one executemany per table in one transaction (links are left as they are)."""
    began = time.perf_counter()
    [school] = spec["schools"]
    path = f"/v3.0/events?school={school['clever_id']}&limit={spec['page_size']}"
    if spec.get("cursor"):
        path += f"&starting_after={spec['cursor']}"
    path += "&record_type=users&record_type=sections"
    latest: dict[str, dict[str, dict[str, Any]]] = {"student": {}, "teacher": {}, "section": {}}
    counter = [0]
    processed = 0
    with _client() as client:
        for page in Fetcher(client, spec["api_base_url"], spec["token"]).pages(path, counter):
            for event in page:
                processed += 1
                if event["type"].endswith(".deleted"):
                    continue
                obj = event["data"]["object"]
                if event["type"].startswith("sections."):
                    latest["section"][obj["id"]] = obj
                    continue
                for role in ("student", "teacher"):
                    if role in obj.get("roles", {}):
                        latest[role][obj["id"]] = obj
    now = datetime.now(UTC).replace(tzinfo=None)
    db = Target(spec["backend"], school["target"])
    written = 0
    for table, clever_key, columns, records, mapper in (
        ("Students", "CleverStudentId", STUDENT_COLUMNS, latest["student"], _student),
        ("Teachers", "CleverTeacherId", TEACHER_COLUMNS, latest["teacher"], _teacher),
        ("Sections", "CleverSectionId", SECTION_COLUMNS, latest["section"], _section),
    ):
        rows = [
            (*mapper(obj), True, None, _time(obj.get("last_modified")), now, now)
            for obj in records.values()
        ]
        sql = db.upsert_sql(table, clever_key, (clever_key, *columns, *TRAILER))
        written += db.executemany(sql, rows)
    db.commit()
    return {
        "wall": time.perf_counter() - began,
        "rows": processed,
        "requests": counter[0],
        "written": written,
    }


FLOORS = {"full": full, "fetch": fetch_only, "events": events}


def main(argv: list[str]) -> int:
    """``python -m bench.floor SPEC``: one floor as a whole process (what case 1 and the fixed
    cost compare the product's whole process with); prints its result as JSON."""
    import json

    spec = json.loads(argv[1])
    result = FLOORS[spec["floor"]](spec)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv))
