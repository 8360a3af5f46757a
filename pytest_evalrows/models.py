"""The models rows are read back as (public: kept at this path for users' code).

A re-export of ``pytest_evalrows.core.models``: its ``__all__`` is the one list of names.
"""

from __future__ import annotations

from .core.models import *  # noqa: F403
from .core.models import __all__ as __all__
