"""Removes secrets from text: registered secret values, bearer/Basic credentials, passwords.

One ``Redactor`` per composition root (``Services``), handed to what needs it: every secret
value its secret store returns and every token its token provider issues is registered there,
and what leaves the process passes through it (the logging filter, ``SyncHistory.ErrorMessage``,
HTTP bodies, CLI output). There is no process-wide registry. ``mask_credentials`` applies the
patterns alone, which catch what was never registered (a password inside a connection string,
an ``Authorization`` header): the database layer uses it on driver messages, which it builds
before any of those boundaries.
"""

from __future__ import annotations

import base64
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
# Values shorter than this are not registered: masking "1" or "db" everywhere would
# destroy logs, and such values are not secrets worth the name.
MIN_SECRET_LENGTH = 6

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer abc / Basic abc (header lines, reprs, curl commands)
    (re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9\-._~+/]{6,}=*"), r"\1\2" + MASK),
    (
        re.compile(
            r"(?i)(\bauthorization\b[\"']?\s*[:=]\s*[\"']?)(?!bearer\b|basic\b)[^\"'\r\n,;]+"
        ),
        r"\1" + MASK,
    ),
    # Password=...; PWD={...}; in ADO.NET/ODBC strings (quoted, braced or bare values)
    (
        re.compile(
            r"(?i)\b(password|pwd)(\s*=\s*)(\{(?:[^}]|\}\})*\}|\"[^\"]*\"|'[^']*'|[^;\s'\"]+)"
        ),
        r"\1\2" + MASK,
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*):[^@/\s]+@"), r"\1:" + MASK + "@"),
    # token and secret fields in JSON, forms and query strings
    (
        re.compile(
            r"(?i)([\"']?\b(?:access_token|refresh_token|id_token|client_secret|clientsecret)"
            r"\b[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"
        ),
        r"\1" + MASK,
    ),
)


class Redactor:
    """A registry of secret values and the patterns that mask credentials in text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        # Longest first (see _mask_values). Not a regular expression: with one connection
        # string per school, recompiling one at every registration cost more than a
        # school's sync of a thousand records.
        self._ordered: tuple[str, ...] = ()

    def register(self, value: str | None) -> None:
        """Remember a secret value (and its encoded forms) so it is masked from now on."""
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        forms = {value, quote(value, safe=""), quote_plus(value)}
        with self._lock:
            before = len(self._values)
            self._values.update(f for f in forms if len(f) >= MIN_SECRET_LENGTH)
            if len(self._values) != before:
                self._ordered = tuple(sorted(self._values, key=len, reverse=True))

    def register_basic(self, user: str, password: str) -> None:
        """Register an HTTP Basic credential: the password and the header's base64 form."""
        self.register(password)
        self.register(base64.b64encode(f"{user}:{password}".encode()).decode())

    def redact(self, text: str) -> str:
        """The text with every registered value and every credential pattern masked."""
        if not text:
            return text
        return mask_credentials(_mask_values(text, self._ordered))

    def __contains__(self, value: object) -> bool:
        return value in self._values


def _mask_values(text: str, values: tuple[str, ...]) -> str:
    """``text`` with every occurrence of ``values`` masked, as one regular expression of
    them, longest first, would: scanning left to right, at each position the longest value
    found there is masked, and the scan goes on after it. (Masking value by value would let
    a longer value cut through a shorter one that starts earlier, and leave part of it.)"""
    hits: list[tuple[int, int]] = []  # (start, -length): the leftmost, then the longest
    for value in values:
        start = text.find(value)
        while start != -1:
            hits.append((start, -len(value)))
            start = text.find(value, start + 1)
    if not hits:
        return text
    hits.sort()
    out: list[str] = []
    done = 0
    for start, negative_length in hits:
        if start < done:
            continue  # inside a value masked already
        out += (text[done:start], MASK)
        done = start - negative_length
    out.append(text[done:])
    return "".join(out)


def mask_credentials(text: str) -> str:
    """The text with every credential pattern masked (no registered values: a pure function)."""
    if not text:
        return text
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)
    return text
