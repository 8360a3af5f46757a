"""The ``evalrows`` command: experiments, rows and history, as JSON lines and as tables."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from support.cli import evalrows, json_lines
from support.store import make_row

from pytest_evalrows.cli import build_parser, main
from pytest_evalrows.core.records import Attempt
from pytest_evalrows.models import ErrorInfo
from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.store.urls import VALID_FORMS

FR = "tests/test_a.py::test_x[fr]"
DE = "tests/test_a.py::test_x[de]"
FIRST = "11111111-first"
SECOND = "22222222-second"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
WHEN = "YYYY-MM-DDTHH:MM:SSZ"  # what ISO timestamps are replaced with, same width

ROW_KEYS = {
    "id",
    "nodeid",
    "status",
    "attempt_id",
    "version",
    "input",
    "output",
    "expected",
    "scores",
    "metadata",
    "error",
    "created",
}


@pytest.fixture
def store_db(tmp_path: Path) -> Path:
    """A store holding experiment 'nightly' of project 'demo': FR with two versions, DE one."""
    path = tmp_path / "rows.db"
    with SQLiteStore(path) as store:
        experiment = store.get_or_create_experiment(
            "demo", "nightly", git_commit="abc123", git_branch="main"
        )
        error = ErrorInfo(type="AssertionError", message="assert 'Lyon' == 'Paris'", traceback="tb")
        store.write(
            experiment.id,
            [
                make_row(FR, FIRST, status="failed", scores={"pass": 0.0}, error=error),
                make_row(DE, FIRST, scores={"pass": 1.0}, input={"case": {"id": "de"}}),
            ],
            [],
        )
        store.write(
            experiment.id,
            [
                make_row(
                    FR,
                    SECOND,
                    scores={"exact": 1.0, "pass": 1.0},
                    input={"case": {"id": "fr", "q": "Capital of France?"}},
                    output="Paris",
                    expected="Paris",
                    tags=["geo"],
                )
            ],
            [],
        )
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_experiments(capsys: pytest.CaptureFixture[str], store_db: Path) -> None:
    code, out, err = run(capsys, "experiments", "--store", store_db, "--json")

    assert (code, err) == (0, "")
    (record,) = json_lines(out)
    assert set(record) == {"id", "project", "name", "created", "git_commit", "git_branch"}
    assert (record["project"], record["name"]) == ("demo", "nightly")
    assert (record["git_commit"], record["git_branch"]) == ("abc123", "main")
    assert ISO.fullmatch(str(record["created"]))

    code, out, err = run(capsys, "experiments", "--store", store_db)

    assert (code, err) == (0, "")
    assert ISO.sub(WHEN, out).splitlines() == [
        "PROJECT  NAME     CREATED               BRANCH",
        f"demo     nightly  {WHEN}  main",
    ]


def test_rows_json(capsys: pytest.CaptureFixture[str], store_db: Path) -> None:
    code, out, err = run(capsys, "rows", "nightly", "--store", store_db, "--json")

    assert (code, err) == (0, "")
    records = json_lines(out)
    assert [record["id"] for record in records] == [DE, FR]
    for record in records:
        assert set(record) >= ROW_KEYS
        assert ISO.fullmatch(str(record["created"]))
    de, fr = records
    assert {key: fr[key] for key in ROW_KEYS - {"created", "metadata"}} == {
        "id": FR,
        "nodeid": FR,
        "status": "passed",
        "attempt_id": SECOND,
        "version": 2,
        "input": {"case": {"id": "fr", "q": "Capital of France?"}},
        "output": "Paris",
        "expected": "Paris",
        "scores": {"exact": 1.0, "pass": 1.0},
        "error": None,
    }
    assert fr["metadata"] == {
        "nodeid": FR,
        "attemptId": SECOND,
        "execution": 1,
        "params_hash": "hash-1",
    }
    assert (de["version"], de["attempt_id"], de["input"]) == (1, FIRST, {"case": {"id": "de"}})


def test_rows_table_is_aligned(capsys: pytest.CaptureFixture[str], store_db: Path) -> None:
    code, out, err = run(capsys, "rows", "nightly", "--store", store_db)

    assert (code, err) == (0, "")
    assert ISO.sub(WHEN, out).splitlines() == [
        "ROW ID                       STATUS  VER  ATTEMPT   SCORES          CREATED",
        f"{DE}  passed  1    11111111  pass=1          {WHEN}",
        f"{FR}  passed  2    22222222  exact=1 pass=1  {WHEN}",
    ]


def test_history(capsys: pytest.CaptureFixture[str], store_db: Path) -> None:
    code, out, err = run(capsys, "history", "nightly", FR, "--store", store_db, "--json")

    assert (code, err) == (0, "")
    first, second = json_lines(out)
    assert (first["version"], first["status"], first["attempt_id"]) == (1, "failed", FIRST)
    assert first["error"] == {
        "type": "AssertionError",
        "message": "assert 'Lyon' == 'Paris'",
        "traceback": "tb",
    }
    assert (second["version"], second["status"], second["attempt_id"]) == (2, "passed", SECOND)
    assert set(first) >= ROW_KEYS and set(second) >= ROW_KEYS

    code, out, err = run(capsys, "history", "nightly", FR, "--store", store_db)

    assert (code, err) == (0, "")
    assert ISO.sub(WHEN, out).splitlines() == [
        "ROW ID                       STATUS  VER  ATTEMPT   SCORES          CREATED",
        f"{FR}  failed  1    11111111  pass=0          {WHEN}",
        f"{FR}  passed  2    22222222  exact=1 pass=1  {WHEN}",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rows", "nope"], "no experiment 'nope' in sqlite:///{store}"),
        (["history", "nope", FR], "no experiment 'nope' in sqlite:///{store}"),
        (["history", "nightly", "no-such-row"], "no row 'no-such-row' in experiment 'nightly'"),
        (
            ["rows", "nightly", "--project", "other"],
            ("no experiment 'nightly' in project 'other' in sqlite:///{store}"),
        ),
    ],
)
def test_unknown_names_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str], store_db: Path, args: list[str], message: str
) -> None:
    code, out, err = run(capsys, *args, "--store", store_db)

    assert code == 1
    assert out == ""
    assert err == f"evalrows: error: {message.format(store=store_db)}\n"


def test_a_missing_store_is_an_error_and_is_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "rows.db"

    code, out, err = run(capsys, "experiments", "--store", missing)

    assert (code, out) == (1, "")
    assert err == f"evalrows: error: no store at {missing}\n"
    assert not missing.parent.exists()


def test_a_bad_store_url_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "rows", "x", "--store", "mysql://db")

    assert (code, out) == (1, "")
    assert err == (
        f"evalrows: error: --store: unknown store scheme 'mysql' in 'mysql://db'; "
        f"use {VALID_FORMS}\n"
    )


def test_the_default_store_is_relative_to_the_current_directory_or_from_the_env(
    capsys: pytest.CaptureFixture[str],
    store_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = tmp_path / "project"
    (project / ".evalrows").mkdir(parents=True)
    store_db.rename(project / ".evalrows" / "evalrows.db")
    monkeypatch.chdir(project)

    code, out, _ = run(capsys, "rows", "nightly", "--json")

    assert code == 0
    assert [record["id"] for record in json_lines(out)] == [DE, FR]

    (project / ".evalrows" / "evalrows.db").rename(tmp_path / "moved.db")
    monkeypatch.setenv("EVALROWS_STORE", str(tmp_path / "moved.db"))

    code, out, _ = run(capsys, "rows", "nightly", "--json")

    assert code == 0
    assert len(json_lines(out)) == 2


def test_an_experiment_name_in_two_projects_needs_a_project(
    capsys: pytest.CaptureFixture[str], store_db: Path
) -> None:
    with SQLiteStore(store_db) as store:
        other = store.get_or_create_experiment("other", "nightly")
        store.write(other.id, [make_row("only-row", "33333333-third")], [])

    code, out, err = run(capsys, "rows", "nightly", "--store", store_db)

    assert (code, out) == (1, "")
    assert err == (
        "evalrows: error: experiment 'nightly' exists in several projects ('demo', 'other'): "
        "name one\n"
    )

    code, out, err = run(
        capsys, "rows", "nightly", "--store", store_db, "--project", "other", "--json"
    )

    assert (code, err) == (0, "")
    assert [record["id"] for record in json_lines(out)] == ["only-row"]


def test_every_subcommand_takes_store_and_json() -> None:
    parser = build_parser()
    for command, extra in (("experiments", []), ("rows", ["x"]), ("history", ["x", "r"])):
        args = parser.parse_args([command, *extra, "--store", "s.db", "--json"])
        assert (args.store, args.json) == ("s.db", True)


def test_the_command_fails_without_a_traceback_in_a_subprocess(
    store_db: Path, tmp_path: Path
) -> None:
    result = evalrows("rows", "nope", "--store", store_db, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"evalrows: error: no experiment 'nope' in sqlite:///{store_db}\n"


def test_the_console_script_reads_what_a_session_recorded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cli_rows="""
        import pytest

        @pytest.mark.eval
        @pytest.mark.parametrize("n", [1, 2])
        def test_n(n, eval_row):
            eval_row.log(output=n * 10)
            assert n == 1
        """
    )
    pytester.runpytest_subprocess("--eval-experiment=nightly", "--eval-attempt-id=cli-attempt")
    listed = evalrows("rows", "nightly", "--json", cwd=pytester.path, script=True, timeout=60)

    assert (listed.returncode, listed.stderr) == (0, "")
    records = json_lines(listed.stdout)
    assert [
        (r["id"], r["status"], r["version"], r["attempt_id"], r["output"]) for r in records
    ] == [
        ("test_cli_rows.py::test_n[1]", "passed", 1, "cli-attempt", 10),
        ("test_cli_rows.py::test_n[2]", "failed", 1, "cli-attempt", 20),
    ]
    assert records[1]["error"]["type"] == "AssertionError"
    assert records[1]["metadata"]["attemptId"] == "cli-attempt"


def test_attempts_lists_each_session_with_its_counts(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_a="""
        import pytest

        @pytest.mark.eval
        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_n(n):
            assert n != 2
        """
    )
    first = pytester.runpytest_subprocess("--eval-experiment=att", "--eval-attempt-id=first")
    first.assert_outcomes(passed=2, failed=1)
    second = pytester.runpytest_subprocess(
        "--eval-experiment=att", "--eval-attempt-id=second", "--lf"
    )
    second.assert_outcomes(failed=1)
    store = pytester.path / ".evalrows" / "evalrows.db"
    done = evalrows("attempts", "att", "--store", str(store), "--json", cwd=pytester.path)
    assert done.returncode == 0, done.stderr
    records = json_lines(done.stdout)
    assert [(r["id"], r["counts"], r["delivered"]) for r in records] == [
        ("first", {"passed": 2, "failed": 1}, True),
        ("second", {"failed": 1}, True),
    ]
    assert "--lf" in records[1]["args"]
    table = evalrows("attempts", "att", "--store", str(store), cwd=pytester.path)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ATTEMPT", "STARTED", "ENDED", "HOST", "ROWS", "DELIVERED"]
    assert lines[1].split()[0] == "first" and "failed=1 passed=2" in lines[1]
    # Each session's report rides along in --json: its counts, not the summary's prose.
    reports = [r["report"] for r in records]
    assert [(r["rows_written"], r["new_rows"], r["updated_rows"]) for r in reports] == [
        (3, 3, 0),
        (1, 0, 1),
    ]
    assert [r["statuses"] for r in reports] == [r["counts"] for r in records]
    assert reports[1]["stale_spans_removed"] >= 1  # the failed row's earlier root span at least
    assert "report" not in table.stdout.lower()


def test_attempts_of_sessions_before_reports_were_kept_say_null(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "rows.db"
    with SQLiteStore(db) as store:
        experiment = store.get_or_create_experiment("p", "nightly")
        store.save_attempt(Attempt(id="old", experiment_id=experiment.id, started=1.0))
    # An attempt body as an older version of the plugin saved it: no "report" key.
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE attempts SET body = json_remove(body, '$.report')")
    raw.close()

    code, out, err = run(capsys, "attempts", "nightly", "--store", db, "--json")

    assert code == 0, err
    [record] = json_lines(out)
    assert (record["id"], record["report"]) == ("old", None)


def test_a_damaged_row_body_is_named_in_one_line_and_the_other_rows_still_shown(
    tmp_path: Path,
) -> None:
    db = tmp_path / "rows.db"
    with SQLiteStore(db) as store:
        experiment = store.get_or_create_experiment("p", "nightly")
        store.write(experiment.id, [make_row("a"), make_row("b"), make_row("c")], [])
    # A body damaged inside a sound SQLite file: valid JSON, not a row.
    with sqlite3.connect(db) as raw:
        raw.execute(
            'UPDATE row_versions SET body = \'{"row_id": "b", "status": 42}\' WHERE row_id = \'b\''
        )
    raw.close()

    for command in (["rows", "nightly"], ["history", "nightly", "b"]):
        done = evalrows(*command, "--store", db, cwd=tmp_path)
        assert "Traceback" not in done.stderr
        errors = done.stderr.splitlines()
        assert len(errors) == 1, done.stderr
        assert errors[0].startswith("evalrows: error: row 'b' version 1 cannot be read: ")
        assert done.returncode == 1
    shown = evalrows("rows", "nightly", "--store", db, "--json", cwd=tmp_path)
    assert [json.loads(line)["id"] for line in shown.stdout.splitlines()] == ["a", "c"]


NON_ASCII = """
import pytest
from opentelemetry import trace

