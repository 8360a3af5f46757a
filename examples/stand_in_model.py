"""A small deterministic stand-in for an LLM, so the example suite runs offline."""

from __future__ import annotations

from opentelemetry import trace

_tracer = trace.get_tracer("stand_in_model")

_KNOWLEDGE = {
    "capital of france": "Paris",
    "capital of japan": "Tokyo",
    "capital of italy": "Rome",
    "capital of canada": "Toronto",  # a classic mistake, on purpose
    "capital of australia": "Sydney",  # another one
    "largest planet": "Jupiter",
    "chemical symbol for gold": "Au",
    "author of hamlet": "William Shakespeare",
}


def answer(question: str) -> str:
    """Answer a question the way a chatty model would: a sentence around the fact.

    Traced like an instrumented LLM client: one span per call, with token counts in the
    OpenTelemetry gen_ai attributes.
    """
    with _tracer.start_as_current_span("chat stand-in") as span:
        key = question.lower().rstrip("?").strip()
        fact = _KNOWLEDGE.get(key)
        text = f"The answer is {fact}." if fact is not None else "I am not sure."
        span.set_attribute("gen_ai.request.model", "stand-in-1")
        span.set_attribute("gen_ai.usage.input_tokens", len(question.split()))
        span.set_attribute("gen_ai.usage.output_tokens", len(text.split()))
        return text
