"""A trace as a model reads it, the answer asked of it, and how that answer is read back.

Pure text work, no network: what ``LLMJudge`` sends and what its estimate counts. The
rendering is bounded (each value, each span's attributes, the whole span tree), so a huge
trace costs a bounded prompt.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..core.judgments import SCORE_PREFIX, Judgment, Step
from ..core.models import SpanRecord
from ..core.trace import Trace
from .judges import JudgeError

# Bounds on the rendered trace, in characters.
MAX_VALUE_CHARS = 2_000  # each of input, output, expected, error
MAX_ATTRIBUTE_CHARS = 200  # each attribute value shown
MAX_ATTRIBUTES = 12  # per span
MAX_SPANS_CHARS = 16_000  # the span tree as a whole
MAX_UNSEEN_ERRORS = 20  # error spans named after the cut
# How much of a malformed answer an error keeps.
MAX_RAW_CHARS = 2_000

# Attributes worth a judge's attention, in this order, before any other.
KEY_PREFIXES = ("gen_ai.", "evalrows.span_type", "tool.", "error", "exception", "http.")

SYSTEM_PROMPT = """\
You judge one run of an LLM application from its trace: the test case's input, its output, \
what was expected, and the tree of spans (model calls, tool calls, steps) it went through. \
Judge the run against the criteria you are given, and only those.

Answer with one JSON object and nothing else:
{"score": <a number from 0 to 1>, "passed": <true or false>, \
"reasoning": "<why, in a few sentences>", \
"steps": [{"span_id": "<the id of a span you looked at>", "name": "<its name>", \
"result": "<what you found there>"}]}"""


def estimate_tokens(text: str) -> int:
    """Tokens a text is counted as before any model sees it: its UTF-8 bytes divided by 4,
    rounded up. Not any model's tokenizer; the same number for the same text, every time."""
    return math.ceil(len(text.encode("utf-8")) / 4)


def messages(criteria: str, trace: Trace) -> list[dict[str, str]]:
    """The chat messages that ask a model to judge ``trace`` against ``criteria``."""
    user = f"Criteria:\n{criteria}\n\nThe run to judge:\n{render_trace(trace)}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def render_trace(trace: Trace) -> str:
    """The row (id, status, input, output, expected, error) and its span tree: names,
    durations, key attributes and errors, indented by depth."""
    lines = [f"Row: {trace.row_id} (status: {trace.status})"]
    lines.append(f"Input: {_value(trace.input)}")
    lines.append(f"Output: {_value(trace.output)}")
    if trace.expected is not None:
        lines.append(f"Expected: {_value(trace.expected)}")
    if trace.error is not None:
        error = f"{trace.error.type}: {trace.error.message}"
        lines.append(f"Error: {_clip(error, MAX_VALUE_CHARS)}")
    # Not other judges' verdicts (nor this one's last): each judgment stands on the trace
    # alone, and an estimate counts the same prompt however often the row was judged.
    scores = {k: v for k, v in trace.scores.items() if not k.startswith(SCORE_PREFIX)}
    if scores:
        lines.append(f"Scores: {_value(scores)}")
    lines.append(f"Spans ({len(trace.spans)}, {trace.duration * 1000:.1f} ms in all):")
    used = 0
    shown: set[str] = set()
    for depth, span in trace.walk():
        block = _span_lines(span, depth)
        size = sum(len(line) + 1 for line in block)
        if used + size > MAX_SPANS_CHARS:
            lines.append(f"... {len(trace.spans) - len(shown)} more spans not shown")
            break
        lines.extend(block)
        used += size
        shown.add(span.span_id)
    # Errors matter most: those the cut left out are still named.
    unseen = [span for span in trace.errors() if span.span_id not in shown]
    if unseen:
        lines.append("Spans in error among those not shown:")
        lines.extend(_span_lines(span, 0)[0] for span in unseen[:MAX_UNSEEN_ERRORS])
    return "\n".join(lines)


