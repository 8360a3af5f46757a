"""``evalrows judge``: load the judges ``--judge`` names, select the rows, and either estimate
what judging them costs or judge them and store the evaluations."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..core.records import STATUSES, Experiment, RowState
from ..errors import EvalrowsError
from .common import Shared, UsageError, money, one_line, plural, seconds, whole_number

if TYPE_CHECKING:
    from ..core.judgments import CostEstimate, Evaluation
    from ..core.trace import Trace

DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 120.0


def cmd_judge(args: argparse.Namespace, out: TextIO, *, shared: Shared) -> int:
    from ..judging import judge_id, judge_traces

    concurrency = whole_number("--concurrency", args.concurrency)
    timeout = seconds("--timeout", args.timeout)
    statuses = valid_statuses(args.statuses or [])
    judges = load_judges(args.judges, judge_id)
    names = [judge_id(judge) for judge in judges]
    with shared.open_store(args) as store:
        if not args.estimate and not store.evaluations:
            raise EvalrowsError(f"{store.display_url} keeps no evaluations")
        experiment = store.get_experiment(args.experiment, args.project)
        row_ids = select_rows(store, experiment, args.rows or [], statuses, shared.unescaped)
        # No row id at all is no row (not every store reads an empty selection so).
        traces = [] if row_ids == [] else store.latest_traces(experiment.id, row_ids)
        if not traces:
            with_status = f" with status {' or '.join(statuses)}" if statuses else ""
            raise EvalrowsError(f"no rows{with_status} to judge in {experiment.name!r}")
        if args.estimate:
            estimates = [[estimate(judge, trace) for trace in traces] for judge in judges]
            emit_estimates(out, names, estimates, len(traces), args.json, shared)
            return 0
        progress = Progress(len(traces) * len(judges), sys.stderr)
        try:
            evaluations = judge_traces(
                traces,
                judges,
                concurrency=concurrency,
                timeout=timeout,
                progress=progress,
                experiment_id=experiment.id,
            )
        except KeyboardInterrupt:
            # judge_traces returns all or nothing: what was judged before Ctrl-C is lost.
            progress.finish(f"interrupted after {progress.done} of {progress.total} judgments")
            print("evalrows: error: interrupted: no evaluation was saved", file=sys.stderr)
            return 130
        progress.finish(f"judged {plural(len(traces), 'row')} with {plural(len(judges), 'judge')}")
        try:
            store.save_evaluations(experiment.id, evaluations)
        except EvalrowsError as exc:
            raise EvalrowsError(
                f"could not save the {plural(len(evaluations), 'evaluation')} to "
                f"{store.display_url}: {exc}"
            ) from None
    emit_summary(out, names, evaluations, args.json, shared)
    if not args.json:
        out.write(
            f"saved {plural(len(evaluations), 'evaluation')} of {plural(len(traces), 'row')} "
            f"to experiment {experiment.name!r}\n"
        )
    failed = [evaluation for evaluation in evaluations if evaluation.status != "success"]
    if failed:
        # Not an error: the failures are stored, and the other judgments stand.
        print(
            f"evalrows: warning: {len(failed)} of {len(evaluations)} judgments failed, stored "
            f"as failed evaluations (evalrows judgments {experiment.name} --status failure); "
            f"the first: {failed[0].judge_id} on {failed[0].row_id}: "
            f"{one_line(failed[0].error or 'no error given')}",
            file=sys.stderr,
        )
    return 0


def estimate(judge: Any, trace: Trace) -> CostEstimate:
    """The judge's own estimate for one trace; one line naming the judge when it fails."""
    from ..judging import estimate_of, judge_id

    try:
        return estimate_of(judge, trace)
    except Exception as exc:  # the user's estimate()
        raise EvalrowsError(
            f"judge {judge_id(judge)!r} could not estimate row {trace.row_id!r}: "
            f"{type(exc).__name__}: {one_line(str(exc))}"
        ) from None


