"""The embedded store's schema and statements: named migrations, and the set-based SQL of a
write (a batch goes in as one JSON array per statement)."""

from __future__ import annotations


class Statements(str):
    """A migration's statements, run one by one (``.statements``): a script split on `;` breaks
    on the first trigger body or string literal that holds one. As text it is the statements
    joined, which sqlite3's ``executescript`` takes whole (a test builds an old file with it)."""

    statements: tuple[str, ...]

    def __new__(cls, *statements: str) -> Statements:
        script = super().__new__(cls, "".join(f"{text.rstrip()};\n" for text in statements))
        script.statements = statements
        return script


# Named migrations, applied in order and recorded in `evalrows_migrations`. Append only.
MIGRATIONS: tuple[tuple[str, Statements], ...] = (
    (
        "0001_experiments_attempts_rows",
        Statements(
            """
            CREATE TABLE experiments (
                id TEXT PRIMARY KEY,
                project TEXT NOT NULL,
                name TEXT NOT NULL,
                created REAL NOT NULL,
                git_commit TEXT,
                git_branch TEXT,
                UNIQUE (project, name)
            )
            """,
            """
            CREATE TABLE attempts (
                experiment_id TEXT NOT NULL REFERENCES experiments (id),
                id TEXT NOT NULL,
                started REAL NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (experiment_id, id)
            )
            """,
            """
            CREATE TABLE row_versions (
                -- rowid kept on purpose: a write tells the versions it inserted by rowid.
                experiment_id TEXT NOT NULL REFERENCES experiments (id),
                row_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                version_id TEXT NOT NULL UNIQUE,
                attempt_id TEXT NOT NULL,
                created REAL NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (experiment_id, row_id, version)
            )
            """,
            # One line per row pointing at its latest version, kept up to date on write so that
            # reading the latest rows is one indexed query however long the history gets.
            """
            CREATE TABLE latest_rows (
                experiment_id TEXT NOT NULL,
                row_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                attempt_id TEXT NOT NULL,
                execution INTEGER NOT NULL,
                status TEXT NOT NULL,
                params_hash TEXT,
                created REAL NOT NULL,
                PRIMARY KEY (experiment_id, row_id)
            ) WITHOUT ROWID
            """,
        ),
    ),
    (
        "0002_spans",
        Statements(
            """
            CREATE TABLE spans (
                experiment_id TEXT NOT NULL REFERENCES experiments (id),
                span_id TEXT NOT NULL,
                row_id TEXT,
                attempt_id TEXT NOT NULL,
                execution INTEGER NOT NULL,
                start REAL NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (experiment_id, span_id)
            )
            """,
            "CREATE INDEX spans_by_row ON spans (experiment_id, row_id)",
        ),
    ),
    (
        "0003_projects",
        Statements(
            # Projects get ids for the HTTP API. Experiments keep their project by name.
            """
            CREATE TABLE projects (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                created REAL NOT NULL
            )
            """,
            # The projects of experiments written before this migration, with random v4 uuids.
            """
            INSERT INTO projects (id, name, created)
            SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
                   || substr(h, 18, 3) || '-' || substr(h, 21, 12), project, created
            FROM (SELECT lower(hex(randomblob(16))) AS h, project, min(created) AS created
                  FROM experiments GROUP BY project)
            """,
        ),
    ),
    (
        "0004_xact_ids",
        Statements(
            # One counter orders every row version and span written (the API's `_xact_id`).
            "ALTER TABLE row_versions ADD COLUMN xact INTEGER",
            "ALTER TABLE spans ADD COLUMN xact INTEGER",
            "ALTER TABLE spans ADD COLUMN created REAL",
            "UPDATE row_versions SET xact = rowid",
            """
            UPDATE spans SET created = start,
                xact = rowid + (SELECT coalesce(max(rowid), 0) FROM row_versions)
            """,
            """
            CREATE TABLE xact_counter (
                id INTEGER PRIMARY KEY CHECK (id = 0), last INTEGER NOT NULL
            )
            """,
            """
            INSERT INTO xact_counter SELECT 0, max(
                (SELECT coalesce(max(xact), 0) FROM row_versions),
                (SELECT coalesce(max(xact), 0) FROM spans))
            """,
            "CREATE INDEX row_versions_by_xact ON row_versions (experiment_id, xact)",
            "CREATE INDEX spans_by_xact ON spans (experiment_id, xact)",
        ),
    ),
    (
        "0005_latest_trace",
        Statements(
            # The latest version's trace: an execution's spans are told from another's by it
            # even when an attempt id is reused (a re-run CI job keeping its run id).
            "ALTER TABLE latest_rows ADD COLUMN root_span_id TEXT",
            """
            UPDATE latest_rows SET root_span_id = (
                SELECT json_extract(v.body, '$.root_span_id') FROM row_versions v
                WHERE v.experiment_id = latest_rows.experiment_id
                AND v.row_id = latest_rows.row_id AND v.version = latest_rows.version)
            """,
        ),
    ),
    (
        "0006_execution_order",
        Statements(
            # Versions are ordered by when their execution started, not by when they arrived: a
            # late delivery of an older attempt never becomes the latest version.
            "ALTER TABLE row_versions ADD COLUMN started REAL",
            """
            UPDATE row_versions
            SET started = coalesce(json_extract(body, '$.metrics.start'), created)
            """,
            "ALTER TABLE latest_rows ADD COLUMN started REAL",
            """
            UPDATE latest_rows SET started = (
                SELECT v.started FROM row_versions v
                WHERE v.experiment_id = latest_rows.experiment_id
                AND v.row_id = latest_rows.row_id AND v.version = latest_rows.version)
            """,
        ),
    ),
    (
        "0007_evaluations",
        Statements(
            # Judgments of row versions' traces (see `sqlite_evaluations`).
            """
            CREATE TABLE evaluations (
                id TEXT PRIMARY KEY,
                experiment_id TEXT NOT NULL REFERENCES experiments (id),
                row_id TEXT NOT NULL,
                trace_id TEXT NOT NULL,
                version_id TEXT NOT NULL,
                judge_id TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at REAL NOT NULL,
                -- What the version shows as `judge:<judge_id>`: NULL unless a success says one.
                score REAL,
                body TEXT NOT NULL
            )
            """,
            "CREATE INDEX evaluations_by_time ON evaluations (experiment_id, created_at)",
            "CREATE INDEX evaluations_by_version ON evaluations (version_id)",
            # A trace is found by its id: the version whose root span it is.
            """
            CREATE INDEX row_versions_by_trace
            ON row_versions (experiment_id, json_extract(body, '$.root_span_id'))
            """,
        ),
    ),
    (
        "0008_experiment_bases",
        Statements(
            # The experiment another client created an experiment to be compared with
            # (Braintrust's `base_exp_id`); its summary compares with that one first.
            """
            CREATE TABLE experiment_bases (
                experiment_id TEXT PRIMARY KEY REFERENCES experiments (id),
                base_id TEXT NOT NULL
            )
            """,
        ),
    ),
    (
        "0009_spans_by_event_id",
        Statements(
            # Merges find another client's spans by the event id it gave them
            # (`sqlite_merges.FIND_SPANS_BY_EVENT_ID`, the same expression).
            """
            CREATE INDEX spans_by_event_id
            ON spans (experiment_id, json_extract(body, '$.attributes."braintrust.id"'))
            """,
        ),
    ),
)

