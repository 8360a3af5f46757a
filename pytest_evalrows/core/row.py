"""What a test logs about its case: the ``eval_row`` handle and the draft behind it.

Pure: imports no pytest. The recorder makes one ``RowDraft`` per execution of a row; the
``EvalRow`` handle the fixture returns writes into it, or into nothing when recording is off.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import EvalrowsError
from .values import check_score, json_value, repr_text, storable_text

if TYPE_CHECKING:
    from .judgments import Judgment
    from .models import ErrorInfo


_T = TypeVar("_T")


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


@dataclass(slots=True)
class RowPlan:
    """A collected case's identity, worked out once at collection."""

    row_id: str
    nodeid: str
    input: Any
    params_hash: str
    markers: list[str]
    input_truncated: int | None = None
    # (judge id, judge) of ``@pytest.mark.eval(judges=[...])``, run on the finished row.
    judges: tuple[tuple[str, Any], ...] = ()
    # A trial's number (from 1) and the row id of its case (``row_id`` without ``#<k>``);
    # 0 and None for a row that is no trial.
    trial: int = 0
    case_row_id: str | None = None


@dataclass(slots=True)
class RowDraft:
    """One execution of one row, filled in while it runs."""

    plan: RowPlan
    execution: int
    trace_id: int
    span_id: int
    start: float
    item: Any = None  # the pytest item, for hooks that want it
    input: Any = UNSET
    output: Any = None
    expected: Any = None
    scores: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    truncated: dict[str, int] = field(default_factory=dict)
    error: ErrorInfo | None = None
    # pytest phase -> (outcome, was an expected failure)
    phases: dict[str, tuple[str, bool]] = field(default_factory=dict)
    rerun: bool = False
    spans: list[Any] = field(default_factory=list)  # SpanRecords of this execution
    # pytest phase -> its calls (pytest's CallInfo) whose reports are not logged yet
    calls: dict[str, list[Any]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class JudgeFailedError(EvalrowsError):
    """``eval_row.judge`` got no judgment: the judge raised, timed out or returned something
    that is not one. The evaluation is stored as a failure with the same error."""


#: What runs ``eval_row.judge`` for the handle: the plugin's, given (draft, pytest item,
#: what was logged without a draft: the (output, expected, input, scores, metadata, tags) of
#: each call, judge).
JudgeWith = Callable[["RowDraft | None", Any, "list[tuple[Any, ...]] | None", Any], "Judgment"]


class EvalRow:
    """The row of the running case. Returned by the ``eval_row`` fixture.

    Every method works whether or not recording is on, so a test behaves the same either way:
    with recording off the values are checked and kept only on this handle, for ``judge``.
    """

    __slots__ = ("_draft", "_item", "_judge_with", "_kept")

    def __init__(
        self, draft: RowDraft | None = None, item: Any = None, judge_with: JudgeWith | None = None
    ) -> None:
        self._draft = draft
        self._item = item
        self._judge_with = judge_with
        # Without a draft: each log() call's values as given, for a trace to judge.
        self._kept: list[tuple[Any, ...]] | None = None

    @property
    def recording(self) -> bool:
        """Whether what is logged here is written to an experiment."""
        return self._draft is not None

    @property
    def row_id(self) -> str | None:
        """The stable id of this case's row, or None when recording is off."""
        return self._draft.plan.row_id if self._draft is not None else None

    @property
    def scores(self) -> dict[str, float]:
        """The scores logged so far."""
        return dict(self._draft.scores) if self._draft is not None else {}

    def log(
        self,
        *,
        output: Any = UNSET,
        expected: Any = UNSET,
        input: Any = UNSET,
        scores: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Record what the case produced. Later calls replace ``output``, ``expected`` and
        ``input``, and add to ``scores``, ``metadata`` and ``tags``.

        ``input`` defaults to the case's parametrized values. Values that are not JSON are
        stored in a faithful JSON form (bytes, numpy values, dataclasses...) or as their
        ``repr``; a value over 1 MB of JSON is cut down, keeping its shape, and the row's
        ``metadata.truncated`` says so. A logged value never raises.
        """
        __tracebackhide__ = True
        checked = {name: check_score(name, value) for name, value in (scores or {}).items()}
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
        tag_list = _tags(tags)
        draft = self._draft
        if draft is None:
            # References only, read when judged: a logged value never raises here.
            if self._kept is None:
                self._kept = []
            self._kept.append((output, expected, input, checked, metadata, tag_list))
            return
        for name, value in (("output", output), ("expected", expected), ("input", input)):
            if value is not UNSET:
                setattr(draft, name, self._json(name, value))
        draft.scores.update((storable_text(name), value) for name, value in checked.items())
        if metadata:
            safe, cut = json_value(metadata)
            if cut is not None:
                draft.truncated["metadata"] = cut  # cut down, still a dict with its keys
            if not isinstance(safe, dict):  # a mapping that cannot even be read: its repr
                safe = {"metadata_repr": safe}
            draft.metadata.update(safe)
        for tag in tag_list:
            if tag not in draft.tags:
                draft.tags.append(tag)

    def score(self, name: str, value: float) -> None:
        """Record one score: a finite number in [0, 1] (a bool counts as 0 or 1)."""
        __tracebackhide__ = True
        checked = check_score(name, value)
        if self._draft is not None:
            self._draft.scores[storable_text(name)] = checked
        else:
            if self._kept is None:
                self._kept = []
            self._kept.append((UNSET, UNSET, UNSET, {name: checked}, None, ()))

    def judge(self, judge: Any) -> Judgment:
        """Judge this case's trace so far and return the ``Judgment``::

            assert eval_row.judge(no_span_errors()).passed

        The trace is what the test logged here so far, status ``passed`` for now, and the
        spans this execution captured so far (none when not recording). Runs in this thread
        under the judge timeout (``--eval-judge-timeout``). When recording, the evaluation is
        stored with the row's other judgments at the end of the session. A judge that
        raises, times out or returns no judgment raises ``JudgeFailedError`` saying why.
        """
        __tracebackhide__ = True
        if self._judge_with is None:
            raise JudgeFailedError("eval_row.judge works on the handle the eval_row fixture gives")
        return self._judge_with(self._draft, self._item, self._kept, judge)

    @contextmanager
    def span(self, name: str, *, input: Any = UNSET, type: str = "function") -> Iterator[SpanLog]:
        """Open a child span of the row around code that is not instrumented::

            with eval_row.span("retrieve", input=query) as span:
                docs = retrieve(query)
                span.log(output=docs)

        The span is an ordinary OpenTelemetry span: it is recorded under the row, and your
        own exporters see it too. ``type`` is a free label (``llm``, ``tool``, ``function``).
        """
        from opentelemetry import trace  # only paid for by tests that open spans

        tracer = trace.get_tracer("pytest_evalrows")
        # Text, escaped here already, so that the user's own exporters can encode them too.
        name = storable_text(name) if isinstance(name, str) else repr_text(name)
        type = storable_text(type) if isinstance(type, str) else repr_text(type)
        # Under the row even in a thread that did not inherit the test's context.
        with tracer.start_as_current_span(
            name, context=self.context(), attributes={"evalrows.span_type": type}
        ) as otel:
            handle = SpanLog(otel)
            if input is not UNSET:
                handle.log(input=input)
            yield handle

    def context(self) -> Any:
        """The OpenTelemetry context of this row's trace, for work the test's context did not
        travel to (a thread it started, a library's callback)::

            token = opentelemetry.context.attach(eval_row.context())

        The current context when that is in the row's trace already, or when not recording.
        """
        from opentelemetry import context

        if self._draft is None:
            return context.get_current()
        return row_context(self._draft)

    def run_in_context(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Call ``fn(*args, **kwargs)`` in this row's trace, wherever it runs: as the target
        of a thread, ``Thread(target=eval_row.run_in_context, args=(work, case))``, or in a
        pool, ``executor.submit(eval_row.run_in_context, work, case)``."""
        if self._draft is None:
            return fn(*args, **kwargs)
        return run_in_row_context(self._draft, fn, *args, **kwargs)

    def _json(self, name: str, value: Any) -> Any:
        assert self._draft is not None
        safe, cut = json_value(value)
        if cut is not None:
            self._draft.truncated[name] = cut
        else:
            self._draft.truncated.pop(name, None)
        return safe

    def __repr__(self) -> str:
        state = f"row_id={self.row_id!r}" if self.recording else "not recording"
        return f"<EvalRow {state}>"


class SpanLog:
    """What ``EvalRow.span`` yields: ``log`` sets the span's input, output and metadata."""

    __slots__ = ("otel_span",)

    def __init__(self, otel_span: Any) -> None:
        self.otel_span = otel_span

    def log(
        self,
        *,
        input: Any = UNSET,
        output: Any = UNSET,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Store values as JSON text in ``evalrows.input`` / ``evalrows.output`` /
        ``evalrows.metadata`` attributes (span attributes hold only primitives)."""
        if not self.otel_span.is_recording():  # nothing would keep the attributes
            return
        for name, value in (("input", input), ("output", output), ("metadata", metadata)):
            if value is UNSET or (name == "metadata" and value is None):
                continue
            safe, _ = json_value(value)
            self.otel_span.set_attribute(f"evalrows.{name}", json.dumps(safe, ensure_ascii=False))


def _tags(tags: Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        return [tags]
    result = list(tags)
    for tag in result:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be strings, got {type(tag).__name__} {tag!r}")
    return [storable_text(tag) for tag in result]


def row_context(draft: RowDraft, context: Any = None) -> Any:
    """The OpenTelemetry context for work of this row: ``context`` (the current one by
    default) when its span is in the row's trace already, else one whose current span is
    the row's root. In a thread the test started without copying its context, spans started
    under it join the row's trace in the user's exporters, not only in the store."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    current = trace.get_current_span(context).get_span_context()
    if current.trace_id == draft.trace_id:
        return context if context is not None else otel_context.get_current()
    root = NonRecordingSpan(
        SpanContext(
            trace_id=draft.trace_id,
            span_id=draft.span_id,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    return trace.set_span_in_context(root, context)


def run_in_row_context(draft: RowDraft, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """Call ``fn`` with the row's context current (see ``row_context``)."""
    from opentelemetry import context as otel_context

    token = otel_context.attach(row_context(draft))
    try:
        return fn(*args, **kwargs)
    finally:
        otel_context.detach(token)