@pytest.mark.eval
@pytest.mark.parametrize("word", ["日本語", "tab\\there", "back\\\\slash", "plain"])
def test_ids(word, eval_row):
    with trace.get_tracer("t").start_as_current_span("work"):
        eval_row.log(output=word)
"""


def test_a_row_is_found_by_its_id_as_written_or_as_pytest_escaped_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_words=NON_ASCII)
    pytester.runpytest_subprocess("--eval-experiment=words").assert_outcomes(passed=4)
    listed = evalrows("rows", "words", "--json", cwd=pytester.path)
    stored = [record["id"] for record in json_lines(listed.stdout)]
    # The row id is the node id, and pytest escapes what is not printable ASCII.
    assert stored == [
        "test_words.py::test_ids[\\u65e5\\u672c\\u8a9e]",
        "test_words.py::test_ids[back\\\\slash]",
        "test_words.py::test_ids[plain]",
        "test_words.py::test_ids[tab\\there]",
    ]
    written = ["日本語", "back\\slash", "plain", "tab\there"]

    for row_id, word in zip(stored, written, strict=True):
        for given in (row_id, f"test_words.py::test_ids[{word}]"):
            history = evalrows("history", "words", given, "--json", cwd=pytester.path)
            assert (history.returncode, history.stderr) == (0, ""), given
            (record,) = json_lines(history.stdout)
            assert (record["id"], record["output"]) == (row_id, word)

            spans = evalrows("spans", "words", "--row", given, "--json", cwd=pytester.path)
            assert (spans.returncode, spans.stderr) == (0, ""), given
            names = sorted(span["name"] for span in json_lines(spans.stdout))
            assert names == sorted(["work", row_id.split("::")[1]]), given

    missing = evalrows("history", "words", "test_words.py::test_ids[日本]", cwd=pytester.path)
    assert missing.returncode == 1
    assert "no row 'test_words.py::test_ids[日本]'" in missing.stderr


def test_version() -> None:
    from importlib.metadata import version

    result = evalrows("--version", script=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"evalrows (pytest-evalrows) {version('pytest-evalrows')}\n"
