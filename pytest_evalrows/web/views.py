"""The pages of the web view (``pages``) built from a store: what ``evalrows serve`` renders
and the one-file report embeds.

Each page reads what it shows once: an experiment's page reads its latest rows in one call
(not a query per row), the experiments page only the rows' scores. The pure parts (the
query string, filtering, sorting and paging rows, histograms, a row's page from its history)
are in ``view_query`` and ``view_row``, re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from ..core.compare import ScoredRow, compare, counted_scores, scores_of, summarize
from ..core.judgments import Evaluation
from ..core.models import RowVersion
from ..core.records import Attempt, Experiment
from ..store.base import Store, UnsupportedError
from .pages import (
    CHANGE_ORDER,
    AttemptLine,
    Change,
    CompareLine,
    ComparePage,
    ExperimentCard,
    ExperimentPage,
    ExperimentRef,
    RowLine,
    RowPage,
    RowQuery,
    ScoreDelta,
)
from .view_errors import BadQuery, PageNotFound
from .view_query import (
    SCORE_SORT,
    histograms,
    page_within,
    pages_of,
    parse_query,
    query_params,
    select_rows,
)
from .view_row import build_row_page
from .view_text import CLIP, error_line, inline, pretty, search_text

__all__ = [
    "CLIP",
    "BadQuery",
    "PageNotFound",
    "all_row_lines",
    "baseline_of",
    "build_row_page",
    "compare_page",
    "experiment_cards",
    "experiment_page",
    "experiment_page_and_lines",
    "find_experiment",
    "histograms",
    "parse_query",
    "pretty",
    "query_params",
    "row_line",
    "row_page",
    "select_rows",
]


# -- experiments ----------------------------------------------------------------------------


def experiment_cards(store: Store) -> list[ExperimentCard]:
    """Every experiment of the store, newest first, summed up from its rows' scores."""
    experiments = store.list_experiments()
    cards = [
        experiment_card(
            experiment,
            store.latest_scores(experiment.id),
            _attempts(store, experiment.id),
            experiments,
        )
        for experiment in experiments
    ]
    cards.sort(key=lambda card: (-card.created, card.ref.project, card.ref.name))
    return cards


def find_experiment(store: Store, experiment_id: str) -> Experiment:
    """The experiment of that id; ``PageNotFound`` when there is none."""
    return _find(store.list_experiments(), experiment_id)


def experiment_page(store: Store, experiment_id: str, query: RowQuery) -> ExperimentPage:
    """An experiment's page: its card, the rows table as the query asks, histograms and
    attempts. A score the experiment's rows do not have is a ``BadQuery``; a page beyond
    the last shows the last (and the page's query says which)."""
    return experiment_page_and_lines(store, experiment_id, query)[0]


def experiment_page_and_lines(
    store: Store, experiment_id: str, query: RowQuery
) -> tuple[ExperimentPage, list[RowLine]]:
    """``experiment_page`` and ``all_row_lines`` from one read of the rows (the report
    needs both)."""
    experiments = store.list_experiments()
    experiment = _find(experiments, experiment_id)
    rows = store.latest_rows(experiment_id)
    attempts = _attempts(store, experiment_id)
    lines = sorted((row_line(row) for row in rows), key=lambda line: line.row_id)
    names = sorted({name for line in lines for name in line.scores})
    _check_scores(query, names)
    shown, matched = select_rows(lines, query)
    shown_page = page_within(query, matched)
    if shown_page != query.page:
        query = dataclasses.replace(query, page=shown_page)
    page = ExperimentPage(
        card=experiment_card(experiment, rows, attempts, experiments),
        query=query,
        rows=shown,
        matched=matched,
        total=len(lines),
        pages=pages_of(matched, query.page_size),
        score_names=names,
        histograms=histograms(lines),
        attempts=attempt_lines(attempts, rows),
    )
    return page, lines


