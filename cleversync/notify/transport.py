"""How messages leave: an SMTP server (STARTTLS unless on loopback), or .eml files in a folder.

A transport is opened once per batch of messages; opening connects (and logs in), ``send``
sends one message. Every failure is a NotifyError whose text names the server and what to do,
never a credential. Timeouts bound every network step, so a slow server costs seconds, not a
sync.
"""

from __future__ import annotations

import base64
import os
import smtplib
import socket
import ssl
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from cleversync.errors import NotifyError
from cleversync.files import PRIVATE_FILE, private_dir
from cleversync.redaction import Redactor
from cleversync.secrets import names
from cleversync.settings import NotifySettings

IMPLICIT_TLS_PORT = 465


class Connection(Protocol):
    def send(self, message: EmailMessage) -> str:
        """Send one message; where it went (for the log)."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    description: str

    def open(self) -> Connection: ...


# --- SMTP ----------------------------------------------------------------------------------


def tls_context() -> ssl.SSLContext:
    """The system's trusted CAs, host names checked, TLS 1.2 at least."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SmtpTransport:
    """``smtplib`` with STARTTLS (or TLS from the start on port 465); AUTH when ``SmtpUser``
    is set, with the password from the secret store (registered with the redactor)."""

    def __init__(
        self,
        settings: NotifySettings,
        *,
        password: Callable[[], str | None],
        redactor: Redactor,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._password = password
        self._redactor = redactor
        self._context = context
        self.description = f"SMTP server {settings.smtp_host}:{settings.smtp_port}"

    def open(self) -> _SmtpConnection:
        settings = self._settings
        context = self._context or tls_context()
        where = self.description
        try:
            if settings.smtp_port == IMPLICIT_TLS_PORT:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    settings.smtp_host,
                    settings.smtp_port,
                    timeout=settings.timeout_seconds,
                    context=context,
                )
                secure = True
            else:
                smtp = smtplib.SMTP(
                    settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds
                )
                secure = False
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(f"could not connect to the {where}: {_describe(exc)}") from None
        try:
            smtp.ehlo()
            if not secure and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                secure = True
            if not secure and not settings.smtp_is_loopback:
                raise NotifyError(
                    f"the {where} does not offer STARTTLS: CleverSync sends no report or "
                    "credential in clear text; use the server's submission port (587) or 465"
                )
            if settings.smtp_user:
                self._login(smtp)
        except NotifyError:
            _quit(smtp)
            raise
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            _quit(smtp)
            raise NotifyError(f"the {where} refused the session: {_describe(exc)}") from None
        return _SmtpConnection(smtp, settings, where)

    def _login(self, smtp: smtplib.SMTP) -> None:
        user = self._settings.smtp_user
        secret = names.NOTIFY_SMTP_PASSWORD
        try:
            password = self._password()
        except Exception as exc:  # the store is down: say which secret, keep the message
            raise NotifyError(f"could not read secret {secret}: {_describe(exc)}") from None
        if not password:
            raise NotifyError(
                f"CleverSync__Notify__SmtpUser is set but secret {secret} is missing; "
                "create it with the SMTP password"
            )
        # What goes on the wire in AUTH PLAIN and LOGIN, should a server echo it.
        self._redactor.register(password)
        self._redactor.register(base64.b64encode(f"\0{user}\0{password}".encode()).decode())
        self._redactor.register(base64.b64encode(password.encode()).decode())
        try:
            smtp.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifyError(
                f"the {self.description} refused the login of {user} "
                f"({exc.smtp_code}); check CleverSync__Notify__SmtpUser and secret {secret}"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise NotifyError(
                f"the {self.description} does not accept a login (no AUTH); "
                "leave CleverSync__Notify__SmtpUser empty or use a server that does"
            ) from None


class _SmtpConnection:
    def __init__(self, smtp: smtplib.SMTP, settings: NotifySettings, where: str) -> None:
        self._smtp = smtp
        self._settings = settings
        self._where = where

    def send(self, message: EmailMessage) -> str:
        recipients: Sequence[str] = self._settings.recipients
        try:
            refused = self._smtp.send_message(
                message, from_addr=self._settings.from_address, to_addrs=list(recipients)
            )
        except smtplib.SMTPRecipientsRefused as exc:
            raise NotifyError(
                f"the {self._where} refused every recipient ({', '.join(exc.recipients)}): "
                "check CleverSync__Notify__To"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(
                f"the {self._where} did not take the message: {_describe(exc)}"
            ) from None
        accepted = [r for r in recipients if r not in refused]
        return f"{', '.join(accepted)} via {self._where}"

    def close(self) -> None:
        _quit(self._smtp)


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _describe(exc: BaseException) -> str:
    """The failure without the server's full text (which may echo what we sent)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return f"{exc.smtp_code} {text[:200]}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {str(exc)[:200]}"


# --- files ---------------------------------------------------------------------------------


class FolderTransport:
    """Writes each message as an .eml file (no SMTP server on a laptop): open it in a mail
    program, or read it as text."""

    def __init__(self, folder: Path, *, clock: Callable[[], datetime]) -> None:
        self.folder = folder.resolve()
        self._clock = clock
        self.description = f"outbox folder {self.folder}"

    def open(self) -> _FolderConnection:
        try:
            private_dir(self.folder)
        except OSError as exc:
            raise NotifyError(
                f"cannot create the {self.description}: {exc.strerror or exc}; set "
                "CleverSync__DataDir to a writable folder or CleverSync__Notify__SmtpHost"
            ) from None
        return _FolderConnection(self.folder, self._clock)


class _FolderConnection:
    def __init__(self, folder: Path, clock: Callable[[], datetime]) -> None:
        self._folder = folder
        self._clock = clock

    def send(self, message: EmailMessage) -> str:
        stamp = self._clock().strftime("%Y%m%dT%H%M%S")
        try:
            fd, temp = tempfile.mkstemp(prefix=f"{stamp}-", suffix=".eml", dir=self._folder)
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), PRIVATE_FILE)
                out.write(message.as_bytes())
        except OSError as exc:
            raise NotifyError(
                f"cannot write to the outbox folder {self._folder}: {exc.strerror or exc}"
            ) from None
        return temp

    def close(self) -> None:
        return None
