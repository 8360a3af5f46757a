"""A row version and its span tree, as a judge sees them.

Pure: imports no pytest. Built from what any store reads back (a ``RowVersion`` and the
``SpanRecord``s of its trace), or from the running row of a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .models import ErrorInfo, RowVersion, SpanRecord

INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
# A tool call, as OpenTelemetry's GenAI conventions name it, or as a test declared it.
TOOL_NAME = "gen_ai.tool.name"
SPAN_TYPE = "evalrows.span_type"


class Trace:
    """One row version (input, output, expected, scores, metadata, status, error) and the
    spans of its trace, with helpers to walk them.

    ``spans`` are in start order; the row's own root span, when the store keeps one, is
    among them (``root``). Spans of other traces given to the constructor are left out.
    """

    __slots__ = ("_children", "row", "spans")

    def __init__(self, row: RowVersion, spans: Iterable[SpanRecord] = ()) -> None:
        self.row = row
        trace_id = row.root_span_id
        self.spans: list[SpanRecord] = sorted(
            (span for span in spans if not trace_id or span.root_span_id == trace_id),
            key=lambda span: (span.start, span.span_id),
        )
        self._children: dict[str, list[SpanRecord]] | None = None

    # -- the row -------------------------------------------------------------------------

    @property
    def trace_id(self) -> str:
        return self.row.root_span_id

    @property
    def row_id(self) -> str:
        return self.row.row_id

    @property
    def version_id(self) -> str:
        return self.row.version_id

    @property
    def input(self) -> Any:
        return self.row.input

    @property
    def output(self) -> Any:
        return self.row.output

    @property
    def expected(self) -> Any:
        return self.row.expected

    @property
    def scores(self) -> dict[str, float]:
        return self.row.scores

    @property
    def metadata(self) -> dict[str, Any]:
        return self.row.metadata

    @property
    def status(self) -> str:
        return self.row.status

    @property
    def error(self) -> ErrorInfo | None:
        return self.row.error

    # -- the tree ------------------------------------------------------------------------

    @property
    def root(self) -> SpanRecord | None:
        """The row's own span: the one without parents under the row's span id, or else
        the first span without parents."""
        roots = [span for span in self.spans if not span.span_parents]
        for span in roots:
            if span.span_id == self.row.span_id:
                return span
        return roots[0] if roots else None

    def children(self, span: SpanRecord | str | None = None) -> list[SpanRecord]:
        """The spans whose parent is ``span`` (a span or its id); the row's top-level spans
        (those under its root, or under no span of this trace) when None."""
        if self._children is None:
            self._children = {}
            for each in self.spans:
                parent = each.span_parents[-1] if each.span_parents else ""
                self._children.setdefault(parent, []).append(each)
        if span is None:
            root = self.root
            known = {each.span_id for each in self.spans}
            top = [
                each
                for each in self.spans
                if each is not root
                and (not each.span_parents or each.span_parents[-1] not in known)
            ]
            return ([] if root is None else self._children.get(root.span_id, [])) + top
        span_id = span if isinstance(span, str) else span.span_id
        return list(self._children.get(span_id, []))

    def walk(self) -> Iterator[tuple[int, SpanRecord]]:
        """Every span with its depth, parents before children, in start order."""
        seen: set[str] = set()

        def visit(span: SpanRecord, depth: int) -> Iterator[tuple[int, SpanRecord]]:
            if span.span_id in seen:
                return
            seen.add(span.span_id)
            yield depth, span
            for child in self.children(span):
                yield from visit(child, depth + 1)

        root = self.root
        if root is not None:
            yield from visit(root, 0)
        for span in self.spans:
            if span.span_id not in seen:
                yield from visit(span, 1 if root is not None else 0)

    def find(self, name: str | None = None, *, kind: str | None = None) -> list[SpanRecord]:
        """Spans by name and/or kind (OpenTelemetry's kind: internal, client, server, ...),
        in start order. A span's type as a test declared it (``eval_row.span(type=)``)
        matches ``kind`` too."""
        return [
            span
            for span in self.spans
            if (name is None or span.name == name)
            and (kind is None or span.kind == kind or span.attributes.get(SPAN_TYPE) == kind)
        ]

    def llm_calls(self) -> list[SpanRecord]:
        """Spans of calls to a model: those with ``gen_ai.*`` attributes (tool calls aside),
        or declared ``llm``."""
        return [span for span in self.spans if is_llm_call(span)]

    def tool_calls(self) -> list[SpanRecord]:
        """Spans of tool calls: ``gen_ai.tool.name`` set, ``gen_ai.operation.name`` of
        ``execute_tool``, or declared ``tool``."""
        return [span for span in self.spans if is_tool_call(span)]

    def errors(self) -> list[SpanRecord]:
        """Spans that ended in error, or recorded an exception."""
        return [
            span
            for span in self.spans
            if span.status == "error"
            or any(event.get("name") == "exception" for event in span.events)
        ]

    # -- totals --------------------------------------------------------------------------

    @property
    def prompt_tokens(self) -> int:
        found = _token_sum(self.llm_calls(), INPUT_TOKENS)
        if found is None:
            return self.row.metrics.prompt_tokens or 0
        return found

    @property
    def completion_tokens(self) -> int:
        found = _token_sum(self.llm_calls(), OUTPUT_TOKENS)
        if found is None:
            return self.row.metrics.completion_tokens or 0
        return found

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def duration(self) -> float:
        """Seconds from the first span's start to the last one's end (the row's own times
        when it has no spans)."""
        if not self.spans:
            return max(0.0, self.row.metrics.end - self.row.metrics.start)
        start = min(span.start for span in self.spans)
        end = max(span.end for span in self.spans)
        return max(0.0, end - start)

    def __repr__(self) -> str:
        return f"<Trace {self.row_id!r} {self.status} {len(self.spans)} spans>"


def tool_name(span: SpanRecord) -> str:
    """The tool a tool-call span called (its span name when it says no other)."""
    declared = span.attributes.get(TOOL_NAME)
    return str(declared) if declared else span.name


def is_tool_call(span: SpanRecord) -> bool:
    attributes = span.attributes
    return (
        TOOL_NAME in attributes
        or attributes.get("gen_ai.operation.name") == "execute_tool"
        or attributes.get(SPAN_TYPE) == "tool"
    )


def is_llm_call(span: SpanRecord) -> bool:
    if is_tool_call(span):
        return False
    attributes = span.attributes
    return attributes.get(SPAN_TYPE) == "llm" or any(
        key.startswith("gen_ai.") for key in attributes
    )


def _token_sum(spans: list[SpanRecord], keys: tuple[str, ...]) -> int | None:
    """The spans' token counts under the first of ``keys`` each has; None when none has any."""
    total = None
    for span in spans:
        for key in keys:
            value = span.attributes.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                total = (total or 0) + value
                break
    return total
