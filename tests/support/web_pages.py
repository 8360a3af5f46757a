"""The web view's page shapes (``pytest_evalrows.web.pages``) built by hand, each with every
part filled and hostile text in places, for tests of the templates (and of anything else that
renders pages): ``card``, ``line``, ``experiment_page``, ``row_page``, ``compare_page`` and
their parts. Each builder takes fields to replace."""

from __future__ import annotations

from dataclasses import replace

from pytest_evalrows.web.pages import (
    AttemptLine,
    Bin,
    CompareLine,
    ComparePage,
    EventLine,
    ExperimentCard,
    ExperimentPage,
    ExperimentRef,
    FieldSides,
    Histogram,
    JudgmentLine,
    RowLine,
    RowPage,
    RowQuery,
    ScoreDelta,
    SpanNode,
    StepLine,
    VersionLine,
    Waterfall,
)

#: Text that would run as script if a template did not escape it.
HOSTILE = '<script>alert("x")</script>'


EXPERIMENT = ExperimentRef("exp-1", "nightly", "chatbot")
BASELINE = ExperimentRef("exp-0", "last week", "chatbot")


def attempt(id: str = "a1b2c3d4e5f6", **changes: object) -> AttemptLine:
    line = AttemptLine(
        id=id,
        short=id[:8],
        started=1_796_200_203.0,
        ended=1_796_200_263.0,
        host="ci-runner",
        counts={"passed": 2, "failed": 1},
        git_commit="0123456789abcdef",
        git_branch="main",
        latest_rows=3,
    )
    return replace(line, **changes)  # type: ignore[arg-type]


def card(**changes: object) -> ExperimentCard:
    built = ExperimentCard(
        ref=EXPERIMENT,
        created=1_796_200_000.0,
        rows=10_000,
        statuses={"failed": 1, "passed": 2},
        pass_rate=2 / 3,
        means={"pass": 2 / 3, "accuracy": 0.8125},
        attempts=1,
        last_attempt=attempt(),
        tokens=123_456,
        cost=1.5,
        baseline=None,
    )
    return replace(built, **changes)  # type: ignore[arg-type]


def line(row_id: str, status: str = "passed", **changes: object) -> RowLine:
    built = RowLine(
        row_id=row_id,
        nodeid=f"tests/test_bot.py::test_answer[{row_id}]",
        status=status,
        scores={"accuracy": 0.5},
        version=2,
        attempt_id="a1b2c3d4e5f6",
        attempt_short="a1b2c3d4",
        duration=1.234,
        tokens=1_500,
        created=1_796_200_203.0,
        error=None,
        input="what is 2+2",
        output="4",
        expected="4",
        search_text="what is 2+2\n4\n4",
    )
    return replace(built, **changes)  # type: ignore[arg-type]


def experiment_page(**changes: object) -> ExperimentPage:
    built = ExperimentPage(
        card=card(),
        query=RowQuery(),
        rows=[
            line("plain"),
            line("with/slash and space", "failed", scores={}, error="AssertionError: no"),
            line(HOSTILE, "error", input=HOSTILE),
        ],
        matched=812,
        total=10_000,
        pages=17,
        score_names=["accuracy"],
        histograms=[
            Histogram(
                "accuracy",
                [
                    Bin(i / 10, (i + 1) / 10, n)
                    for i, n in enumerate([0, 1, 4, 2, 0, 0, 0, 0, 0, 0])
                ],
                rows=7,
                mean=0.25,
            )
        ],
        attempts=[attempt("a1b2c3d4e5f6"), attempt("ffff0000eeee", ended=None)],
    )
    return replace(built, **changes)  # type: ignore[arg-type]


def span(span_id: str, name: str, offset: float, duration: float, **changes: object) -> SpanNode:
    built = SpanNode(
        span_id=span_id,
        name=name,
        kind="internal",
        offset=offset,
        duration=duration,
        error=False,
        status_description=None,
        attributes=[("gen_ai.request.model", "small-model")],
        events=[],
        input_tokens=None,
        output_tokens=None,
    )
    return replace(built, **changes)  # type: ignore[arg-type]


def version(number: int, status: str = "passed") -> VersionLine:
    return VersionLine(
        version=number,
        version_id=f"v{number}",
        attempt_id="a1b2c3d4e5f6",
        attempt_short="a1b2c3d4",
        execution=1,
        created=1_796_200_203.0 + number,
        status=status,
        scores={"accuracy": 0.25 * number},
        duration=0.045,
        tokens=None,
        error="ValueError: bad" if status == "failed" else None,
        traceback="Traceback ...\nValueError: bad" if status == "failed" else "",
    )


def row_page(**changes: object) -> RowPage:
    failing_call = span(
        "s3",
        "llm.call",
        1.0,
        0.5,
        error=True,
        status_description="timed out",
        events=[
            EventLine("retry", 1.1, [("attempt", "2")], exception=False),
            EventLine("exception", 1.4, [("exception.message", HOSTILE)], exception=True),
        ],
    )
    root = span(
        "s1",
        "test_answer",
        0.0,
        2.0,
        children=[span("s2", "retrieve", 0.0, 0.5), failing_call],
    )
    built = RowPage(
        experiment=EXPERIMENT,
        row_id="with/slash and space",
        nodeid="tests/test_bot.py::test_answer[1]",
        latest=version(2, "failed"),
        versions=[version(2, "failed"), version(1)],
        sides=[
            FieldSides("input", "what is 2+2", "what is 2+2", changed=False),
            FieldSides("output", HOSTILE, "4", changed=True),
            FieldSides("expected", "4", None, changed=False),
        ],
        metadata='{"lang": "en"}',
        tags=["smoke"],
        trace=Waterfall(roots=[root], duration=2.0, spans=3),
        judgments=[
            JudgmentLine(
                id="e1",
                judge_id="factuality",
                status="success",
                score=0.75,
                passed=True,
                reasoning="The answer matches <b>the</b> expected one.",
                steps=[StepLine("s3", "llm.call", "checked the call")],
                model="small-model",
                error=None,
                created_at=1_796_200_300.0,
                version_id="v2",
                latest=True,
            )
        ],
    )
    return replace(built, **changes)  # type: ignore[arg-type]


def compare_page() -> ComparePage:
    rows = [
        CompareLine("r-down", "regressed", "passed", "failed", {"pass": 1.0}, {"pass": 0.0},
                    {"pass": -1.0}),
        CompareLine("r-up", "improved", "failed", "passed", {"pass": 0.0}, {"pass": 1.0},
                    {"pass": 1.0}),
        CompareLine("a", "unchanged", "passed", "passed", {"pass": 1.0}, {"pass": 1.0},
                    {"pass": 0.0}),
        CompareLine("new one", "only-b", None, "passed", {}, {"pass": 1.0}, {}),
        CompareLine("gone", "only-a", "passed", None, {"pass": 1.0}, {}, {}),
    ]  # fmt: skip
    return ComparePage(
        a=BASELINE,
        b=EXPERIMENT,
        compared=3,
        only_a=1,
        only_b=1,
        scores=[ScoreDelta("pass", 0.6667, 0.6667, 0.0, 1, 1, 1)],
        counts={"regressed": 1, "improved": 1, "unchanged": 1, "only-b": 1, "only-a": 1},
        rows=rows,
    )
