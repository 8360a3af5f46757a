"""The ``evalrows judge``, ``judgments`` and ``judgment`` commands: run judges over the traces
of an experiment's stored rows, and read the evaluations they left.

``cli`` registers these commands and hands over what they share with its own ones (opening
the store, printing tables): it imports this package, so this package cannot import it.
"""

from __future__ import annotations

from functools import partial

from ..core.records import STATUSES
from .common import Shared, UsageError
from .evaluations import DEFAULT_PAGE_SIZE, cmd_judgment, cmd_judgments
from .judge import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, cmd_judge

__all__ = ["Shared", "UsageError", "add_commands"]


def add_commands(shared: Shared) -> None:
    judge = shared.add(
        "judge",
        "run judges over the traces of an experiment's rows (their latest versions) and "
        "store the evaluations",
        partial(cmd_judge, shared=shared),
    )
    judge.add_argument("experiment")
    judge.add_argument(
        "--judge",
        dest="judges",
        action="append",
        required=True,
        metavar="MODULE:NAME",
        help="a judge, or a list of judges, named NAME in module MODULE (imported with the "
        "current directory first on sys.path); repeatable",
    )
    judge.add_argument(
        "--row", dest="rows", action="append", metavar="ID", help="only this row; repeatable"
    )
    judge.add_argument(
        "--status",
        dest="statuses",
        action="append",
        metavar="STATUS",
        help=f"only rows whose latest version has this status ({', '.join(STATUSES)}); repeatable",
    )
    judge.add_argument(
        "--estimate",
        action="store_true",
        help="print the tokens and cost the judges expect, calling no judge and no model",
    )
    judge.add_argument(
        "--concurrency",
        default=str(DEFAULT_CONCURRENCY),
        metavar="N",
        help=f"judgments run at once (default: {DEFAULT_CONCURRENCY})",
    )
    judge.add_argument(
        "--timeout",
        default=str(DEFAULT_TIMEOUT),
        metavar="S",
        help="seconds one judgment may take before it is a failed evaluation "
        f"(default: {DEFAULT_TIMEOUT:g})",
    )
    shared.add_project(judge)

    judgments = shared.add(
        "judgments",
        "the evaluations of an experiment's rows, newest first, one page at a time",
        partial(cmd_judgments, shared=shared),
    )
    judgments.add_argument("experiment")
    judgments.add_argument("--judge", metavar="NAME", help="only this judge's evaluations")
    judgments.add_argument("--row", metavar="ID", help="only this row's evaluations")
    judgments.add_argument(
        "--outcome",
        help="only the judgments that passed (pass) or did not (fail); a judge that failed to "
        "judge has neither outcome",
    )
    judgments.add_argument(
        "--status",
        # Said here rather than imported: the models cost every command a tenth of a second.
        help="only evaluations of this status (pending, in_progress, success, failure)",
    )
    judgments.add_argument(
        "--search",
        metavar="TEXT",
        help="only evaluations whose reasoning, error, judge or row holds TEXT (any case)",
    )
    judgments.add_argument("--page", default="1", metavar="N", help="the page (default: 1)")
    judgments.add_argument(
        "--page-size",
        default=str(DEFAULT_PAGE_SIZE),
        metavar="N",
        help=f"evaluations per page, at most 1000 (default: {DEFAULT_PAGE_SIZE})",
    )
    shared.add_project(judgments)

    judgment = shared.add(
        "judgment",
        "one evaluation: its result, the steps the judge took and its reasoning",
        partial(cmd_judgment, shared=shared),
    )
    judgment.add_argument("evaluation_id", metavar="ID")
    judgment.add_argument(
        "--experiment", help="look only in this experiment (default: every experiment)"
    )
    shared.add_project(judgment)
