"""The unmodified Braintrust SDK (pinned in the dev extra) logs into ``evalrows serve`` and reads
back from it: an ``Eval`` with scores, a failing case and feedback; its pytest plugin
(``--braintrust``); rows this plugin wrote, read through the SDK; ``ensure_new``; and merges in
the order sent. The SDK runs in subprocesses (``support.sdk``), pointed at a real server on
127.0.0.1 by its environment variables only, with the internet out of reach; the server keeps
a SQLite file, then a PostgreSQL database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.sdk import Served, assert_kept, run_sdk, sdk_env, serving_kind

from pytest_evalrows.models import RowVersion
from pytest_evalrows.store.base import Store

pytest.importorskip("braintrust")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server for the module: each test writes a project of its own."""
    directory = tmp_path_factory.mktemp("served")
    yield from serving_kind(
        request.param, directory, lambda: request.getfixturevalue("postgres_server")
    )


def clean(stderr: str, *allowed: str) -> None:
    """Nothing went wrong in the SDK: no traceback but the ``allowed`` ones (each named by
    its last line), no failed or dropped request, no warning."""
    assert stderr.count("Traceback") == len(allowed), stderr
    for ending in allowed:
        assert ending in stderr, stderr
    for sign in ("log request failed", "Failed to", "Warning", "Dropping", "Retrying"):
        assert sign not in stderr, (sign, stderr)


def stored(server: Served, experiment: str, project: str) -> Store:
    store = server.open()
    store.get_experiment(experiment, project)
    return store


# -- an Eval: scores, a failing case, feedback --------------------------------------------------

EVAL = """
import json
import braintrust
from braintrust import Eval


def task(input):
    if input == "boom":
        raise ValueError("task failed on purpose")
    with braintrust.start_span(name="lookup", type="llm") as span:
        span.log(
            input={"q": input},
            output=input.upper(),
            metadata={"model": "m-1"},
            metrics={"prompt_tokens": 3, "completion_tokens": 4, "tokens": 7},
        )
    return input.upper()


def exact(input, output, expected):
    return float(output == expected)


DATA = [
    {"input": "a", "expected": "A", "metadata": {"case": "a"}, "tags": ["easy"]},
    {"input": "b", "expected": "x"},
    {"input": "boom", "expected": "BOOM"},
]
result = Eval("sdk-eval", data=DATA, task=task, scores=[exact], experiment_name="capitals")
name = result.summary.experiment_name
experiment = braintrust.init(project="sdk-eval", experiment=name, update=True)
root = next(e for e in experiment.fetch() if not e.get("span_parents") and e["input"] == "a")
experiment.log_feedback(
    id=root["id"], scores={"human": 0.5}, comment="well answered", metadata={"reviewer": "r1"}
)
braintrust.flush()
readonly = braintrust.init(project="sdk-eval", experiment=name, open=True)
scores = {k: v.score for k, v in result.summary.scores.items()}
print("RESULT " + json.dumps(
    {"name": name, "scores": scores, "fetched": list(readonly.fetch()), "sent": sent_events()}
))
"""


