"""The pages of ``evalrows serve``: an ASGI app the command line mounts next to the API (every
path outside ``/v1``), over the same store and with the same token.

The one module of ``web`` that imports Starlette. With a token, a page takes the bearer header
the API takes or the session cookie ``POST /login`` sets (``auth``); without either, a GET goes
to the login form. ``POST /logout`` ends every session (a restart does too). Only the login
form, the logout button and the two static files are open. Every response carries the
security headers (``SECURITY_HEADERS``): the pages run no inline script or style, and no other
site may frame them. Store reads and rendering run on worker threads, as the API's store calls
do: SQLite blocks.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import StoreError, UnknownExperimentError
from ..store.base import Store
from . import auth, render, views
from .render import Renderer, ServeLinks

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    # Not no-referrer: under it, browsers send "Origin: null" with the login form, and over
    # plain http to a name that is not loopback nothing else says where the form came from.
    # No other site is sent anything either way.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
#: The files under ``/static/``, and nothing else from the disk.
STATIC_TYPES = {
    "evalrows.css": "text/css; charset=utf-8",
    "evalrows.js": "text/javascript; charset=utf-8",
}
#: What a browser may fetch without logging in: the login form and what it looks with.
OPEN_PATHS = frozenset({"/login", "/logout", *(f"/static/{name}" for name in STATIC_TYPES)})
FORM_TYPE = "application/x-www-form-urlencoded"

Clock = Callable[[], float]

SDK_PROJECT_PATH = "/app/{org}/p/{project}"
# An experiment's name may hold a "/" (sent as %2F, which arrives decoded).
SDK_EXPERIMENT_PATH = "/app/{org}/p/{project}/experiments/{name:path}"


def create_pages(store: Store, token: str | None, *, clock: Clock = time.time) -> ASGIApp:
    """The web view over ``store``; ``token`` None or empty: open to anyone who reaches it,
    as the API is then."""
    pages = _Pages(store, token or None, clock)
    routes = [
        Route("/", pages.experiments, methods=["GET"]),
        Route("/experiments/{experiment_id}", pages.experiment, methods=["GET"]),
        Route("/experiments/{experiment_id}/compare", pages.baseline_compare, methods=["GET"]),
        # A row id's "/" arrives decoded: the rest of the path is the row id.
        Route("/experiments/{experiment_id}/rows/{row_id:path}", pages.row, methods=["GET"]),
        Route("/compare", pages.compare, methods=["GET"]),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/static/{name}", pages.static, methods=["GET"]),
        # The links the Braintrust SDK prints ("See results at ..."): it builds them itself,
        # from the app URL, as Braintrust's app names an experiment.
        Route(SDK_PROJECT_PATH, pages.sdk_project, methods=["GET"]),
        Route(SDK_EXPERIMENT_PATH, pages.sdk_experiment, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: pages.http_error,
        views.BadQuery: pages.status(400),
        views.PageNotFound: pages.status(404),
        # Its message may name the store's file: not for a page anyone may see.
        UnknownExperimentError: pages.status(404, "There is no such experiment in this store."),
        # Locked or unreadable: it may pass.
        StoreError: pages.status(503),
        Exception: pages.internal_error,
    }
    app: ASGIApp = Starlette(routes=routes, exception_handlers=handlers)
    if pages.token is not None:
        app = _Guard(app, pages)
    return _SecurityHeaders(app)


class _Pages:
    def __init__(self, store: Store, token: str | None, clock: Clock) -> None:
        self.store = store
        self.token = token
        self.clock = clock
        # Drawn again at each logout: every session cookie made before is void.
        self.session_key = auth.new_session_key()
        self.render = Renderer(ServeLinks())
        # For a browser logged in with the cookie: the same pages with the logout button.
        self.render_in_session = Renderer(ServeLinks(), logout=True)

    def signed_in(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        headers = Headers(scope=scope)
        if auth.bearer_matches(headers.get("authorization"), self.token):
            return True
        return self.in_session(scope)

    def in_session(self, scope: Scope) -> bool:
        """Whether the request carries a valid session cookie (one a logout can end)."""
        if self.token is None:
            return False
        cookie = auth.cookie_of(Headers(scope=scope).get("cookie"), _cookie_name(scope))
        return auth.valid_session(cookie, self.session_key, self.clock())

    def renderer(self, scope: Scope | None) -> Renderer:
        if scope is not None and self.in_session(scope):
            return self.render_in_session
        return self.render

    def page(self, html: str, status: int = 200) -> Response:
        return HTMLResponse(html, status)

    def error_page(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        scope: Scope | None = None,
    ) -> Response:
        html = self.renderer(scope).error(status, message)
        return HTMLResponse(html, status, dict(headers or {}))

    # -- the pages ------------------------------------------------------------------------

    async def experiments(self, request: Request) -> Response:
        renderer = self.renderer(request.scope)
        return self.page(await run_in_threadpool(self._experiments, renderer))

    def _experiments(self, renderer: Renderer) -> str:
        return renderer.experiments(views.experiment_cards(self.store))

    async def experiment(self, request: Request) -> Response:
        experiment_id = request.path_params["experiment_id"]
        params: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        renderer = self.renderer(request.scope)
        return self.page(await run_in_threadpool(self._experiment, renderer, experiment_id, params))

    def _experiment(
        self, renderer: Renderer, experiment_id: str, params: dict[str, list[str]]
    ) -> str:
        query = views.parse_query(params)
        return renderer.experiment(views.experiment_page(self.store, experiment_id, query))

    async def row(self, request: Request) -> Response:
        experiment_id = request.path_params["experiment_id"]
        row_id = render.row_id_of(
            request.path_params["row_id"], request.query_params.get(render.DOT_ROW_PARAM)
        )
        renderer = self.renderer(request.scope)
        return self.page(await run_in_threadpool(self._row, renderer, experiment_id, row_id))

    def _row(self, renderer: Renderer, experiment_id: str, row_id: str) -> str:
        return renderer.row(views.row_page(self.store, experiment_id, row_id))

    async def baseline_compare(self, request: Request) -> Response:
        experiment_id = request.path_params["experiment_id"]
        number = _compare_page_number(request)
        renderer = self.renderer(request.scope)
        return self.page(
            await run_in_threadpool(self._baseline_compare, renderer, experiment_id, number)
        )

    def _baseline_compare(self, renderer: Renderer, experiment_id: str, number: int) -> str:
        experiment = views.find_experiment(self.store, experiment_id)
        baseline = views.baseline_of(self.store, experiment_id)
        if baseline is None:
            raise views.PageNotFound(
                f"experiment {experiment.name!r} has no baseline (its last attempt ran without "
                "--eval-baseline): compare two experiments at /compare?a=ID&b=ID"
            )
        page = views.compare_page(self.store, baseline.id, experiment_id)
        return renderer.compare(page, page_number=number)

    async def compare(self, request: Request) -> Response:
        sides = []
        for name in ("a", "b"):
            given = request.query_params.getlist(name)
            if len(given) != 1 or not given[0]:
                raise views.BadQuery(
                    f"{name}: give one experiment id, as in /compare?a=BASELINE_ID&b=ID"
                )
            sides.append(given[0])
        number = _compare_page_number(request)
        renderer = self.renderer(request.scope)
        return self.page(
            await run_in_threadpool(self._compare, renderer, sides[0], sides[1], number)
        )

    def _compare(self, renderer: Renderer, a_id: str, b_id: str, number: int) -> str:
        page = views.compare_page(self.store, a_id, b_id)
        return renderer.compare(page, page_number=number)

    async def sdk_project(self, request: Request) -> Response:
        return RedirectResponse("/", 303)

    async def sdk_experiment(self, request: Request) -> Response:
        """To the experiment's page, found by project and name; a 404 page without one."""
        project = request.path_params["project"]
        name = request.path_params["name"]
        experiment = await run_in_threadpool(self.store.get_experiment, name, project)
        return RedirectResponse(f"/experiments/{quote(experiment.id, safe='')}", 303)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_TYPES:
            raise HTTPException(404, f"there is no static file {name!r}")
        return Response(_static_bytes(name), media_type=STATIC_TYPES[name])

    # -- logging in and out ---------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        target = auth.safe_next(request.query_params.get("next"))
        if self.token is None or self.signed_in(request.scope):
            return RedirectResponse(target, 303)
        return self.page(self.render.login(next=target, error=None))

    async def login(self, request: Request) -> Response:
        if self.token is None:
            return RedirectResponse("/", 303)
        refused = self.cross_origin(request)
        if refused is not None:
            return refused
        declared = request.headers.get("content-type", "")
        if declared.partition(";")[0].strip().lower() != FORM_TYPE:
            return self.error_page(415, f"send the login form as {FORM_TYPE}")
        form = await self.small_form(request)
        if isinstance(form, Response):
            return form
        target = auth.safe_next(_first(form, "next"))
        if not auth.token_matches(_first(form, "token") or "", self.token):
            html = self.render.login(next=target, error="That is not the server's token.")
            return self.page(html, 401)
        response = RedirectResponse(target, 303)
        value = auth.session_value(self.session_key, self.clock())
        response.headers.append(
            "set-cookie",
            auth.set_cookie(_cookie_name(request.scope), value, secure=_https(request.scope)),
        )
        return response

    async def logout(self, request: Request) -> Response:
        refused = self.cross_origin(request)
        if refused is not None:
            return refused
        # Not only this browser's cookie: a copy of it, and every other session, end here.
        # Only a session may end them all: /logout needs no token, so without one anybody
        # who can reach the server could log everyone out.
        if self.in_session(request.scope):
            self.session_key = auth.new_session_key()
        response = RedirectResponse("/login" if self.token is not None else "/", 303)
        response.headers.append(
            "set-cookie",
            auth.clear_cookie(_cookie_name(request.scope), secure=_https(request.scope)),
        )
        return response

    def cross_origin(self, request: Request) -> Response | None:
        """A 403 for a form post another site's page made (login CSRF, a forced logout)."""
        headers = request.headers
        fetch_site = headers.get("sec-fetch-site")
        if auth.same_origin(
            headers.get("origin"), headers.get("referer"), headers.get("host"), fetch_site
        ):
            return None
        return self.error_page(403, "This form was sent from another site's page: refused.")

    async def small_form(self, request: Request) -> dict[str, list[str]] | Response:
        """The login form's fields; a 413 or 400 page past ``auth.MAX_FORM_BYTES`` or for a
        body that is not a form."""
        too_large = f"The form is over {auth.MAX_FORM_BYTES} bytes: a login form is a token."
        length = request.headers.get("content-length")
        if length is not None and (not (length.isascii() and length.isdigit()) or len(length) > 18):
            return self.error_page(400, "Content-Length is not a number.")
        if length is not None and int(length) > auth.MAX_FORM_BYTES:
            return self.error_page(413, too_large)
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > auth.MAX_FORM_BYTES:
                    return self.error_page(413, too_large)
        except ClientDisconnect:
            return self.error_page(400, "The form did not arrive whole.")
        try:
            return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
        except ValueError:
            return self.error_page(400, "The body is not a login form.")

    # -- errors -----------------------------------------------------------------------------

    def status(
        self, status: int, message: str | None = None
    ) -> Callable[[Request, Exception], Awaitable[Response]]:
        """A handler answering an exception with a page: its message, or ``message``."""

        async def handler(request: Request, exc: Exception) -> Response:
            return self.error_page(status, message or str(exc), scope=request.scope)

        return handler

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = "There is no page at this address."
        elif exc.status_code == 405:
            message = f"{request.method} is not how this page is asked for: use GET."
        else:
            message = exc.detail
        return self.error_page(exc.status_code, message, exc.headers, scope=request.scope)

    async def internal_error(self, request: Request, exc: Exception) -> Response:
        # A bug of ours: said plainly here, with its traceback in the server's log.
        message = "The server failed to make this page; its log says why."
        return self.error_page(500, message, scope=request.scope)


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _https(scope: Scope) -> bool:
    # uvicorn sets the scheme from X-Forwarded-Proto for a proxy on loopback.
    return bool(scope.get("scheme") == "https")


