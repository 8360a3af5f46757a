"""The ``evalrows report`` command: one experiment's web view written as one self-contained
HTML file (``web.report``), to keep as a CI artifact or open from disk.

``cli`` registers it with what the commands share (opening the store, ``--store``,
``--json``); like ``cli_reports`` this module cannot import ``cli``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from .cli_judging.common import Shared, plural
from .errors import EvalrowsError, UnknownExperimentError

#: Where the report goes without ``-o``: a name of its own, so that it overwrites no
#: ``report.html`` of the project's by surprise.
DEFAULT_OUTPUT = "evalrows-report.html"


def add_commands(shared: Shared) -> None:
    report = shared.add(
        "report",
        "write an experiment's web view (its rows, each row's versions, trace and judgments, "
        "and the comparison with its baseline) as one self-contained HTML file",
        lambda args, out: cmd_report(args, out, shared=shared),
    )
    report.add_argument("experiment")
    report.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=DEFAULT_OUTPUT,
        help=f"the HTML file to write (default: {DEFAULT_OUTPUT})",
    )
    report.add_argument(
        "--baseline",
        metavar="EXPERIMENT",
        help="compare with this experiment (default: the baseline the experiment's last "
        "session named with --eval-baseline, if any; none: the report has no comparison)",
    )
    shared.add_project(report)
    report.add_argument(
        "--baseline-project",
        metavar="PROJECT",
        help="the baseline's project (default: the experiment's)",
    )


def cmd_report(args: argparse.Namespace, out: TextIO, *, shared: Shared) -> int:
    try:
        import jinja2  # noqa: F401 - the templates' engine, an optional dependency
    except ImportError:
        raise EvalrowsError(
            'evalrows report needs Jinja2: pip install "pytest-evalrows[report]"'
        ) from None
    from .web import report, views
    from .web.pages import ExperimentRef

    target = Path(args.output)
    with shared.open_store(args) as store:
        experiment = store.get_experiment(args.experiment, args.project)
        baseline: ExperimentRef | None
        if args.baseline is not None:
            project = args.baseline_project or experiment.project
            baseline = views.ref_of(_baseline(store, args.baseline, project))
        else:
            baseline = views.baseline_of(store, experiment.id)
        built = report.build_report(store, experiment.id, baseline=baseline)
    size = _write(target, built.html)
    if args.json:
        record = {"path": str(target), "rows": built.rows, "bytes": size}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        out.write(f"{target}: {plural(built.rows, 'row')}, {_size(size)}\n")
    return _said_unreadable(store)


def _baseline(store: Any, name: str, project: str) -> Any:
    """The experiment ``--baseline`` names; not there, an error that lists the project's."""
    try:
        return store.get_experiment(name, project)
    except UnknownExperimentError:
        names = sorted(e.name for e in store.list_experiments() if e.project == project)
        known = ", ".join(repr(each) for each in names) or "none"
        raise EvalrowsError(
            f"--baseline {name!r}: project {project!r} has no such experiment "
            f"(its experiments: {known})"
        ) from None


def _write(target: Path, html: str) -> int:
    """Write the file whole or not at all (a reader never sees half a report); its size.

    Only a regular file (or none) is replaced by a rename: a link is written through, and a
    device or pipe (``-o /dev/stdout``) is written into, never replaced by a file."""
    data = html.encode("utf-8")
    if not str(target) or target.is_dir():
        raise EvalrowsError(f"-o: {str(target)!r} is not a file name")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        try:
            with open(target, "wb") as stream:
                stream.write(data)
        except OSError as exc:
            raise EvalrowsError(f"cannot write {target}: {exc.strerror or exc}") from None
        return len(data)
    directory = target.parent
    try:
        handle, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=directory
        )
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.chmod(temporary, 0o666 & ~_umask())  # as open() would have made it
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:
        raise EvalrowsError(f"cannot write {target}: {exc.strerror or exc}") from None
    return len(data)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _size(size: int) -> str:
    if size < 1024:
        return plural(size, "byte")
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _said_unreadable(store: Any) -> int:
    """One line for each row version the store could not read (the report has the others);
    exit 1 when there was any, as the other readers do."""
    # Each row's history is read on its own: a version may be said unreadable more than once.
    unreadable: list[str] = list(dict.fromkeys(getattr(store, "unreadable", [])))
    for line in unreadable:
        print(f"evalrows: error: {line}", file=sys.stderr)
    return 1 if unreadable else 0
