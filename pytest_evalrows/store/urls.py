"""Store URLs: which store a setting names, and opening it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Store

DEFAULT_STORE = "sqlite:///.evalrows/evalrows.db"
VALID_FORMS = (
    "sqlite:///RELATIVE/PATH.db, sqlite:////ABSOLUTE/PATH.db, sqlite:///:memory:, "
    "or a plain file path"
)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``path`` is absolute (or ":memory:") for SQLite."""

    scheme: str
    path: Path | None
    text: str

    def display(self) -> str:
        if self.scheme == "sqlite" and self.path is not None:
            return f"sqlite:///{self.path}" if str(self.path) != ":memory:" else self.text
        return self.text


def parse_store_url(value: str, base: Path) -> StoreURL:
    """Parse a store setting; relative paths are taken from ``base``. Raises ValueError."""
    text = value.strip()
    if not text:
        raise ValueError(f"a store URL cannot be empty; use {VALID_FORMS}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return StoreURL("sqlite", _absolute(Path(text).expanduser(), base), text)
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"{text!r} names no file; use {VALID_FORMS}")
        location = rest[1:]
        if location == ":memory:":
            return StoreURL("sqlite", Path(":memory:"), text)
        return StoreURL("sqlite", _absolute(Path(location), base), text)
    raise ValueError(f"unknown store scheme {scheme!r} in {text!r}; use {VALID_FORMS}")


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def open_store(url: StoreURL, *, create: bool = True) -> Store:
    """Open the store a URL names. Raises StoreError when it cannot."""
    from .sqlite import SQLiteStore

    assert url.path is not None
    return SQLiteStore(url.path, create=create)
