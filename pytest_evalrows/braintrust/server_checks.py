"""What every request to ``evalrows serve`` goes through before the API reads it: its ``Host``
must name this server, a body must be declared as JSON and not be declared too large, and with
a token it must carry it. And the JSON answers the server gives, refusals included.

A request outside ``/v1`` goes, once its Host is checked, to the pages the server was given
(the web view), which check the rest themselves: they take a login form and a cookie, which
the API never does."""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic_core
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

# The HTTP store sends at most 100 events and about 6 MB (counted in characters) a request:
# 32 MiB holds such a batch even when every character takes 4 bytes in UTF-8. An insert costs
# a few times its size in memory while it is parsed and written, so the limit is what bounds
# the server's memory; a bigger batch gets a 413, on which the HTTP store splits it.
MAX_BODY_BYTES = 32 * 1024 * 1024
TOO_LARGE = f"request body over {MAX_BODY_BYTES} bytes (32 MiB): split the batch"
# Every other request body is a small object: a project, an experiment, a fetch's query.
MAX_SMALL_BODY_BYTES = 1024 * 1024

#: What a server created without ``allowed_hosts`` answers to: loopback, on any port.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def json_response(content: Any, status: int = 200) -> Response:
    # pydantic_core writes large fetch pages several times faster than json.dumps.
    return Response(pydantic_core.to_json(content), status, media_type="application/json")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    response = json_response({"error": message}, status)
    response.headers.update(headers or {})
    return response


# A Host header (or an --allowed-host): a DNS name or IPv4 address, or an IPv6 address in
# brackets, and an optional port.
_HOST = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?"
)


def parse_host(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port`` as a lowercase name (an IPv6
    address compressed, in brackets) and the port if given; raises ``ValueError``."""
    match = _HOST.fullmatch(text)
    port = int(match["port"]) if match and match["port"] else None
    if match is None or (port is not None and not 0 < port <= 65535):
        raise ValueError(f"not a host or host:port: {_clip(text)}")
    if match["ipv6"]:
        try:
            return f"[{ipaddress.IPv6Address(match['ipv6']).compressed}]", port
        except ValueError:
            raise ValueError(f"not an IPv6 address in {_clip(text)}") from None
    return match["name"].lower(), port


def _clip(text: str) -> str:
    return repr(text) if len(text) <= 100 else f"{text[:100]!r}..."


def bound_hosts(host: str, port: int) -> list[str]:
    """The names a request to a server bound to ``host`` and ``port`` gives as its Host:
    every loopback name with the port when bound to loopback, the bound address (on any
    port: a proxy may forward from another) otherwise. A wildcard address (``0.0.0.0``,
    ``::``) is no request's Host: only ``--allowed-host`` names such a server."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    literal = f"[{host}]" if address is not None and address.version == 6 else host
    if host.lower() == "localhost" or (address is not None and address.is_loopback):
        names = {*LOOPBACK_HOSTS, literal if host.lower() != "localhost" else "localhost"}
        return [f"{name}:{port}" for name in sorted(names)]
    if address is not None and address.is_unspecified:
        return []
    return [literal]


class HostRules:
    """Which Host headers a server answers to. Not Starlette's TrustedHostMiddleware: it
    ignores the port (by design), read ``[::1]:8000`` as ``[`` before Starlette 1.x (the extra
    allows 0.37), and its plain-text answer names nothing."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.any = "*" in allowed
        self.allowed = {parse_host(text) for text in allowed if text != "*"}

    def refusal(self, host: str | None) -> str | None:
        """Why a request with this Host header is refused; ``None`` if it is not."""
        if self.any:
            return None
        if host is None:
            return "the request has no Host header: send the server's address as Host"
        try:
            name, port = parse_host(host)
        except ValueError:
            return f"the Host header is not a host or host:port: {_clip(host)}"
        # No port in the header means the scheme's default.
        if (name, None) in self.allowed or (name, port or 80) in self.allowed:
            return None
        given = host if len(host) <= 100 else "HOST"
        return (
            f"Host {_clip(host)} is not a name of this server: if it is, start evalrows serve "
            f"with --allowed-host {given}"
        )


#: What a refusal of a request for the pages carries, as the pages' own answers do (a JSON
#: answer needs no script, style or frame at all): not sniffed as HTML, not cached, not framed.
PAGE_REFUSAL_HEADERS = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

#: Where the API lives, with the Braintrust SDK's paths outside it (``server_sdk``); every
#: other path is the pages', when there are pages.
API_PREFIX = "/v1"
LOGS3_PATH = "/logs3"
SDK_PATHS = frozenset(
    {"/api/apikey/login", "/version", LOGS3_PATH, "/btql", "/api/base_experiment/get_id"}
)


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/") or path in SDK_PATHS


class RequestChecks:
    """Refuses, before anything reads it, a request for another Host (400); then, for the
    API, a body not declared as JSON (415; but the SDK's ``/logs3`` with an Authorization
    header needs no Content-Type) and a Content-Length over the limit (413).
    Requests outside ``/v1`` go to ``pages`` when given."""

    def __init__(self, app: ASGIApp, hosts: HostRules, pages: ASGIApp | None = None) -> None:
        self.app = app
        self.hosts = hosts
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            for_pages = self.pages is not None and not is_api_path(scope["path"])
            host_refusal = self.hosts.refusal(headers.get("host"))
            if host_refusal is not None:
                extra = PAGE_REFUSAL_HEADERS if for_pages else None
                await error_response(400, host_refusal, extra)(scope, receive, send)
                return
            if self.pages is not None and for_pages:
                await self.pages(scope, receive, send)
                return
            refused = self.body_refusal(headers, scope["path"])
            if refused is not None:
                await error_response(*refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def body_refusal(self, headers: Headers, path: str) -> tuple[int, str] | None:
        length = headers.get("content-length")
        if length in (None, "0") and "transfer-encoding" not in headers:
            return None  # no body
        declared = headers.get("content-type")
        # The Braintrust SDK sends its rows (`/logs3`) with no Content-Type at all. A page can
        # send a body without one too, but not with an Authorization header (that takes a
        # CORS preflight, which this server never grants): with one, there it is JSON.
        if declared is None and path == LOGS3_PATH and "authorization" in headers:
            declared = "application/json"
        if (declared or "").partition(";")[0].strip().lower() != "application/json":
            given = f"not {declared[:100]!r}" if declared else "there is no Content-Type"
            return 415, f"send the body as JSON, with Content-Type: application/json ({given})"
        if length is not None and not (length.isascii() and length.isdigit()):
            return 400, f"Content-Length is not a number: {_clip(length)}"
        if length is not None and (len(length) > 18 or int(length) > MAX_BODY_BYTES):
            return 413, TOO_LARGE
        return None


class BearerAuth:
    """Every request must carry ``Authorization: Bearer <token>``; the token is never echoed
    or logged."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = Headers(scope=scope).get("authorization")
            if given is None:
                message = "missing token: send 'Authorization: Bearer <token>'"
            elif not hmac.compare_digest(given.encode(), self.expected):
                message = "wrong token"
            else:
                message = ""
            if message:
                response = error_response(401, message, {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, counted as it arrives: reading stops with a 413 past ``limit``, so a chunked
    body (which declares no length) cannot fill the memory either."""
    # Bytes, not a bytearray: the JSON parser copies a bytearray before reading it.
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                if limit == MAX_BODY_BYTES:
                    raise HTTPException(413, TOO_LARGE)
                raise HTTPException(413, f"request body over {limit} bytes: send a small object")
            chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPException(400, "the client went away before the body was complete") from None
    return b"".join(chunks)
