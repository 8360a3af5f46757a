"""The one exception hierarchy of pytest-evalrows."""

from __future__ import annotations


class EvalrowsError(Exception):
    """Base class of every error pytest-evalrows raises on purpose."""


class InvalidScoreError(EvalrowsError, ValueError):
    """A score that is not a finite number in [0, 1], or has no usable name."""


class StoreError(EvalrowsError):
    """A store could not be opened, read or written."""


class UnknownExperimentError(StoreError):
    """The experiment asked for does not exist in the store."""


class StoreAuthError(StoreError):
    """The store refused our credentials; retrying cannot help."""


class EvalrowsWarning(UserWarning):
    """Something about the rows deserves attention, but the session can go on."""
