"""The unmodified Braintrust SDK against ``evalrows serve`` where rows used to be lost or
doubled: a row over the SDK's request size arrives (the server promises no overflow upload
it does not serve), null scores are kept and feedback sets one null, a comment logged before
its row lands on it and a refused request is not written again by each retry. The SDK runs
in subprocesses (``support.sdk``) against a server keeping a SQLite file, then a PostgreSQL
database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.sdk import Served, assert_kept, run_sdk, serving_kind

pytest.importorskip("braintrust")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("served")
    yield from serving_kind(
        request.param, directory, lambda: request.getfixturevalue("postgres_server")
    )


def clean(stderr: str) -> None:
    for sign in ("Traceback", "log request failed", "Failed to", "Dropping", "Retrying"):
        assert sign not in stderr, (sign, stderr)


BIG = """
import json
import braintrust

experiment = braintrust.init(project="sdk-big", experiment="big")
experiment.log(id="big", input="x" * 300_000, output="y", scores={"s": 1})
experiment.log(id="small", input="x", output="y", scores={"s": 0})
braintrust.flush()
readonly = braintrust.init(project="sdk-big", experiment="big", open=True)
rows = {event["id"]: len(event["input"]) for event in readonly.fetch()}
print("RESULT " + json.dumps(rows))
"""


def test_a_row_over_the_sdks_request_size_arrives(
    server: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Told a payload limit, the SDK would send this row to /logs3/overflow, and lose it.
    small = {"BRAINTRUST_MAX_REQUEST_SIZE": "100000"}
    run = run_sdk(server, tmp_path_factory.mktemp("big"), BIG, env=small)
    clean(run.stderr)
    assert run.result == {"big": 300_000, "small": 1}
    with server.open() as store:
        experiment = store.get_experiment("big", "sdk-big")
        assert {row.row_id for row in store.latest_rows(experiment.id)} == {"big", "small"}


NULLS = """
import json
import braintrust

experiment = braintrust.init(project="sdk-nulls", experiment="nulls")
kept = experiment.log(input="a", output="b", scores={"s": 1, "nul": None})
judged = experiment.log(input="c", output="d", scores={"s": 0.5, "t": 1})
experiment.log_feedback(id=judged, scores={"s": None})
braintrust.flush()
readonly = braintrust.init(project="sdk-nulls", experiment="nulls", open=True)
print("RESULT " + json.dumps({
    "kept": kept, "judged": judged, "fetched": list(readonly.fetch()), "sent": sent_events()
}))
"""


def test_null_scores_are_kept_and_feedback_sets_a_score_null(
    server: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = run_sdk(server, tmp_path_factory.mktemp("nulls"), NULLS)
    clean(run.stderr)
    result: dict[str, Any] = run.result
    fetched = {event["id"]: event for event in result["fetched"]}
    assert fetched[result["kept"]]["scores"] == {"s": 1, "nul": None}
    assert fetched[result["judged"]]["scores"] == {"s": None, "t": 1}
    for event_id, sent in result["sent"].items():
        assert_kept(fetched[event_id], sent)
    with server.open() as store:
        experiment = store.get_experiment("nulls", "sdk-nulls")
        rows = {row.row_id: row.scores for row in store.latest_rows(experiment.id)}
    # The store's scores are numbers: the null ones are no score to average.
    assert rows == {result["kept"]: {"s": 1}, result["judged"]: {"t": 1}}


EARLY = """
import json
import braintrust

experiment = braintrust.init(project="sdk-early", experiment="early")
experiment.log_feedback(id="later-row", comment="before its row")
braintrust.flush()
experiment.log(id="later-row", input="a", output="b", scores={"s": 1})
braintrust.flush()
readonly = braintrust.init(project="sdk-early", experiment="early", open=True)
print("RESULT " + json.dumps(list(readonly.fetch())))
"""


def test_a_comment_logged_before_its_row_lands_on_it_and_nothing_is_written_twice(
    server: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Refused, the first request would be sent again and again by the SDK (and, written
    # before it was refused, its rows with it).
    run = run_sdk(server, tmp_path_factory.mktemp("early"), EARLY)
    clean(run.stderr)
    [row] = run.result
    assert row["id"] == "later-row"
    assert [comment["text"] for comment in row["comments"]] == ["before its row"]
    with server.open() as store:
        experiment = store.get_experiment("early", "sdk-early")
        assert [v.version for v in store.history(experiment.id, "later-row")] == [1]


BASE = """
import json
import braintrust

first = braintrust.init(project="sdk-base", experiment="A")
first.log(id="r", input=1, output=1, scores={"s": 0.0})
first.flush()
second = braintrust.init(project="sdk-base", experiment="B")
second.log(id="r", input=1, output=1, scores={"s": 1.0})
second.flush()
third = braintrust.init(project="sdk-base", experiment="C", base_experiment="A")
third.log(id="r", input=1, output=1, scores={"s": 0.5})
summary = third.summarize()
fourth = braintrust.init(project="sdk-base", experiment="D")
fourth.log(id="r", input=1, output=1, scores={"s": 0.25})
later = fourth.summarize()
print("RESULT " + json.dumps({
    "compared": summary.comparison_experiment_name,
    "diff": summary.scores["s"].diff,
    "base": third.fetch_base_experiment().name,
    "later": later.comparison_experiment_name,
    "metrics": {name: metric.unit for name, metric in summary.comparison.metrics.items()},
}))
"""


def test_an_experiment_is_compared_with_the_base_it_was_created_with(
    server: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = run_sdk(server, tmp_path_factory.mktemp("base"), BASE)
    clean(run.stderr)
    # Without a base: the project's most recent earlier experiment (C for D).
    metrics = run.result.pop("metrics")
    assert run.result == {"compared": "A", "diff": 0.5, "base": "A", "later": "C"}
    assert metrics == {"duration": "s"}  # the SDK prints it beside the scores