INSERT_VERSIONS = """
INSERT INTO row_versions
    (experiment_id, row_id, version, version_id, attempt_id, created, body, xact, started)
SELECT :experiment, json_extract(j.value, '$.row_id'),
       coalesce((SELECT l.version FROM latest_rows l WHERE l.experiment_id = :experiment
                 AND l.row_id = json_extract(j.value, '$.row_id')), 0) + 1,
       json_extract(j.value, '$.version_id'), json_extract(j.value, '$.attempt_id'), :now,
       j.value, :xact + j.key + 1,
       -- A version that does not say when it started (an event from another client) started
       -- when it arrived.
       CASE WHEN json_extract(j.value, '$.metrics.start') > 0
            THEN json_extract(j.value, '$.metrics.start') ELSE :now END
FROM json_each(CAST(:rows AS TEXT)) j
WHERE NOT EXISTS (SELECT 1 FROM row_versions v
                  WHERE v.version_id = json_extract(j.value, '$.version_id'))
"""

# Only versions inserted by this statement group (rowid above the mark) move `latest_rows`:
# a redelivered, already stored version must never become the latest again, and neither does
# one whose execution started before the latest's (a late delivery of an older attempt).
UPDATE_LATEST = """
INSERT OR REPLACE INTO latest_rows
    (experiment_id, row_id, version, attempt_id, execution, status, params_hash, created,
     root_span_id, started)
SELECT experiment_id, row_id, version, attempt_id, json_extract(body, '$.execution'),
       json_extract(body, '$.status'), json_extract(body, '$.metadata.params_hash'), created,
       json_extract(body, '$.root_span_id'), started
FROM row_versions v WHERE rowid > :before
  AND NOT EXISTS (SELECT 1 FROM latest_rows l WHERE l.experiment_id = v.experiment_id
                  AND l.row_id = v.row_id AND l.started > v.started)
"""

