"""No secret reaches a log record, a traceback, the CLI's output, an HTTP body, SyncHistory or
an email report.

A whole installation runs at DEBUG against the sandbox, through the CLI, with the failures
that tend to leak: a wrong client secret, a database whose connection string has a password
and cannot be reached, a rotated token (401), a Clever outage. Every captured text is then
searched for every secret value, token and Basic credential.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from cleversync import runtime
from cleversync.cli import main
from cleversync.db.engines import engine_for
from cleversync.db.schema import SyncHistory
from cleversync.sandbox import Fault, Sandbox
from tests.test_function_app import ListQueue, deliver, get_health, get_run, post_sync

DB_PASSWORD = "S3cr3t-Db-Passw0rd-42"
WRONG_SECRET = "wrong-client-secret-9876"
ODBC_PASSWORD = "0dbc-Passw0rd-Never-Shown"


class Everything(logging.Handler):
    """Keeps every record, formatted with its traceback, and every attribute."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts += [str(v) for v in record.__dict__.values()]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=21, districts=1, schools=2, students=40, teachers=4, sections=5)
    with sb.serve() as running:
        sb.running = running  # type: ignore[attr-defined]
        yield sb


def test_no_secret_leaks_anywhere(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    district = sandbox.districts[0]
    monkeypatch.setenv("CleverSync__Clever__ApiBaseUrl", sandbox.running.api_base_url)
    monkeypatch.setenv("CleverSync__Clever__TokenUrl", sandbox.running.token_url)
    monkeypatch.setenv("CleverSync__Retry__CleverApi__BackoffBase", "0")
    monkeypatch.setenv("CleverSync__Retry__Database__BackoffBase", "0")
    monkeypatch.setenv("CleverSync__Logging__LogLevel", "Debug")
    capture = Everything()
    root = logging.getLogger()
    root.addHandler(capture)
    outputs: list[str] = []

    def cli(*argv: str, stdin: str | None = None) -> int:
        saved = sys.stdin
        sys.stdin = io.StringIO(stdin) if stdin is not None else saved
        try:
            code = main(["-vv", *argv])
        finally:
            sys.stdin = saved
        out, err = capsys.readouterr()
        outputs.extend([out, err])
        return code

    tokens = {sandbox.district_token(district.id)}
    try:
        assert cli("db", "upgrade") == 0
        assert (
            cli(
                "district",
                "add",
                "--name",
                district.name,
                "--clever-id",
                district.id,
                "--prefix",
                "Leak",
            )
            == 0
        )
        # A wrong client secret: verification fails, and the secret must not show.
        assert (
            cli(
                "district",
                "set-credentials",
                "--district-id",
                "1",
                "--client-id",
                district.client_id,
                "--verify",
                stdin=WRONG_SECRET + "\n",
            )
            == 1
        )
        assert (
            cli(
                "district",
                "set-credentials",
                "--district-id",
                "1",
                "--client-id",
                district.client_id,
                "--verify",
                stdin=district.client_secret + "\n",
            )
            == 0
        )
        assert cli("school", "discover", "--district-id", "1", "--register") == 0
        # A school whose database has a password and cannot be reached.
        unreachable = f"postgresql+psycopg://sync:{DB_PASSWORD}@127.0.0.1:1/nowhere"
        assert (
            cli(
                "school",
                "add",
                "--district-id",
                "1",
                "--clever-id",
                "5aaaaaaaaaaaaaaaaaaaaaaa",
                "--name",
                "Unreachable",
                "--prefix",
                "Unreachable",
                "--connection-string-stdin",
                stdin=unreachable + "\n",
            )
            == 0
        )
        odbc = f"Server=tcp:sos.database.windows.net,1433;Initial Catalog=School;User ID=sync;Password={ODBC_PASSWORD};Encrypt=True;"
        assert (
            cli(
                "school",
                "add",
                "--district-id",
                "1",
                "--clever-id",
                "5bbbbbbbbbbbbbbbbbbbbbbb",
                "--name",
                "Azure SQL",
                "--prefix",
                "Azure-SQL",
                "--connection-string-stdin",
                stdin=odbc + "\n",
            )
            == 0
        )
        assert cli("db", "upgrade", "--all-schools") == 1  # two schools cannot be upgraded
        assert cli("sync") == 1  # those two fail
        # The token is rotated: the next request answers 401, a fresh token is fetched.
        tokens.add(sandbox.rotate_token(district.id))
        assert cli("sync", "--json", "--school-id", "1") == 0
        # Clever fails: retries, then a Failed run with the error stored.
        sandbox.faults.add(Fault("status", path="/v3.0/schools/*", status=500, times=None))
        assert cli("sync", "--full", "--school-id", "2") == 1
        sandbox.faults.clear()
        assert cli("history", "--json") == 0
        assert cli("history") == 0
        assert cli("health", "--authenticate", "--json") == 0
        # The Functions app's endpoints, built from the same environment as the host would.
        runtime.reset()
        try:
            queue = ListQueue()  # the Storage queue is tested in tests/queue, with Azurite
            runtime.current().services.use_sync_queue(queue)
            for params in ({"schoolId": "1"}, {"schoolId": "3"}, {"schoolId": "one"}, {}):
                status, body, headers = post_sync(params)
                outputs.append(json.dumps(body) + json.dumps(dict(headers)))
                if status == 202:
                    outputs.extend(deliver(queue))  # what the host would log
                    outputs.append(json.dumps(get_run(body["runId"])))
            assert status == 202
            outputs.append(json.dumps(get_health()[1]))
        finally:
            runtime.reset()
    finally:
        root.removeHandler(capture)

    data_dir = Path(__import__("os").environ["CleverSync__DataDir"])
    session_url = json.loads((data_dir / "secrets.json").read_text())[
        "CleverSyncSOS--SessionDb--ConnectionString"
    ]
    with engine_for(session_url).connect() as conn:
        history = [str(v) for row in conn.execute(select(SyncHistory)) for v in row]
    assert any("Failed" in h for h in history)

    basic = base64.b64encode(f"{district.client_id}:{district.client_secret}".encode()).decode()
    wrong_basic = base64.b64encode(f"{district.client_id}:{WRONG_SECRET}".encode()).decode()
    secrets = {
        district.client_secret,
        WRONG_SECRET,
        DB_PASSWORD,
        ODBC_PASSWORD,
        basic,
        wrong_basic,
        *tokens,
    }
    # The run reports (no SMTP host here: .eml files in DataDir/outbox), raw and decoded.
    reports = sorted((data_dir / "outbox").glob("*.eml"))
    assert reports  # the failed runs were reported
    emails = [p.read_text() for p in reports]
    for path in reports:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        emails += [str(part.get_content()) for part in message.walk() if not part.is_multipart()]
    everything = {
        "log records": capture.texts,
        "CLI and HTTP output": outputs,
        "SyncHistory": history,
        "email reports": emails,
    }
    assert len(capture.texts) > 100  # DEBUG really was on
    for where, texts in everything.items():
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"a secret leaked into {where}: {text[:300]!r}"
    # The failures were reported, by name: the test saw the paths it meant to test.
    joined = "\n".join(outputs)
    assert "refused the credentials" in joined
    assert "Unreachable" in joined and "HTTP 500" in joined
    assert any("Unreachable" in e for e in emails)
    assert any("401" in t for t in capture.texts) or any(
        r.status == 401 for r in sandbox.request_log
    )