@pytest.fixture(scope="module")
def logged(server: Served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Eval, run once for the module's readers; what it sent and what it read back."""
    run = run_sdk(server, tmp_path_factory.mktemp("eval"), EVAL)
    clean(run.stderr, "ValueError: task failed on purpose")
    result: dict[str, Any] = run.result
    return result


def roots(events: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rows among events by id (root spans), by input."""
    return {
        event["input"]: event
        for event in events.values()
        if "comment" not in event and not event.get("span_parents")
    }


def test_an_eval_reads_back_through_the_sdk_with_every_field_it_sent(
    logged: dict[str, Any],
) -> None:
    assert logged["name"] == "capitals"
    assert logged["scores"]["exact"] == 0.5  # the summary the SDK printed, from the server
    sent: dict[str, dict[str, Any]] = logged["sent"]
    fetched = {event["id"]: event for event in logged["fetched"]}
    assert len(fetched) == len(logged["fetched"])  # each id once: the latest, merged
    events = [event for event in sent.values() if "comment" not in event]
    # Three rows, each with a task span and a scorer span (but the failing one), two lookups.
    kinds = sorted(event["span_attributes"]["type"] for event in events)
    assert kinds == sorted(["eval"] * 3 + ["task"] * 3 + ["score"] * 2 + ["llm"] * 2)
    assert set(fetched) == {event["id"] for event in events}
    for event in events:
        assert_kept(fetched[event["id"]], event)


def test_a_failing_case_is_failed_and_feedback_lands_on_its_row(logged: dict[str, Any]) -> None:
    fetched = roots({event["id"]: event for event in logged["fetched"]})
    failing = fetched["boom"]
    assert failing["error"].startswith("Traceback (most recent call last)")
    assert failing["error"].rstrip().endswith("ValueError: task failed on purpose")
    assert "output" not in failing or failing["output"] is None
    # A row's scores: its score span's, and the feedback's.
    assert fetched["a"]["scores"] == {"exact": 1.0, "human": 0.5}
    assert fetched["b"]["scores"] == {"exact": 0.0}
    assert fetched["boom"]["scores"] == {}
    [comment_event] = [event for event in logged["sent"].values() if "comment" in event]
    [comment] = fetched["a"]["comments"]
    assert comment == {
        "id": comment_event["id"],
        "text": "well answered",
        "created": comment_event["created"],
        "source": "external",
        "metadata": {"reviewer": "r1"},
    }


def test_the_eval_is_in_the_store_as_rows_and_spans_with_the_sdks_ids(
    server: Served, logged: dict[str, Any]
) -> None:
    sent: dict[str, dict[str, Any]] = logged["sent"]
    by_input = roots(sent)
    with stored(server, "capitals", "sdk-eval") as store:
        experiment = store.get_experiment("capitals", "sdk-eval")
        rows: dict[Any, RowVersion] = {row.input: row for row in store.latest_rows(experiment.id)}
        assert sorted(rows) == ["a", "b", "boom"]
        for name, row in rows.items():
            event = by_input[name]
            assert (row.row_id, row.span_id, row.root_span_id) == (
                event["id"],
                event["span_id"],
                event["root_span_id"],
            )
            assert (row.expected, row.metrics.start, row.metrics.end) == (
                event["expected"],
                event["metrics"]["start"],
                event["metrics"]["end"],
            )
            assert row.metadata["evalrows"]["braintrust"]["span_attributes"]["type"] == "eval"
        assert (rows["a"].status, rows["b"].status, rows["boom"].status) == (
            "passed",
            "passed",
            "failed",
        )
        error = rows["boom"].error
        assert error is not None
        assert (error.type, error.message) == ("ValueError", "task failed on purpose")
        assert error.traceback == by_input["boom"]["error"]
        assert (rows["a"].output, rows["a"].tags, rows["a"].metadata["case"]) == (
            "A",
            ["easy"],
            "a",
        )
        assert rows["a"].scores == {"exact": 1.0, "human": 0.5}
        [comment] = rows["a"].metadata["evalrows"]["braintrust"]["comments"]
        assert comment["text"] == "well answered"
        # Every child span under its row, by the SDK's span id, with what it logged.
        children = [event for event in sent.values() if event.get("span_parents")]
        spans = {span.span_id: span for span in store.list_spans(experiment.id)}
        for event in children:
            span = spans[event["span_id"]]
            row = next(r for r in rows.values() if r.root_span_id == event["root_span_id"])
            assert (span.row_id, span.span_parents) == (row.row_id, event["span_parents"])
            assert span.name == event["span_attributes"]["name"]
            assert (span.start, span.end) == (event["metrics"]["start"], event["metrics"]["end"])
            attributes = span.attributes
            assert attributes["braintrust.id"] == event["id"]
            for field in ("input", "output", "metadata", "metrics", "span_attributes", "scores"):
                if field in event:
                    assert attributes[f"braintrust.{field}"] == event[field], field
        lookups = [s for s in spans.values() if s.name == "lookup"]
        assert {s.attributes["braintrust.metrics"]["tokens"] for s in lookups} == {7}
        failed_task = next(
            s for s in spans.values() if s.name == "task" and s.row_id == rows["boom"].row_id
        )
        assert failed_task.status == "error"
        assert failed_task.status_description == "ValueError: task failed on purpose"


def test_evalrows_rows_and_the_web_view_show_the_sdks_rows(
    server: Served, logged: dict[str, Any]
) -> None:
    # The store the server serves, and the server itself (the HTTP store reads the SDK's
    # events as the SDK sent them).
    for where in (server.store, server.url):
        command = [sys.executable, "-m", "pytest_evalrows.cli", "rows", "capitals"]
        command += ["--project", "sdk-eval", "--store", where, "--json"]
        env = {**os.environ, "EVALROWS_API_KEY": server.token}
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False, env=env
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        records = {r["input"]: r for r in map(json.loads, done.stdout.splitlines())}
        assert {name: r["status"] for name, r in records.items()} == {
            "a": "passed",
            "b": "passed",
            "boom": "failed",
        }
        assert records["a"]["scores"] == {"exact": 1.0, "human": 0.5}
        assert records["boom"]["error"]["type"] == "ValueError"
        assert records["boom"]["error"]["message"] == "task failed on purpose"
    spans = [sys.executable, "-m", "pytest_evalrows.cli", "spans", "capitals", "--json"]
    spans += ["--project", "sdk-eval", "--store", server.url, "--row", records["a"]["id"]]
    done = subprocess.run(spans, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    found = [json.loads(line) for line in done.stdout.splitlines()]
    # The row's root and its three children, each under the row by its trace.
    assert len(found) == 4 and {"exact", "lookup", "task"} < {span["name"] for span in found}
    assert {span["row_id"] for span in found} == {records["a"]["id"]}
    # The web view reads through the same store: the failing row's page shows its error.
    with stored(server, "capitals", "sdk-eval") as store:
        experiment = store.get_experiment("capitals", "sdk-eval")
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        page = client.get(f"/experiments/{experiment.id}")
        assert page.status_code == 200
        assert "human" in page.text and "exact" in page.text
        row = client.get(f"/experiments/{experiment.id}/rows/{records['boom']['id']}")
        assert row.status_code == 200
        assert "ValueError: task failed on purpose" in row.text


# -- the SDK's own pytest plugin ---------------------------------------------------------------

PLUGIN_SUITE = """
import pytest


@pytest.mark.braintrust(input={"q": "capital of France"}, expected="Paris", tags=["geo"])
def test_capital(braintrust_span):
    braintrust_span.log(output="Paris", metadata={"model": "m-1"})


@pytest.mark.braintrust
@pytest.mark.parametrize("n", [1, 2])
def test_even(n, braintrust_span):
    braintrust_span.log(output=n % 2)
    assert n % 2 == 0
"""


def test_the_sdks_pytest_plugin_logs_a_suite_into_evalrows_serve(
    server: Served,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The plugin under test: not left out as in the other inner sessions (tests/conftest.py).
    monkeypatch.delenv("PYTEST_ADDOPTS")
    for name, value in sdk_env(server, tmp_path / "payloads").items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_plugin_suite=PLUGIN_SUITE)
    result = pytester.runpytest_subprocess(
        "--braintrust", "--braintrust-experiment=plugin-run", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "plugin-run" in output and "'pass' score" in output  # the summary it printed
    assert "log request failed" not in output and "Traceback" not in output
    with stored(server, "plugin-run", "test_plugin_suite") as store:
        experiment = store.get_experiment("plugin-run", "test_plugin_suite")
        rows = {row.nodeid: row for row in store.latest_rows(experiment.id)}
    assert sorted(rows) == ["test_capital", "test_even[1]", "test_even[2]"]
    capital = rows["test_capital"]
    assert (capital.input, capital.output, capital.expected) == (
        {"q": "capital of France"},
        "Paris",
        "Paris",
    )
    assert (capital.tags, capital.metadata["model"], capital.scores) == (
        ["geo"],
        "m-1",
        {"pass": 1.0},
    )
    odd = rows["test_even[1]"]
    assert (odd.status, odd.input, odd.output, odd.scores) == ("failed", {"n": 1}, 1, {"pass": 0.0})
    assert odd.error is not None and "assert (1 % 2) == 0" in odd.error.message
    assert (rows["test_even[2]"].status, rows["test_even[2]"].scores) == ("passed", {"pass": 1.0})


# -- rows this plugin wrote, read through the SDK ------------------------------------------------

OWN_SUITE = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("case", ["q1", "q2"])
def test_answer(case, eval_row):
    eval_row.log(output=case.upper(), expected="Q1", metadata={"source": "suite"})
    eval_row.score("exact", float(case == "q1"))
    assert case == "q1"
"""

READ_BACK = """
import json
import braintrust

readonly = braintrust.init(project="own-suite", experiment="nightly", open=True)
print("RESULT " + json.dumps(list(readonly.fetch())))
"""


def test_rows_this_plugin_wrote_read_back_through_the_sdk(
    server: Served,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("EVALROWS_API_KEY", server.token)
    monkeypatch.delenv("BRAINTRUST_API_KEY", raising=False)
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_suite=OWN_SUITE)
    args = ["--eval-experiment=nightly", "--eval-project=own-suite", f"--eval-store={server.url}"]
    attempts = []
    for _ in range(2):  # two versions of each row: the SDK reads the latest
        result = pytester.runpytest_subprocess(*args)
        result.assert_outcomes(passed=1, failed=1)
        with stored(server, "nightly", "own-suite") as store:
            experiment = store.get_experiment("nightly", "own-suite")
            attempts.append(store.list_attempts(experiment.id)[-1].id)
    events = run_sdk(server, tmp_path, READ_BACK).result
    rows = {event["id"]: event for event in events if not event.get("span_parents")}
    assert sorted(rows) == ["test_suite.py::test_answer[q1]", "test_suite.py::test_answer[q2]"]
    assert len([e for e in events if e["id"] in rows]) == 2  # each row once
    first, second = rows["test_suite.py::test_answer[q1]"], rows["test_suite.py::test_answer[q2]"]
    assert (first["input"], first["output"], first["expected"]) == ({"case": "q1"}, "Q1", "Q1")
    assert (first["scores"], second["scores"]) == (
        {"exact": 1.0, "pass": 1.0},
        {"exact": 0.0, "pass": 0.0},
    )
    assert first["metadata"]["source"] == "suite"
    assert {row["metadata"]["attemptId"] for row in rows.values()} == {attempts[1]}
    assert (first["metadata"]["evalrows"]["status"], second["metadata"]["evalrows"]["status"]) == (
        "passed",
        "failed",
    )
    assert second["error"]["type"] == "AssertionError"


# -- ensure_new ----------------------------------------------------------------------------------

ENSURE_NEW = """
import json
import braintrust

made = []
for _ in range(2):
    experiment = braintrust.init(project="ensure-new", experiment="nightly")
    experiment.log(input="x", output="y", scores={"s": 1.0})
    made.append({"id": experiment.id, "name": experiment.name})
    experiment.flush()
again = braintrust.init(project="ensure-new", experiment="nightly", update=True)
made.append({"id": again.id, "name": again.name})
print("RESULT " + json.dumps(made))
"""


def test_ensure_new_gives_the_sdk_a_new_experiment_with_a_unique_name(
    server: Served, tmp_path: Path
) -> None:
    run = run_sdk(server, tmp_path, ENSURE_NEW)
    clean(run.stderr)
    first, second, updated = run.result
    assert (first["name"], second["name"]) == ("nightly", "nightly-1")
    assert first["id"] != second["id"]
    # update=True (no ensure_new) opens the one of that name.
    assert updated == first
    with server.open() as store:
        names = {e.name: e.id for e in store.list_experiments() if e.project == "ensure-new"}
        assert names == {"nightly": first["id"], "nightly-1": second["id"]}
        assert [len(store.latest_rows(names[name])) for name in sorted(names)] == [1, 1]


# -- merges ----------------------------------------------------------------------------------

MERGES = """
import json
import braintrust

experiment = braintrust.init(project="merges", experiment="in-order")
root = experiment.start_span(
    name="case", type="eval", input={"a": {"b": 1}}, metadata={"k": {"x": 1}}, tags=["t1"]
)
child = root.start_span(name="step", type="function", input="step input")
braintrust.flush()  # the first writes, whole
child.log(output={"x": 1})
root.log(output="first", metadata={"k": {"y": 2}})
braintrust.flush()
child.log(output={"y": 2}, metadata={"n": 1})
root.log(output="second", tags=["t2"], scores={"s": 0.25})
child.end()
braintrust.flush()
root.log(metadata={"k": {"x": 3}}, scores={"s": 0.75})
root.end()
braintrust.flush()
for score in (0.2, 0.9):  # feedback in order: the last one stays
    experiment.log_feedback(id=root.id, scores={"human": score})
    braintrust.flush()
readonly = braintrust.init(project="merges", experiment="in-order", open=True)
print("RESULT " + json.dumps(
    {"root": root.id, "child": child.id, "fetched": list(readonly.fetch()), "sent": sent_events()}
))
"""


def test_merges_are_applied_in_the_order_sent(server: Served, tmp_path: Path) -> None:
    run = run_sdk(server, tmp_path, MERGES)
    clean(run.stderr)
    result = run.result
    fetched = {event["id"]: event for event in result["fetched"]}
    sent = result["sent"]
    # Every field as the SDK itself merges what it sent (its merge_dicts), and no merge lost.
    for event_id in (result["root"], result["child"]):
        assert_kept(fetched[event_id], sent[event_id])
    root, child = fetched[result["root"]], fetched[result["child"]]
    assert root["input"] == {"a": {"b": 1}}
    assert (root["output"], root["metadata"]) == ("second", {"k": {"x": 3, "y": 2}})
    assert sorted(root["tags"]) == ["t1", "t2"]
    assert root["scores"] == {"s": 0.75, "human": 0.9}
    assert "end" in root["metrics"]
    assert (child["input"], child["output"], child["metadata"]) == (
        "step input",
        {"x": 1, "y": 2},
        {"n": 1},
    )
    with stored(server, "in-order", "merges") as store:
        experiment = store.get_experiment("in-order", "merges")
        [row] = store.latest_rows(experiment.id)
        assert len(store.history(experiment.id, row.row_id)) == 1  # merged in place
        assert (row.output, row.scores, row.metadata["k"]) == (
            "second",
            {"s": 0.75, "human": 0.9},
            {"x": 3, "y": 2},
        )
        assert row.metrics.end == root["metrics"]["end"]
        assert row.metrics.duration == row.metrics.end - row.metrics.start
