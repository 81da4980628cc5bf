"""A local fake of Clever's API v3.0 (OAuth tokens, Data API, Events API), stdlib only.

The sandbox is built from Clever's documented and recorded behaviour (docs at
dev.clever.com, real answers in ``tests/fixtures/clever_recordings``), not from
what our client expects, and it imports nothing else from ``cleversync``.

Python API::

    from cleversync.sandbox import Sandbox, Fault, FaultKind

    sb = Sandbox(seed=1, districts=1, schools=3, students=300, teachers=20, sections=15,
                 clock=time.time, rate_limit=1200, rate_window_seconds=60,
                 event_retention_days=30, token_lifetime_seconds=3600,
                 events_enabled=True, sleep=time.sleep, request_log_size=10_000)
    sb.districts   # [DistrictInfo(id, name, client_id, client_secret, schools=[SchoolInfo])]
    sb.wsgi_app    # WSGI callable: httpx.Client(transport=httpx.WSGITransport(app=sb.wsgi_app))
    with sb.serve(host="127.0.0.1", port=0) as running:   # loopback only; threaded stdlib server
        running.api_base_url   # "http://127.0.0.1:PORT" (the product calls f"{it}/v3.0/...")
        running.token_url      # "http://127.0.0.1:PORT/oauth/tokens"
    sb.connection_info(running)   # the JSON line of `sandbox serve`

    sb.district_token(district_id) -> str      # current token (as GET /oauth/tokens lists it)
    sb.rotate_token(district_id) -> str        # new token; the old one answers 401
    sb.set_events_enabled(district_id, enabled, status=403)   # off: /events answers 403 or 404
    sb.latest_event_id(district_id) -> str | None
    sb.events(district_id) -> list[dict]       # retained events as the API shows them

    # Mutations; each emits users.|sections. created|updated|deleted, stamped by the clock.
    sb.add_student(school_id, **fields) -> str   # first_name=, middle_name=, last_name=, email=,
    sb.add_teacher(school_id, **fields) -> str   # name=, roles=, or any role field (grade=,
                                                 # schools=, title=...); None = leave it out
    sb.add_section(school_id, teacher_id=None, student_ids=None, **fields) -> str
    sb.update_user(user_id, changes)  # nested partial, e.g. {"name": {"last": "X"}}; None removes
    sb.update_section(section_id, changes)
    sb.remove_user(user_id, unenroll=True)  # sections.updated per section left, then users.deleted
    sb.remove_section(section_id)
    sb.move_user(user_id, role, school_id)  # sections.updated per section left, users.updated
    sb.students(school_id) / sb.teachers(school_id) / sb.sections(school_id)  # copies, current
    sb.user(user_id) / sb.section(section_id)                                 # copy or None

    sb.faults.add(Fault(kind, path="*", method="*", query=None, times=1, after=0, ...))
    sb.faults.clear()
    sb.request_log   # RequestLog of RequestRecord(method, target, status, token, client_id, faults)
    sb.rate_limiter  # the RateLimiter (limit, window_seconds)

Fault kinds (``FaultKind``): ``status`` (``status``, ``headers``, ``body``), ``rate_limit``
(429 with X-Ratelimit-*, remaining 0), ``delay`` (``seconds``, then a normal answer),
``drop`` (over a socket: headers and half the body, or nothing with ``partial=False``, then
the connection closes; in-process the app raises ``error()``, default
``ConnectionResetError``), ``malformed_json``, ``extra_fields`` (``fields``),
``drop_role_in_next``, ``full_last_page_next``, ``expired_cursor_404``, ``lose_next`` (a page
with a ``next`` link loses it), ``empty_page`` (a list page answers ``"data": []``),
``oversize_page`` (a list page holds up to twice its ``limit``), ``trickle`` (the body one
byte every ``seconds``). A 429 with any ``Retry-After`` is a ``status`` fault with
``status=429, headers={"Retry-After": ...}``. Records that break a
consumer's schema are made with the mutation API (``first_name="x" * 150``, ``name=None``).

HTTP surface: ``GET /oauth/tokens?owner_type=district[&district=ID]`` and ``POST
/oauth/tokens`` (``grant_type=client_credentials``), both with HTTP Basic; under ``/v3.0``
(``Authorization: Bearer``): ``/districts``, ``/schools``, ``/users?role=``, ``/sections``,
``/schools/{id}/users?role=&primary=``, ``/schools/{id}/sections``, ``/sections/{id}/users``,
``/users/{id}/sections``, ``/users/{id}/schools``, single objects and their ``/district``,
``/sections/{id}/school``, ``/events`` and ``/events/{id}``. Anything else: Express's HTML 404,
except ``/sandbox/...``: the control API (``cleversync.sandbox.control``), not Clever's, for
changing the roster by hand over loopback (``cleversync sandbox change``).

Where real Clever is unknown: a disabled Events API answers 403 (404 selectable); an
event cursor older than the retained feed answers 200 from the oldest kept event, as
recorded (404 with the ``expired_cursor_404`` fault); error bodies are ``{"message"}`` on
the API and ``{"error", "error_description"}`` on /oauth; a 429 body is plain text; pages
reached with ``ending_before`` always carry ``next`` (Clever's docs warn it may lead to an
empty page) and ``prev`` only if records precede; bad ``limit``/cursor/``role`` values
answer 400; ``previous_attributes`` reports a newly added key as null.

Command line: ``add_serve_arguments(parser)`` and ``run_serve(args)`` implement
``cleversync sandbox serve``; ``python -m cleversync.sandbox`` runs it standalone.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names for type checkers, which do not run __getattr__
    from cleversync.sandbox.app import RequestLog as RequestLog
    from cleversync.sandbox.app import RequestRecord as RequestRecord
    from cleversync.sandbox.cli import add_serve_arguments as add_serve_arguments
    from cleversync.sandbox.cli import run_serve as run_serve
    from cleversync.sandbox.faults import Fault as Fault
    from cleversync.sandbox.faults import FaultKind as FaultKind
    from cleversync.sandbox.sandbox import DistrictInfo as DistrictInfo
    from cleversync.sandbox.sandbox import Sandbox as Sandbox
    from cleversync.sandbox.sandbox import SchoolInfo as SchoolInfo
    from cleversync.sandbox.server import RunningServer as RunningServer

# Exports load on first use (PEP 562), so `cleversync --help` does not pay for the sandbox.
_EXPORTS = {
    "DistrictInfo": "cleversync.sandbox.sandbox",
    "Fault": "cleversync.sandbox.faults",
    "FaultKind": "cleversync.sandbox.faults",
    "RequestLog": "cleversync.sandbox.app",
    "RequestRecord": "cleversync.sandbox.app",
    "RunningServer": "cleversync.sandbox.server",
    "Sandbox": "cleversync.sandbox.sandbox",
    "SchoolInfo": "cleversync.sandbox.sandbox",
    "add_serve_arguments": "cleversync.sandbox.cli",
    "run_serve": "cleversync.sandbox.cli",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
