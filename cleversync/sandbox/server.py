"""A quiet threaded stdlib WSGI server on loopback, running in a daemon thread."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from cleversync.sandbox.app import SOCKET_ENVIRON_KEY
from cleversync.sandbox.messages import is_loopback as is_loopback

WsgiApp = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without the per-request log lines on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[SOCKET_ENVIRON_KEY] = True
        return environ


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's FQDN, which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up is not worth a traceback on stderr


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class RunningServer:
    """A sandbox listening on a loopback port in a daemon thread; close it (or use ``with``)."""

    def __init__(self, app: WsgiApp, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host):
            raise ValueError(f"the sandbox only listens on loopback addresses, not {host!r}")
        if host == "localhost":
            host = "127.0.0.1"
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._server = server_class((host, port), _QuietHandler)
        self._server.set_app(app)
        self.host = host
        self.port: int = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.api_base_url = f"http://{shown}:{self.port}"
        self.token_url = f"{self.api_base_url}/oauth/tokens"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"clever-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        # serve_forever sees shutdown() only when its select() returns: a connection wakes it
        # at once instead of at the next poll (test suites open and close hundreds of these).
        stopping = threading.Thread(target=self._server.shutdown, daemon=True)
        stopping.start()
        while stopping.is_alive():
            self._wake()
            stopping.join(0.01)
        self._server.server_close()
        self._thread.join(timeout=5)

    def _wake(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with contextlib.suppress(OSError), socket.socket(family) as sock:
            sock.settimeout(1)
            sock.connect((self.host, self.port))

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
