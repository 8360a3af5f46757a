"""The ``evalrows`` command: read experiments, rows, history and spans from a store, deliver
the spool, and serve a store over HTTP."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .cli_judging import Shared, UsageError, add_commands
from .cli_reports import Reports
from .cli_reports import add_commands as add_report_commands
from .cli_web import add_commands as add_web_commands
from .core.timestamps import to_iso
from .errors import EvalrowsError
from .store.urls import DEFAULT_STORE, VALID_FORMS, api_key_from_env, parse_store_url

Command = Callable[[argparse.Namespace, TextIO], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        return command(args, sys.stdout)
    except UsageError as exc:  # as argparse does for what it checks itself
        print(f"evalrows: error: {exc}", file=sys.stderr)
        return 2
    except EvalrowsError as exc:
        print(f"evalrows: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `evalrows rows x | head`
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalrows", description="Read the experiments pytest-evalrows recorded."
    )
    parser.add_argument(
        "--version", action="version", version=f"evalrows (pytest-evalrows) {__version__}"
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def add(name: str, help: str, command: Command) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=command)
        sub.add_argument(
            "--store",
            default=os.environ.get("EVALROWS_STORE") or default_store(),
            help=f"the store: {VALID_FORMS} (default: $EVALROWS_STORE, or the "
            f"{DEFAULT_STORE} of this directory or the nearest parent that has one)",
        )
        sub.add_argument("--json", action="store_true", help="one JSON object per line")
        return sub

    add("experiments", "list the experiments in the store", cmd_experiments)
    attempts = add(
        "attempts", "the sessions that recorded into an experiment, oldest first", cmd_attempts
    )
    attempts.add_argument("experiment")
    _project(attempts)
    rows = add("rows", "the latest version of every row of an experiment", cmd_rows)
    rows.add_argument("experiment")
    _project(rows)
    history = add("history", "every version of one row, oldest first", cmd_history)
    history.add_argument("experiment")
    history.add_argument("row_id")
    _project(history)
    spans = add("spans", "the spans of an experiment's rows, as a tree per row", cmd_spans)
    spans.add_argument("experiment")
    spans.add_argument("--row", dest="row_id", help="only this row's spans")
    _project(spans)
    gc = add(
        "gc",
        "remove the spans that do not belong to their row's latest attempt and execution "
        "(what a session that died before its teardown left behind)",
        cmd_gc,
    )
    gc.add_argument("experiment")
    gc.add_argument("--dry-run", action="store_true", help="print what would be removed")
    _project(gc)
    flush = add(
        "flush",
        "deliver the rows and spans that sessions left in the spool because the store was "
        "unavailable, then remove the spans they replaced",
        cmd_flush,
    )
    flush.add_argument(
        "--spool",
        default=os.environ.get("EVALROWS_SPOOL") or str(project_dir() / ".evalrows" / "spool"),
        help="the spool directory (default: $EVALROWS_SPOOL, or the .evalrows/spool of this "
        "directory or the nearest parent with an .evalrows directory)",
    )
    serve = add(
        "serve",
        "serve the store over HTTP: the Braintrust REST API subset that an http:// "
        "--eval-store speaks under /v1, and the web view of its experiments at /; the store "
        "is a SQLite file or a postgresql:// database (needs pytest-evalrows[server], and "
        "pytest-evalrows[postgres] for PostgreSQL)",
        cmd_serve,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to bind (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=8000, help="the port (default: 8000; 0 picks a free one)"
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("EVALROWS_SERVER_TOKEN") or None,
        help="require 'Authorization: Bearer TOKEN' on every API request; the web pages "
        "take it too, or a login with it that sets a cookie (default: "
        "$EVALROWS_SERVER_TOKEN; none: the API and the pages are open)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="HOST",
        help="also answer requests whose Host header is HOST (any port) or HOST:PORT, such as "
        "the name a proxy forwards; '*' for any; repeatable (default: the comma-separated "
        "$EVALROWS_SERVER_ALLOWED_HOSTS; always: the bound address, and on loopback "
        "127.0.0.1, localhost and [::1] with the port)",
    )
    # judge, judgments, judgment: in their own module, sharing the store and table helpers.
    shared = Shared(add, _project, _open, emit, unescaped)
    add_commands(shared)
    # summary, diff, export: in their own module too.
    add_report_commands(Reports(shared, row_record))
    add_web_commands(shared)  # report: the one-file HTML report
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return port


def project_dir() -> Path:
    """The nearest directory, from here upwards, that holds an ``.evalrows`` directory (where
    the plugin keeps its store by default), or this one."""
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / ".evalrows").is_dir():
            return directory
    return here


def default_store() -> str:
    return str(project_dir() / DEFAULT_STORE.removeprefix("sqlite:///"))


def _project(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="the experiment's project, when several share its name")


def _open(args: argparse.Namespace, *, create: bool = False) -> Any:
    """The store ``--store`` names. Readers never create one; flush may."""
    from .stores import open_store

    try:
        url = parse_store_url(args.store, Path.cwd())
    except ValueError as exc:
        raise EvalrowsError(f"--store: {exc}") from None
    return open_store(url, create=create, api_key=api_key_from_env())


# -- commands ------------------------------------------------------------------------------


def cmd_experiments(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args) as store:
        experiments = store.list_experiments()
    records = [
        {
            "id": e.id,
            "project": e.project,
            "name": e.name,
            "created": to_iso(e.created, "seconds"),
            "git_commit": e.git_commit,
            "git_branch": e.git_branch,
        }
        for e in experiments
    ]
    columns = [
        ("PROJECT", "project"),
        ("NAME", "name"),
        ("CREATED", "created"),
        ("BRANCH", "git_branch"),
    ]
    emit(out, records, args.json, columns)
    return 0


def cmd_attempts(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args) as store:
        if not store.attempts:
            raise EvalrowsError(f"{store.display_url} keeps no attempts")
        experiment = store.get_experiment(args.experiment, args.project)
        attempts = store.list_attempts(experiment.id)
    records = [
        {
            "id": a.id,
            "started": to_iso(a.started, "seconds"),
            "ended": to_iso(a.ended, "seconds"),
            "host": a.host,
            "args": a.args,
            "counts": a.counts,
            "delivered": a.delivered,
            "git_commit": a.git_commit,
            "git_branch": a.git_branch,
            # What the session's summary said (null for sessions before it was kept).
            "report": a.report,
        }
        for a in attempts
    ]
    if not args.json:
        for record in records:
            counts: dict[str, int] = record["counts"]
            record["counts_text"] = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    columns = [
        ("ATTEMPT", "id"),
        ("STARTED", "started"),
        ("ENDED", "ended"),
        ("HOST", "host"),
        ("ROWS", "counts_text"),
        ("DELIVERED", "delivered"),
    ]
    emit(out, records, args.json, columns)
    return 0


def cmd_rows(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args) as store:
        experiment = store.get_experiment(args.experiment, args.project)
        rows = store.latest_rows(experiment.id)
    emit(out, [row_record(row) for row in rows], args.json, ROW_COLUMNS)
    return _said_unreadable(store)


def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args) as store:
        experiment = store.get_experiment(args.experiment, args.project)
        versions = store.history(experiment.id, args.row_id)
        if not versions:
            row_id = stored_row_id(store, experiment.id, args.row_id)
            if row_id is not None:
                versions = store.history(experiment.id, row_id)
    if not versions and not getattr(store, "unreadable", None):
        raise EvalrowsError(f"no row {args.row_id!r} in experiment {args.experiment!r}")
    emit(out, [row_record(row) for row in versions], args.json, ROW_COLUMNS)
    return _said_unreadable(store)


def _said_unreadable(store: Any) -> int:
    """One line for each row version the store could not read (the others were shown);
    exit 1 when there was any."""
    unreadable: list[str] = getattr(store, "unreadable", [])
    for line in unreadable:
        print(f"evalrows: error: {line}", file=sys.stderr)
    return 1 if unreadable else 0


def cmd_spans(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args) as store:
        experiment = store.get_experiment(args.experiment, args.project)
        spans = store.list_spans(experiment.id, args.row_id)
        if args.row_id is not None and not spans:
            row_id = stored_row_id(store, experiment.id, args.row_id)
            if row_id is not None:
                spans = store.list_spans(experiment.id, row_id)
    if args.row_id is not None and not spans:
        raise EvalrowsError(f"no spans for row {args.row_id!r} in {args.experiment!r}")
    if args.json:
        for span in spans:
            out.write(json.dumps(span.model_dump(), ensure_ascii=False) + "\n")
        return 0
    out.write(span_tree(spans))
    return 0


# What pytest escapes in a parameter id (``str.encode("unicode_escape")``): a backslash,
# tab, newline, carriage return, and every other character that is not printable ASCII.
_PYTEST_ESCAPE = re.compile(
    r"\\(?:(\\)|([tnr])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))"
)
_CONTROL = {"t": "\t", "n": "\n", "r": "\r"}


def unescaped(row_id: str) -> str:
    """A row id as the test wrote it: ``test_x[\\u65e5\\u672c]``, the node id pytest made and
    so the row id, becomes ``test_x[日本]``."""

    def one(match: re.Match[str]) -> str:
        backslash, control, *code = match.groups()
        if backslash:
            return "\\"
        if control:
            return _CONTROL[control]
        return chr(int(next(part for part in code if part), 16))

    return _PYTEST_ESCAPE.sub(one, row_id)


def stored_row_id(store: Any, experiment_id: str, given: str) -> str | None:
    """The stored row id that ``given`` names in the form the test wrote it, before pytest
    escaped it; None when no row, or more than one, reads so."""
    found = [
        row_id
        for row_id in store.latest_states(experiment_id)
        if row_id != given and unescaped(row_id) == given
    ]
    return found[0] if len(found) == 1 else None


def cmd_gc(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args) as store:
        experiment = store.get_experiment(args.experiment, args.project)
        stale = store.delete_stale_spans(experiment.id, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        for span in stale:
            out.write(json.dumps({**span._asdict(), "action": verb}) + "\n")
        return 0
    for span in stale:
        out.write(
            f"{verb} {span.span_id} {span.name!r} of row {span.row_id} "
            f"(attempt {span.attempt_id[:8]}, execution {span.execution})\n"
        )
    rows = len({span.row_id for span in stale})
    out.write(f"{verb} {len(stale)} stale spans from {rows} rows\n")
    return 0


def cmd_flush(args: argparse.Namespace, out: TextIO) -> int:
    from .delivery.leftovers import deliver_leftovers

    spool = Path(args.spool)
    with _open(args, create=True) as store:
        done = deliver_leftovers(spool, store)
        experiments: dict[tuple[str, str], list[str]] = {}
        for project, experiment, row_id in done.rows:
            experiments.setdefault((project, experiment), []).append(row_id)
        removed = done.cleaned  # clean-ups earlier sessions could not finish
        for (project, name), row_ids in experiments.items():
            experiment = store.get_or_create_experiment(project, name)
            removed += len(store.delete_stale_spans(experiment.id, row_ids))
    for (project, name), row_ids in sorted(experiments.items()):
        out.write(f"delivered {len(row_ids)} rows to experiment {name!r} (project {project!r})\n")
    written = done.written
    written += done.own_written
    superseded = (
        f", {written.superseded_rows} older than the stored latest version (kept in history)"
        if written.superseded_rows
        else ""
    )
    # A remote store tells new, updated and already stored apart only once it has read the
    # experiment: when it could not, the split is not said rather than guessed.
    split = (
        f"{written.new_rows} new, {written.updated_rows} updated, "
        f"{written.duplicate_rows} already there"
        if written.certain
        else "new, updated or already there unknown"
    )
    out.write(
        f"delivered {written.new_rows + written.updated_rows + written.superseded_rows} rows "
        f"({split}{superseded}) and {written.spans} spans "
        f"from {done.files} spool files; removed {removed} stale spans\n"
    )
    judgments = done.evaluations + done.own_evaluations
    if judgments:
        out.write(f"saved {judgments} judgments\n")
    for problem in done.problems:
        out.write(f"warning: {problem}\n")
    for other in sorted(done.other_stores):
        out.write(f"left in the spool: entries for another store, {other}\n")
    if done.errors:
        raise EvalrowsError(f"delivery stopped: {done.errors[0]}")
    return 0


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise EvalrowsError(
            "evalrows serve needs Starlette, uvicorn and Jinja2: "
            'pip install "pytest-evalrows[server]"'
        ) from None
    from .braintrust.server import bound_hosts, parse_host, serve
    from .stores import open_local_store
    from .web.app import create_pages

    if args.allowed_hosts is not None:
        allowed, source = args.allowed_hosts, "--allowed-host"
    else:
        given = os.environ.get("EVALROWS_SERVER_ALLOWED_HOSTS") or ""
        allowed = [name.strip() for name in given.split(",") if name.strip()]
        source = "EVALROWS_SERVER_ALLOWED_HOSTS"
    for name in allowed:
        if name != "*":
            try:
                parse_host(name)
            except ValueError as exc:
                raise EvalrowsError(f"{source}: {exc}") from None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        print(
            f"evalrows: warning: serving on {args.host} without --token: anyone who can reach "
            "it can read and write the store",
            file=sys.stderr,
        )
    if not bound_hosts(args.host, args.port) and not allowed:
        print(
            f"evalrows: warning: no request names {args.host} as its Host: every request is "
            "refused until --allowed-host names this server as its clients reach it",
            file=sys.stderr,
        )
    try:
        url = parse_store_url(args.store, Path.cwd())
    except ValueError as exc:
        raise EvalrowsError(f"--store: {exc}") from None
    store = open_local_store(url)
    try:
        # The web view at / next to the API, over the same store and with the same token.
        pages = create_pages(store, args.token)
        return serve(
            store,
            host=args.host,
            port=args.port,
            token=args.token,
            out=out,
            allowed_hosts=allowed,
            pages=pages,
        )
    finally:
        store.close()


# -- output --------------------------------------------------------------------------------

ROW_COLUMNS = [
    ("ROW ID", "id"),
    ("STATUS", "status"),
    ("VER", "version"),
    ("ATTEMPT", "attempt_short"),
    ("SCORES", "scores_text"),
    ("CREATED", "created"),
]


def row_record(row: Any) -> dict[str, Any]:
    return {
        "id": row.row_id,
        "nodeid": row.nodeid,
        "status": row.status,
        "attempt_id": row.attempt_id,
        "execution": row.execution,
        "version": row.version,
        "input": row.input,
        "output": row.output,
        "expected": row.expected,
        "scores": row.scores,
        "metadata": row.metadata,
        "tags": row.tags,
        "error": asdict(row.error) if row.error is not None else None,
        "metrics": row.metrics.model_dump(exclude_none=True),
        "root_span_id": row.root_span_id,
        "span_id": row.span_id,
        "created": to_iso(row.created, "seconds"),
    }


def emit(
    out: TextIO, records: list[dict[str, Any]], as_json: bool, columns: list[tuple[str, str]]
) -> None:
    if as_json:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    table = [[title for title, _ in columns]]
    for record in records:
        table.append([_cell(record, key) for _, key in columns])
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip()
        )
        out.write("\n")


def _cell(record: dict[str, Any], key: str) -> str:
    if key == "attempt_short":
        return str(record["attempt_id"])[:8]
    if key == "scores_text":
        return " ".join(f"{name}={value:g}" for name, value in sorted(record["scores"].items()))
    value = record.get(key)
    return "" if value is None else str(value)


def span_tree(spans: Sequence[Any]) -> str:
    """Spans as an indented tree under each row (or under "no row")."""
    children: dict[str | None, list[Any]] = {}
    known = {span.span_id for span in spans}
    for span in spans:
        parent = span.span_parents[0] if span.span_parents else None
        children.setdefault(parent if parent in known else None, []).append(span)
    lines: list[str] = []

    def walk(span: Any, depth: int) -> None:
        duration = (span.end - span.start) * 1000
        lines.append(
            f"{'  ' * depth}{span.name}  [{span.kind}, {span.status}, {duration:.1f} ms, "
            f"attempt {span.attempt_id[:8]} exec {span.execution}] {span.span_id}"
        )
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    by_row: dict[str | None, list[Any]] = {}
    for span in children.get(None, []):
        by_row.setdefault(span.row_id, []).append(span)
    for row_id in sorted(by_row, key=lambda r: (r is None, r or "")):
        lines.append(f"row {row_id}" if row_id is not None else "no row (session fixtures)")
        for span in by_row[row_id]:
            walk(span, 1)
    return "".join(line + "\n" for line in lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
