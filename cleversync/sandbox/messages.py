"""The sandbox's request and response values and the error bodies Clever-like servers send."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

JSON_TYPE = "application/json; charset=utf-8"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
HTML_TYPE = "text/html; charset=utf-8"

# Express's default "no route" page, which is what Clever answers for unknown paths and
# versions (recorded: <pre>Cannot GET /v3.0/resources</pre>).
_EXPRESS_404 = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
    "</head>\n<body>\n<pre>Cannot {method} {path}</pre>\n</body>\n</html>\n"
)


@dataclass(frozen=True)
class Request:
    """What the sandbox needs of one HTTP request."""

    method: str
    path: str
    query: str  # raw, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    params: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def build(
        cls, method: str, path: str, query: str, headers: dict[str, str], body: bytes = b""
    ) -> Request:
        params = parse_qsl(query, keep_blank_values=True)
        return cls(method.upper(), path, query, headers, body, params)

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def params_named(self, name: str) -> list[str]:
        return [value for key, value in self.params if key == name]

    def bearer_token(self) -> str | None:
        header = self.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip() or None
        return None


@dataclass
class Response:
    """An answer before serialization: ``payload`` is JSON-able, or ``body`` is final bytes.

    Payloads hold references to stored (never edited) objects, so serializing happens
    after the state lock is released.
    """

    status: int
    payload: Any = None
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encoded(self) -> bytes:
        if self.payload is None:
            return self.body
        text = json.dumps(self.payload, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode()
        except UnicodeEncodeError:
            # A lone surrogate (a bad_value fault) has no UTF-8 form; JSON has an escape for
            # it, and it can only stand inside a string, where the escape is valid.
            return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()

    @property
    def status_line(self) -> str:
        return f"{self.status} {reason(self.status)}"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reason(status: int) -> str:
    """The standard reason phrase (``Service Unavailable``), or ``Unknown``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class ApiError(Exception):
    """A Data API error answered as ``{"message": ...}`` with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> Response:
        return Response(self.status, {"message": self.message})


class NoRouteError(Exception):
    """No such endpoint: answered with Express's HTML 404 page."""


def not_found_page(method: str, path: str) -> Response:
    text = _EXPRESS_404.format(method=method, path=_html_escape(path))
    return Response(404, body=text.encode(), content_type=HTML_TYPE)


def oauth_error(status: int, error: str, description: str) -> Response:
    """RFC 6749 style, which is what Clever's own clients parse from clever.com/oauth."""
    response = Response(status, {"error": error, "error_description": description})
    if status == 401:
        response.headers.append(("WWW-Authenticate", 'Basic realm="clever"'))
    return response


def _html_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
