"""Judges over the example suite's traces: used by ``test_capitals.py`` in the suite, and by
``evalrows judge demo --judge judges:JUDGES`` run from this folder."""

from __future__ import annotations

from pytest_evalrows.judging import Judgment, Step, Trace, max_spans, span_called


def answered(trace: Trace) -> Judgment:
    """Passes when the model's answer holds the expected one."""
    found = str(trace.expected) in str(trace.output)
    said = "is" if found else "is not"
    return Judgment(
        passed=found,
        score=float(found),
        reasoning=f"{trace.expected!r} {said} in the answer",
        steps=[Step(span_id=s.span_id, name=s.name, result=found) for s in trace.llm_calls()],
    )


JUDGES = [span_called("prompt", before="chat stand-in"), max_spans(3)]
