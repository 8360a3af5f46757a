"""What an inner pytest session printed: the plugin's header line, its terminal summary, and a
usage error. ``read_summary`` is the one reader of the summary's prose.

Counts that a test uses to check behaviour are better read from the saved report
(``support.cli.session_report``); this reader is for checking what the summary *says*, and for
sessions whose report cannot be read back (a store that was never reached).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

HEADER = re.compile(
    r"^evalrows: recording experiment '(?P<experiment>[^']*)' \(project '(?P<project>[^']*)'\) "
    r"into (?P<store>\S+), attempt (?P<attempt>[^,\s]+), row ids relative to (?P<anchor>[^;\s]+)",
    re.MULTILINE,
)


def text_of(result: pytest.RunResult | str) -> str:
    """A session's stdout (a ``RunResult``), or a captured output as it is."""
    return result if isinstance(result, str) else result.stdout.str()


def header(result: pytest.RunResult | str) -> dict[str, str]:
    """The fields of the plugin's one report-header line (exactly one such line)."""
    text = text_of(result)
    found = list(HEADER.finditer(text))
    assert len(found) == 1, text
    return found[0].groupdict()


def header_line(result: pytest.RunResult) -> str:
    """The plugin's one report-header line, as printed."""
    lines = [line for line in result.stdout.lines if line.startswith("evalrows:")]
    assert len(lines) == 1, result.stdout.str()
    return lines[0]


def summary_lines(result: pytest.RunResult | str) -> list[str]:
    """The lines of the plugin's terminal-summary section (exactly one such section)."""
    text = text_of(result)
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.fullmatch(r"-+ evalrows -+", line)]
    assert len(starts) == 1, text
    section = []
    for line in lines[starts[0] + 1 :]:
        if re.fullmatch(r"[=_-]+ .* [=_-]+", line) or re.fullmatch(r"=+", line):
            break
        section.append(line)
    return section


@dataclass
class Summary:
    """The plugin's terminal summary, read line by line into what each line says.

    A number the summary leaves out (it prints no line for it) is ``None``; ``unknown`` holds
    the lines this reader does not know, so that a test can insist there are none.
    """

    lines: list[str]
    experiment: str | None = None
    project: str | None = None
    store: str | None = None
    attempt: str | None = None
    rows_written: int | None = None
    new_rows: int | None = None
    updated_rows: int | None = None
    unknown_why: str | None = None  # "new or updated unknown: <why>"
    own_leftovers: int | None = None  # of which N rows its workers had not delivered ...
    crashed_workers: int | None = None
    resumed: int | None = None
    resume_mode: str | None = None  # "passed" or "finished"
    leftovers_delivered: int | None = None  # delivered N rows an earlier session left ...
    superseded: int | None = None
    stale_removed: int | None = None
    stale_kept: bool = False
    requests: dict[str, int] | None = None
    mean_scores: str | None = None  # the text after "mean scores: "
    store_error: str | None = None
    errors: list[str] = field(default_factory=list)
    undelivered: int | None = None
    spool_dir: str | None = None
    cleanup_pending: int | None = None
    lost: int | None = None
    lost_rows: list[str] = field(default_factory=list)  # the "  row 'r' why" lines
    # The report over the rows as a whole (its numbers are read from the saved report).
    rows_run: int | None = None  # "rows run: N (...)"
    experiment_rows: int | None = None  # "latest rows of the experiment: N"
    experiment_unread: str | None = None
    score_table: list[str] = field(default_factory=list)  # its header and one line a score
    baseline: list[str] = field(default_factory=list)  # "against baseline ..." and "  regressed:"
    costs: str | None = None  # "tokens ... ; cost ..."
    trials: list[str] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)  # "gate ...", "usage error: ..."
    short_means: str | None = None  # under -q: "experiment means: ..." or "session means: ..."
    unknown: list[str] = field(default_factory=list)

    @property
    def written(self) -> tuple[int, int]:
        """(new, updated) of "attempt X: N rows written (A new, B updated)"."""
        assert self.new_rows is not None and self.updated_rows is not None, self.lines
        return self.new_rows, self.updated_rows


