"""Who may see the dashboard: the laptop's loopback gate, and the Azure gate behind App
Service Authentication (Entra ID).

In Azure the platform signs the user in and passes who they are in ``X-MS-CLIENT-PRINCIPAL``
(base64 JSON: the token's claims) and ``X-MS-CLIENT-PRINCIPAL-NAME``; it strips those headers
from client requests only when App Service Authentication is on, which the platform tells
the app with ``WEBSITE_AUTH_ENABLED=True``. So the gate fails closed: no such setting, no
admin list or role configured, no principal, or a principal that is neither listed nor holds
the role, and the request is refused (401 or 403) before any data is read.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from werkzeug.wrappers import Request

from cleversync.settings import AdminSettings

PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
PRINCIPAL_NAME_HEADER = "X-MS-CLIENT-PRINCIPAL-NAME"
AUTH_ENABLED_VARIABLE = "WEBSITE_AUTH_ENABLED"
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_NAME_CLAIMS = (
    "preferred_username",
    "upn",
    "email",
    "name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
_MAX_PRINCIPAL = 64 * 1024


@dataclass(frozen=True)
class Identity:
    """Who is asking: the name shown on the pages and the one CSRF tokens are bound to."""

    name: str
    local: bool = False


class RefusedError(Exception):
    """The request may not see the dashboard: its HTTP status and a message with no data."""

    def __init__(self, status: int, message: str, *, sign_in: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.sign_in = sign_in  # offer App Service Authentication's sign-in link


class Gate(Protocol):
    def identify(self, request: Request) -> Identity:
        """The caller, or RefusedError."""
        ...


def is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback ('127.0.0.1:8765', 'localhost',
    '[::1]:8765'); anything else (a DNS name pointing here, a LAN address) is refused."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return False
        name, rest = host[1:end], host[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
    else:
        name, _, port = host.partition(":")
        if port and not port.isdigit():
            return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class LocalGate:
    """The laptop: no sign-in, but only loopback clients addressing a loopback Host (a page
    of another site cannot reach it by DNS rebinding: its Host header names that site)."""

    def identify(self, request: Request) -> Identity:
        remote = request.remote_addr or ""
        try:
            remote_ok = ipaddress.ip_address(remote).is_loopback
        except ValueError:
            remote_ok = False
        if not remote_ok or not is_loopback_host(request.host or ""):
            raise RefusedError(
                403,
                "This dashboard answers only on 127.0.0.1 (open http://127.0.0.1:<port>/admin).",
            )
        return Identity("local operator", local=True)


class PlatformGate:
    """Azure: App Service Authentication in front, the admin list or role checked here."""

    def __init__(self, admin: AdminSettings, environ: Mapping[str, str]) -> None:
        self._users = admin.users
        self._role = admin.role
        self._auth_on = environ.get(AUTH_ENABLED_VARIABLE, "").strip().lower() == "true"

    def identify(self, request: Request) -> Identity:
        if not self._users and not self._role:
            raise RefusedError(
                403,
                "The dashboard is closed: no administrators are configured "
                "(set CleverSync__Admin__AllowedUsers or CleverSync__Admin__Role).",
            )
        if not self._auth_on:
            raise RefusedError(
                403,
                "The dashboard needs App Service Authentication (Entra ID) in front of it; "
                "it is not turned on for this app.",
            )
        raw = request.headers.get(PRINCIPAL_HEADER)
        if not raw:
            raise RefusedError(401, "Sign-in required.", sign_in=True)
        claims = _decode_principal(raw)
        header_name = (request.headers.get(PRINCIPAL_NAME_HEADER) or "").strip()
        names = {header_name.lower()} if header_name else set()
        names |= {v.lower() for t, v in claims["claims"] if t in _NAME_CLAIMS}
        role_type = claims["role_typ"]
        roles = {v for t, v in claims["claims"] if t in _ROLE_CLAIMS or t == role_type}
        allowed = bool(names & self._users) or bool(self._role and self._role in roles)
        if not allowed:
            raise RefusedError(403, "You are signed in, but not as a CleverSync administrator.")
        shown = header_name or next(iter(sorted(names)), "administrator")
        return Identity(shown)


def _decode_principal(raw: str) -> dict[str, Any]:
    """The principal header's claims as (type, value) pairs; RefusedError(401) when unreadable."""
    if len(raw) > _MAX_PRINCIPAL:
        raise RefusedError(
            401, "Sign-in required (the principal header is unreadable).", sign_in=True
        )
    try:
        padded = raw.strip() + "=" * (-len(raw.strip()) % 4)
        data = json.loads(base64.b64decode(padded, validate=False))
        claims = [
            (str(c["typ"]), str(c["val"]))
            for c in data.get("claims", [])
            if isinstance(c, dict) and "typ" in c and "val" in c
        ]
        role_type = str(data.get("role_typ") or "roles")
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise RefusedError(
            401, "Sign-in required (the principal header is unreadable).", sign_in=True
        ) from None
    return {"claims": claims, "role_typ": role_type}
