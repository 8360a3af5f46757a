"""What a judge is, and the built-in deterministic judges.

A judge is a callable, sync or async, that takes a ``Trace`` and returns a ``Judgment``, a
bool (``passed``) or a number in [0, 1] (``score``). Its name (``judge_id``) is its ``name``
attribute, or else its function's ``__name__``; it shows on the row as ``judge:<name>``. A
judge may offer ``estimate(trace) -> CostEstimate``; one without it costs nothing.

The built-ins look only at the stored trace, so they cost nothing and answer the same every
time. Each returns a ``Judgment`` with ``passed``, a score of 1.0 or 0.0, its reasoning, and
a step for every span it looked at.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from ..core.judgments import CostEstimate, Judgment, Step
from ..core.models import SpanRecord
from ..core.trace import Trace, tool_name
from ..errors import EvalrowsError

__all__ = [
    "JudgeError",
    "Judges",
    "estimate_of",
    "is_async_judge",
    "judge_id",
    "judges_by_name",
    "max_latency",
    "max_spans",
    "max_tokens",
    "no_span_errors",
    "span_called",
    "tool_called",
]


class JudgeError(EvalrowsError):
    """A judge could not reach its conclusion (a model that answered nonsense, a missing key);
    the evaluation fails with this message. ``spent``: the tokens and cost it used all the
    same, kept on the failed evaluation's result."""

    def __init__(self, message: str, *, spent: Judgment | None = None) -> None:
        super().__init__(message)
        self.spent = spent


def judge_id(judge: Any) -> str:
    """A judge's name: its ``name`` attribute, or else its function's ``__name__``."""
    name = getattr(judge, "name", None)
    if name is None and (inspect.isfunction(judge) or inspect.ismethod(judge)):
        name = judge.__name__
    if name is None:
        name = getattr(getattr(judge, "func", None), "__name__", None)  # functools.partial
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise TypeError(
            f"a judge needs a name: give {type(judge).__name__} a non-empty `name` attribute "
            "or use a named function (not a lambda)"
        )
    if not callable(judge):
        raise TypeError(f"judge {name!r} is not callable: a judge is called with a Trace")
    return name


def is_async_judge(judge: Any) -> bool:
    """Whether calling the judge gives a coroutine to await."""
    if inspect.iscoroutinefunction(judge):
        return True
    # The class's __call__: an object whose `async def __call__` makes it a coroutine judge.
    return callable(judge) and inspect.iscoroutinefunction(type(judge).__call__)


def estimate_of(judge: Any, trace: Trace) -> CostEstimate:
    """What judging ``trace`` is expected to cost: the judge's ``estimate``, or zero."""
    estimate = getattr(judge, "estimate", None)
    if estimate is None:
        return CostEstimate()
    found = estimate(trace)
    if not isinstance(found, CostEstimate):
        raise TypeError(
            f"judge {judge_id(judge)!r}: estimate() must return a CostEstimate, "
            f"not {type(found).__name__}"
        )
    return found


#: Judges as a client takes them: a list (each under its name) or names to judges.
Judges: TypeAlias = Iterable[Any] | Mapping[str, Any]


def judges_by_name(judges: Judges) -> dict[str, Any]:
    """Judges by their names: a mapping as given, or each judge under its ``judge_id``.
    Two judges of one name are a ``ValueError``."""
    if isinstance(judges, Mapping):
        named = dict(judges)
        for name, judge in named.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"a judge's name must be a non-empty string, not {name!r}")
            if not callable(judge):
                raise TypeError(f"judge {name!r} is not callable: a judge is called with a Trace")
        return named
    named = {}
    for judge in judges:
        name = judge_id(judge)
        if name in named and named[name] is not judge:
            raise ValueError(f"two judges are named {name!r}: give one another name")
        named[name] = judge
    return named


# -- the built-ins -------------------------------------------------------------------------


def _span_step(span: SpanRecord, result: Any) -> Step:
    return Step(span_id=span.span_id, name=span.name, result=result)


def _verdict(passed: bool, reasoning: str, steps: list[Step]) -> Judgment:
    return Judgment(score=1.0 if passed else 0.0, passed=passed, reasoning=reasoning, steps=steps)


def _check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    return value


class _Called:
    """A span (or a tool) was called, and optionally before another one was."""

    noun = "span"
    kind = "span_called"

    def __init__(self, target: str, before: str | None) -> None:
        self.target = _check_name(f"the {self.noun} name", target)
        self.before = None if before is None else _check_name("before", before)
        if self.before == self.target:
            raise ValueError(f"a {self.noun} cannot be called before itself: {target!r}")
        self.name = f"{self.kind}:{target}" + ("" if before is None else f":before:{before}")

    def matches(self, trace: Trace, name: str) -> list[SpanRecord]:
        return trace.find(name)

    def __call__(self, trace: Trace) -> Judgment:
        found = self.matches(trace, self.target)
        if not found:
            return _verdict(False, f"no {self.noun} {self.target!r} was called", [])
        first = found[0]
        steps = [_span_step(span, "called") for span in found]
        if self.before is None:
            return _verdict(True, f"{self.noun} {self.target!r} called {len(found)} time(s)", steps)
        later = self.matches(trace, self.before)
        if not later:
            return _verdict(
                True, f"{self.noun} {self.target!r} called, {self.before!r} never was", steps
            )
        steps += [_span_step(span, "called") for span in later]
        if first.start <= later[0].start:
            reasoning = f"{self.noun} {self.target!r} was called before {self.before!r}"
            return _verdict(True, reasoning, steps)
        reasoning = f"{self.noun} {self.before!r} was called before {self.target!r} first was"
        return _verdict(False, reasoning, steps)

    def __repr__(self) -> str:
        return f"<judge {self.name}>"


