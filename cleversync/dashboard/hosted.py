"""The dashboard as the Functions app serves it (``function_app.py`` passes each request's
parts to ``HostedDashboard.handle``): built on the first request from the Runtime, with the platform
gate (App Service Authentication and the admin list) and the shared CSRF key.

The Functions host reserves ``/admin`` for its own admin API, so the pages live under
``/dashboard`` there (``cleversync dashboard`` on a laptop keeps ``/admin``).
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from cleversync.secrets import names

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from cleversync.dashboard.app import Dashboard
    from cleversync.runtime import Runtime

logger = logging.getLogger(__name__)

MOUNT = "/dashboard"
_UNAVAILABLE = (
    b"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>503</title></head>"
    b"<body><h1>The dashboard is unavailable</h1><p>The app could not start it; the reason "
    b"is in the app's logs.</p></body></html>"
)


class HostedDashboard:
    def __init__(
        self,
        runtime: Callable[[], Runtime],
        *,
        mount: str = MOUNT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._runtime = runtime
        self._mount = mount
        self._environ = environ
        self._lock = threading.Lock()
        self._built: tuple[Runtime, Dashboard] | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            app = self.dashboard()
        except Exception as exc:  # fail closed: no page, no data, the reason in the log
            logger.error("The dashboard could not be built: %s", exc)
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
            )
            return [_UNAVAILABLE]
        return app(environ, start_response)

    def handle(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request as the Functions host gives it (plain values, no azure.functions):
        (status, headers, body). Unlike the host's WsgiMiddleware, a 5xx page is an
        answer, not an exception escaping the handler."""
        parts = urlsplit(url)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method.upper(),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(parts.path).encode("utf-8").decode("latin-1"),
            "QUERY_STRING": parts.query,
            "SERVER_NAME": parts.hostname or "localhost",
            "SERVER_PORT": str(parts.port or (443 if parts.scheme == "https" else 80)),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": parts.scheme or "https",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
            else:
                environ[f"HTTP_{key}"] = value
        started: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], *_: Any) -> Any:
            started[:] = [status, response_headers]
            return lambda data: None

        chunks = self(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return int(started[0].split(" ", 1)[0]), list(started[1]), payload

    def dashboard(self) -> Dashboard:
        runtime = self._runtime()
        with self._lock:
            if self._built is not None and self._built[0] is runtime:
                return self._built[1]
            app = self._build(runtime)
            self._built = (runtime, app)
            return app

    def _build(self, runtime: Runtime) -> Dashboard:
        from cleversync.dashboard.app import Dashboard
        from cleversync.dashboard.auth import PlatformGate
        from cleversync.dashboard.csrf import Csrf

        services = runtime.services
        key = services.secret_store.get(names.DASHBOARD_CSRF_KEY)
        if key and len(key.encode()) >= 16:
            csrf_key = key.encode()
        else:
            logger.warning(
                "Secret %s is missing or shorter than 16 characters: the dashboard signs its "
                "forms with a key of this instance only, so a form sent to another instance "
                "is refused (reload and try again). Create the secret (azd up does).",
                names.DASHBOARD_CSRF_KEY,
            )
            csrf_key = secrets.token_bytes(32)
        environ = self._environ if self._environ is not None else os.environ
        return Dashboard(
            services,
            gate=PlatformGate(services.settings.admin, environ),
            csrf=Csrf(csrf_key),
            mount=self._mount,
            trigger="http",
        )
