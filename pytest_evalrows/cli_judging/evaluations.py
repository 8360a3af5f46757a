"""``evalrows judgments`` (an experiment's evaluations, filtered, a page at a time) and
``evalrows judgment`` (one of them, with its steps and reasoning)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, TextIO

from ..core.timestamps import to_iso
from ..errors import EvalrowsError
from .common import Shared, UsageError, money, plural, whole_number

if TYPE_CHECKING:
    from ..core.judgments import Evaluation

DEFAULT_PAGE_SIZE = 20


EVALUATION_COLUMNS = [
    ("ID", "id"),
    ("ROW", "row_id"),
    ("JUDGE", "judge_id"),
    ("STATUS", "status"),
    ("SCORE", "score_text"),
    ("PASSED", "passed_text"),
    ("CREATED", "created_text"),
]

STEP_COLUMNS = [("SPAN", "span_id"), ("NAME", "name"), ("RESULT", "result")]


def cmd_judgments(args: argparse.Namespace, out: TextIO, *, shared: Shared) -> int:
    from ..core.judgments import EVALUATION_STATUSES
    from ..judging.queries import MAX_PAGE_SIZE, OUTCOMES, select

    page = whole_number("--page", args.page)
    page_size = whole_number("--page-size", args.page_size)
    if page_size > MAX_PAGE_SIZE:
        raise UsageError(f"--page-size {args.page_size!r}: at most {MAX_PAGE_SIZE}")
    for option, given, valid in (
        ("--outcome", args.outcome, OUTCOMES),
        ("--status", args.status, EVALUATION_STATUSES),
    ):
        if given is not None and given not in valid:
            raise UsageError(f"{option} {given!r}: expected one of {', '.join(valid)}")
    with shared.open_store(args) as store:
        if not store.evaluations:
            raise EvalrowsError(f"{store.display_url} keeps no evaluations")
        experiment = store.get_experiment(args.experiment, args.project)
        evaluations = store.list_evaluations(experiment.id)
    row_id = args.row
    if row_id is not None and not any(e.row_id == row_id for e in evaluations):
        # A row id as the test wrote it, before pytest escaped it into the stored one.
        named = {e.row_id for e in evaluations if shared.unescaped(e.row_id) == row_id}
        row_id = named.pop() if len(named) == 1 else row_id
    found = select(
        evaluations,
        page=page,
        page_size=page_size,
        judge_id=args.judge,
        row_id=row_id,
        status=args.status,
        outcome=args.outcome,
        search=args.search,
    )
    if page > found.pages:
        raise UsageError(
            f"--page {page}: the {plural(found.total, 'evaluation')} found fill pages 1 to "
            f"{found.pages}"
        )
    if args.json:
        for evaluation in found.evaluations:
            out.write(json.dumps(evaluation_record(evaluation), ensure_ascii=False) + "\n")
        return 0
    records = [table_record(evaluation) for evaluation in found.evaluations]
    shared.emit(out, records, False, EVALUATION_COLUMNS)
    out.write(f"page {page} of {found.pages} ({plural(found.total, 'evaluation')})\n")
    return 0


def evaluation_record(evaluation: Evaluation) -> dict[str, Any]:
    """An evaluation's fields as JSON, its times as ISO text and its ``result`` nested."""
    record = evaluation.model_dump(mode="json")
    for key in ("created_at", "started_at", "finished_at"):
        record[key] = to_iso(record[key], "milliseconds")
    return record


def table_record(evaluation: Evaluation) -> dict[str, Any]:
    result = evaluation.result
    score = None if result is None else result.score
    passed = None if result is None else result.passed
    return {
        "id": evaluation.id,
        "row_id": evaluation.row_id,
        "judge_id": evaluation.judge_id,
        "status": evaluation.status,
        "score_text": "" if score is None else f"{score:g}",
        "passed_text": "" if passed is None else yes_no(passed),
        "created_text": to_iso(evaluation.created_at, "seconds"),
    }


def cmd_judgment(args: argparse.Namespace, out: TextIO, *, shared: Shared) -> int:
    with shared.open_store(args) as store:
        if not store.evaluations:
            raise EvalrowsError(f"{store.display_url} keeps no evaluations")
        if args.experiment is not None:
            experiments = [store.get_experiment(args.experiment, args.project)]
        else:
            experiments = [
                experiment
                for experiment in store.list_experiments()
                if args.project is None or experiment.project == args.project
            ]
        found = None
        for experiment in experiments:
            found = store.get_evaluation(experiment.id, args.evaluation_id)
            if found is not None:
                break
    if found is None:
        where = f"experiment {args.experiment!r}" if args.experiment else store.display_url
        raise EvalrowsError(f"no evaluation {args.evaluation_id!r} in {where}")
    if args.json:
        out.write(json.dumps(evaluation_record(found), ensure_ascii=False) + "\n")
        return 0
    result = found.result
    fields: list[tuple[str, Any]] = [
        ("evaluation", found.id),
        ("experiment", f"{experiment.name} (project {experiment.project})"),
        ("row", found.row_id),
        ("trace", found.trace_id),
        ("version", found.version_id),
        ("judge", found.judge_id),
        ("status", found.status),
        ("created", to_iso(found.created_at, "seconds")),
        ("finished", to_iso(found.finished_at, "seconds")),
        ("error", found.error),
    ]
    if result is not None:
        fields += [
            ("score", None if result.score is None else f"{result.score:g}"),
            ("passed", None if result.passed is None else yes_no(result.passed)),
            ("model", result.model),
            ("turns", result.turns),
            ("latency", None if result.latency_ms is None else f"{result.latency_ms:.3g} ms"),
            ("tokens", tokens_text(result.prompt_tokens, result.completion_tokens)),
            ("cost", None if result.total_cost is None else money(result.total_cost)),
        ]
    for name, value in fields:
        if value is not None:
            out.write(f"{name + ':':<12}{value}\n")
    if result is None:
        return 0
    out.write(f"\nsteps ({len(result.steps)}):\n")
    steps = [
        {"span_id": step.span_id or "", "name": step.name or "", "result": step_text(step.result)}
        for step in result.steps
    ]
    if steps:
        shared.emit(
            out, steps, False, [("SPAN", "span_id"), ("NAME", "name"), ("RESULT", "result")]
        )
    out.write(f"\nreasoning:\n{result.reasoning or '(none given)'}\n")
    return 0


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def tokens_text(prompt: int | None, completion: int | None) -> str | None:
    if prompt is None and completion is None:
        return None
    return f"{prompt or 0} in, {completion or 0} out"


def step_text(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
