"""Merges (the API's ``_is_merge``) in every store behind ``evalrows serve``: partial updates
deep-merged into stored row versions and spans, in order, in place, all or nothing; and the
pure merge every store applies."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from support.store import make_row

from pytest_evalrows import MemoryStore, SQLiteStore
from pytest_evalrows.core.merging import EVENT_ID_ATTRIBUTE, Patch, merge_bodies, merge_body
from pytest_evalrows.models import RowVersion, SpanRecord
from pytest_evalrows.store.base import ServerBackend
from pytest_evalrows.store.postgres import PostgresStore
from pytest_evalrows.store.sqlite_merges import FIND_SPANS_BY_EVENT_ID


class Backend(ServerBackend, Protocol):
    def list_spans(self, experiment_id: str, row_id: str | None = None) -> list[SpanRecord]: ...


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: SQLiteStore | PostgresStore
    if request.param == "postgresql":
        made = PostgresStore(request.getfixturevalue("postgres_url"))
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "rows.db")
    else:
        made = MemoryStore()
    with made:
        yield made


def values(**fields: Any) -> Patch:
    return {"values": fields}


def trace(row_id: str) -> tuple[RowVersion, SpanRecord]:
    """A row version and one child span of its trace, the child named by an event id of its
    own (as another client names it)."""
    row = make_row(row_id, output="first", scores={"exact": 1.0}, tags=["a"])
    row.root_span_id = uuid.uuid4().hex
    row.span_id = uuid.uuid4().hex[:16]
    child = SpanRecord(
        span_id=uuid.uuid4().hex[:16],
        root_span_id=row.root_span_id,
        span_parents=[row.span_id],
        row_id=row_id,
        attempt_id=row.attempt_id,
        name="task",
        start=100.2,
        end=100.4,
        attributes={EVENT_ID_ATTRIBUTE: f"event-of-{row_id}", "braintrust.output": {"a": 1}},
    )
    return row, child


def written(store: Backend, *traces: tuple[RowVersion, SpanRecord]) -> str:
    experiment = store.get_or_create_experiment("proj", "merges").id
    rows = [row.model_dump(mode="json") for row, _ in traces]
    spans = [child.model_dump(mode="json") for _, child in traces]
    store.insert_events(experiment, rows, spans)
    return experiment


def latest(store: Backend, experiment: str, row_id: str) -> RowVersion:
    [row] = store.history(experiment, row_id)[-1:]
    return row


def span(store: Backend, experiment: str, span_id: str) -> SpanRecord:
    [found] = [each for each in store.list_spans(experiment) if each.span_id == span_id]
    return found


# -- the pure merge ----------------------------------------------------------------------------


def test_a_merge_descends_into_objects_and_replaces_everything_else() -> None:
    body = {"input": {"a": {"b": 10}, "c": {"d": 20}}, "output": {"a": 20}, "tags": ["x"]}
    merged = merge_body(body, values(input={"a": {"q": 30}}, output=None, tags=["y"]))
    assert merged == {
        "input": {"a": {"b": 10, "q": 30}, "c": {"d": 20}},
        "output": None,
        "tags": ["y"],
    }
    assert body["input"] == {"a": {"b": 10}, "c": {"d": 20}}  # untouched


def test_merge_paths_stop_the_descent_as_braintrust_documents_them() -> None:
    # The example of Braintrust's API reference for `_merge_paths`.
    body = {"id": "foo", "input": {"a": {"b": 10}, "c": {"d": 20}}, "output": {"a": 20}}
    patch: Patch = {
        "values": {"input": {"a": {"q": 30}, "c": {"e": 30}, "bar": "baz"}, "output": {"d": 40}},
        "replace_paths": [["input", "a"], ["output"]],
    }
    assert merge_body(body, patch) == {
        "id": "foo",
        "input": {"a": {"q": 30}, "c": {"d": 20, "e": 30}, "bar": "baz"},
        "output": {"d": 40},
    }


def test_union_paths_add_new_items_once_unless_also_replaced() -> None:
    body = {"tags": ["a", {"k": 1}], "other": ["a"]}
    union: Patch = {"values": {"tags": ["b", "a", {"k": 1}]}, "union_paths": [["tags"]]}
    assert merge_body(body, union)["tags"] == ["a", {"k": 1}, "b"]
    both: Patch = {**union, "replace_paths": [["tags"]]}
    assert merge_body(body, both)["tags"] == ["b", "a", {"k": 1}]


def test_merges_apply_in_order_and_a_row_duration_follows_its_times() -> None:
    body = {"metrics": {"start": 10.0, "end": 10.0, "duration": 0.0}, "output": 1}
    merged = merge_bodies(body, [values(output=2), values(metrics={"end": 12.5}), values(output=3)])
    assert merged == {"metrics": {"start": 10.0, "end": 12.5, "duration": 2.5}, "output": 3}


def test_delete_paths_remove_keys_after_the_merge() -> None:
    body = {"scores": {"s": 1.0, "t": 0.5}, "metadata": {"nulls": {"t": None}}}
    patch: Patch = {
        "values": {"scores": {"u": 1.0}, "metadata": {"nulls": {"s": None}}},
        "delete_paths": [["scores", "s"], ["metadata", "nulls", "u"], ["no", "such", "place"]],
    }
    merged = merge_body(body, patch)
    assert merged == {"scores": {"t": 0.5, "u": 1.0}, "metadata": {"nulls": {"t": None, "s": None}}}
    assert body["scores"] == {"s": 1.0, "t": 0.5}  # left as it was


# -- stores ------------------------------------------------------------------------------------


def test_a_merge_changes_the_latest_version_in_place(store: Backend) -> None:
    row, _ = trace("r")
    experiment = written(store, (row, _))
    patch = values(scores={"feedback": 0.5}, output="second", metadata={"note": "n"})
    assert store.merge_events(experiment, [("r", patch)]) == []
    [merged] = store.history(experiment, "r")  # no new version
    assert merged.version_id == row.version_id
    assert merged.scores == {"exact": 1.0, "feedback": 0.5}
    assert merged.output == "second"
    assert merged.metadata == {**row.metadata, "note": "n"}
    assert merged.tags == ["a"]


def test_a_merge_removes_a_score_in_every_store(store: Backend) -> None:
    row, _ = trace("r")
    experiment = written(store, (row, _))
    patch: Patch = {"values": {"scores": {"new": 0.5}}, "delete_paths": [["scores", "exact"]]}
    assert store.merge_events(experiment, [("r", patch)]) == []
    assert latest(store, experiment, "r").scores == {"new": 0.5}
    [scores] = store.latest_scores(experiment)
    assert scores.scores == {"new": 0.5}


def test_merges_of_one_id_apply_in_the_order_given(store: Backend) -> None:
    row, _ = trace("r")
    experiment = written(store, (row, _))
    patches = [("r", values(output="one")), ("r", values(output="two", input={"x": 1}))]
    assert store.merge_events(experiment, patches) == []
    assert store.merge_events(experiment, [("r", values(input={"y": 2}))]) == []
    merged = latest(store, experiment, "r")
    assert (merged.output, merged.input) == ("two", {"x": 1, "y": 2})


def test_a_merged_status_is_what_the_latest_rows_say(store: Backend) -> None:
    row, _ = trace("r")
    experiment = written(store, (row, _))
    error = {"type": "", "message": "boom", "traceback": ""}
    assert store.merge_events(experiment, [("r", values(status="failed", error=error))]) == []
    assert store.latest_states(experiment)["r"].status == "failed"
    merged = latest(store, experiment, "r")
    assert merged.status == "failed" and merged.error is not None
    assert merged.error.message == "boom"


def test_a_merge_only_changes_the_latest_version(store: Backend) -> None:
    old, child = trace("r")
    experiment = written(store, (old, child))
    new, _ = trace("r")
    new.metrics.start = old.metrics.start + 10
    store.insert_events(experiment, [new.model_dump(mode="json")], [])
    assert store.merge_events(experiment, [("r", values(output="merged"))]) == []
    first, second = store.history(experiment, "r")
    assert (first.output, second.output) == ("first", "merged")


def test_a_span_is_merged_by_span_id_or_by_event_id(store: Backend) -> None:
    row, child = trace("r")
    experiment = written(store, (row, child))
    sibling = child.model_copy(update={"span_id": "sibling", "start": 100.15, "attributes": {}})
    store.insert_events(experiment, [], [sibling.model_dump(mode="json")])
    by_span_id = values(end=100.9, attributes={"braintrust.output": {"b": 2}})
    by_event_id = values(start=100.1, attributes={"braintrust.scores": {"s": 1}})
    patches = [(child.span_id, by_span_id), (f"event-of-{row.row_id}", by_event_id)]
    assert store.merge_events(experiment, patches) == []
    merged = span(store, experiment, child.span_id)
    assert (merged.start, merged.end, merged.row_id) == (100.1, 100.9, "r")
    assert merged.attributes == {
        EVENT_ID_ATTRIBUTE: "event-of-r",
        "braintrust.output": {"a": 1, "b": 2},
        "braintrust.scores": {"s": 1},
    }
    # The start column follows the body: spans still read back in start order.
    in_order = [each.span_id for each in store.list_spans(experiment, "r")]
    assert in_order == [child.span_id, "sibling"]


def test_merges_are_all_or_nothing_and_name_the_ids_found_nowhere(
    store: Backend,
) -> None:
    row, child = trace("r")
    experiment = written(store, (row, child))
    patches = [
        ("r", values(output="changed")),
        ("nowhere", values(output="x")),
        (child.span_id, values(end=200.0)),
        ("nowhere-either", values(output="y")),
        ("nowhere", values(output="z")),
    ]
    assert store.merge_events(experiment, patches) == ["nowhere", "nowhere-either"]
    assert latest(store, experiment, "r").output == "first"
    assert span(store, experiment, child.span_id).end == 100.4
    assert store.merge_events(experiment, []) == []


def test_a_merge_reaches_only_its_own_experiment(store: Backend) -> None:
    row, child = trace("r")
    experiment = written(store, (row, child))
    other = store.get_or_create_experiment("proj", "other").id
    assert store.merge_events(other, [("r", values(output="x"))]) == ["r"]
    assert store.merge_events(other, [(child.span_id, values(end=1.0))]) == [child.span_id]
    assert latest(store, experiment, "r").output == "first"


def test_spans_sent_before_their_root_go_under_its_row(store: Backend) -> None:
    row, child = trace("r")
    experiment = store.get_or_create_experiment("proj", "orphans").id
    orphan = child.model_copy(update={"row_id": None}).model_dump(mode="json")
    store.insert_events(experiment, [], [orphan])
    assert span(store, experiment, child.span_id).row_id is None
    store.insert_events(experiment, [row.model_dump(mode="json")], [])
    assert span(store, experiment, child.span_id).row_id == "r"
    # And after it: a later child of the trace goes under the row at once.
    later = {**orphan, "span_id": "later-child"}
    store.insert_events(experiment, [], [later])
    assert span(store, experiment, "later-child").row_id == "r"
    # A span of another trace stays under no row.
    loose = {**orphan, "span_id": "loose", "root_span_id": "another-trace"}
    store.insert_events(experiment, [], [loose])
    assert span(store, experiment, "loose").row_id is None


def test_create_experiment_creates_only(store: Backend) -> None:
    made = store.create_experiment("proj", "name", git_branch="main")
    assert made is not None and made.name == "name" and made.git_branch == "main"
    assert store.create_experiment("proj", "name") is None  # taken: nothing written
    assert [e.id for e in store.list_experiments()] == [made.id]
    other = store.create_experiment("other", "name")
    assert other is not None and other.id != made.id  # a name is per project


def test_an_experiment_keeps_the_base_it_was_created_with(store: Backend) -> None:
    base = store.create_experiment("proj", "a")
    assert base is not None
    made = store.create_experiment("proj", "b", base_experiment_id=base.id)
    assert made is not None
    assert store.base_experiment_id(made.id) == base.id
    assert store.base_experiment_id(base.id) is None
    assert store.create_experiment("proj", "b", base_experiment_id="x") is None  # taken
    assert store.base_experiment_id(made.id) == base.id


def test_sqlite_finds_a_span_by_event_id_through_an_index(tmp_path: Path) -> None:
    # A merge into another client's span names it by event id: a scan of every span of the
    # experiment per merge request would grow with the experiment.
    with SQLiteStore(tmp_path / "rows.db"):
        pass
    connection = sqlite3.connect(tmp_path / "rows.db")
    try:
        args = {"experiment": "e", "ids": json.dumps(["a"])}
        plan = connection.execute("EXPLAIN QUERY PLAN " + FIND_SPANS_BY_EVENT_ID, args).fetchall()
    finally:
        connection.close()
    assert any("USING INDEX spans_by_event_id" in step[3] for step in plan), plan
