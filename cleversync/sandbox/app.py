"""The sandbox's WSGI app: faults, OAuth token endpoints, rate limit and auth around the API."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cleversync.sandbox.auth import TokenRegistry, basic_credentials
from cleversync.sandbox.control import ControlApi, is_control_path
from cleversync.sandbox.faults import UPFRONT_KINDS, Fault, FaultKind, FaultSet
from cleversync.sandbox.messages import (
    ApiError,
    NoRouteError,
    Request,
    Response,
    not_found_page,
    oauth_error,
    reason,
)
from cleversync.sandbox.ratelimit import RateLimiter
from cleversync.sandbox.routes import DataApi

logger = logging.getLogger(__name__)

TEXT_TYPE = "text/plain; charset=utf-8"

# Set in the environ by the sandbox's own socket server, so a "drop" fault knows whether
# there is a connection to cut or whether it runs in-process (httpx.WSGITransport).
SOCKET_ENVIRON_KEY = "cleversync.sandbox.socket"

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, for assertions; ``token`` is the bearer token presented."""

    method: str
    target: str  # path and query
    status: int
    token: str | None
    client_id: str | None  # from HTTP Basic on /oauth/tokens
    faults: tuple[str, ...] = ()


class RequestLog:
    """The most recent requests (bounded), oldest first."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __getitem__(self, index: int) -> RequestRecord:
        return self.snapshot()[index]


class SandboxApp:
    """A WSGI callable; the same object serves a real socket and ``httpx.WSGITransport``."""

    def __init__(
        self,
        *,
        api: DataApi,
        tokens: TokenRegistry,
        limiter: RateLimiter,
        faults: FaultSet,
        log: RequestLog,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        control: ControlApi | None = None,
    ) -> None:
        self._control = control
        self._api = api
        self._tokens = tokens
        self._limiter = limiter
        self._faults = faults
        self._log = log
        self._clock = clock
        self._sleep = sleep

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = _request_from(environ)
        if self._control is not None and is_control_path(request.path):
            return self._controlled(request, environ, start_response)
        fired = self._faults.take(request.method, request.path, request.query, UPFRONT_KINDS)
        try:
            response = self._respond(request, fired)
        except Exception:  # a sandbox bug must not look like a dropped connection
            logger.exception("sandbox failed on %s %s", request.method, request.path)
            response = Response(500, {"message": "sandbox internal error"})
        body = response.encoded()
        if any(f.kind is FaultKind.MALFORMED_JSON for f in fired):
            response.status = 200
            body = body[: max(1, len(body) // 2)] or b"{"
        self._log.append(
            RequestRecord(
                request.method,
                request.target,
                response.status,
                request.bearer_token(),
                _basic_client_id(request),
                tuple(str(f.kind) for f in fired),
            )
        )
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(body))),
            *response.headers,
        ]
        drop = next((f for f in fired if f.kind is FaultKind.DROP), None)
        if drop is not None:
            return _dropped(environ, start_response, response.status_line, headers, body, drop)
        start_response(response.status_line, headers)
        trickle = next((f for f in fired if f.kind is FaultKind.TRICKLE), None)
        if trickle is not None:
            return self._trickled(body, trickle.seconds)
        return [body]

    def _controlled(
        self, request: Request, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """The control API: not Clever's, so no faults, rate limit, token or request log."""
        assert self._control is not None
        try:
            response = self._control.handle(request, environ.get("REMOTE_ADDR") or "")
        except Exception:
            logger.exception("sandbox control API failed on %s %s", request.method, request.path)
            response = Response(500, {"message": "sandbox internal error"})
        body = response.encoded()
        start_response(
            response.status_line,
            [("Content-Type", response.content_type), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _trickled(self, body: bytes, seconds: float) -> Iterator[bytes]:
        """The body one byte at a time, ``seconds`` apart: each byte keeps a per-read
        timeout from firing, so only a deadline on the whole answer ends the wait."""
        for index in range(len(body)):
            if index:
                self._sleep(seconds)
            yield body[index : index + 1]

    def _respond(self, request: Request, fired: list[Fault]) -> Response:
        for fault in fired:
            if fault.kind is FaultKind.DELAY:
                self._sleep(fault.seconds)
        for fault in fired:
            if fault.kind is FaultKind.STATUS:
                return _status_fault(fault)
            if fault.kind is FaultKind.RATE_LIMIT:
                state = self._limiter.exhausted(request.bearer_token() or "")
                return _too_many(state.headers())
        if request.path == "/oauth/tokens" and request.method in ("GET", "POST"):
            response = (
                self._list_tokens(request)
                if request.method == "GET"
                else self._issue_token(request)
            )
            response.headers.append(("Cache-Control", "no-store"))
        elif request.path.startswith("/v3.0/"):
            response = self._data(request)
        else:
            response = not_found_page(request.method, request.path)
        extra = [f for f in fired if f.kind is FaultKind.EXTRA_FIELDS]
        if extra and response.status == 200:
            response.payload = _with_extra_fields(response.payload, extra)
        if response.status == 200 and self._faults:
            response.payload = self._with_bad_values(request, response.payload)
        return response

    def _with_bad_values(self, request: Request, payload: Any) -> Any:
        """Bad values, counted only on answers that hold the record they are for."""
        ids = {r.get("id") for r in _records(payload)}
        if not ids:
            return payload
        fired = self._faults.take(
            request.method,
            request.path,
            request.query,
            (FaultKind.BAD_VALUE,),
            applies=lambda fault: fault.record_id is None or fault.record_id in ids,
        )
        for fault in fired:
            payload = _map_records(payload, functools.partial(_bad_value, fault=fault))
        return payload

    def _data(self, request: Request) -> Response:
        token = request.bearer_token()
        rate = self._limiter.hit(token or "")
        if not rate.allowed:
            response = _too_many([])
        else:
            district_id = self._tokens.district_for(token, self._clock()) if token else None
            if district_id is None:
                message = "missing bearer token" if token is None else "invalid or expired token"
                response = ApiError(401, message).response()
            else:
                try:
                    response = self._api.handle(request, district_id)
                except ApiError as error:
                    response = error.response()
                except NoRouteError:
                    response = not_found_page(request.method, request.path)
        response.headers.extend(rate.headers())
        return response

    def _list_tokens(self, request: Request) -> Response:
        app = self._tokens.app_from_basic(request.headers.get("authorization"))
        if app is None:
            return oauth_error(401, "invalid_client", "unknown client or wrong secret")
        owner_type = request.param("owner_type")
        if owner_type not in (None, "district"):
            return oauth_error(400, "invalid_request", "owner_type must be district")
        district = request.param("district")
        tokens = []
        if district is None or district == app.district_id:
            tokens.append(self._tokens.district_token(app.district_id).to_json())
        # The recorded self keeps owner_type first whatever order the request used.
        params = [("owner_type", "district"), *([("district", district)] if district else [])]
        self_uri = f"/oauth/tokens?{urlencode(params)}"
        return Response(200, {"data": tokens, "links": [{"rel": "self", "uri": self_uri}]})

    def _issue_token(self, request: Request) -> Response:
        form = _form(request)
        app = self._tokens.app_from_basic(request.headers.get("authorization"))
        if app is None and "client_id" in form:  # RFC 6749 also allows them in the body
            app = self._tokens.app_from_credentials(
                form["client_id"], form.get("client_secret", "")
            )
        grant = form.get("grant_type")
        if grant is None:
            return oauth_error(400, "invalid_request", "grant_type is required")
        if grant != "client_credentials":
            return oauth_error(
                400, "unsupported_grant_type", f"grant_type {grant} is not supported"
            )
        if app is None:
            return oauth_error(401, "invalid_client", "unknown client or wrong secret")
        token, expires_in = self._tokens.issue(app, self._clock())
        return Response(
            200, {"access_token": token, "token_type": "bearer", "expires_in": expires_in}
        )


def _request_from(environ: dict[str, Any]) -> Request:
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    body = b""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > 0:
        body = environ["wsgi.input"].read(int(length))
    path = environ.get("PATH_INFO") or "/"
    with contextlib.suppress(UnicodeError):  # PEP 3333 hands the path over as latin-1
        path = path.encode("latin-1").decode("utf-8")
    return Request.build(
        environ.get("REQUEST_METHOD", "GET"), path, environ.get("QUERY_STRING", ""), headers, body
    )


def _basic_client_id(request: Request) -> str | None:
    if not request.path.startswith("/oauth/"):
        return None
    credentials = basic_credentials(request.headers.get("authorization"))
    return credentials[0] if credentials else None


def _form(request: Request) -> dict[str, str]:
    text = request.body.decode("utf-8", "replace")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = json.loads(text or "{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
    return dict(parse_qsl(text, keep_blank_values=True))


def _too_many(headers: list[tuple[str, str]]) -> Response:
    # Clever's clients treat a 429 body as opaque; a plain-text one keeps them honest.
    return Response(429, body=b"Too Many Requests", content_type=TEXT_TYPE, headers=headers)


def _status_fault(fault: Fault) -> Response:
    headers = [
        (name, value) for name, value in fault.headers.items() if name.lower() != "content-type"
    ]
    if fault.body is None:
        response = Response(fault.status, {"message": reason(fault.status)}, headers=headers)
    else:
        body = fault.body.encode() if isinstance(fault.body, str) else fault.body
        response = Response(fault.status, body=body, content_type=TEXT_TYPE, headers=headers)
    for name, value in fault.headers.items():
        if name.lower() == "content-type":
            response.content_type = value
    return response


def _with_extra_fields(payload: Any, faults: list[Fault]) -> Any:
    fields: dict[str, Any] = {}
    for fault in faults:
        fields.update(fault.fields)
    if not isinstance(payload, dict) or "data" not in payload:
        return payload
    data = payload["data"]
    if isinstance(data, list):  # new dicts: the stored objects must stay untouched
        data = [
            {**item, "data": {**item["data"], **fields}} if "data" in item else {**item, **fields}
            for item in data
        ]
    elif isinstance(data, dict):
        data = {**data, **fields}
    return {**payload, "data": data}


def _records(payload: Any) -> list[dict[str, Any]]:
    """The records an answer holds: list items, a single object, or events' objects."""
    found: list[dict[str, Any]] = []

    def keep(record: dict[str, Any]) -> dict[str, Any]:
        found.append(record)
        return record

    _map_records(payload, keep)
    return found


def _map_records(payload: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """The payload with ``change`` applied to each record, in new dicts (the stored objects
    must stay untouched)."""

    def one(obj: Any) -> Any:
        if not isinstance(obj, dict):
            return obj
        inner = obj.get("data")
        if isinstance(inner, dict) and isinstance(inner.get("object"), dict):  # an event
            return {**obj, "data": {**inner, "object": change(inner["object"])}}
        return change(obj) if "id" in obj else obj

    if not isinstance(payload, dict) or "data" not in payload:
        return payload
    data = payload["data"]
    if isinstance(data, list):
        data = [
            {**item, "data": one(item["data"])}
            if isinstance(item, dict) and "data" in item
            else item
            for item in data
        ]
    else:
        data = one(data)
    return {**payload, "data": data}


def _bad_value(record: dict[str, Any], fault: Fault) -> dict[str, Any]:
    if fault.record_id is not None and record.get("id") != fault.record_id:
        return record
    *parents, name = fault.record_field.split(".")

    def put(obj: object, path: list[str]) -> dict[str, Any]:
        obj = dict(obj) if isinstance(obj, dict) else {}
        if path:
            obj[path[0]] = put(obj.get(path[0]), path[1:])
        else:
            obj[name] = fault.value
        return obj

    return put(record, parents)


def _dropped(
    environ: dict[str, Any],
    start_response: StartResponse,
    status: str,
    headers: list[tuple[str, str]],
    body: bytes,
    fault: Fault,
) -> Iterable[bytes]:
    if not environ.get(SOCKET_ENVIRON_KEY):
        raise (fault.error or _reset)()
    if not fault.partial:
        raise _reset()  # wsgiref treats this as the peer going away: it sends nothing more
    start_response(status, headers)  # Content-Length promises the whole body...
    return _cut_short(body[: len(body) // 2])


def _cut_short(part: bytes) -> Iterator[bytes]:
    yield part
    raise _reset()  # ...and the connection closes before it is all sent


def _reset() -> ConnectionResetError:
    return ConnectionResetError("connection dropped by a sandbox fault")