def read_summary(result: pytest.RunResult | str) -> Summary:
    """The plugin's summary of a session (a ``RunResult`` or a captured output)."""
    found = Summary(summary_lines(result))
    for line in found.lines:
        if match := re.fullmatch(r"experiment '(.*)' \(project '(.*)'\) in (\S+)", line):
            found.experiment, found.project, found.store = match[1], match[2], match[3]
        elif match := re.fullmatch(r"attempt (\S+): (\d+) rows written \((.*)\)", line):
            found.attempt, found.rows_written = match[1], int(match[2])
            if split := re.fullmatch(r"(\d+) new, (\d+) updated", match[3]):
                found.new_rows, found.updated_rows = int(split[1]), int(split[2])
            elif unknown := re.fullmatch(r"new or updated unknown: (.*)", match[3]):
                found.unknown_why = unknown[1]
            else:
                found.unknown.append(line)
        elif match := re.fullmatch(
            r"of which (\d+) rows its workers had not delivered were delivered from their "
            r"spool files",
            line,
        ):
            found.own_leftovers = int(match[1])
        elif match := re.fullmatch(r"(\d+) worker\(s\) crashed; their rows were recovered", line):
            found.crashed_workers = int(match[1])
        elif match := re.fullmatch(
            r"resumed: (\d+) cases whose row already (\w+) were not run again"
            r"( \(decided in [\d.]+ s\))?",
            line,
        ):
            found.resumed, found.resume_mode = int(match[1]), match[2]
        elif match := re.fullmatch(
            r"delivered (\d+) rows an earlier session left in the spool", line
        ):
            found.leftovers_delivered = int(match[1])
        elif match := re.fullmatch(
            r"(\d+) delivered versions were older than the stored latest one: kept in history, "
            r"not the latest",
            line,
        ):
            found.superseded = int(match[1])
        elif match := re.fullmatch(r"stale spans removed: (\d+) \(in [\d.]+ s\)", line):
            found.stale_removed = int(match[1])
        elif line == "stale spans kept (--eval-keep-stale-spans)":
            found.stale_kept = True
        elif line.startswith("requests to the store: "):
            parts = line.removeprefix("requests to the store: ").split(", ")
            found.requests = {part.rsplit(" ", 1)[0]: int(part.rsplit(" ", 1)[1]) for part in parts}
        elif line.startswith("mean scores: "):
            found.mean_scores = line.removeprefix("mean scores: ")
        elif line.startswith("store unavailable: "):
            found.store_error = line.removeprefix("store unavailable: ")
        elif line.startswith("error: "):
            found.errors.append(line.removeprefix("error: "))
        elif match := re.fullmatch(
            r"(\d+) rows not delivered: kept in (\S+); the next recording session delivers "
            r"them, or run `evalrows flush`",
            line,
        ):
            found.undelivered, found.spool_dir = int(match[1]), match[2]
        elif match := re.fullmatch(
            r"stale spans left under (\d+) rows: their clean-up is kept in (\S+); .*", line
        ):
            found.cleanup_pending, found.spool_dir = int(match[1]), match[2]
        elif match := re.fullmatch(
            r"(\d+) rows could be neither stored nor kept in the spool:", line
        ):
            found.lost = int(match[1])
        elif line.startswith("  row "):
            found.lost_rows.append(line)
        elif not _report_line(found, line):
            found.unknown.append(line)
    return found


_TABLE_ROW = re.compile(r"\S+(  +(-|[+-]?\d+\.\d{3}|\d+))+")


def _report_line(found: Summary, line: str) -> bool:
    """Read one line of the report over the rows as a whole; False when it is none of them."""
    if match := re.fullmatch(r"rows run: (\d+) \(.*\)", line):
        found.rows_run = int(match[1])
    elif match := re.fullmatch(r"latest rows of the experiment: (\d+)", line):
        found.experiment_rows = int(match[1])
    elif line.startswith("experiment's latest rows not read: "):
        found.experiment_unread = line.removeprefix("experiment's latest rows not read: ")
    elif re.fullmatch(r"score +session +experiment.*", line) or (
        found.score_table and _TABLE_ROW.fullmatch(line)
    ):
        found.score_table.append(line)
    elif line.startswith(("against baseline ", "  regressed: ", "baseline ")):
        found.baseline.append(line)
    elif line.startswith(("tokens ", "cost $")):
        found.costs = line
    elif line.startswith("trials: ") or re.fullmatch(r"  .* \d+ of \d+ trials passed", line):
        found.trials.append(line)
    elif line.startswith(("gate ", "usage error: ")):
        found.gates.append(line)
    elif line.startswith(("experiment means: ", "session means: ")):
        found.short_means = line
    else:
        return False
    return True


def usage_error(result: pytest.RunResult) -> str:
    """The one line a usage error prints; checks there is no traceback and exit code 4."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    return errors[0]


def output_of(result: pytest.RunResult) -> str:
    """A session's stdout and stderr together."""
    return result.stdout.str() + "\n" + result.stderr.str()


def deselected(result: pytest.RunResult) -> int:
    """pytest's own "N deselected" count of the final line (0 when it says none)."""
    return result.parseoutcomes().get("deselected", 0)
