"""A small deterministic stand-in for an LLM, so the example suite runs offline."""

from __future__ import annotations

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
    """Answer a question the way a chatty model would: a sentence around the fact."""
    key = question.lower().rstrip("?").strip()
    fact = _KNOWLEDGE.get(key)
    if fact is None:
        return "I am not sure."
    return f"The answer is {fact}."
