"""The PostgreSQL store's schema and the set-based SQL of a write: the ideas of the embedded
store's (``sqlite_schema``), in PostgreSQL's terms. A batch goes in as one JSON parameter per
statement (``json_array_elements``), never a statement per row.

Bodies are ``json``, the text as written: ``jsonb`` would sort an object's keys (a row's input
would read back in another order than the test wrote it) and keep numbers as decimals (1e20
read back as an integer). Where a body is changed in SQL, ``evalrows_json_set`` replaces one
key and keeps the others in place.

Ids are compared and sorted byte by byte (``COLLATE "C"``), as SQLite and Python do, whatever
the database's locale. Experiments are never deleted, so the tables carry no foreign keys: a
key checked per inserted row would cost every write and protect nothing.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from ..core.merging import EVENT_ID_ATTRIBUTE

if TYPE_CHECKING:
    import psycopg

ID = 'text COLLATE "C"'

# Named migrations, applied in order under an advisory lock and recorded in
# `evalrows_migrations`. Append only: databases hold these names.
MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "0001_experiments_attempts_rows",
        (
            f"""
            CREATE TABLE experiments (
                id {ID} PRIMARY KEY,
                project {ID} NOT NULL,
                name {ID} NOT NULL,
                created double precision NOT NULL,
                git_commit text,
                git_branch text,
                UNIQUE (project, name)
            )
            """,
            f"""
            CREATE TABLE projects (
                id {ID} PRIMARY KEY,
                name {ID} NOT NULL UNIQUE,
                created double precision NOT NULL
            )
            """,
            f"""
            CREATE TABLE attempts (
                experiment_id {ID} NOT NULL,
                id {ID} NOT NULL,
                started double precision NOT NULL,
                body jsonb NOT NULL,
                PRIMARY KEY (experiment_id, id)
            )
            """,
            # One counter orders every row version and span written (the API's `_xact_id`).
            # Numbers are taken under the experiment's write lock: within an experiment their
            # order is the order of commits.
            "CREATE SEQUENCE evalrows_xact AS bigint",
            f"""
            CREATE TABLE row_versions (
                experiment_id {ID} NOT NULL,
                row_id {ID} NOT NULL,
                version integer NOT NULL,
                version_id {ID} NOT NULL UNIQUE,
                attempt_id {ID} NOT NULL,
                created double precision NOT NULL,
                -- When the execution started: versions are ordered by it, not by arrival.
                started double precision NOT NULL,
                xact bigint NOT NULL,
                root_span_id {ID},
                body jsonb NOT NULL,
                PRIMARY KEY (experiment_id, row_id, version)
            )
            """,
            "CREATE INDEX row_versions_by_xact ON row_versions (experiment_id, xact)",
            # A trace is found by its id: the version whose root span it is.
            "CREATE INDEX row_versions_by_trace ON row_versions (experiment_id, root_span_id)",
            # One line per row pointing at its latest version, kept up to date on write so that
            # reading the latest rows (and resuming) is one indexed query.
            f"""
            CREATE TABLE latest_rows (
                experiment_id {ID} NOT NULL,
                row_id {ID} NOT NULL,
                version integer NOT NULL,
                attempt_id {ID} NOT NULL,
                execution integer NOT NULL,
                status text NOT NULL,
                params_hash text,
                created double precision NOT NULL,
                root_span_id {ID},
                started double precision NOT NULL,
                PRIMARY KEY (experiment_id, row_id)
            )
            """,
        ),
    ),
    (
        "0002_spans",
        (
            f"""
            CREATE TABLE spans (
                experiment_id {ID} NOT NULL,
                span_id {ID} NOT NULL,
                row_id {ID},
                attempt_id {ID} NOT NULL,
                execution integer NOT NULL,
                start double precision NOT NULL,
                root_span_id {ID},
                -- No parents: the root of its trace (a row's root is the row's own event).
                is_root boolean NOT NULL,
                xact bigint NOT NULL,
                created double precision NOT NULL,
                body jsonb NOT NULL,
                PRIMARY KEY (experiment_id, span_id)
            )
            """,
            "CREATE INDEX spans_by_row ON spans (experiment_id, row_id)",
            "CREATE INDEX spans_by_xact ON spans (experiment_id, xact)",
        ),
    ),
    (
        "0003_evaluations",
        (
            # Judgments of row versions' traces (see `postgres_evaluations`).
            f"""
            CREATE TABLE evaluations (
                id {ID} PRIMARY KEY,
                experiment_id {ID} NOT NULL,
                row_id {ID} NOT NULL,
                trace_id {ID} NOT NULL,
                version_id {ID} NOT NULL,
                judge_id {ID} NOT NULL,
                status text NOT NULL,
                created_at double precision NOT NULL,
                -- What the version shows as `judge:<judge_id>`: NULL unless a success says one.
                score double precision,
                body jsonb NOT NULL
            )
            """,
            "CREATE INDEX evaluations_by_time ON evaluations (experiment_id, created_at)",
            "CREATE INDEX evaluations_by_version ON evaluations (version_id)",
        ),
    ),
    (
        "0004_bodies_as_written",
        (
            # Existing bodies keep jsonb's text (their order is lost already); new ones are
            # kept as written.
            "ALTER TABLE row_versions ALTER COLUMN body TYPE json USING body::json",
            "ALTER TABLE spans ALTER COLUMN body TYPE json USING body::json",
            # A body with key $2 set to $3, its other keys in their places (a new key last).
            """
            CREATE FUNCTION evalrows_json_set(json, text, json) RETURNS json
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT json_object_agg(f.key, f.value ORDER BY f.ord) FROM (
                SELECT e.key, CASE WHEN e.key = $2 THEN $3 ELSE e.value END AS value, e.ord
                FROM json_each($1) WITH ORDINALITY AS e(key, value, ord)
                UNION ALL
                SELECT $2, $3, 9223372036854775807
                WHERE NOT EXISTS (SELECT 1 FROM json_each($1) AS x WHERE x.key = $2)
            ) AS f
            $$
            """,
            # Merges find another client's spans by the event id it gave them.
            f"""
            CREATE INDEX spans_by_event_id ON spans
                (experiment_id, (body -> 'attributes' ->> '{EVENT_ID_ATTRIBUTE}'))
            """,
        ),
    ),
    (
        "0005_experiment_bases",
        (
            # The experiment another client created an experiment to be compared with
            # (Braintrust's `base_exp_id`); its summary compares with that one first.
            f"""
            CREATE TABLE experiment_bases (
                experiment_id {ID} PRIMARY KEY REFERENCES experiments (id),
                base_id {ID} NOT NULL
            )
            """,
        ),
    ),
)

CREATE_MIGRATIONS = f"""
CREATE TABLE IF NOT EXISTS evalrows_migrations (
    name {ID} PRIMARY KEY, applied double precision NOT NULL
)
"""


def migrate(db: psycopg.Connection[Any], lock: str) -> None:
    """Apply the migrations a database lacks, in one transaction. Many sessions may open a
    fresh database at once: one migrates, the others wait for it and then find nothing left
    to do. The lock is the transaction's: a pooler such as pgbouncer may give each transaction
    another server session, and one cannot be left held."""
    if _pending(db) == []:
        return  # the common case: nothing to do, no lock taken
    with db.transaction():
        # Converting a large table takes as long as it takes.
        db.execute("SELECT set_config('lock_timeout', '0', true)")
        db.execute("SELECT set_config('statement_timeout', '0', true)")
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
        db.execute(CREATE_MIGRATIONS)
        pending = _pending(db) or []
        for name, statements in MIGRATIONS:
            if name not in pending:
                continue
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO evalrows_migrations VALUES (%s, %s)", (name, time.time()))


def _pending(db: psycopg.Connection[Any]) -> list[str] | None:
    """The migrations not applied yet (None when there is no migrations table)."""
    if db.execute(HAS_STORE).fetchone() == (None,):
        return None
    done = {name for (name,) in db.execute("SELECT name FROM evalrows_migrations")}
    return [name for name, _ in MIGRATIONS if name not in done]


# In the schema the connection's search path names first (`?options=-csearch_path=...`).
HAS_STORE = "SELECT to_regclass('evalrows_migrations')"

INSERT_PROJECT = "INSERT INTO projects VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"


# The batch as (document as written, position) with the fields a statement needs, each
# parsed once (`json_to_recordset`): a `json` value is parsed again by every `->>` on it.
def _batch(fields: str) -> str:
    names = ", ".join(field.split()[0] for field in fields.split(", "))
    return f"""(
    SELECT j.doc, j.ord, {names}
    FROM json_array_elements(%(batch)s::json) WITH ORDINALITY AS j(doc, ord)
    JOIN ROWS FROM (json_to_recordset(%(batch)s::json) AS ({fields}))
         WITH ORDINALITY AS f({names}, ord) USING (ord)
)"""


_VERSION_FIELDS = (
    "row_id text, version_id text, attempt_id text, root_span_id text, execution integer, "
    "status text, metrics json, metadata json"
)

# When a version's execution started; one that does not say (an event from another client)
# started when it arrived.
_STARTED = """
CASE WHEN json_typeof(n.metrics -> 'start') = 'number'
     THEN CASE WHEN (n.metrics ->> 'start')::float8 > 0
               THEN (n.metrics ->> 'start')::float8 END END
