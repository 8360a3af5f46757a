"""Who may see the pages of ``evalrows serve`` when it has a token: the session cookie that
``POST /login`` sets, the bearer header, and the checks around the login form (where it may
send the browser next, which pages may post it).

Pure: no web framework. The cookie is ``EXPIRY.MAC``: an expiry in Unix seconds and the
HMAC-SHA256 of it, in hex, keyed with a session key: random, drawn when the server starts and
drawn again at every logout. It never holds the token, only proves that the server let its
bearer in. So a logout voids every session cookie the server gave (a copied one too; and
everyone's, as the token is one for all), and so does a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote, urlsplit

#: The session cookie's name, before the port (``cookie_name``).
COOKIE = "evalrows_session"
#: Over https: a cookie only its own host may set (no Domain, Path=/, Secure), so no
#: sibling subdomain can plant one.
HOST_PREFIX = "__Host-"
#: How long a login lasts, in seconds: a working day.
LIFETIME = 12 * 60 * 60
#: A login form's body is a token and a path: anything bigger is not one.
MAX_FORM_BYTES = 4 * 1024
#: The longest ``next`` (form-encoded) the login keeps; a longer one, say a deep link with a
#: long search, is dropped for ``/``: with the token it would not fit in the form.
MAX_NEXT_BYTES = 2 * 1024


def new_session_key() -> bytes:
    """A key for session cookies: a new one voids every cookie made with the one before."""
    return secrets.token_bytes(32)


def _mac(key: bytes, expiry: str) -> str:
    return hmac.new(key, expiry.encode(), hashlib.sha256).hexdigest()


def session_value(key: bytes, now: float) -> str:
    """A cookie value good for ``LIFETIME`` seconds from ``now``."""
    expiry = str(int(now) + LIFETIME)
    return f"{expiry}.{_mac(key, expiry)}"


def valid_session(value: str | None, key: bytes, now: float) -> bool:
    """Whether ``value`` is a cookie made with this key and it has not expired."""
    if not value:
        return False
    expiry, dot, mac = value.partition(".")
    if not dot:
        return False
    # The MAC first, whatever the expiry says: the time taken tells nothing about either, and
    # an expiry is read only once it is known to be one this server wrote (digits).
    matches = hmac.compare_digest(mac.encode(), _mac(key, expiry).encode())
    return matches and int(expiry) > now


def token_matches(given: str, token: str) -> bool:
    """A token typed into the login form, compared in constant time."""
    return hmac.compare_digest(given.encode(), token.encode())


def bearer_matches(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer TOKEN``, as the API takes it."""
    if authorization is None:
        return False
    return hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode())


def cookie_name(port: int | None, *, secure: bool) -> str:
    """The session cookie's name for a server on ``port``: ``evalrows_session_PORT``.

    Browsers keep cookies by host, not port: with one name, two servers on one host would
    overwrite each other's session (each logging the other out). The name does not keep the
    cookie from another port's service (nothing does): the cookie proves a login to this
    server alone."""
    name = f"{COOKIE}_{port}" if port else COOKIE
    return HOST_PREFIX + name if secure else name


def cookie_of(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header (the first, if sent twice)."""
    for part in (header or "").split(";"):
        key, equals, value = part.strip().partition("=")
        if equals and key == name:
            return value.strip().strip('"')
    return None


def set_cookie(name: str, value: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` header of a login: script cannot read it, no other site's request
    carries it (so no other site can make a page do anything in the user's name)."""
    return _cookie(name, value, LIFETIME, secure)


def clear_cookie(name: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` header of a logout."""
    return _cookie(name, "", 0, secure)


def _cookie(name: str, value: str, max_age: int, secure: bool) -> str:
    header = f"{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict"
    return header + "; Secure" if secure else header


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this server, else ``/``.

    Not ``//host`` or ``/\\host`` (browsers read both as another host), nothing with control
    characters (browsers drop tabs and newlines, which would turn ``/\\t/host`` into
    ``//host``), and nothing outside printable ASCII: it goes into a ``Location`` header.
    Nor one past ``MAX_NEXT_BYTES``: the login form could not send it back.
    """
    if not target or not target.startswith("/") or target[1:2] in ("/", "\\"):
        return "/"
    if "\\" in target or not all("!" <= char <= "~" for char in target):
        return "/"
    if len(quote(target, safe="")) > MAX_NEXT_BYTES:
        return "/"
    return target


def same_origin(
    origin: str | None, referer: str | None, host: str | None, fetch_site: str | None = None
) -> bool:
    """Whether a form post came from a page of this server (``host``, its ``Host`` header).

    ``fetch_site`` (``Sec-Fetch-Site``) is the browser's own word, which no page can set; it
    is sent to https and loopback servers only, so ``Origin`` (or else ``Referer``) must name
    the host too when given. Chromium sends ``Origin: null`` from a page whose referrer
    policy is ``no-referrer``: taken as no Origin when the browser says same-origin. A request
    with none of them came from no browser page (browsers send Origin with every form post),
    so it is let through.

    The scheme is not compared: behind a proxy that ends TLS, the page is https and this
    server sees http."""
    if fetch_site is not None:
        if fetch_site != "same-origin":
            return False
        if origin == "null":
            origin = None
    given = origin if origin is not None else referer
    if given is None:
        return True
    if host is None:
        return False
    try:
        netloc = urlsplit(given).netloc
    except ValueError:
        return False
    return netloc.lower() == host.lower() and netloc != ""