def load_judges(specs: Sequence[str], judge_id: Callable[[Any], str]) -> list[Any]:
    """The judges ``--judge MODULE:NAME`` values name, in order; a usage error for a value
    that names no module, no attribute of it, or neither a judge nor a list of judges."""
    here = str(Path.cwd())
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)  # a user's checks.py beside their suite, as python -m has it
    judges: list[Any] = []
    by_name: dict[str, str] = {}
    for spec in specs:
        for judge in judges_named(spec):
            if any(judge is given for given in judges):
                continue  # named twice: judged once, as the library does
            try:
                name = judge_id(judge)
            except TypeError as exc:  # a lambda, or an object without a name
                raise UsageError(f"--judge {spec!r}: {exc}") from None
            if name in by_name:
                raise UsageError(
                    f"--judge {spec!r}: a judge named {name!r} is already given by "
                    f"{by_name[name]!r}; their scores would land on one name"
                )
            by_name[name] = spec
            judges.append(judge)
    return judges


def judges_named(spec: str) -> list[Any]:
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"--judge {spec!r}: give MODULE:NAME, such as checks:exact_answer")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UsageError(
                f"--judge {spec!r}: no module {module_name!r} in the current directory or on "
                "the Python path"
            ) from None
        raise UsageError(f"--judge {spec!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the user's module raised while it was imported
        raise UsageError(
            f"--judge {spec!r}: importing {module_name} failed: {type(exc).__name__}: "
            f"{one_line(str(exc))}"
        ) from None
    found: Any = module
    for part in name.split("."):
        if not hasattr(found, part):
            offered = ", ".join(judges_in(module)) or "none"
            raise UsageError(
                f"--judge {spec!r}: module {module_name} has no {name!r} (its judges: {offered})"
            )
        found = getattr(found, part)
    if isinstance(found, (list, tuple)):
        if not found:
            raise UsageError(f"--judge {spec!r}: the list of judges is empty")
        for each in found:
            if not is_judge(each):
                raise UsageError(f"--judge {spec!r}: holds {describe(each)}, which is no judge")
            check_takes_a_trace(spec, each)
        return list(found)
    if not is_judge(found):
        raise UsageError(
            f"--judge {spec!r} is {describe(found)}: a judge is a function or callable object "
            "taking a Trace, or a list of them"
        )
    check_takes_a_trace(spec, found)
    return [found]


def check_takes_a_trace(spec: str, judge: Any) -> None:
    """A callable that cannot be called with one trace would fail every evaluation: most
    often a judge factory named instead of the judge it makes (``no_span_errors``)."""
    try:
        inspect.signature(judge).bind(None)
    except ValueError:  # no signature to read (a builtin): let it run
        return
    except TypeError:
        name = getattr(judge, "__name__", type(judge).__name__)
        takes = inspect.signature(judge).replace(return_annotation=inspect.Signature.empty)
        raise UsageError(
            f"--judge {spec!r}: {name}{takes} cannot be called with a trace; if it makes "
            f"judges, name one it makes (my_judge = {name}(...))"
        ) from None


def is_judge(value: Any) -> bool:
    return callable(value) and not isinstance(value, type)


def judges_in(module: Any) -> list[str]:
    """The public names of a module that are judges or lists of judges: what ``--judge``
    could have named."""
    found = []
    for name, value in sorted(vars(module).items()):
        # A function imported from elsewhere is a tool of the module (a judge factory such
        # as span_called), not one of its judges; an object made here is.
        imported = inspect.isfunction(value) and value.__module__ != module.__name__
        if name.startswith("_") or imported:
            continue
        listed = isinstance(value, (list, tuple)) and value and all(map(is_judge, value))
        if is_judge(value) or listed:
            found.append(name)
    return found


def describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__name__} (give an instance of it)"
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind}"


