"""Clever access tokens per district: fetched, cached, refreshed ahead of time, dropped on 401.

Where a token comes from, in order (README: 'Secrets'): the district's pre-issued
``{DistrictPrefix}--AccessToken`` secret; the global ``Clever--AccessToken`` when exactly one
district is registered; otherwise the token endpoint with the district's app credentials, or
the global app's. ``district_tokens`` mode lists the app's district tokens (Clever's real
flow, tokens without expiry); ``client_credentials`` mode asks an RFC 6749 server for an
expiring token.

A cached token is refreshed in the background once ``TokenRefreshThreshold`` of its lifetime
has passed (tokens without expiry get ``TokenMaxAgeMinutes``, so a revoked token is
noticed), on demand when that background refresh failed or the token expired. Fetches are
single-flight per district: concurrent callers wait for the one fetch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from cleversync.clever.deadline import BodyTooLargeError
from cleversync.clever.http import send
from cleversync.errors import (
    CleverAuthError,
    CleverError,
    CleverResponseError,
    CleverTransientError,
    ConfigurationError,
)
from cleversync.redaction import Redactor
from cleversync.secrets import names
from cleversync.secrets.base import SecretStore
from cleversync.settings import Settings
from cleversync.threads import bound

logger = logging.getLogger(__name__)

# After a failed refresh, a still-valid token keeps serving and refresh is tried again then.
RETRY_REFRESH_AFTER_SECONDS = 30.0
# A token answer is a few hundred bytes: anything near this is not one.
_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class DistrictRef:
    """What the token provider needs to know about a district."""

    district_id: int
    clever_district_id: str
    prefix: str


@dataclass
class _Entry:
    token: str
    source: str
    obtained_at: float
    lifetime: float
    refresh_at: float = 0.0
    refreshing: bool = False
    background_failed: bool = False

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.lifetime


@dataclass
class TokenState:
    """What health reports per district (no call to Clever)."""

    has_token: bool = False
    source: str | None = None
    last_success_at: float | None = None  # wall clock
    last_error: str | None = None
    last_error_at: float | None = None
    expires_in_seconds: float | None = None


class TokenSource(Protocol):
    def token(self) -> str: ...
    def invalidate(self, token: str) -> None: ...


@dataclass
class _District:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entry: _Entry | None = None
    state: TokenState = field(default_factory=TokenState)


class TokenProvider:
    """Per-district token cache over the secret store and Clever's token endpoint."""

    def __init__(
        self,
        *,
        settings: Settings,
        secret_store: SecretStore,
        http: httpx.Client,
        district_count: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
        redactor: Redactor,
    ) -> None:
        self._settings = settings
        self._store = secret_store
        self._http = http
        self._district_count = district_count
        self._clock = clock
        self._wall_clock = wall_clock
        self._executor = executor
        self._redactor = redactor
        self._districts: dict[int, _District] = {}
        self._lock = threading.Lock()

    # --- public -------------------------------------------------------------------------

    def for_district(self, district: DistrictRef) -> TokenSource:
        provider = self

        class _Bound:
            def token(self) -> str:
                return provider.token(district)

            def invalidate(self, token: str) -> None:
                provider.invalidate(district, token)

        return _Bound()

    def token(self, district: DistrictRef) -> str:
        slot = self._slot(district)
        now = self._clock()
        entry = slot.entry
        if entry is None or now >= entry.expires_at:
            return self._refresh_now(district, slot, seen=entry)
        if entry.background_failed:
            return self._refresh_now(district, slot, seen=entry)
        if now >= entry.refresh_at and not entry.refreshing:
            self._start_background_refresh(district, slot, entry)
        return entry.token

    def invalidate(self, district: DistrictRef, token: str) -> None:
        """Drop ``token`` (Clever answered 401 with it); the next call fetches a new one."""
        slot = self._slot(district)
        with slot.lock:
            if slot.entry is not None and slot.entry.token == token:
                slot.entry = None
                logger.info(
                    "Dropped the Clever token of district %s after a 401; fetching a new one",
                    district.district_id,
                    extra={"DistrictId": district.district_id},
                )
        if token == self._store.get(names.access_token(district.prefix)):
            # A pre-issued token that Clever refuses: re-read the secret (it may be rotated).
            self._store.invalidate(names.access_token(district.prefix))

    def states(self) -> dict[int, TokenState]:
        """Per district: whether a token is cached, when auth last worked, the last error."""
        now = self._clock()
        with self._lock:
            slots = dict(self._districts)
        out = {}
        for district_id, slot in slots.items():
            state = TokenState(**vars(slot.state))
            entry = slot.entry
            state.has_token = entry is not None and now < entry.expires_at
            state.expires_in_seconds = max(0.0, entry.expires_at - now) if entry else None
            out[district_id] = state
        return out

    # --- refresh ------------------------------------------------------------------------

    def _slot(self, district: DistrictRef) -> _District:
        with self._lock:
            return self._districts.setdefault(district.district_id, _District())

    def _refresh_now(self, district: DistrictRef, slot: _District, seen: _Entry | None) -> str:
        """Fetch under the district's lock; callers that waited take the fresh token."""
        with slot.lock:
            current = slot.entry
            now = self._clock()
            if current is not None and current is not seen and now < current.expires_at:
                return current.token
            try:
                slot.entry = self._fetch_recording(district, slot)
            except CleverError:
                if seen is None or now >= seen.expires_at:
                    raise
                # The token we hold is within its lifetime: keep serving it, try again later
                # (a bad token shows up as a 401, which drops it and fetches anew).
                seen.background_failed = False
                seen.refresh_at = now + RETRY_REFRESH_AFTER_SECONDS
                return seen.token
            return slot.entry.token

    def _start_background_refresh(
        self, district: DistrictRef, slot: _District, entry: _Entry
    ) -> None:
        with self._lock:
            if entry.refreshing:
                return
            entry.refreshing = True

        def refresh() -> None:
            try:
                with slot.lock:
                    if slot.entry is not entry:
                        return  # replaced meanwhile (a 401, or an on-demand refresh)
                    slot.entry = self._fetch_recording(district, slot)
            except Exception as exc:  # recorded; the next call refreshes on demand
                entry.background_failed = True
                logger.warning(
                    "Background refresh of district %s's Clever token failed; the next call "
                    "will retry: %s",
                    district.district_id,
                    exc,
                    extra={"DistrictId": district.district_id},
                )
            finally:
                entry.refreshing = False

        self._executor_or_default().submit(bound(refresh))  # logs to the caller's invocation

    def _executor_or_default(self) -> Executor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="token-refresh"
                )
            return self._executor

    def _fetch_recording(self, district: DistrictRef, slot: _District) -> _Entry:
        try:
            entry = self._fetch(district)
        except CleverError as exc:
            slot.state.last_error = self._redactor.redact(str(exc))
            slot.state.last_error_at = self._wall_clock()
            raise
        entry.refresh_at = (
            entry.obtained_at + entry.lifetime * self._settings.token_refresh_threshold
        )
        slot.state.last_success_at = self._wall_clock()
        slot.state.last_error = None
        slot.state.source = entry.source
        logger.info(
            "Obtained a Clever token for district %s from %s",
            district.district_id,
            entry.source,
            extra={"DistrictId": district.district_id},
        )
        return entry

    # --- sources ------------------------------------------------------------------------

    def _fetch(self, district: DistrictRef) -> _Entry:
        max_age = self._settings.clever.token_max_age_minutes * 60
        own = names.access_token(district.prefix)
        token = self._store.get(own)
        if token:
            return _Entry(token, f"secret {own}", self._clock(), max_age)
        shared = names.access_token(None)
        token = self._store.get(shared)
        if token:
            if self._district_count() == 1:
                return _Entry(token, f"secret {shared}", self._clock(), max_age)
            logger.warning(
                "Ignoring %s: a Clever district token serves one district, and %d are "
                "registered; give each district its own %s",
                shared,
                self._district_count(),
                names.access_token("{DistrictPrefix}"),
            )
        client_id, client_secret, source = self._credentials(district)
        self._redactor.register_basic(client_id, client_secret)
        if self._settings.clever.token_mode == "client_credentials":  # noqa: S105 (a mode name)
            return self._client_credentials(client_id, client_secret, source)
        return self._district_token(district, client_id, client_secret, source)

    def _credentials(self, district: DistrictRef) -> tuple[str, str, str]:
        own_id, own_secret = names.client_id(district.prefix), names.client_secret(district.prefix)
        client_id, client_secret = self._store.get(own_id), self._store.get(own_secret)
        if client_id and client_secret:
            return client_id, client_secret, f"the district's app ({own_id})"
        global_id, global_secret = names.client_id(None), names.client_secret(None)
        client_id, client_secret = self._store.get(global_id), self._store.get(global_secret)
        if client_id and client_secret:
            return client_id, client_secret, f"the global app ({global_id})"
        raise ConfigurationError(
            f"no Clever credentials for district {district.district_id}: set {own_id} and "
            f"{own_secret} (cleversync district set-credentials), or the global {global_id} "
            f"and {global_secret}, or a pre-issued {names.access_token(district.prefix)}"
        )

    def _district_token(
        self, district: DistrictRef, client_id: str, client_secret: str, source: str
    ) -> _Entry:
        params = {"owner_type": "district", "district": district.clever_district_id}
        body = self._call("GET", params=params, auth=(client_id, client_secret), source=source)
        tokens = body.get("data") if isinstance(body, dict) else None
        if not isinstance(tokens, list):
            raise CleverResponseError("Clever's token list has no 'data' array")
        for item in tokens:
            owner = item.get("owner") or {} if isinstance(item, dict) else {}
            if owner.get("id") == district.clever_district_id and item.get("access_token"):
                token = str(item["access_token"])
                self._redactor.register(token)
                lifetime = self._settings.clever.token_max_age_minutes * 60
                return _Entry(
                    token, f"Clever's district token list, {source}", self._clock(), lifetime
                )
        raise CleverAuthError(
            f"{source} has no Clever token for district {district.clever_district_id}: the "
            "district has not authorized the app, or has disconnected it"
        )

    def _client_credentials(self, client_id: str, client_secret: str, source: str) -> _Entry:
        body = self._call(
            "POST",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client_secret),
            source=source,
        )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise CleverResponseError("the token endpoint's answer has no access_token")
        self._redactor.register(str(token))
        expires_in = body.get("expires_in")
        try:
            lifetime = float(expires_in) if expires_in is not None else None
        except (TypeError, ValueError):
            lifetime = None
        if not lifetime or lifetime <= 0:
            lifetime = self._settings.clever.token_max_age_minutes * 60
        return _Entry(
            str(token), f"the client-credentials grant, {source}", self._clock(), lifetime
        )

    def _call(self, method: str, *, source: str, **kwargs: Any) -> Any:
        url = self._settings.clever.token_url
        seconds = self._settings.clever.timeout_seconds
        try:
            response = send(
                self._http,
                method,
                url,
                what=f"the token request to {url}",
                who="Clever's token endpoint",
                seconds=seconds,
                max_bytes=_MAX_BODY_BYTES,
                **kwargs,
            )
        except BodyTooLargeError as exc:
            raise CleverResponseError(f"Clever's token endpoint answered with {exc}") from None
        status = response.status_code
        if status in (400, 401, 403):
            raise CleverAuthError(
                f"Clever's token endpoint refused the credentials of {source} (HTTP {status}); "
                "check the client id and secret",
                status=status,
            )
        if status >= 500 or status == 429:
            raise CleverTransientError(
                f"Clever's token endpoint answered HTTP {status}", status=status
            )
        if status != 200:
            raise CleverError(f"Clever's token endpoint answered HTTP {status}", status=status)
        try:
            return response.json()
        except ValueError:
            raise CleverResponseError(
                "Clever's token endpoint answered with invalid JSON"
            ) from None
