"""Store URLs: which store a setting names (``pytest_evalrows.stores`` opens it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.redaction import public_url, scrub_url_credentials

DEFAULT_STORE = "sqlite:///.evalrows/evalrows.db"
VALID_FORMS = (
    "sqlite:///RELATIVE/PATH.db, sqlite:////ABSOLUTE/PATH.db, sqlite:///:memory:, "
    "a plain file path, or http(s)://HOST for a Braintrust-compatible API"
)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``path`` is absolute (or ":memory:") for SQLite."""

    scheme: str
    path: Path | None
    text: str = field(repr=False)  # may hold credentials

    def display(self) -> str:
        """How the store is named in output: never with a secret in it."""
        if self.scheme == "http":
            return public_url(self.text)
        if self.scheme == "sqlite" and self.path is not None:
            return f"sqlite:///{self.path}" if str(self.path) != ":memory:" else self.text
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
    raise ValueError(f"unknown store scheme {scheme!r} in {shown!r}; use {VALID_FORMS}")


def _absolute(path: Path, base: Path) -> Path:
    # Resolved, so that one file has one name (the spool matches entries to stores by it).
    return (path if path.is_absolute() else base / path).resolve()


def api_key_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The HTTP store's key from the environment: ours first, then Braintrust's own."""
    import os

    env = os.environ if environ is None else environ
    return env.get("EVALROWS_API_KEY") or env.get("BRAINTRUST_API_KEY") or None
