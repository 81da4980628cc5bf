"""CSRF tokens: a timestamp and a random part, signed with HMAC-SHA256 over the user's name.

Every form carries one; a POST without a valid token for the same user, issued within
``max_age`` seconds, is refused. The key comes from the secret store in Azure (all instances
share it: ``CleverSyncSOS--AdminPortal--CsrfKey``) or is made per process on a laptop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

MAX_AGE_SECONDS = 8 * 3600
_SKEW_SECONDS = 300


class Csrf:
    def __init__(
        self,
        key: bytes,
        *,
        clock: Callable[[], float] = time.time,
        max_age: float = MAX_AGE_SECONDS,
    ) -> None:
        if len(key) < 16:
            raise ValueError("a CSRF key needs at least 16 bytes")
        self._key = key
        self._clock = clock
        self._max_age = max_age

    def token(self, user: str) -> str:
        stamp = f"{int(self._clock())}.{secrets.token_urlsafe(9)}"
        return f"{stamp}.{self._sign(user, stamp)}"

    def valid(self, user: str, token: str | None) -> bool:
        if not token or len(token) > 200:
            return False
        stamp, _, signature = token.rpartition(".")
        issued, _, _ = stamp.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(signature, self._sign(user, stamp)):
            return False
        age = self._clock() - int(issued)
        return -_SKEW_SECONDS <= age <= self._max_age

    def _sign(self, user: str, stamp: str) -> str:
        message = f"{user}\n{stamp}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