def _span_lines(span: SpanRecord, depth: int) -> list[str]:
    indent = "  " * depth
    took = max(0.0, span.end - span.start) * 1000
    head = f"{indent}- {span.name} [span_id {span.span_id}, {span.kind}, {took:.1f} ms]"
    if span.status == "error":
        head += f" ERROR: {_clip(span.status_description or 'error', MAX_ATTRIBUTE_CHARS)}"
    lines = [head]
    attributes = _key_attributes(span.attributes)
    if attributes:
        shown = ", ".join(
            f"{key}={_clip(_text(value), MAX_ATTRIBUTE_CHARS)}" for key, value in attributes
        )
        lines.append(f"{indent}  {shown}")
    for event in span.events:
        if event.get("name") == "exception":
            found = event.get("attributes") or {}
            kind = found.get("exception.type", "exception")
            message = _clip(_text(found.get("exception.message", "")), MAX_ATTRIBUTE_CHARS)
            lines.append(f"{indent}  exception: {kind}: {message}")
    return lines


def _key_attributes(attributes: dict[str, Any]) -> list[tuple[str, Any]]:
    """At most MAX_ATTRIBUTES, those with a key prefix first, then the others by name."""

    def rank(key: str) -> tuple[int, str]:
        for index, prefix in enumerate(KEY_PREFIXES):
            if key.startswith(prefix):
                return index, key
        return len(KEY_PREFIXES), key

    return [(key, attributes[key]) for key in sorted(attributes, key=rank)[:MAX_ATTRIBUTES]]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _value(value: Any) -> str:
    return _clip(_text(value), MAX_VALUE_CHARS)


def _clip(text: str, limit: int) -> str:
    text = text.replace("\n", "\\n")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


# -- the answer ------------------------------------------------------------------------


def malformed(why: str, raw: str) -> JudgeError:
    """An error that says what was wrong with the model's answer and keeps its text."""
    kept = raw if len(raw) <= MAX_RAW_CHARS else raw[:MAX_RAW_CHARS] + "..."
    return JudgeError(f"{why}; the answer was: {kept!r}")


def parse_answer(raw: str) -> Judgment:
    """The model's JSON answer as a ``Judgment``; a ``JudgeError`` keeping ``raw`` when it
    is not one (not JSON, no score and no passed, a score outside [0, 1])."""
    text = raw.strip()
    if text.startswith("```"):  # a fenced block, though JSON alone was asked for
        text = text.strip("`").removeprefix("json").strip()
    try:
        answer = json.loads(text)
    except ValueError:
        raise malformed("the model's answer is not JSON", raw) from None
    if not isinstance(answer, dict):
        raise malformed("the model's answer is not a JSON object", raw)
    score = answer.get("score")
    passed = answer.get("passed")
    if score is not None and (
        isinstance(score, bool)
        or not isinstance(score, (int, float))
        or not math.isfinite(score)
        or not 0 <= score <= 1
    ):
        raise malformed("the model's score is not a number in [0, 1]", raw)
    if passed is not None and not isinstance(passed, bool):
        raise malformed("the model's passed is not true or false", raw)
    if score is None and passed is None:
        raise malformed("the model's answer has neither score nor passed", raw)
    reasoning = answer.get("reasoning", "")
    return Judgment(
        score=None if score is None else float(score),
        passed=passed,
        reasoning=reasoning if isinstance(reasoning, str) else _text(reasoning),
        steps=_steps(answer.get("steps")),
    )


def _steps(found: Any) -> list[Step]:
    if not isinstance(found, list):
        return []
    steps = []
    for item in found:
        if isinstance(item, dict):
            span_id, name = item.get("span_id"), item.get("name")
            steps.append(
                Step(
                    span_id=None if span_id is None else str(span_id),
                    name=None if name is None else str(name),
                    result=item.get("result"),
                )
            )
        else:
            steps.append(Step(result=item))
    return steps
