"""The ``evalrows summary``, ``diff`` and ``export`` commands: an experiment's latest rows
summed up, one experiment compared with another (its baseline), and the rows written out as
JSON lines or CSV.

``cli`` registers these commands and hands over what they share with its own ones (opening
the store, a row as a record, printing tables): it imports this module, so this module cannot
import it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO

from .cli_judging.common import Shared, UsageError, money, plural
from .core.compare import compare, summarize
from .core.records import STATUSES
from .errors import EvalrowsError

FORMATS = ("jsonl", "csv")
# The record's values that are not one text or number: CSV holds them as JSON text, always,
# so a reader gets back exactly what was stored (the string "1" apart from the number 1).
JSON_COLUMNS = frozenset({"input", "output", "expected", "metadata", "tags", "error", "metrics"})
# The keys of a row's record (``cli.row_record``), for the header of an export of no rows.
RECORD_KEYS = (
    "id",
    "nodeid",
    "status",
    "attempt_id",
    "execution",
    "version",
    "input",
    "output",
    "expected",
    "scores",
    "metadata",
    "tags",
    "error",
    "metrics",
    "root_span_id",
    "span_id",
    "created",
)


@dataclass(frozen=True)
class Reports:
    """What these commands take from ``cli``."""

    shared: Shared
    row_record: Callable[[Any], dict[str, Any]]  # a row version as ``rows --json`` prints it


def add_commands(reports: Reports) -> None:
    shared = reports.shared
    summary = shared.add(
        "summary",
        "an experiment's latest rows summed up: statuses, score means, tokens and cost",
        partial(cmd_summary, reports=reports),
    )
    summary.add_argument("experiment")
    shared.add_project(summary)

    diff = shared.add(
        "diff",
        "compare experiment B with experiment A, its baseline, row by row (by row id) and "
        "score by score: score means and deltas, the rows that improved and regressed",
        partial(cmd_diff, reports=reports),
    )
    diff.add_argument("a", metavar="A", help="the baseline experiment")
    diff.add_argument("b", metavar="B", help="the experiment compared with it")
    shared.add_project(diff)
    diff.add_argument("--project-a", metavar="PROJECT", help="A's project (default: --project)")
    diff.add_argument("--project-b", metavar="PROJECT", help="B's project (default: --project)")

    export = shared.add(
        "export",
        "write an experiment's latest rows as JSON lines (the records of `rows --json`) or "
        "CSV (a score.NAME column per score, JSON text for nested values)",
        partial(cmd_export, reports=reports),
    )
    export.add_argument("experiment")
    export.add_argument("--format", metavar="FORMAT", help="jsonl or csv (--json: jsonl)")
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: standard output)"
    )
    shared.add_project(export)


# -- summary -------------------------------------------------------------------------------


def cmd_summary(args: argparse.Namespace, out: TextIO, *, reports: Reports) -> int:
    with reports.shared.open_store(args) as store:
        experiment = store.get_experiment(args.experiment, args.project)
        rows = store.latest_rows(experiment.id)
    summary = summarize(rows)
    if args.json:
        record = {"experiment": experiment.name, **summary.to_json()}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return _said_unreadable(store)
    statuses = ", ".join(f"{count} {status}" for status, count in _by_status(summary.statuses))
    out.write(
        f"experiment {experiment.name!r} (project {experiment.project!r}): "
        f"{plural(summary.rows, 'row')}{': ' + statuses if statuses else ''}\n"
    )
    tokens = "not recorded" if summary.tokens is None else str(summary.tokens)
    cost = "not recorded" if summary.cost is None else money(summary.cost)
    out.write(f"tokens: {tokens}; cost: {cost}\n")
    if summary.scores:
        records = [{"name": name, "mean": _number(mean)} for name, mean in summary.scores.items()]
        reports.shared.emit(out, records, False, [("SCORE", "name"), ("MEAN", "mean")])
    else:
        out.write("no scores\n")
    return _said_unreadable(store)


def _by_status(statuses: dict[str, int]) -> list[tuple[str, int]]:
    """Statuses in the order a test's outcomes are told (passed first), any other last."""
    order: dict[str, int] = {status: index for index, status in enumerate(STATUSES)}
    return sorted(statuses.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


# -- diff ----------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace, out: TextIO, *, reports: Reports) -> int:
    project_a = args.project_a if args.project_a is not None else args.project
    project_b = args.project_b if args.project_b is not None else args.project
    with reports.shared.open_store(args) as store:
        unreadable: list[str] = getattr(store, "unreadable", [])
        a = store.get_experiment(args.a, project_a)
        b = store.get_experiment(args.b, project_b)
        a_rows = store.latest_rows(a.id)
        # Each side's unreadable versions named with their experiment: a row id is in both.
        said = [f"experiment {args.a!r}: {line}" for line in unreadable]
        # Emptied between the reads: one store adds to the list, another replaces it.
        unreadable.clear()
        b_rows = store.latest_rows(b.id)
        said += [f"experiment {args.b!r}: {line}" for line in unreadable]
    found = compare(a_rows, b_rows, a_name=args.a, b_name=args.b)
    if args.json:
        out.write(json.dumps(found.to_json(), ensure_ascii=False) + "\n")
        return _say(said)
    out.write(f"A (the baseline): {a.name!r} (project {a.project!r})\n")
    out.write(f"B (compared):     {b.name!r} (project {b.project!r})\n")
    out.write(
        f"rows: {found.compared} compared, {found.only_a} only in A, {found.only_b} only in B\n"
    )
    scores = [
        {
            "name": name,
            "a_mean": _number(change.a_mean),
            "b_mean": _number(change.b_mean),
            "delta": _number(change.delta, sign=True),
            "improved": change.improved,
            "regressed": change.regressed,
            "unchanged": change.unchanged,
        }
        for name, change in found.scores.items()
    ]
    if scores:
        columns = [
            ("SCORE", "name"),
            ("A MEAN", "a_mean"),
            ("B MEAN", "b_mean"),
            ("DELTA", "delta"),
            ("IMPROVED", "improved"),
            ("REGRESSED", "regressed"),
            ("UNCHANGED", "unchanged"),
        ]
        reports.shared.emit(out, scores, False, columns)
    else:
        out.write("no scores compared\n")
    moved = [{"change": "regressed", "id": row_id} for row_id in found.regressed]
    moved += [{"change": "improved", "id": row_id} for row_id in found.improved]
    if moved:
        reports.shared.emit(out, moved, False, [("CHANGE", "change"), ("ROW ID", "id")])
    else:
        out.write("no row improved or regressed\n")
    return _say(said)


def _number(value: float | None, *, sign: bool = False) -> str:
    """A score or a mean to three places ("-" where a side has none); -0.000 reads 0.000."""
    if value is None:
        return "-"
    rounded = round(value, 3) or 0.0
    return f"{rounded:+.3f}" if sign else f"{rounded:.3f}"


# -- export --------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace, out: TextIO, *, reports: Reports) -> int:
    form = _format(args)  # before the store is opened: a usage error costs no read
    with reports.shared.open_store(args) as store:
        experiment = store.get_experiment(args.experiment, args.project)
        rows = store.latest_rows(experiment.id)
    records = [reports.row_record(row) for row in rows]
    target = args.output if args.output not in (None, "-") else None
    with _opened(target, out) as stream:
        if form == "csv":
            write_csv(stream, records)
        else:
            for record in records:
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    if target is not None:
        out.write(
            f"wrote {plural(len(records), 'row')} of experiment {experiment.name!r} "
            f"to {target} ({form})\n"
        )
    return _said_unreadable(store)


def _format(args: argparse.Namespace) -> str:
    given: str | None = args.format
    if given is None:
        if args.json:
            return "jsonl"
        raise UsageError(f"--format: name one of {', '.join(FORMATS)}")
    if given not in FORMATS:
        raise UsageError(f"--format {given!r}: expected one of {', '.join(FORMATS)}")
    if args.json and given != "jsonl":
        raise UsageError(f"--json writes JSON lines: it cannot go with --format {given}")
    return given


@contextmanager
def _opened(path: str | None, out: TextIO) -> Iterator[TextIO]:
    """``path`` opened for writing (the command's output when None); a file that cannot be
    written is one line, whether it fails to open or while it is written."""
    if path is None:
        yield out
        return
    try:
        # newline="": the csv module writes its own line ends.
        with open(path, "w", encoding="utf-8", newline="") as stream:
            yield stream
    except OSError as exc:
        raise EvalrowsError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_csv(stream: TextIO, records: list[dict[str, Any]]) -> None:
    """The records as CSV: their keys as columns in order, ``scores`` as one ``score.NAME``
    column per score any row has (sorted; empty where a row has none), nested values as
    JSON text."""
    names = sorted({name for record in records for name in record["scores"]})
    header: list[str] = []
    for key in records[0] if records else RECORD_KEYS:
        header += [f"score.{name}" for name in names] if key == "scores" else [key]
    writer = csv.writer(stream)
    writer.writerow(header)
    for record in records:
        line: list[Any] = []
        for key, value in record.items():
            if key == "scores":
                line += [repr(value[name]) if name in value else "" for name in names]
            elif key in JSON_COLUMNS:
                line.append(json.dumps(value, ensure_ascii=False))
            else:
                line.append("" if value is None else value)
        writer.writerow(line)


# -- shared --------------------------------------------------------------------------------


def _said_unreadable(store: Any) -> int:
    return _say(list(getattr(store, "unreadable", [])))


def _say(unreadable: list[str]) -> int:
    """One line for each row version the store could not read (the others were used); exit
    1 when there was any."""
    for line in unreadable:
        print(f"evalrows: error: {line}", file=sys.stderr)
    return 1 if unreadable else 0
