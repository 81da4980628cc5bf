"""A real SMTP server on loopback (aiosmtpd) for the email tests: STARTTLS with a throwaway
CA (trustme), AUTH with one accepted login, and every message it was given kept."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "reports@example.org"
PASSWORD = "smtp-Pa55word-never-shown"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)
    accept_password: str = PASSWORD
    delay: float = 0.0  # seconds before answering DATA (a slow server)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    message,
                    session.ssl is not None,
                    bool(session.authenticated),
                )
            )
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == USER
            and auth_data.password.decode() == self.accept_password
        )
        with self.lock:
            self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    """``tls``: offers STARTTLS (and requires it before AUTH); ``auth``: offers AUTH."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        tls: bool = True,
        auth: bool = True,
        implicit_tls_port: int | None = None,
    ) -> None:
        """``implicit_tls_port``: TLS from the first byte on that port (no STARTTLS)."""
        self.host = host
        self.port = implicit_tls_port or free_port(host)
        self.handler = Handler()
        self.ca = trustme.CA()
        self.client_context = ssl.create_default_context()
        self.client_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ca.configure_trust(self.client_context)
        kwargs: dict[str, Any] = {}
        if tls:
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(host, "localhost").configure_cert(server_context)
            if implicit_tls_port:
                kwargs.update(ssl_context=server_context)
            else:
                kwargs.update(tls_context=server_context, require_starttls=False)
        if auth:
            # aiosmtpd's TLS check knows STARTTLS only; on the implicit port all is TLS anyway.
            kwargs.update(
                authenticator=self.handler.authenticate,
                auth_require_tls=tls and not implicit_tls_port,
            )
        self.controller = Controller(
            self.handler, hostname=host, port=self.port, server_hostname="cleversync-test", **kwargs
        )

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def env(self, **extra: str) -> dict[str, str]:
        """The CleverSync variables that send to this server."""
        return smtp_env(self.host, self.port, **extra)


def smtp_env(host: str, port: int, **extra: str) -> dict[str, str]:
    """The CleverSync variables that send to ``host:port`` (logging in as USER)."""
    return {
        "CleverSync__Notify__SmtpHost": host,
        "CleverSync__Notify__SmtpPort": str(port),
        "CleverSync__Notify__SmtpUser": USER,
        "CleverSync__Notify__From": "cleversync@example.org",
        "CleverSync__Notify__To": "ops@example.org, it@example.org",
        "CleverSync__Notify__TimeoutSeconds": "5",
        **extra,
    }
