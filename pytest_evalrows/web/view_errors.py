"""What the views raise on bad input: each says what was wrong and what would do."""

from __future__ import annotations

from ..errors import EvalrowsError


class PageNotFound(EvalrowsError):
    """An experiment or a row that is not there."""


class BadQuery(EvalrowsError):
    """A query parameter with a wrong value: the message names it and the valid values."""
