"""Judges over a row's whole trace: the models, the built-in judges, the LLM judge, the runner,
and the clients that run and read evaluations over any store.

``LLMJudge`` (and httpx with it) is imported when it is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.judgments import CostEstimate, Evaluation, Judgment, Step
from ..core.row import JudgeFailedError
from ..core.trace import Trace
from .evaluations import (
    AsyncTraceEvaluations,
    TraceEvaluations,
    UnknownEvaluationError,
    UnknownJudgeError,
    UnknownTraceError,
)
from .judges import (
    JudgeError,
    estimate_of,
    judge_id,
    max_latency,
    max_spans,
    max_tokens,
    no_span_errors,
    span_called,
    tool_called,
)
from .queries import CostSummary, EvaluationPage
from .running import JudgeRunner, judge_traces, new_evaluation, run_async

if TYPE_CHECKING:
    from .llm import LLMJudge

__all__ = [
    "AsyncTraceEvaluations",
    "CostEstimate",
    "CostSummary",
    "Evaluation",
    "EvaluationPage",
    "JudgeError",
    "JudgeFailedError",
    "JudgeRunner",
    "Judgment",
    "LLMJudge",
    "Step",
    "Trace",
    "TraceEvaluations",
    "UnknownEvaluationError",
    "UnknownJudgeError",
    "UnknownTraceError",
    "estimate_of",
    "judge_id",
    "judge_traces",
    "max_latency",
    "max_spans",
    "max_tokens",
    "new_evaluation",
    "no_span_errors",
    "run_async",
    "span_called",
    "tool_called",
]


def __getattr__(name: str) -> Any:
    if name == "LLMJudge":
        from .llm import LLMJudge

        return LLMJudge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