"""

# One round of versions (no row id twice): insert those not stored yet (a redelivered
# version_id is a no-op), numbered after the row's latest; move each row's latest unless the
# stored latest started later (a late delivery of an older attempt); then count. Returns
# new, updated, superseded, inserted, the superseded rows' ids, and the inserted versions'
# ids when an evaluation of one was saved before it arrived.
WRITE_VERSIONS = f"""
WITH numbered AS (
    SELECT b.*, nextval('evalrows_xact') AS xact
    FROM (SELECT * FROM {_batch(_VERSION_FIELDS)} batch ORDER BY ord OFFSET 0) b
), inserted AS (
    INSERT INTO row_versions AS v
        (experiment_id, row_id, version, version_id, attempt_id, created, started, xact,
         root_span_id, body)
    SELECT %(experiment)s, n.row_id, coalesce(l.version, 0) + 1, n.version_id, n.attempt_id,
           %(now)s, coalesce({_STARTED}, %(now)s), n.xact, n.root_span_id, n.doc
    FROM numbered n LEFT JOIN latest_rows l
      ON l.experiment_id = %(experiment)s AND l.row_id = n.row_id
    ON CONFLICT (version_id) DO NOTHING
    RETURNING row_id, version, version_id, attempt_id, created, started, root_span_id
), moved AS (
    INSERT INTO latest_rows AS l
        (experiment_id, row_id, version, attempt_id, execution, status, params_hash, created,
         root_span_id, started)
    SELECT %(experiment)s, i.row_id, i.version, i.attempt_id, n.execution, n.status,
           n.metadata ->> 'params_hash', i.created, i.root_span_id, i.started
    FROM inserted i JOIN numbered n ON n.version_id = i.version_id
    ON CONFLICT (experiment_id, row_id) DO UPDATE SET
        version = excluded.version, attempt_id = excluded.attempt_id,
        execution = excluded.execution, status = excluded.status,
        params_hash = excluded.params_hash, created = excluded.created,
        root_span_id = excluded.root_span_id, started = excluded.started
    WHERE l.started <= excluded.started
    RETURNING row_id
)
SELECT count(*) FILTER (WHERE i.version = 1),
       count(*) FILTER (WHERE i.version > 1 AND m.row_id IS NOT NULL),
       count(*) FILTER (WHERE m.row_id IS NULL),
       count(*),
       coalesce(array_agg(i.row_id) FILTER (WHERE m.row_id IS NULL), '{{}}'),
       CASE WHEN EXISTS (SELECT 1 FROM evaluations e WHERE e.experiment_id = %(experiment)s
                         AND e.version_id IN (SELECT version_id FROM inserted))
            THEN array_agg(i.version_id) ELSE '{{}}' END
