"""The embedded store's evaluations: judgments of row versions' traces, kept in their own table,
and their scores merged into the versions they judged (``judge:<judge>`` in ``scores``).

A score is merged into the stored version's body, not into a new version: the version stays the
one its execution wrote, and a rerun's new version starts without the old one's judgments (they
stay on the old version, in the row's history). An evaluation may be saved before the version
it judged arrives (a judge runs while the row is still on its way to the store): the write of
that version merges it then (``MERGE_INTO_NEW_VERSIONS``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .sqlite_connection import Connection
from .sqlite_reads import Reads, span_record

if TYPE_CHECKING:
    from ..core.judgments import Evaluation
    from ..core.trace import Trace

# An evaluation saved again (by id) is updated in place: pending, in progress, then done.
UPSERT = """
INSERT INTO evaluations
    (id, experiment_id, row_id, trace_id, version_id, judge_id, status, created_at, score, body)
SELECT json_extract(j.value, '$.id'), :experiment, json_extract(j.value, '$.row_id'),
       json_extract(j.value, '$.trace_id'), json_extract(j.value, '$.version_id'),
       json_extract(j.value, '$.judge_id'), json_extract(j.value, '$.status'),
       json_extract(j.value, '$.created_at'), json_extract(j.value, '$.score'),
       json_extract(j.value, '$.body')
FROM json_each(:evaluations) j WHERE true
ON CONFLICT (id) DO UPDATE SET
    row_id = excluded.row_id, trace_id = excluded.trace_id, version_id = excluded.version_id,
    judge_id = excluded.judge_id, status = excluded.status, created_at = excluded.created_at,
    score = excluded.score, body = excluded.body
WHERE evaluations.experiment_id = excluded.experiment_id
"""

# Each judge's latest successful score of each version in `{versions}`, merged into the
# version's `scores`. A failed evaluation leaves the judge's last score as it was.
_MERGE = """
WITH ranked AS (
    SELECT version_id, judge_id, score, row_number() OVER (
        PARTITION BY version_id, judge_id ORDER BY created_at DESC, id DESC) AS n
    FROM evaluations
    WHERE experiment_id = :experiment AND status = 'success' AND score IS NOT NULL
      AND version_id IN ({versions})
), merged AS (
    SELECT version_id, json_group_object('{prefix}' || judge_id, json({score_text})) AS scores
    FROM ranked WHERE n = 1 GROUP BY version_id
)
UPDATE row_versions
SET body = json_set(body, '$.scores',
                    json_patch(coalesce(json_extract(body, '$.scores'), '{{}}'), merged.scores))
FROM merged WHERE row_versions.version_id = merged.version_id
  AND row_versions.experiment_id = :experiment
"""

_PREFIX = "judge:"  # ``core.judgments.SCORE_PREFIX``, checked by a test

# A score as JSON text that reads back as the same float: SQLite's JSON functions write a REAL
# with 15 significant digits (0.5335866832987394 became 0.533586683298739), so the shortest
# of 15, 16 and 17 digits that reads back equal (17 always does).
_SCORE_TEXT = """CASE
     WHEN CAST(printf('%!.15g', score) AS REAL) = score THEN printf('%!.15g', score)
     WHEN CAST(printf('%!.16g', score) AS REAL) = score THEN printf('%!.16g', score)
     ELSE printf('%!.17g', score) END"""

MERGE_SAVED = _MERGE.format(
    prefix=_PREFIX, score_text=_SCORE_TEXT, versions="SELECT value FROM json_each(:versions)"
)

# After a write: the versions it inserted (rowid above the mark) that were judged already.
MERGE_INTO_NEW_VERSIONS = _MERGE.format(
    prefix=_PREFIX,
    score_text=_SCORE_TEXT,
    versions="SELECT version_id FROM row_versions WHERE rowid > :before",
)

# Scores merged into a row's version (the API's `_is_merge`): the version named, or else the
# row's latest.
_MERGE_TARGETS = """
WITH merges AS (
    SELECT json_extract(j.value, '$.row_id') AS row_id,
           json_extract(j.value, '$.version_id') AS version_id,
           json_extract(j.value, '$.scores') AS scores
    FROM json_each(:merges) j
), targets AS (
    SELECT v.rowid AS target, v.row_id, m.scores FROM merges m JOIN row_versions v
      ON v.experiment_id = :experiment AND v.row_id = m.row_id
     AND (v.version_id = m.version_id OR (m.version_id IS NULL AND v.version = (
            SELECT l.version FROM latest_rows l
            WHERE l.experiment_id = :experiment AND l.row_id = m.row_id)))
)
"""

_FOUND_TARGETS = _MERGE_TARGETS + "SELECT row_id FROM targets"

_MERGE_SCORES = (
    _MERGE_TARGETS
    + """
UPDATE row_versions
SET body = json_set(body, '$.scores',
                    json_patch(coalesce(json_extract(body, '$.scores'), '{}'), targets.scores))