def _cookie_name(scope: Scope) -> str:
    """The session cookie of the port the server is bound to (``auth.cookie_name``)."""
    server = scope.get("server")
    port = server[1] if server else None
    return auth.cookie_name(port if isinstance(port, int) else None, secure=_https(scope))


@cache
def _static_bytes(name: str) -> bytes:
    return (resources.files("pytest_evalrows.web") / "static" / name).read_bytes()


class _Guard:
    """With a token: a request without it (bearer header or session cookie) reaches only the
    open paths; a GET elsewhere goes to the login form, which sends it back after."""

    def __init__(self, app: ASGIApp, pages: _Pages) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.pages.signed_in(scope):
            await self.app(scope, receive, send)
            return
        response: Response
        if scope["method"] in ("GET", "HEAD"):
            # The path as sent (still percent-encoded), so the login sends back to it exactly.
            raw = scope.get("raw_path") or scope["path"].encode()
            query = scope.get("query_string") or b""
            target = raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
            # Too long a deep link would not fit in the login form: the login goes to / then.
            target = auth.safe_next(target)
            response = RedirectResponse("/login?" + urlencode({"next": target}), 303)
        else:
            response = self.pages.error_page(401, "Log in first: this page needs the token.")
        await response(scope, receive, send)


class _SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response of the pages, redirects and errors too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _compare_page_number(request: Request) -> int:
    """The compare page's ``page`` (the last one given, as the rows page reads it)."""
    given = request.query_params.getlist("page")
    return render.page_number(given[-1] if given else None)