FROM inserted i LEFT JOIN moved m ON m.row_id = i.row_id
"""

# A superseded version is filed in its place by start: the row's versions are numbered again
# in that order (through negative numbers, as the primary key holds at every step), and the
# latest row points at the highest.
RENUMBER_VERSIONS = (
    """
UPDATE row_versions v SET version = -ranked.number
FROM (SELECT version_id, row_number() OVER (PARTITION BY row_id ORDER BY started, xact) AS number
      FROM row_versions WHERE experiment_id = %(experiment)s AND row_id = ANY(%(late)s)) ranked
WHERE v.version_id = ranked.version_id
""",
    """
UPDATE row_versions SET version = -version
WHERE experiment_id = %(experiment)s AND row_id = ANY(%(late)s)
""",
    """
UPDATE latest_rows l SET version = (
    SELECT max(v.version) FROM row_versions v
    WHERE v.experiment_id = l.experiment_id AND v.row_id = l.row_id)
WHERE experiment_id = %(experiment)s AND row_id = ANY(%(late)s)
""",
)

# Spans are upserted by (experiment, span_id); a span twice in one batch counts as its last.
_SPAN_FIELDS = (
    "span_id text, row_id text, attempt_id text, execution integer, start float8, "
    "root_span_id text, span_parents json"
)
INSERT_SPANS = f"""
WITH latest AS (
    SELECT DISTINCT ON (span_id) * FROM {_batch(_SPAN_FIELDS)} batch
    ORDER BY span_id, ord DESC
), numbered AS (
    SELECT b.*, nextval('evalrows_xact') AS xact
    FROM (SELECT * FROM latest ORDER BY ord OFFSET 0) b
)
INSERT INTO spans AS s
    (experiment_id, span_id, row_id, attempt_id, execution, start, root_span_id, is_root, xact,
     created, body)
