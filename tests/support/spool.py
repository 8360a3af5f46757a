"""Read what inner sessions left in the spool, independently of the plugin's own reader, and the
logs they keep of the cases they ran."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any


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