def valid_statuses(given: Sequence[str]) -> list[str]:
    for status in given:
        if status not in STATUSES:
            raise UsageError(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
    return list(dict.fromkeys(given))


def select_rows(
    store: Any,
    experiment: Experiment,
    given: Sequence[str],
    statuses: Sequence[str],
    unescaped: Callable[[str], str],
) -> list[str] | None:
    """The row ids to judge: every row (None) or the ``--row`` ones, of the ``--status``
    ones; an error naming the ``--row`` ids the experiment has no row for."""
    if not given and not statuses:
        return None
    states: dict[str, RowState] = store.latest_states(experiment.id)
    if given:
        # A row id as the test wrote it names the one stored row pytest escaped it into.
        as_written: dict[str, list[str]] = {}
        for row_id in states:
            as_written.setdefault(unescaped(row_id), []).append(row_id)
        chosen, unknown = [], []
        for row_id in dict.fromkeys(given):
            if row_id in states:
                chosen.append(row_id)
            elif len(as_written.get(row_id, [])) == 1:
                chosen.append(as_written[row_id][0])
            else:
                unknown.append(row_id)
        if unknown:
            raise EvalrowsError(
                f"no row {', '.join(map(repr, unknown))} in experiment {experiment.name!r}"
            )
    else:
        chosen = list(states)
    return [row_id for row_id in chosen if not statuses or states[row_id].status in statuses]


class Progress:
    """How far the judgments are, on ``stream``: a bar redrawn in place when it is a
    terminal; otherwise (a log, a pipe) nothing until one final line."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.live = stream.isatty()
        self.started = time.monotonic()
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        if not self.live or not total:
            return
        filled = self.WIDTH * done // total
        self.stream.write(f"\rjudging [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}")
        self.stream.flush()

    def finish(self, what: str) -> None:
        took = time.monotonic() - self.started
        self.stream.write(("\r\033[K" if self.live else "") + f"evalrows: {what} in {took:.1f} s\n")


# -- what evalrows judge prints ----------------------------------------------------------------

ESTIMATE_COLUMNS = [
    ("JUDGE", "judge"),
    ("MODEL", "model"),
    ("TRACES", "traces"),
    ("INPUT TOKENS", "input_tokens"),
    ("OUTPUT TOKENS", "output_tokens"),
    ("EST. COST", "cost_text"),
]

SUMMARY_COLUMNS = [
    ("JUDGE", "judge"),
    ("EVALS", "evaluations"),
    ("OK", "successes"),
    ("FAILED", "failures"),
    ("PASSED", "passed"),
    ("MEAN SCORE", "score_text"),
    ("IN TOKENS", "prompt_tokens"),
    ("OUT TOKENS", "completion_tokens"),
    ("COST", "cost_text"),
]


def emit_estimates(
    out: TextIO,
    names: list[str],
    estimates: list[list[Any]],
    traces: int,
    as_json: bool,
    shared: Shared,
) -> None:
    """One line per judge, and the total (``judge`` null in JSON, TOTAL in the table)."""
    records = []
    for name, each in zip(names, estimates, strict=True):
        models = sorted({estimate.model for estimate in each if estimate.model})
        records.append(
            {
                "judge": name,
                "model": ", ".join(models) or None,
                "traces": traces,
                "input_tokens": sum(estimate.input_tokens for estimate in each),
                "output_tokens": sum(estimate.output_tokens for estimate in each),
                "estimated_cost": sum(estimate.estimated_cost for estimate in each),
            }
        )
    records.append(
        {
            "judge": None,
            "model": None,
            "traces": traces,
            **{
                key: sum(record[key] for record in records)
                for key in ("input_tokens", "output_tokens", "estimated_cost")
            },
        }
    )
    if not as_json:
        records[-1]["judge"] = "TOTAL"
        for record in records:
            record["cost_text"] = money(record["estimated_cost"])
    shared.emit(out, records, as_json, ESTIMATE_COLUMNS)


def emit_summary(
    out: TextIO, names: list[str], evaluations: list[Evaluation], as_json: bool, shared: Shared
) -> None:
    records = []
    for name in names:
        mine = [evaluation for evaluation in evaluations if evaluation.judge_id == name]
        results = [e.result for e in mine if e.status == "success" and e.result is not None]
        scores = [score for score in (result.row_score for result in results) if score is not None]
        # A failed judgment may still have spent tokens (an LLM answer that did not parse).
        spent = [e.result for e in mine if e.result is not None]
        record: dict[str, Any] = {
            "judge": name,
            "evaluations": len(mine),
            "successes": sum(1 for e in mine if e.status == "success"),
            "failures": sum(1 for e in mine if e.status != "success"),
            "passed": sum(1 for result in results if result.passed),
            "mean_score": sum(scores) / len(scores) if scores else None,
            "prompt_tokens": sum(result.prompt_tokens or 0 for result in spent),
            "completion_tokens": sum(result.completion_tokens or 0 for result in spent),
            "total_cost": sum(result.total_cost or 0.0 for result in spent),
        }
        if not as_json:
            score = record["mean_score"]
            record["score_text"] = "-" if score is None else f"{score:.3f}"
            record["cost_text"] = money(record["total_cost"])
        records.append(record)
    shared.emit(out, records, as_json, SUMMARY_COLUMNS)