SELECT %(experiment)s, span_id, row_id, attempt_id, execution, start, root_span_id,
       coalesce(json_array_length(CASE WHEN json_typeof(span_parents) = 'array'
                                       THEN span_parents END), 0) = 0,
       xact, %(now)s, doc
FROM numbered
ON CONFLICT (experiment_id, span_id) DO UPDATE SET
    row_id = excluded.row_id, attempt_id = excluded.attempt_id,
    execution = excluded.execution, start = excluded.start,
    root_span_id = excluded.root_span_id, is_root = excluded.is_root, xact = excluded.xact,
    created = excluded.created, body = excluded.body
"""

DELETE_SPANS = "DELETE FROM spans WHERE experiment_id = %s AND span_id = ANY(%s)"

# The root spans of the given rows that are not their latest version's own.
DELETE_REPLACED_ROOTS = """
DELETE FROM spans s USING latest_rows l
WHERE s.experiment_id = %(experiment)s AND s.row_id = ANY(%(rows)s) AND s.is_root
  AND l.experiment_id = s.experiment_id AND l.row_id = s.row_id
  AND l.root_span_id != s.root_span_id
"""

# A span is stale when its row's latest version came from another attempt, another execution,
# or another trace (the same attempt id reused). Rows without any version, and spans under no
# row, never match. `{rows}` narrows it to some rows, or is empty.
STALE_SPANS = """
FROM spans s USING latest_rows l
WHERE s.experiment_id = %(experiment)s AND s.row_id IS NOT NULL {rows}
  AND l.experiment_id = s.experiment_id AND l.row_id = s.row_id
  AND (l.attempt_id != s.attempt_id OR l.execution != s.execution
       OR l.root_span_id != s.root_span_id)
"""

STALE_SPAN_COLUMNS = "s.row_id, s.span_id, s.attempt_id, s.execution, s.body ->> 'name'"

# One statement, whatever the number of spans: what it deleted comes back in a stable order.
DELETE_STALE_SPANS = f"""
WITH gone AS (DELETE {STALE_SPANS} RETURNING {STALE_SPAN_COLUMNS})
SELECT * FROM gone ORDER BY 1, 2
"""

FIND_STALE_SPANS = (
    f"SELECT {STALE_SPAN_COLUMNS} "
    + STALE_SPANS.replace("FROM spans s USING latest_rows l", "FROM spans s, latest_rows l")
    + " ORDER BY 1, 2"
)


# A NUL character escaped in JSON text, not preceded by an escaped backslash.
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable(json_text: str) -> str:
    """JSON text PostgreSQL can keep: jsonb (like every text type) cannot hold a NUL
    character, so a string's NUL is kept as U+FFFD, the replacement character. Without this
    one value would make its whole batch undeliverable."""
    if "\\u0000" not in json_text:
        return json_text
    return _NUL.sub(r"\1\\ufffd", json_text)
