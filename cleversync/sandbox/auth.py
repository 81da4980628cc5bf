"""District apps, their district tokens (rotatable) and expiring client-credentials tokens."""

from __future__ import annotations

import base64
import binascii
import hmac
import random
import threading
from dataclasses import dataclass

from cleversync.sandbox.ids import IdFactory, hex_string, iso_ms

SCOPES = (
    "read:districts",
    "read:schools",
    "read:sections",
    "read:students",
    "read:teachers",
    "read:user_id",
)


@dataclass(frozen=True)
class App:
    """A district app's credentials; in the sandbox each district authorises its own app."""

    client_id: str
    client_secret: str
    district_id: str


@dataclass(frozen=True)
class DistrictToken:
    """A record of Clever's token listing: no expiry, ends only when rotated."""

    id: str
    created: str
    district_id: str
    access_token: str

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "created": self.created,
            "owner": {"type": "district", "id": self.district_id},
            "access_token": self.access_token,
            "scopes": list(SCOPES),
        }


class TokenRegistry:
    """Who may call: Basic credentials for /oauth/tokens, bearer tokens for the Data API."""

    def __init__(self, rng: random.Random, ids: IdFactory, lifetime_seconds: float) -> None:
        self._rng = rng
        self._ids = ids
        self._lifetime = lifetime_seconds
        self._lock = threading.Lock()
        self._apps: dict[str, App] = {}
        self._district_tokens: dict[str, DistrictToken] = {}
        self._bearer: dict[str, tuple[str, float | None]] = {}  # token -> district, expiry

    def register(self, district_id: str, at: float) -> App:
        with self._lock:
            app = App(hex_string(self._rng, 20), hex_string(self._rng, 40), district_id)
            self._apps[app.client_id] = app
            self._new_district_token(district_id, at)
            return app

    def _new_district_token(self, district_id: str, at: float) -> DistrictToken:
        token = DistrictToken(self._ids.new(at), iso_ms(at), district_id, hex_string(self._rng, 40))
        old = self._district_tokens.get(district_id)
        if old is not None:
            self._bearer.pop(old.access_token, None)
        self._district_tokens[district_id] = token
        self._bearer[token.access_token] = (district_id, None)
        return token

    def app_from_basic(self, authorization: str | None) -> App | None:
        """The app named by an HTTP Basic header, if its secret matches."""
        credentials = basic_credentials(authorization)
        return self.app_from_credentials(*credentials) if credentials else None

    def app_from_credentials(self, client_id: str, secret: str) -> App | None:
        with self._lock:
            app = self._apps.get(client_id)
        if app is None or not hmac.compare_digest(app.client_secret.encode(), secret.encode()):
            return None
        return app

    def district_token(self, district_id: str) -> DistrictToken:
        with self._lock:
            return self._district_tokens[district_id]

    def rotate(self, district_id: str, now: float) -> str:
        """A new district token; the old one stops working at once."""
        with self._lock:
            if district_id not in self._district_tokens:
                raise KeyError(district_id)
            return self._new_district_token(district_id, now).access_token

    def issue(self, app: App, now: float) -> tuple[str, int]:
        """A client-credentials token for the app's district and its lifetime in seconds."""
        with self._lock:
            token = hex_string(self._rng, 40)
            self._bearer[token] = (app.district_id, now + self._lifetime)
            for old, (_, expires) in list(self._bearer.items()):  # forget long-dead tokens
                if expires is not None and expires < now - self._lifetime:
                    del self._bearer[old]
            return token, int(self._lifetime)

    def district_for(self, token: str, now: float) -> str | None:
        """The district a bearer token belongs to, or None if unknown, rotated or expired."""
        with self._lock:
            found = self._bearer.get(token)
        if found is None:
            return None
        district_id, expires = found
        if expires is not None and now >= expires:
            return None
        return district_id


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` from an HTTP Basic ``Authorization`` header."""
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    return client_id, secret