FROM targets WHERE row_versions.rowid = targets.target
"""
)

HAS_EVALUATIONS = "SELECT EXISTS (SELECT 1 FROM evaluations WHERE experiment_id = :experiment)"

# Of versions sharing a trace (an id logged twice), the highest numbered (``Store.find_trace``).
_TRACE_VERSION = """
SELECT version, created, body FROM row_versions
WHERE experiment_id = ? AND json_extract(body, '$.root_span_id') = ?
ORDER BY version DESC, xact DESC LIMIT 1
"""

_LATEST_SPANS = """
SELECT s.body FROM latest_rows l JOIN spans s
  ON s.experiment_id = l.experiment_id AND s.row_id = l.row_id
WHERE l.experiment_id = ? AND json_extract(s.body, '$.root_span_id') = l.root_span_id {rows}
ORDER BY s.start, s.span_id
"""


class Evaluations:
    """Saves and reads evaluations, and the traces they judge, in the store's file."""

    def __init__(self, db: Connection, reads: Reads) -> None:
        self._db = db
        self._reads = reads

    def save(self, experiment_id: str, evaluations: Sequence[Evaluation]) -> None:
        if not evaluations:
            return
        docs = []
        for evaluation in evaluations:
            stored = evaluation.model_copy(update={"experiment_id": experiment_id})
            docs.append(
                {
                    "id": stored.id,
                    "row_id": stored.row_id,
                    "trace_id": stored.trace_id,
                    "version_id": stored.version_id,
                    "judge_id": stored.judge_id,
                    "status": stored.status,
                    "created_at": stored.created_at,
                    "score": stored.row_score,
                    "body": stored.model_dump_json(),
                }
            )
        args = {
            "experiment": experiment_id,
            "evaluations": json.dumps(docs),
            "versions": json.dumps(sorted({doc["version_id"] for doc in docs})),
        }
        with self._db.errors("saving evaluations"), self._db.transaction() as db:
            db.execute(UPSERT, args)
            db.execute(MERGE_SAVED, args)

    def merge_scores(
        self, experiment_id: str, merges: Mapping[str, tuple[str | None, dict[str, Any]]]
    ) -> list[str]:
        """Merge scores into rows' versions: row id -> (version id or None for the latest,
        scores; a None score removes it). Returns the row ids that have no such version,
        and merges nothing then."""
        docs = [
            {"row_id": row_id, "version_id": version_id, "scores": scores}
            for row_id, (version_id, scores) in merges.items()
        ]
        args = {"experiment": experiment_id, "merges": json.dumps(docs)}
        with self._db.errors("merging scores"), self._db.transaction() as db:
            found = {row_id for (row_id,) in db.execute(_FOUND_TARGETS, args)}
            missing = sorted(set(merges) - found)
            if not missing:
                db.execute(_MERGE_SCORES, args)
        return missing

    def all_of(self, experiment_id: str) -> list[Evaluation]:
        rows = self._db.read(
            "reading evaluations",
            "SELECT body FROM evaluations WHERE experiment_id = ? ORDER BY created_at, id",
            (experiment_id,),
        )
        return [_evaluation(body) for (body,) in rows]

    def of_row(self, experiment_id: str, row_id: str) -> list[Evaluation]:
        # Filtered in SQL: the bodies of the experiment's other rows are never parsed.
        rows = self._db.read(
            "reading evaluations",
            "SELECT body FROM evaluations WHERE experiment_id = ? AND row_id = ? "
            "ORDER BY created_at, id",
            (experiment_id, row_id),
        )
        return [_evaluation(body) for (body,) in rows]

    def get(self, experiment_id: str, evaluation_id: str) -> Evaluation | None:
        row = self._db.read_one(
            "reading evaluations",
            "SELECT body FROM evaluations WHERE experiment_id = ? AND id = ?",
            (experiment_id, evaluation_id),
        )
        return None if row is None else _evaluation(row[0])

    def find_trace(self, experiment_id: str, trace_id: str) -> Trace | None:
        from ..core.trace import Trace

        found = self._reads.readable(
            self._db.read("reading rows", _TRACE_VERSION, (experiment_id, trace_id))
        )
        if not found:
            return None
        row = found[0]
        spans = self._db.read(
            "reading spans",
            "SELECT body FROM spans WHERE experiment_id = ? AND row_id = ? "
            "AND json_extract(body, '$.root_span_id') = ? ORDER BY start, span_id",
            (experiment_id, row.row_id, trace_id),
        )
        return Trace(row, [span_record(body) for (body,) in spans])

    def latest_traces(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[Trace]:
        from ..core.trace import Trace

        rows = self._reads.latest_rows(experiment_id, row_ids)
        args: list[Any] = [experiment_id]
        narrow = ""
        if row_ids is not None:
            narrow = "AND l.row_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(row_ids)))
        by_row: dict[str, list[Any]] = {}
        query = _LATEST_SPANS.format(rows=narrow)
        for (body,) in self._db.read("reading spans", query, args):
            span = span_record(body)
            by_row.setdefault(span.row_id or "", []).append(span)
        return [Trace(row, by_row.get(row.row_id, ())) for row in rows]


def _evaluation(body: str) -> Evaluation:
    from ..core.judgments import Evaluation

    return Evaluation.model_validate_json(body)


class ReadsRowEvaluations:
    """``Store.row_evaluations`` of the embedded store: one row's, filtered in SQL."""

    _evaluations: Evaluations

    def row_evaluations(self, experiment_id: str, row_id: str) -> list[Evaluation]:
        return self._evaluations.of_row(experiment_id, row_id)
