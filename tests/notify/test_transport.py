"""The SMTP transport against a real SMTP server on loopback (aiosmtpd): STARTTLS with a
certificate from a throwaway CA, AUTH accepted and refused, no STARTTLS off loopback, an
untrusted certificate, a server down, a server that never answers; and the .eml folder."""

from __future__ import annotations

import socket
import stat
import time
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from cleversync.errors import NotifyError
from cleversync.notify.transport import FolderTransport, SmtpTransport
from cleversync.redaction import Redactor
from cleversync.secrets import names
from cleversync.settings import Settings
from tests.notify.smtpserver import PASSWORD, USER, SmtpServer, free_port, smtp_env


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    running = SmtpServer().start()
    yield running
    running.stop()


def _message(subject: str = "CleverSync: 1 school synced") -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "cleversync@example.org"
    message.set_content("plain")
    message.add_alternative("<p>html</p>", subtype="html")
    return message


def _transport(
    env: dict[str, str], password: str | None = PASSWORD, **kwargs: object
) -> tuple[SmtpTransport, Redactor]:
    redactor = Redactor()
    settings = Settings.load(env).notify
    return SmtpTransport(settings, password=lambda: password, redactor=redactor, **kwargs), redactor  # type: ignore[arg-type]


def test_starttls_then_login_then_the_message(server: SmtpServer) -> None:
    transport, redactor = _transport(server.env(), context=server.client_context)
    connection = transport.open()
    try:
        where = connection.send(_message())
    finally:
        connection.close()
    assert where == f"ops@example.org, it@example.org via SMTP server 127.0.0.1:{server.port}"
    [got] = server.received
    assert got.tls and got.authenticated
    assert (got.sender, got.recipients) == (
        "cleversync@example.org",
        ["ops@example.org", "it@example.org"],
    )
    assert got.message.get_body(("html",)) is not None
    assert server.handler.logins == [(USER, True)]
    assert redactor.redact(f"x {PASSWORD} y") == "x *** y"  # registered before it was used


def test_a_refused_login_names_the_user_and_the_secret_never_the_password(
    server: SmtpServer,
) -> None:
    transport, _ = _transport(
        server.env(), password="wrong-Pa55word", context=server.client_context
    )
    with pytest.raises(NotifyError) as info:
        transport.open()
    text = str(info.value)
    assert f"refused the login of {USER} (535)" in text
    assert names.NOTIFY_SMTP_PASSWORD in text and "wrong-Pa55word" not in text
    assert server.received == []


def test_a_missing_password_secret_is_named(server: SmtpServer) -> None:
    transport, _ = _transport(server.env(), password=None, context=server.client_context)
    with pytest.raises(NotifyError, match=f"secret {names.NOTIFY_SMTP_PASSWORD} is missing"):
        transport.open()


def test_port_465_speaks_tls_from_the_start() -> None:
    try:
        server = SmtpServer(implicit_tls_port=465).start()
    except OSError as exc:  # taken, or not ours to bind
        pytest.skip(f"cannot listen on 127.0.0.1:465 here: {exc}")
    try:
        transport, _ = _transport(server.env(), context=server.client_context)
        connection = transport.open()
        connection.send(_message())
        connection.close()
        [got] = server.received
        assert got.authenticated  # over TLS: the server speaks nothing else on that port
    finally:
        server.stop()


def test_an_untrusted_certificate_is_refused(server: SmtpServer) -> None:
    transport, _ = _transport(server.env())  # the system's CAs: the throwaway CA is not one
    with pytest.raises(NotifyError, match="TLS certificate is not trusted"):
        transport.open()
    assert server.handler.logins == [] and server.received == []


def test_no_starttls_off_loopback_sends_nothing_in_clear() -> None:
    # 127.0.0.2 is loopback to the kernel but not a loopback *name* to CleverSync, like a
    # server elsewhere: without STARTTLS neither the login nor the report may go.
    plain = SmtpServer(host="127.0.0.2", tls=False, auth=True).start()
    try:
        transport, _ = _transport(plain.env(), context=plain.client_context)
        with pytest.raises(NotifyError, match="does not offer STARTTLS"):
            transport.open()
        assert plain.handler.logins == [] and plain.received == []
    finally:
        plain.stop()


def test_plain_smtp_is_allowed_on_loopback() -> None:
    plain = SmtpServer(tls=False, auth=False).start()
    try:
        transport, _ = _transport(plain.env(CleverSync__Notify__SmtpUser=""))
        connection = transport.open()
        connection.send(_message())
        connection.close()
        assert [r.tls for r in plain.received] == [False]
    finally:
        plain.stop()


def test_a_server_that_is_down_is_a_clear_error() -> None:
    env = smtp_env("127.0.0.1", free_port("127.0.0.1"))  # nothing listens there
    transport, _ = _transport(env)
    with pytest.raises(
        NotifyError, match=r"could not connect to the SMTP server .*connection refused"
    ):
        transport.open()


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        port = silent.getsockname()[1]
        env = smtp_env("127.0.0.1", port, CleverSync__Notify__TimeoutSeconds="1")
        transport, _ = _transport(env)
        began = time.monotonic()
        with pytest.raises(NotifyError, match="timed out"):
            transport.open()
        assert time.monotonic() - began < 10


def test_the_folder_transport_writes_private_eml_files(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "outbox"
    transport = FolderTransport(folder, clock=lambda: datetime(2026, 12, 2, 2, 5))
    connection = transport.open()
    path = Path(connection.send(_message("Hello <there>")))
    assert path.parent == folder.resolve() and path.suffix == ".eml"
    assert path.name.startswith("20261202T020500-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Hello <there>"


def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(NotifyError, match="cannot create the outbox folder"):
        FolderTransport(blocker / "outbox", clock=datetime.now).open()
