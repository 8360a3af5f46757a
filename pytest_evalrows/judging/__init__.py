"""Judges over a row's whole trace: the models, the built-in judges, the LLM judge, and the
clients that run and read evaluations over any store."""

from __future__ import annotations

from ..core.judgments import CostEstimate, Evaluation, Judgment, Step
from ..core.trace import Trace

__all__ = ["CostEstimate", "Evaluation", "Judgment", "Step", "Trace"]
