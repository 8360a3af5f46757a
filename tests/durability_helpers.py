"""Helpers for the xdist, concurrency, resume and spool tests: read the spool and the logs the
inner sessions keep, and parse the summary lines these tests need."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from span_helpers import Stored, live, summary_lines


def spool_files(directory: Path) -> list[Path]:
    """The spool files (``*.jsonl``) in ``directory``, sorted; none when it does not exist."""
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def spooled_entries(directory: Path) -> list[dict[str, Any]]:
    """Every spooled entry no ``acks`` line acknowledged, read independently of the plugin's
    reader: one JSON object per line, a line that is not JSON (a torn write) is skipped."""
    found: list[dict[str, Any]] = []
    for path in spool_files(directory):
        entries: dict[int, dict[str, Any]] = {}
        for line in path.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "acks" in entry:
                for seq in entry["acks"]:
                    entries.pop(seq, None)
            else:
                entries[entry["seq"]] = entry
        found.extend(entries[seq] for seq in sorted(entries))
    return found


def spooled_rows(directory: Path) -> dict[str, dict[str, Any]]:
    """The spooled, unacknowledged row versions by row id (each row id at most once)."""
    rows = [row for entry in spooled_entries(directory) for row in entry["rows"]]
    counts = Counter(row["row_id"] for row in rows)
    assert all(count == 1 for count in counts.values()), counts
    return {row["row_id"]: row for row in rows}


def spooled_span_count(directory: Path) -> int:
    return sum(len(entry["spans"]) for entry in spooled_entries(directory))


def ran(log: Path) -> list[str]:
    """The cases an inner session ran, in the order they ran (one line each in ``log``)."""
    return log.read_text().split() if log.exists() else []


def resumed(result: pytest.RunResult) -> int | None:
    """N of the summary's "resumed: N cases whose row already ... were not run again"."""
    found = [
        int(match.group(1))
        for line in summary_lines(result)
        if (match := re.match(r"resumed: (\d+) cases whose row already \w+ were not run", line))
    ]
    assert len(found) <= 1, result.stdout.str()
    return found[0] if found else None


def resumed_mode(result: pytest.RunResult) -> str:
    found = [
        match.group(1)
        for line in summary_lines(result)
        if (match := re.match(r"resumed: \d+ cases whose row already (\w+) were not run", line))
    ]
    assert len(found) == 1, result.stdout.str()
    return found[0]


def leftovers_delivered(result: pytest.RunResult) -> int | None:
    """N of the summary's "delivered N rows an earlier session left in the spool"."""
    found = [
        int(match.group(1))
        for line in summary_lines(result)
        if (
            match := re.fullmatch(
                r"delivered (\d+) rows an earlier session left in the spool", line
            )
        )
    ]
    assert len(found) <= 1, result.stdout.str()
    return found[0] if found else None


def undelivered(result: pytest.RunResult) -> int | None:
    """N of the summary's "N rows not delivered: kept in ...; ... `evalrows flush`"."""
    found = [
        int(match.group(1))
        for line in summary_lines(result)
        if (match := re.match(r"(\d+) rows not delivered: kept in \S+; .*`evalrows flush`", line))
    ]
    assert len(found) <= 1, result.stdout.str()
    return found[0] if found else None


def rows_written(result: pytest.RunResult) -> tuple[int, int]:
    """(new, updated) of the summary's "attempt X: N rows written (A new, B updated)"."""
    found = [
        (int(match.group(1)), int(match.group(2)))
        for line in summary_lines(result)
        if (
            match := re.fullmatch(
                r"attempt \S+: \d+ rows written \((\d+) new, (\d+) updated\)", line
            )
        )
    ]
    assert len(found) == 1, result.stdout.str()
    return found[0]


def deselected(result: pytest.RunResult) -> int:
    """pytest's own "N deselected" count of the final line (0 when it says none)."""
    return result.parseoutcomes().get("deselected", 0)


def assert_no_stale_spans(found: Stored) -> None:
    """Every span under a row belongs to that row's latest version (attempt and execution),
    and every row has its root span."""
    for span in found.spans:
        if span.row_id is not None:
            assert span.row_id in found.rows, span
            assert live(span, found.rows), (span.row_id, span.name, span.attempt_id)
    for row_id, row in found.rows.items():
        roots = [span.span_id for span in found.spans_of(row_id) if not span.span_parents]
        assert roots == [row.span_id], row_id


def output_of(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()
