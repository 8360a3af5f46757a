"""Whether the code running now is a judge's. Pure: imports no pytest.

A judge runs while later tests do: the spans it starts (an LLM judge's HTTP calls) are the
judge's, not the running test's, and belong to no row. The judge runner sets this in its
threads and tasks; span capture reads it.
"""

from __future__ import annotations

from contextvars import ContextVar

judging: ContextVar[bool] = ContextVar("evalrows_judging", default=False)
