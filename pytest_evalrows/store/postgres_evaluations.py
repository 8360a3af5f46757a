"""The PostgreSQL store's evaluations: judgments of row versions' traces in their own table, and
their scores merged into the versions they judged (``judge:<judge>`` in ``scores``), as the
embedded store does (``sqlite_evaluations`` says why): no new version, the latest success of a
judge wins, a version judged before it arrived gets its scores when it is written.

Saving and merging take the experiment's write lock, like a write: a judgment saved while the
version it judged is being written is merged by one or the other, never lost between them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .postgres_connection import Connection
from .postgres_reads import Reads, span_record
from .postgres_schema import storable

if TYPE_CHECKING:
    import psycopg

    from ..core.judgments import Evaluation
    from ..core.trace import Trace

_PREFIX = "judge:"  # ``core.judgments.SCORE_PREFIX``, checked by a test

# An evaluation saved again (by id) is updated in place: pending, in progress, then done. One
# saved twice in a batch counts as its last.
UPSERT = """
INSERT INTO evaluations AS e
    (id, experiment_id, row_id, trace_id, version_id, judge_id, status, created_at, score, body)
SELECT DISTINCT ON (doc ->> 'id') doc ->> 'id', %(experiment)s, doc ->> 'row_id',
       doc ->> 'trace_id', doc ->> 'version_id', doc ->> 'judge_id', doc ->> 'status',
       (doc ->> 'created_at')::float8, (doc ->> 'score')::float8, (doc ->> 'body')::jsonb
FROM jsonb_array_elements(%(evaluations)s::jsonb) WITH ORDINALITY AS j(doc, ord)
ORDER BY doc ->> 'id', ord DESC
ON CONFLICT (id) DO UPDATE SET
    row_id = excluded.row_id, trace_id = excluded.trace_id, version_id = excluded.version_id,
    judge_id = excluded.judge_id, status = excluded.status, created_at = excluded.created_at,
    score = excluded.score, body = excluded.body
WHERE e.experiment_id = excluded.experiment_id
"""

# Scores merged into a body's `scores`: set, or removed where the new value is null. The rest
# of the body stays as written (`evalrows_json_set`); the scores are merged as jsonb.
_MERGED_SCORES = """
evalrows_json_set(v.body, 'scores', (
    ((CASE WHEN json_typeof(v.body -> 'scores') = 'object' THEN (v.body -> 'scores')::jsonb
           ELSE '{{}}' END)
     - ARRAY(SELECT key FROM jsonb_each({new}) WHERE value = 'null'::jsonb))
    || jsonb_strip_nulls({new}))::json)
"""

# Each judge's latest successful score of each of the given versions, merged into the
# version's `scores`. A failed evaluation leaves the judge's last score as it was.
MERGE_SAVED = f"""
WITH ranked AS (
    SELECT version_id, judge_id, score, row_number() OVER (
        PARTITION BY version_id, judge_id ORDER BY created_at DESC, id DESC) AS n
    FROM evaluations
    WHERE experiment_id = %(experiment)s AND status = 'success' AND score IS NOT NULL
      AND version_id = ANY(%(versions)s)
), merged AS (
    SELECT version_id, jsonb_object_agg('{_PREFIX}' || judge_id, score) AS scores
    FROM ranked WHERE n = 1 GROUP BY version_id
)
UPDATE row_versions v SET body = {_MERGED_SCORES.format(new="merged.scores")}
FROM merged WHERE v.version_id = merged.version_id AND v.experiment_id = %(experiment)s
"""

# Scores merged into a row's version (the API's `_is_merge`): the version named, or else the
# row's latest.
_MERGE_TARGETS = """
WITH merges AS (
    SELECT m.row_id, m.version_id, m.scores
    FROM jsonb_to_recordset(%(merges)s::jsonb) AS m(row_id text, version_id text, scores jsonb)
), targets AS (
    SELECT v.version_id AS target, v.row_id, m.scores FROM merges m JOIN row_versions v
      ON v.experiment_id = %(experiment)s AND v.row_id = m.row_id
     AND (v.version_id = m.version_id OR (m.version_id IS NULL AND v.version = (
            SELECT l.version FROM latest_rows l
            WHERE l.experiment_id = %(experiment)s AND l.row_id = m.row_id)))
)
"""

_FOUND_TARGETS = _MERGE_TARGETS + "SELECT row_id FROM targets"

_MERGE_SCORES = (
    _MERGE_TARGETS
    + f"""
