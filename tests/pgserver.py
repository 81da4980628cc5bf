"""A throwaway PostgreSQL cluster on 127.0.0.1, started by the test suite itself.

It uses the server binaries on the machine (Debian's /usr/lib/postgresql/*/bin, or PG_BIN).
initdb and postgres refuse to run as root, and CI runs as root, so there the cluster runs as
an unprivileged user (postgres if it exists, else nobody) through runuser.

Tests get databases two ways: ``create_database`` (empty, for the migration tests) and
``clone_database`` (a copy of a template migrated once per session: creating a database and
migrating it cost ~0.1 s, a clone ~0.05 s, and a test makes up to seven). Every database made
is dropped by ``drop_made`` when the test that made it ends (conftest does that), so the
cluster stays small and stops at once.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

Kind = Literal["sessiondb", "school"]


def find_bin_dir() -> Path | None:
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [Path(p) for p in versions]
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """initdb + pg_ctl start in a temporary folder; ``stop`` removes everything."""

    user = "cleversync"

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="cleversync-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self._runas: list[str] = []
        self._lock = threading.Lock()
        self._admin_conn: psycopg.Connection | None = None
        self._made: list[str] = []
        self._templates: dict[str, str] = {}
        self._spares = _Spares(self._connect)
        if os.geteuid() == 0:
            account = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(account)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            self._runas = ["runuser", "-u", account, "--"]

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._runas, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stderr or result.stdout}\n{tail}")

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        # The port was free when picked; another process (a parallel test worker starting its
        # own cluster) may take it first: then pick another.
        for attempt in range(3):
            try:
                self._start_server()
                return
            except RuntimeError as error:
                if "already in use" not in str(error) or attempt == 2:
                    raise
                self.port = _free_port()

    def _start_server(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.base / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _connect(self) -> psycopg.Connection:
        import psycopg

        # CREATE and DROP DATABASE cannot run inside a transaction.
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        )

    def _admin(self, statement: str, *names: str) -> None:
        """Run one statement on the maintenance database, from the tests' own thread;
        ``{}`` in ``statement`` stand for the database ``names``, quoted."""
        with self._lock:
            if self._admin_conn is None or self._admin_conn.closed:
                self._admin_conn = self._connect()
            self._admin_conn.execute(_sql(statement, *names))

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; dropped by ``drop_made`` at the end of the test."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._admin("CREATE DATABASE {}", name)
        self._made.append(name)
        return self.url(name)

    def clone_database(self, kind: Kind, prefix: str = "t") -> str:
        """A new database with ``kind``'s schema at the head revision; dropped by
        ``drop_made`` at the end of the test.

        It is a copy of a template migrated once per session, made ahead of time by the
        spare-maker thread while tests run (or now, if none is ready), then named after
        ``prefix``.
        """
        template = self.template(kind)
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        spare = self._spares.take(kind)
        if spare is None:
            self._admin(_CLONE, name, template)
        else:
            self._admin("ALTER DATABASE {} RENAME TO {}", spare, name)
        self._made.append(name)
        return self.url(name)

    def template(self, kind: Kind) -> str:
        """The name of ``kind``'s template database, migrated on first use.

        It refuses connections once migrated: CREATE DATABASE ... TEMPLATE fails while anyone
        is connected to the template, so no test may hold it open by accident.
        """
        if kind not in self._templates:
            from cleversync.db.engines import engine_for
            from cleversync.db.migrate import upgrade

            name = f"template_{kind}"
            self._admin("CREATE DATABASE {}", name)
            engine = engine_for(self.url(name))
            try:
                upgrade(engine, kind)
            finally:
                engine.dispose()
            self._admin("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false", name)
            self._templates[kind] = name
            self._spares.want(kind, name)
        return self._templates[kind]

    def drop_made(self) -> None:
        """Drop every database made since the last call (by the spare-maker thread, which
        ends any connection still open to them first: an engine a test did not dispose)."""
        self._spares.drop(self._made)
        self._made = []

    def stop(self) -> None:
        self._spares.stop()
        if self._admin_conn is not None:
            with contextlib.suppress(Exception):
                self._admin_conn.close()
        # The cluster is thrown away: no shutdown checkpoint.
        with contextlib.suppress(Exception):
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


class _Spares:
    """A thread that keeps a few clones of each template ready and drops what tests made.

    Copying a template takes PostgreSQL ~0.05 s of its own time; made here, it overlaps the
    tests (which mostly run Python on the other core) instead of adding to their setup.
    """

    DEPTH: ClassVar[dict[str, int]] = {"school": 7, "sessiondb": 2}  # largest world: 6 schools

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self._connect = connect
        self._cond = threading.Condition()
        self._templates: dict[str, str] = {}
        self._ready: dict[str, list[str]] = {}
        self._to_drop: list[str] = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    def want(self, kind: str, template: str) -> None:
        with self._cond:
            self._templates[kind] = template
            self._ready.setdefault(kind, [])
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pg-spares", daemon=True)
                self._thread.start()
            self._cond.notify()

    def take(self, kind: str) -> str | None:
        with self._cond:
            ready = self._ready.get(kind)
            name = ready.pop(0) if ready else None
            self._cond.notify()
            return name

    def drop(self, names: list[str]) -> None:
        if not names:
            return
        with self._cond:
            self._to_drop.extend(names)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _short(self) -> str | None:
        for kind, ready in self._ready.items():
            if len(ready) < self.DEPTH.get(kind, 1):
                return kind
        return None

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while True:
            with self._cond:
                while not (self._stopping or self._to_drop or self._short()):
                    self._cond.wait()
                if self._stopping:
                    break
                drops, self._to_drop = self._to_drop, []
                kind = self._short()
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                for name in drops:
                    conn.execute(_sql("DROP DATABASE IF EXISTS {} WITH (FORCE)", name))
                if kind is not None:
                    name = f"spare_{kind}_{uuid.uuid4().hex[:12]}"
                    conn.execute(_sql(_CLONE, name, self._templates[kind]))
                    with self._cond:
                        self._ready[kind].append(name)
            except Exception:
                # A database left behind costs disk, not correctness; a test that finds no
                # spare clones one itself. Wait a little rather than spin on a broken server.
                with self._cond:
                    self._cond.wait(0.5)
        if conn is not None:
            conn.close()


_CLONE = "CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY"


def _sql(statement: str, *names: str) -> sql.Composed:
    """``statement`` with its ``{}`` replaced by the quoted database ``names``."""
    from psycopg import sql

    return sql.SQL(statement).format(*(sql.Identifier(name) for name in names))


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
