"""What each page of the web view shows, as plain data: built from a store by ``views``,
turned into HTML by ``render`` (the pages ``evalrows serve`` serves, and the one-file report).

Pure: imports no pytest, no template engine, no web framework. Times are Unix seconds;
durations seconds. Every JSON-like value a page shows (input, output, attributes) arrives
here already as display text (``views.pretty``), so templates never format data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: Rows a page of the rows table shows.
PAGE_SIZE = 50
#: The columns the rows table sorts by; ``score:NAME`` sorts by one score.
SORT_KEYS = ("row_id", "status", "version", "attempt", "duration", "tokens", "created")

Change = Literal["regressed", "improved", "unchanged", "only-a", "only-b"]
#: The order of the compare view: regressions first.
CHANGE_ORDER: tuple[Change, ...] = ("regressed", "improved", "unchanged", "only-b", "only-a")


@dataclass(frozen=True)
class ExperimentRef:
    """Enough to name and link an experiment."""

    id: str
    name: str
    project: str


@dataclass(frozen=True)
class AttemptLine:
    """One session that recorded into an experiment."""

    id: str
    short: str  # the first 8 characters, as ``evalrows attempts`` prints them
    started: float
    ended: float | None
    host: str
    counts: dict[str, int]  # status -> tests of that outcome in the session
    git_commit: str | None
    git_branch: str | None
    latest_rows: int  # rows whose latest version this attempt wrote


@dataclass(frozen=True)
class ExperimentCard:
    """One line of the experiments page (and the head of an experiment's page)."""

    ref: ExperimentRef
    created: float
    rows: int
    statuses: dict[str, int]  # status -> rows whose latest version has it
    pass_rate: float | None  # the mean of ``pass`` (``core.compare.scores_of``); None: no row
    means: dict[str, float]  # score -> mean over the rows that have it, ``pass`` included
    attempts: int
    last_attempt: AttemptLine | None
    tokens: int | None
    cost: float | None
    baseline: ExperimentRef | None  # the last attempt's ``--eval-baseline``, when stored


@dataclass(frozen=True)
class RowQuery:
    """The rows table's filters, sort and page: the query string of an experiment's page.

    ``views.parse_query`` builds one from query parameters and says which value is wrong.
    """

    statuses: tuple[str, ...] = ()  # empty: every status
    text: str = ""  # case-insensitive substring of input, output or expected (``search_text``)
    score: str | None = None  # with ``low``/``high``: rows whose score is within [low, high]
    low: float | None = None
    high: float | None = None
    sort: str = "row_id"  # one of SORT_KEYS or "score:NAME"
    descending: bool = False
    page: int = 1  # 1-based
    page_size: int = PAGE_SIZE


@dataclass(frozen=True)
class RowLine:
    """One row (its latest version) in the rows table."""

    row_id: str
    nodeid: str
    status: str
    scores: dict[str, float]  # as counted (``core.compare.scores_of``): an error's pass is 0
    version: int | None
    attempt_id: str
    attempt_short: str
    duration: float
    tokens: int | None
    created: float | None
    error: str | None  # "Type: message", first line
    input: str  # display text, clipped (``views.CLIP``)
    output: str
    expected: str
    # What text search looks in: input, output and expected whole (as the cells show them,
    # unclipped), casefolded, one per line. The report embeds it for its script's search.
    search_text: str


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int


@dataclass(frozen=True)
class Histogram:
    """One score over the rows that have it (all rows, not the filtered ones)."""

    score: str
    bins: list[Bin]  # 10 equal bins over [0, 1] when every value is in it, else min..max
    rows: int
    mean: float


@dataclass(frozen=True)
class ExperimentPage:
    card: ExperimentCard
    query: RowQuery
    rows: list[RowLine]  # this page of the rows that match, in the query's order
    matched: int  # rows that match the filters
    total: int  # rows of the experiment
    pages: int  # pages of matched rows (at least 1)
    score_names: list[str]  # every score some row has, sorted
    histograms: list[Histogram]
    attempts: list[AttemptLine]  # oldest first


@dataclass(frozen=True)
class VersionLine:
    """One version of a row: what one attempt (and execution) made of the case."""

    version: int | None
    version_id: str
    attempt_id: str
    attempt_short: str
    execution: int
    created: float | None
    status: str
    scores: dict[str, float]
    duration: float
    tokens: int | None
    error: str | None  # "Type: message"
    traceback: str


@dataclass(frozen=True)
class FieldSides:
    """One of input, output and expected: the latest version's and the previous one's."""

    name: Literal["input", "output", "expected"]
    latest: str  # display text (``views.pretty``), unclipped
    previous: str | None  # None: no previous version
    changed: bool


@dataclass(frozen=True)
class EventLine:
    name: str
    offset: float  # seconds after the trace started
    attributes: list[tuple[str, str]]  # (key, display text), sorted by key
    exception: bool  # an OpenTelemetry "exception" event


@dataclass(frozen=True)
class SpanNode:
    """One span of a trace, with its children: the waterfall tree of a row page."""

    span_id: str
    name: str
    kind: str
    offset: float  # seconds after the trace started (its earliest span)
    duration: float
    error: bool  # status "error", or an exception event
    status_description: str | None
    attributes: list[tuple[str, str]]  # (key, display text), sorted by key
    events: list[EventLine]
    input_tokens: int | None
    output_tokens: int | None
    children: list[SpanNode] = field(default_factory=list)


@dataclass(frozen=True)
class Waterfall:
    """The latest version's trace: its spans as a tree (orphans under the roots)."""

    roots: list[SpanNode]
    duration: float  # from the earliest start to the latest end
    spans: int


@dataclass(frozen=True)
class StepLine:
    span_id: str | None
    name: str | None
    result: str  # display text


@dataclass(frozen=True)
class JudgmentLine:
    """One judge's evaluation of one version of the row."""

    id: str
    judge_id: str
    status: str  # pending, running, success, error, ...
    score: float | None  # the score it put on the row (``Evaluation.row_score``)
    passed: bool | None
    reasoning: str
    steps: list[StepLine]
    model: str | None
    error: str | None
    created_at: float
    version_id: str
    latest: bool  # it judged the row's latest version


@dataclass(frozen=True)
class RowPage:
    experiment: ExperimentRef
    row_id: str
    nodeid: str
    latest: VersionLine
    versions: list[VersionLine]  # newest first
    sides: list[FieldSides]  # input, output, expected
    metadata: str  # display text of the latest version's metadata
    tags: list[str]
    trace: Waterfall
    judgments: list[JudgmentLine]  # newest first


@dataclass(frozen=True)
class ScoreDelta:
    score: str
    a_mean: float | None
    b_mean: float | None
    delta: float | None
    improved: int
    regressed: int
    unchanged: int


@dataclass(frozen=True)
class CompareLine:
    row_id: str
    change: Change
    a_status: str | None  # None: the row is not on that side
    b_status: str | None
    a_scores: dict[str, float]
    b_scores: dict[str, float]
    deltas: dict[str, float]  # score -> b - a, for the scores both sides have


@dataclass(frozen=True)
class ComparePage:
    """B against A (its baseline), row by row: regressions first (``CHANGE_ORDER``), then
    by row id."""

    a: ExperimentRef
    b: ExperimentRef
    compared: int
    only_a: int
    only_b: int
    scores: list[ScoreDelta]
    counts: dict[str, int]  # change -> rows
    rows: list[CompareLine]
