"""The dashboard's WSGI application: routing, the gate, CSRF, rendering, errors.

One ``Dashboard`` serves the pages under a mount point (``/admin`` on a laptop,
``/dashboard`` in the Functions app, whose host reserves ``/admin``). Every request passes
the gate first (``auth``): a refused one gets 401 or 403 and a page with no data. Every POST
carries a CSRF token bound to the user (``csrf``); without a valid one it is refused (403)
before anything is changed. Pages are Jinja2 templates with autoescaping; every text that
comes from an error passes through the composition root's Redactor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from cleversync.dashboard.auth import Gate, Identity, RefusedError
from cleversync.dashboard.csrf import Csrf
from cleversync.db.errors import database_error
from cleversync.errors import (
    CleverSyncError,
    ConfigurationError,
    DatabaseTransientError,
    DatabaseUnavailableError,
    NotFoundError,
    SecretStoreUnavailableError,
)
from cleversync.timeutil import iso, utcnow

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from cleversync.services import Services

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
MAX_FORM_BYTES = 64 * 1024


class Page:
    """What a handler hands back: a template and its values, or a redirect."""

    def __init__(
        self,
        template: str | None = None,
        status: int = 200,
        redirect: str | None = None,
        **values: Any,
    ) -> None:
        self.template = template
        self.status = status
        self.redirect = redirect
        self.values = values


class Context:
    """One request as a handler sees it."""

    def __init__(self, app: Dashboard, request: Request, identity: Identity) -> None:
        self.app = app
        self.request = request
        self.identity = identity
        self.services = app.services
        self.now = app.clock()

    def url(self, path: str = "", **query: Any) -> str:
        return self.app.url(path, **query)

    def redact(self, text: str) -> str:
        return self.services.redactor.redact(text)


Handler = Callable[..., Page]


class Dashboard:
    def __init__(
        self,
        services: Services,
        *,
        gate: Gate,
        csrf: Csrf,
        mount: str = "/admin",
        trigger: str = "http",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        from cleversync.dashboard import views

        self.services = services
        self.gate = gate
        self.csrf = csrf
        self.mount = "/" + mount.strip("/")
        self.trigger = trigger
        self.clock = clock
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(url=self.url, iso=iso)
        self.env.filters.update(views.FILTERS)
        # Stored texts were sanitized when written; cleaned again on the way out, with the
        # secrets this process knows now.
        self.env.filters["clean"] = lambda text: services.redactor.redact(text) if text else text
        m = self.mount
        self.handlers: dict[str, Handler] = {}
        rules = []
        for path, endpoint, handler, methods in views.routes():
            rules.append(Rule(m + path, endpoint=endpoint, methods=methods))
            self.handlers[endpoint] = handler
        rules.append(Rule(m + "/static/dashboard.css", endpoint="css", methods=["GET"]))
        self.url_map = Map(rules, strict_slashes=False, redirect_defaults=False)

    def url(self, path: str = "", **query: Any) -> str:
        values = {k: v for k, v in query.items() if v not in (None, "")}
        suffix = ("?" + urlencode(values)) if values else ""
        return f"{self.mount}{path or '/'}{suffix}"

    # --- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_form_memory_size = MAX_FORM_BYTES
        request.max_content_length = MAX_FORM_BYTES
        response = self.respond(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response(environ, start_response)

    def respond(self, request: Request) -> Response:
        try:
            identity = self.gate.identify(request)
        except RefusedError as refused:
            return self.refused(refused.status, refused.message, sign_in=refused.sign_in)
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return self.render_error(404, "No such page.", identity)
        except HTTPException as exc:
            response = exc.get_response(request.environ)
            return Response(exc.description or "", status=exc.code or 400, headers=response.headers)
        if endpoint == "css":
            return Response(
                (HERE / "static" / "dashboard.css").read_bytes(),
                mimetype="text/css",
                headers={"Cache-Control": "max-age=3600"},
            )
        handler = self.handlers[str(endpoint)]
        if request.method == "POST" and not self.csrf.valid(
            identity.name, request.form.get("csrf_token")
        ):
            return self.render_error(
                403,
                "This form has expired or did not come from this dashboard; nothing was "
                "changed. Go back, reload the page and try again.",
                identity,
            )
        ctx = Context(self, request, identity)
        try:
            page = handler(ctx, **args)
        except Exception as exc:
            return self.render_failure(exc, identity)
        if page.redirect is not None:
            return Response(status=303, headers={"Location": page.redirect})
        assert page.template is not None
        return self.render(page.template, identity, status=page.status, **page.values)

    # --- rendering ----------------------------------------------------------------------

    def render(
        self, template: str, identity: Identity, *, status: int = 200, **values: Any
    ) -> Response:
        html = self.env.get_template(template).render(
            identity=identity,
            csrf_token=self.csrf.token(identity.name),
            now=self.clock(),
            mount=self.mount,
            **values,
        )
        return Response(html, status=status, mimetype="text/html")

    def render_error(self, status: int, message: str, identity: Identity) -> Response:
        return self.render("error.html", identity, status=status, message=message, code=status)

    def refused(self, status: int, message: str, *, sign_in: bool = False) -> Response:
        login = f"/.auth/login/aad?{urlencode({'post_login_redirect_uri': self.mount + '/'})}"
        html = self.env.get_template("refused.html").render(
            message=message, code=status, mount=self.mount, login=login if sign_in else None
        )
        headers = {"WWW-Authenticate": 'Bearer realm="CleverSync"'} if status == 401 else {}
        return Response(html, status=status, mimetype="text/html", headers=headers)

    def render_failure(self, exc: Exception, identity: Identity) -> Response:
        """An error a handler did not turn into a page: its status and sanitized text."""
        exc = database_error(exc, "SessionDb") or exc
        redact = self.services.redactor.redact
        if isinstance(exc, NotFoundError):
            return self.render_error(404, redact(str(exc)), identity)
        if isinstance(exc, NotFound):
            return self.render_error(404, "No such page.", identity)
        if isinstance(
            exc, DatabaseTransientError | DatabaseUnavailableError | SecretStoreUnavailableError
        ):
            return self.render_error(503, redact(str(exc)), identity)
        if isinstance(exc, ConfigurationError | CleverSyncError):
            return self.render_error(500, redact(str(exc)), identity)
        logger.error("Dashboard request failed", exc_info=exc)
        return self.render_error(
            500,
            f"Unexpected {type(exc).__name__}: the details are in the log.",
            identity,
        )