class _ToolCalled(_Called):
    noun = "tool"
    kind = "tool_called"

    def matches(self, trace: Trace, name: str) -> list[SpanRecord]:
        return [span for span in trace.tool_calls() if tool_name(span) == name]


def span_called(name: str, *, before: str | None = None) -> _Called:
    """Passes when a span named ``name`` is in the trace (and, with ``before``, the first of
    them started no later than the first span named ``before``, when there is one).
    Named ``span_called:<name>`` (``...:before:<before>``)."""
    return _Called(name, before)


def tool_called(tool: str, *, before: str | None = None) -> _Called:
    """Passes when the trace called the tool ``tool`` (a span with ``gen_ai.tool.name``, an
    ``execute_tool`` operation, or declared ``type="tool"``), optionally before the tool
    ``before``. Named ``tool_called:<tool>`` (``...:before:<before>``)."""
    return _ToolCalled(tool, before)


class _NoSpanErrors:
    name = "no_span_errors"

    def __call__(self, trace: Trace) -> Judgment:
        # Not the row's own span: its status is the test's outcome, which the row already
        # says; this judge is about what the case's code did.
        own = trace.row.span_id
        errors = [span for span in trace.errors() if span.span_id != own]
        steps = [_span_step(span, _error_of(span)) for span in errors]
        if not errors:
            looked = sum(span.span_id != own for span in trace.spans)
            return _verdict(True, f"none of {looked} spans ended in error", steps)
        names = ", ".join(repr(span.name) for span in errors[:5])
        return _verdict(False, f"{len(errors)} span(s) ended in error: {names}", steps)

    def __repr__(self) -> str:
        return f"<judge {self.name}>"


def _error_of(span: SpanRecord) -> str:
    if span.status == "error":
        return span.status_description or "error"
    return "recorded an exception"


def no_span_errors() -> _NoSpanErrors:
    """Passes when no span under the row ended in error or recorded an exception (the row's
    own span, whose status is the test's outcome, is not looked at)."""
    return _NoSpanErrors()


def _check_bound(what: str, value: object, *, whole: bool) -> float:
    number_types: tuple[type, ...] = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, number_types):
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{what} must be {kind}, not {value!r}")
    assert isinstance(value, (int, float))
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, not {value!r}")
    return float(value)


class _MaxSpans:
    def __init__(self, limit: int) -> None:
        self.limit = int(_check_bound("max_spans' limit", limit, whole=True))
        self.name = f"max_spans:{self.limit}"

    def __call__(self, trace: Trace) -> Judgment:
        count = len(trace.spans)
        passed = count <= self.limit
        steps = [Step(name="spans", result=count)]
        relation = "within" if passed else "over"
        return _verdict(passed, f"{count} spans, {relation} the limit of {self.limit}", steps)

    def __repr__(self) -> str:
        return f"<judge {self.name}>"


def max_spans(n: int) -> _MaxSpans:
    """Passes when the trace has at most ``n`` spans (the row's own span counted)."""
    return _MaxSpans(n)


class _MaxTokens:
    def __init__(self, limit: int) -> None:
        self.limit = int(_check_bound("max_tokens' limit", limit, whole=True))
        self.name = f"max_tokens:{self.limit}"

    def __call__(self, trace: Trace) -> Judgment:
        steps = [
            _span_step(
                span,
                {
                    key: value
                    for key, value in span.attributes.items()
                    if key.startswith("gen_ai.usage.")
                },
            )
            for span in trace.llm_calls()
        ]
        total = trace.total_tokens
        steps.append(Step(name="total_tokens", result=total))
        passed = total <= self.limit
        relation = "within" if passed else "over"
        reasoning = (
            f"{total} tokens ({trace.prompt_tokens} prompt, {trace.completion_tokens} "
            f"completion), {relation} the limit of {self.limit}"
        )
        return _verdict(passed, reasoning, steps)

    def __repr__(self) -> str:
        return f"<judge {self.name}>"


def max_tokens(n: int) -> _MaxTokens:
    """Passes when the trace's LLM calls used at most ``n`` tokens, prompt and completion
    (``gen_ai.usage.*`` attributes; the row's own token metrics when no span has them)."""
    return _MaxTokens(n)


class _MaxLatency:
    def __init__(self, seconds: float) -> None:
        self.seconds = _check_bound("max_latency's bound", seconds, whole=False)
        self.name = f"max_latency:{self.seconds:g}s"

    def __call__(self, trace: Trace) -> Judgment:
        took = trace.duration
        root = trace.root
        steps = [
            Step(
                span_id=None if root is None else root.span_id,
                name="duration",
                result=round(took, 6),
            )
        ]
        passed = took <= self.seconds
        relation = "within" if passed else "over"
        reasoning = f"the trace took {took:.3f} s, {relation} the bound of {self.seconds:g} s"
        return _verdict(passed, reasoning, steps)

    def __repr__(self) -> str:
        return f"<judge {self.name}>"


def max_latency(seconds: float) -> _MaxLatency:
    """Passes when the trace took at most ``seconds``, from its first span's start to its
    last span's end."""
    return _MaxLatency(seconds)
