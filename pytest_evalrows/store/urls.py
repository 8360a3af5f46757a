"""Store URLs: which store a setting names (``pytest_evalrows.stores`` opens it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.redaction import public_url, scrub_url_credentials

DEFAULT_STORE = "sqlite:///.evalrows/evalrows.db"
VALID_FORMS = (
    "sqlite:///RELATIVE/PATH.db, sqlite:////ABSOLUTE/PATH.db, sqlite:///:memory:, "
    "a plain file path, postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or postgres://, "
    "with libpq parameters such as ?sslmode=require) for a PostgreSQL database, "
    "or http(s)://HOST for a Braintrust-compatible API"
)
POSTGRES_SCHEMES = ("postgresql", "postgres")
# The parameters of a PostgreSQL URL that say which database (and schema: `options` may set the
# search path) it is: the display keeps these and drops the others (a password among them).
# The spool matches entries to stores by display, so two stores must never share one.
_POSTGRES_NAMING = ("host", "hostaddr", "port", "dbname", "user", "service", "options")
# What libpq takes a URL's host, database or service from when the URL does not say.
_POSTGRES_ENV = ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE")
# The parameters libpq takes from its environment when the URL does not give them.
_POSTGRES_ENV_NAMING = (
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("service", "PGSERVICE"),
    ("options", "PGOPTIONS"),
)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``path`` is absolute (or ":memory:") for SQLite; ``text`` is the
    URL as given for HTTP and PostgreSQL."""

    scheme: str
    path: Path | None
    text: str = field(repr=False)  # may hold credentials

    def display(self) -> str:
        """How the store is named in output: never with a secret in it."""
        if self.scheme == "http":
            return public_url(self.text)
        if self.scheme == "sqlite" and self.path is not None:
            return f"sqlite:///{self.path}" if str(self.path) != ":memory:" else self.text
        if self.scheme == "postgresql":
            return _postgres_display(self.text)
        return self.text


def parse_store_url(value: str, base: Path) -> StoreURL:
    """Parse a store setting; relative paths are taken from ``base``. Raises ValueError."""
    text = value.strip()
    shown = scrub_url_credentials(text)  # what errors may quote
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"{shown!r} holds a control character; use {VALID_FORMS}")
    if not text:
        raise ValueError(f"a store URL cannot be empty; use {VALID_FORMS}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return StoreURL("sqlite", _absolute(Path(text).expanduser(), base), text)
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"{shown!r} names no file; use {VALID_FORMS}")
        location = rest[1:]
        if location == ":memory:":
            return StoreURL("sqlite", Path(":memory:"), text)
        return StoreURL("sqlite", _absolute(Path(location), base), text)
    if scheme in ("http", "https"):
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises on a port out of range or not a number
        except ValueError as exc:
            raise ValueError(f"{shown!r} is not a valid URL ({exc}); use {VALID_FORMS}") from None
        host = parts.hostname or ""
        if not host or any(char.isspace() for char in host):
            raise ValueError(f"{shown!r} names no valid host; use {VALID_FORMS}")
        return StoreURL("http", None, text)
    if scheme in POSTGRES_SCHEMES:
        _check_postgres_url(text, shown)
        return StoreURL("postgresql", None, text)
    raise ValueError(f"unknown store scheme {scheme!r} in {shown!r}; use {VALID_FORMS}")


def _check_postgres_url(text: str, shown: str) -> None:
    """A libpq URI (``postgresql://[user[:password]@][host][:port][,...][/dbname][?k=v...]``)
    that names a host, a database or a service (or leaves them to libpq's environment), with
    ports that are numbers. What else libpq refuses
    (an unknown parameter) is said when the store is opened."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(text)
    hosts = parts.netloc.rpartition("@")[2]
    query = parse_qs(parts.query, keep_blank_values=True)
    for host in hosts.split(","):
        name, port = host, ""
        if host.startswith("["):
            name, _, rest = host.partition("]")
            port = rest.removeprefix(":") if rest.startswith(":") else rest
            if rest and not rest.startswith(":"):
                raise ValueError(f"{shown!r} is not a valid URL (host {host!r}); use {VALID_FORMS}")
        elif ":" in host:
            name, _, port = host.rpartition(":")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{shown!r} has a bad port {port!r}; use {VALID_FORMS}")
        if any(char.isspace() for char in unquote(name)):
            raise ValueError(f"{shown!r} names no valid host; use {VALID_FORMS}")
    import os

    database = unquote(parts.path.removeprefix("/"))
    named = any(query.get(key) for key in ("host", "hostaddr", "dbname", "service"))
    from_env = any(os.environ.get(name) for name in _POSTGRES_ENV)
    if not hosts.strip(",") and not database and not named and not from_env:
        raise ValueError(
            f"{shown!r} names neither a host nor a database (nor a service, and PGHOST, "
            f"PGDATABASE and PGSERVICE are unset); use {VALID_FORMS}"
        )


def _postgres_display(text: str) -> str:
    """``postgresql://user@host:port/dbname`` and the parameters that name the database or its
    schema (``?service=...``, ``?options=...``): never a password."""
    import os
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(text)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    naming = [(k, v) for k, v in parse_qsl(parts.query) if k in _POSTGRES_NAMING]
    # What the URL leaves to libpq's environment names the store too: without it, one URL
    # would name every database PGDATABASE (or PGHOST ...) may pick, and the spool, which
    # matches entries to stores by this name, could deliver one's rows into another.
    given = {key for key, _ in naming}
    given |= {"host"} if hosts.strip(",") else set()
    given |= {"dbname"} if parts.path.strip("/") else set()
    given |= {"user"} if user else set()
    for key, variable in _POSTGRES_ENV_NAMING:
        if key not in given and os.environ.get(variable):
            naming.append((key, os.environ[variable]))
    query = f"?{urlencode(naming, safe='/')}" if naming else ""
    return f"postgresql://{user}{'@' if at and user else ''}{hosts}{parts.path}{query}"


def _absolute(path: Path, base: Path) -> Path:
    # Resolved, so that one file has one name (the spool matches entries to stores by it).
    return (path if path.is_absolute() else base / path).resolve()


def api_key_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The HTTP store's key from the environment: ours first, then Braintrust's own."""
    import os

    env = os.environ if environ is None else environ
    return env.get("EVALROWS_API_KEY") or env.get("BRAINTRUST_API_KEY") or None