# New rows, updated rows, and versions that arrived after a newer one (superseded).
COUNT_NEW = """
SELECT sum(v.version = 1), sum(v.version > 1 AND l.version = v.version),
       sum(l.version != v.version)
FROM row_versions v JOIN latest_rows l
  ON l.experiment_id = v.experiment_id AND l.row_id = v.row_id
WHERE v.rowid > :before
"""

# A superseded version is filed in its place by start: the row's versions are numbered again
# in that order (through negative numbers, as the primary key holds at every step).
SUPERSEDED_ROWS = """
SELECT v.row_id FROM row_versions v JOIN latest_rows l
  ON l.experiment_id = v.experiment_id AND l.row_id = v.row_id
WHERE v.rowid > :before AND l.version != v.version
"""

RENUMBER_VERSIONS = """
UPDATE row_versions SET version = -ranked.number
FROM (SELECT rowid AS id, row_number() OVER (PARTITION BY row_id ORDER BY started, xact) AS number
      FROM row_versions WHERE experiment_id = :experiment
      AND row_id IN (SELECT value FROM json_each(:late))) ranked
WHERE row_versions.rowid = ranked.id
"""

RENUMBERED_LATEST = (
    """
UPDATE row_versions SET version = -version
WHERE experiment_id = :experiment AND row_id IN (SELECT value FROM json_each(:late))
""",
    """
UPDATE latest_rows SET version = (
    SELECT max(v.version) FROM row_versions v
    WHERE v.experiment_id = latest_rows.experiment_id AND v.row_id = latest_rows.row_id)
WHERE experiment_id = :experiment AND row_id IN (SELECT value FROM json_each(:late))
""",
)

INSERT_SPANS = """
INSERT OR REPLACE INTO spans
    (experiment_id, span_id, row_id, attempt_id, execution, start, body, xact, created)
SELECT :experiment, json_extract(j.value, '$.span_id'), json_extract(j.value, '$.row_id'),
       json_extract(j.value, '$.attempt_id'), json_extract(j.value, '$.execution'),
       json_extract(j.value, '$.start'), j.value, :xact + j.key + 1, :now
FROM json_each(CAST(:spans AS TEXT)) j
"""

INSERT_PROJECT = "INSERT INTO projects VALUES (?, ?, ?) ON CONFLICT DO NOTHING"

# A row's own root span (no parents, under a row) is not an event: the row's event is it.
FETCH_EVENTS = """
SELECT xact, created, version, body, 1 FROM row_versions
WHERE experiment_id = :experiment AND xact < :before
UNION ALL
SELECT xact, created, NULL, body, 0 FROM spans
WHERE experiment_id = :experiment AND xact < :before
  AND NOT (row_id IS NOT NULL AND coalesce(json_array_length(body, '$.span_parents'), 0) = 0)
ORDER BY 1 DESC LIMIT :limit
"""

# The spans an insert request deletes by id; which ones were there (the answer counts them).
DELETE_SPANS = """
DELETE FROM spans WHERE experiment_id = ?1 AND span_id IN (SELECT value FROM json_each(?2))
RETURNING span_id
"""

# The root spans of the given rows that are not their latest version's own.
DELETE_REPLACED_ROOTS = """
DELETE FROM spans WHERE experiment_id = ?1
  AND row_id IN (SELECT value FROM json_each(?2))
  AND coalesce(json_array_length(body, '$.span_parents'), 0) = 0
  AND EXISTS (SELECT 1 FROM latest_rows l WHERE l.experiment_id = spans.experiment_id
              AND l.row_id = spans.row_id
              AND l.root_span_id != json_extract(spans.body, '$.root_span_id'))
"""

# The latest version of every row of an experiment (a caller may narrow it with `AND ...`).
LATEST_ROWS = """
SELECT v.version, v.created, v.body FROM latest_rows l JOIN row_versions v
  ON v.experiment_id = l.experiment_id AND v.row_id = l.row_id AND v.version = l.version
WHERE l.experiment_id = ?
"""

# A span is stale when its row's latest version came from another attempt, another execution,
# or another trace (the same attempt id reused). Rows without any version, and spans under no
# row, never match. `{rows}` narrows it to some rows, or is empty.
STALE_SPANS = """
FROM spans WHERE experiment_id = ? AND row_id IS NOT NULL {rows} AND EXISTS (
    SELECT 1 FROM latest_rows l WHERE l.experiment_id = spans.experiment_id
    AND l.row_id = spans.row_id
    AND (l.attempt_id != spans.attempt_id OR l.execution != spans.execution
         OR l.root_span_id != json_extract(spans.body, '$.root_span_id')))
"""

STALE_SPAN_COLUMNS = "row_id, span_id, attempt_id, execution, json_extract(body, '$.name')"