UPDATE row_versions v SET body = {_MERGED_SCORES.format(new="targets.scores")}
FROM targets WHERE v.version_id = targets.target
"""
)

# Of versions sharing a trace (an id logged twice), the highest numbered (``Store.find_trace``).
_TRACE_VERSION = """
SELECT version, created, body::text FROM row_versions
WHERE experiment_id = %s AND root_span_id = %s ORDER BY version DESC, xact DESC LIMIT 1
"""

# The spans of the given (row, trace) pairs: the traces of the versions read just before, so
# that a version written between the two reads does not lend its spans to the older one.
_TRACES_SPANS = """
SELECT s.body::text FROM spans s
JOIN unnest(%s::text[], %s::text[]) AS t(row_id, root_span_id)
  ON s.row_id = t.row_id AND s.root_span_id = t.root_span_id
WHERE s.experiment_id = %s
ORDER BY s.start, s.span_id
"""


class Evaluations:
    """Saves and reads evaluations, and the traces they judge."""

    def __init__(self, db: Connection, reads: Reads) -> None:
        self._db = db
        self._reads = reads

    def save(self, experiment_id: str, evaluations: Sequence[Evaluation]) -> None:
        if not evaluations:
            return
        docs: list[dict[str, Any]] = []
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
                    "body": storable(stored.model_dump_json()),
                }
            )
        args = {
            "experiment": experiment_id,
            "evaluations": storable(json.dumps(docs)),
            "versions": sorted({doc["version_id"] for doc in docs}),
        }

        def save(db: psycopg.Cursor[Any]) -> None:
            db.execute(UPSERT, args)
            db.execute(MERGE_SAVED, args)

        self._db.transaction("saving evaluations", save, experiment=experiment_id)

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
        args = {"experiment": experiment_id, "merges": storable(json.dumps(docs))}

        def merge(db: psycopg.Cursor[Any]) -> list[str]:
            found = {row_id for (row_id,) in db.execute(_FOUND_TARGETS, args)}
            missing = sorted(set(merges) - found)
            if not missing:
                db.execute(_MERGE_SCORES, args)
            return missing

        return self._db.transaction("merging scores", merge, experiment=experiment_id)

    def all_of(self, experiment_id: str) -> list[Evaluation]:
        rows = self._db.read(
            "reading evaluations",
            "SELECT body::text FROM evaluations WHERE experiment_id = %s ORDER BY created_at, id",
            (experiment_id,),
        )
        return [_evaluation(body) for (body,) in rows]

    def of_row(self, experiment_id: str, row_id: str) -> list[Evaluation]:
        rows = self._db.read(
            "reading evaluations",
            "SELECT body::text FROM evaluations WHERE experiment_id = %s AND row_id = %s "
            "ORDER BY created_at, id",
            (experiment_id, row_id),
        )
        return [_evaluation(body) for (body,) in rows]

    def get(self, experiment_id: str, evaluation_id: str) -> Evaluation | None:
        row = self._db.read_one(
            "reading evaluations",
            "SELECT body::text FROM evaluations WHERE experiment_id = %s AND id = %s",
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
            "SELECT body::text FROM spans WHERE experiment_id = %s AND row_id = %s "
            "AND root_span_id = %s ORDER BY start, span_id",
            (experiment_id, row.row_id, trace_id),
        )
        return Trace(row, [span_record(body) for (body,) in spans])

    def latest_traces(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[Trace]:
        from ..core.trace import Trace

        rows = self._reads.latest_rows(experiment_id, row_ids)
        traced = [row for row in rows if row.root_span_id]
        args = (
            [row.row_id for row in traced],
            [row.root_span_id for row in traced],
            experiment_id,
        )
        by_row: dict[str, list[Any]] = {}
        for (body,) in self._db.read("reading spans", _TRACES_SPANS, args):
            span = span_record(body)
            by_row.setdefault(span.row_id or "", []).append(span)
        return [Trace(row, by_row.get(row.row_id, ())) for row in rows]


def _evaluation(body: str) -> Evaluation:
    from ..core.judgments import Evaluation

    return Evaluation.model_validate_json(body)


class ReadsRowEvaluations:
    """``Store.row_evaluations`` of the PostgreSQL store: one row's, filtered in SQL."""

    _evaluations: Evaluations

    def row_evaluations(self, experiment_id: str, row_id: str) -> list[Evaluation]:
        return self._evaluations.of_row(experiment_id, row_id)