def all_row_lines(store: Store, experiment_id: str) -> list[RowLine]:
    """Every row of the experiment (its latest version), by row id: what the report embeds."""
    find_experiment(store, experiment_id)
    lines = [row_line(row) for row in store.latest_rows(experiment_id)]
    lines.sort(key=lambda line: line.row_id)
    return lines


def row_line(row: RowVersion) -> RowLine:
    return RowLine(
        row_id=row.row_id,
        nodeid=row.nodeid,
        status=row.status,
        # As the card's pass rate and ``evalrows summary`` count them: an error's pass is 0.
        scores=counted_scores(row.scores, row.status),
        version=row.version,
        attempt_id=row.attempt_id,
        attempt_short=row.attempt_id[:8],
        duration=row.metrics.duration,
        tokens=row.metrics.tokens,
        created=row.created,
        error=error_line(row.error),
        input=inline(row.input),
        output=inline(row.output),
        expected=inline(row.expected),
        search_text=search_text(row.input, row.output, row.expected),
    )


# -- a row ----------------------------------------------------------------------------------


def row_page(store: Store, experiment_id: str, row_id: str) -> RowPage:
    """A row's page; ``PageNotFound`` when the experiment or the row is not there."""
    experiment = find_experiment(store, experiment_id)
    history = store.history(experiment_id, row_id)
    if not history:
        raise PageNotFound(f"experiment {experiment.name!r} has no row {row_id!r}")
    spans = store.list_spans(experiment_id, row_id)
    evaluations = _row_evaluations(store, experiment_id, row_id)
    return build_row_page(ref_of(experiment), history, spans, evaluations)


# -- compare --------------------------------------------------------------------------------


def compare_page(store: Store, a_id: str, b_id: str) -> ComparePage:
    """Experiment B against experiment A (its baseline), row by row: regressions first."""
    experiments = store.list_experiments()
    a, b = _find(experiments, a_id), _find(experiments, b_id)
    a_rows = {row.row_id: row for row in store.latest_scores(a_id)}
    b_rows = {row.row_id: row for row in store.latest_scores(b_id)}
    found = compare(a_rows.values(), b_rows.values(), a_name=a.name, b_name=b.name)
    regressed, improved = set(found.regressed), set(found.improved)
    lines = []
    for row_id in a_rows.keys() | b_rows.keys():
        a_row, b_row = a_rows.get(row_id), b_rows.get(row_id)
        a_scores = scores_of(a_row) if a_row is not None else {}
        b_scores = scores_of(b_row) if b_row is not None else {}
        change: Change
        if b_row is None:
            change = "only-a"
        elif a_row is None:
            change = "only-b"
        elif row_id in regressed:
            change = "regressed"
        elif row_id in improved:
            change = "improved"
        else:
            change = "unchanged"
        lines.append(
            CompareLine(
                row_id=row_id,
                change=change,
                a_status=a_row.status if a_row is not None else None,
                b_status=b_row.status if b_row is not None else None,
                a_scores=dict(sorted(a_scores.items())),
                b_scores=dict(sorted(b_scores.items())),
                deltas={
                    name: b_scores[name] - a_scores[name]
                    for name in sorted(a_scores.keys() & b_scores.keys())
                },
            )
        )
    lines.sort(key=lambda line: (CHANGE_ORDER.index(line.change), line.row_id))
    counts = Counter(line.change for line in lines)
    return ComparePage(
        a=ref_of(a),
        b=ref_of(b),
        compared=found.compared,
        only_a=found.only_a,
        only_b=found.only_b,
        scores=[
            ScoreDelta(
                score=name,
                a_mean=change_.a_mean,
                b_mean=change_.b_mean,
                delta=change_.delta,
                improved=change_.improved,
                regressed=change_.regressed,
                unchanged=change_.unchanged,
            )
            for name, change_ in found.scores.items()
        ],
        counts={change: counts.get(change, 0) for change in CHANGE_ORDER},
        rows=lines,
    )


def baseline_of(store: Store, experiment_id: str) -> ExperimentRef | None:
    """The experiment's baseline: the ``--eval-baseline`` its last session named (in its
    saved report), looked up as the session did (in the experiment's project, by name), or
    in another project when that one has none of the name. None when no session named one,
    the store keeps no attempts, or no experiment has that name."""
    experiments = store.list_experiments()
    experiment = _find(experiments, experiment_id)
    return _baseline(experiment, _attempts(store, experiment_id), experiments)


# -- shared ---------------------------------------------------------------------------------


class LatestRow(ScoredRow, Protocol):
    """A row's latest version as the pages sum it up: a ``RowScores`` or a ``RowVersion``."""

    @property
    def attempt_id(self) -> str: ...


def ref_of(experiment: Experiment) -> ExperimentRef:
    return ExperimentRef(id=experiment.id, name=experiment.name, project=experiment.project)


def experiment_card(
    experiment: Experiment,
    rows: Sequence[LatestRow],
    attempts: Sequence[Attempt],
    experiments: Sequence[Experiment],
) -> ExperimentCard:
    """An experiment summed up from its latest rows (``RowScores`` or ``RowVersion``s)."""
    summary = summarize(rows)
    lines = attempt_lines(attempts, rows)
    return ExperimentCard(
        ref=ref_of(experiment),
        created=experiment.created,
        rows=summary.rows,
        statuses=summary.statuses,
        pass_rate=summary.scores.get("pass"),
        means=summary.scores,
        attempts=len(attempts),
        last_attempt=lines[-1] if lines else None,
        tokens=summary.tokens,
        cost=summary.cost,
        baseline=_baseline(experiment, attempts, experiments),
    )


def attempt_lines(attempts: Iterable[Attempt], rows: Iterable[LatestRow]) -> list[AttemptLine]:
    """The attempts (oldest first), each with how many rows' latest versions it wrote."""
    latest = Counter(row.attempt_id for row in rows)
    return [
        AttemptLine(
            id=attempt.id,
            short=attempt.id[:8],
            started=attempt.started,
            ended=attempt.ended,
            host=attempt.host,
            counts=dict(attempt.counts),
            git_commit=attempt.git_commit,
            git_branch=attempt.git_branch,
            latest_rows=latest.get(attempt.id, 0),
        )
        for attempt in attempts
    ]


def _baseline(
    experiment: Experiment, attempts: Sequence[Attempt], experiments: Sequence[Experiment]
) -> ExperimentRef | None:
    reports = [attempt.report for attempt in attempts if attempt.report is not None]
    name = reports[-1].get("baseline") if reports else None
    if not isinstance(name, str) or not name:
        return None
    named = [each for each in experiments if each.name == name and each.id != experiment.id]
    ours = [each for each in named if each.project == experiment.project]
    found = ours or sorted(named, key=lambda each: (each.created, each.project))
    return ref_of(found[0]) if found else None


def _find(experiments: Sequence[Experiment], experiment_id: str) -> Experiment:
    for experiment in experiments:
        if experiment.id == experiment_id:
            return experiment
    # Not the store's path: a 404 page shows this to whoever asks, logged in or not.
    raise PageNotFound(f"no experiment {experiment_id!r} in this store")


def _attempts(store: Store, experiment_id: str) -> list[Attempt]:
    if not store.attempts:
        return []
    try:
        return store.list_attempts(experiment_id)
    except UnsupportedError:
        return []


def _row_evaluations(store: Store, experiment_id: str, row_id: str) -> list[Evaluation]:
    # The row's alone: an experiment may hold tens of thousands.
    if not store.evaluations:
        return []
    try:
        return store.row_evaluations(experiment_id, row_id)
    except UnsupportedError:
        return []


def _check_scores(query: RowQuery, names: list[str]) -> None:
    """A score the query names must be one some row has."""
    wanted = [query.score] if query.score is not None else []
    if query.sort.startswith(SCORE_SORT):
        wanted.append(query.sort[len(SCORE_SORT) :])
    for name in wanted:
        if name not in names:
            valid = ", ".join(names) if names else "none: no row has a score"
            raise BadQuery(f"score {name!r} is not one of this experiment's scores: {valid}")
