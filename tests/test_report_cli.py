"""``evalrows summary``, ``diff`` and ``export``: an experiment's latest rows summed up,
compared with a baseline and written out, through the real command, on a SQLite store built
by hand and on what real sessions recorded into SQLite and into ``evalrows serve``."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import evalrows, json_lines
from support.servers import Servers
from support.store import make_row

from pytest_evalrows.cli_reports import RECORD_KEYS
from pytest_evalrows.core.compare import compare
from pytest_evalrows.models import Metrics, RowVersion
from pytest_evalrows.store.sqlite import SQLiteStore

# The baseline and the experiment compared with it (their latest versions): r1 improved
# (tone up), r2 regressed (tone down), r3 regressed (exact down; tone only on one side),
# "gone" only in the baseline, "new" only in the other.
BASE = {"r1": {"exact": 1.0, "tone": 0.5}, "r2": {"exact": 0.0, "tone": 0.5}, "r3": {"exact": 1.0}}
BASE["gone"] = {"exact": 1.0}
NOW = {
    "r1": {"exact": 1.0, "tone": 0.75},
    "r2": {"exact": 0.0, "tone": 0.25},
    "r3": {"exact": 0.0, "tone": 1.0},
    "new": {"exact": 1.0},
}


def spent(row: RowVersion, tokens: int, cost: float) -> RowVersion:
    metrics = Metrics(start=100.0, end=101.5, duration=1.5, tokens=tokens, cost=cost)
    return row.model_copy(update={"metrics": metrics})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Experiments 'base', 'now' and 'empty' of project 'demo'. In 'now', r1 and r2 carry
    tokens and cost, r3 failed, and r1's first version (failed, exact 0) is not its latest."""
    path = tmp_path / "rows.db"
    with SQLiteStore(path) as store:
        base = store.get_or_create_experiment("demo", "base")
        store.write(base.id, [make_row(i, "a1", scores=s) for i, s in BASE.items()], [])
        now = store.get_or_create_experiment("demo", "now")
        store.write(now.id, [make_row("r1", "a2", status="failed", scores={"exact": 0.0})], [])
        latest = [
            spent(make_row("r1", "a3", scores=NOW["r1"], output={"text": "Paris"}), 10, 0.25),
            spent(make_row("r2", "a3", scores=NOW["r2"]), 5, 0.5),
            make_row("r3", "a3", status="failed", scores=NOW["r3"], tags=["geo"]),
            make_row("new", "a3", scores=NOW["new"], output="plain, text", expected="1"),
        ]
        store.write(now.id, latest, [])
        store.get_or_create_experiment("demo", "empty")
    return path


def run(*args: str | Path, store: Path) -> subprocess.CompletedProcess[str]:
    return evalrows(*args, "--store", store, cwd=store.parent)


def ok(*args: str | Path, store: Path) -> str:
    done = run(*args, store=store)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout


def one_error(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert (done.returncode, done.stdout) == (code, ""), done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("evalrows: error: "), line
    return line.removeprefix("evalrows: error: ")


# -- summary ---------------------------------------------------------------------------------


def test_summary_sums_up_the_latest_versions(db: Path) -> None:
    (record,) = json_lines(ok("summary", "now", "--json", store=db))

    assert record == {
        "experiment": "now",
        "rows": 4,
        "statuses": {"failed": 1, "passed": 3},
        "scores": {"exact": 0.5, "tone": pytest.approx(2 / 3)},
        "tokens": 15,
        "cost": 0.75,
    }
    assert ok("summary", "now", store=db).splitlines() == [
        "experiment 'now' (project 'demo'): 4 rows: 3 passed, 1 failed",
        "tokens: 15; cost: $0.750000",
        "SCORE  MEAN",
        "exact  0.500",
        "tone   0.667",
    ]


def test_a_summary_of_no_rows_says_so(db: Path) -> None:
    (record,) = json_lines(ok("summary", "empty", "--json", store=db))

    assert record == {
        "experiment": "empty",
        "rows": 0,
        "statuses": {},
        "scores": {},
        "tokens": None,
        "cost": None,
    }
    assert ok("summary", "empty", store=db).splitlines() == [
        "experiment 'empty' (project 'demo'): 0 rows",
        "tokens: not recorded; cost: not recorded",
        "no scores",
    ]


# -- diff ------------------------------------------------------------------------------------


def test_diff_json_is_the_comparison_with_known_deltas(db: Path) -> None:
    (record,) = json_lines(ok("diff", "base", "now", "--json", store=db))

    with SQLiteStore(db, create=False) as store:
        base, now = (store.latest_rows(store.get_experiment(n).id) for n in ("base", "now"))
    assert record == compare(base, now, a_name="base", b_name="now").to_json()
    assert record["a"] == "base" and record["b"] == "now"
    assert record["rows"] == {"compared": 3, "only_a": 1, "only_b": 1}
    assert record["scores"] == {
        "exact": {
            "a_mean": pytest.approx(2 / 3),
            "b_mean": pytest.approx(1 / 3),
            "delta": pytest.approx(-1 / 3),
            "improved": 0,
            "regressed": 1,
            "unchanged": 2,
        },
        "tone": {
            "a_mean": 0.5,
            "b_mean": pytest.approx(2 / 3),
            "delta": pytest.approx(1 / 6),
            "improved": 1,
            "regressed": 1,
            "unchanged": 0,
        },
    }
    assert (record["improved"], record["regressed"]) == (["r1"], ["r2", "r3"])


def test_diff_is_a_table_with_the_regressions_first(db: Path) -> None:
    assert ok("diff", "base", "now", store=db).splitlines() == [
        "A (the baseline): 'base' (project 'demo')",
        "B (compared):     'now' (project 'demo')",
        "rows: 3 compared, 1 only in A, 1 only in B",
        "SCORE  A MEAN  B MEAN  DELTA   IMPROVED  REGRESSED  UNCHANGED",
        "exact  0.667   0.333   -0.333  0         1          2",
        "tone   0.500   0.667   +0.167  1         1          0",
        "CHANGE     ROW ID",
        "regressed  r2",
        "regressed  r3",
        "improved   r1",
    ]
    # The other way round: what regressed improved; a score on B's side only has no A mean.
    assert ok("diff", "now", "empty", store=db).splitlines() == [
        "A (the baseline): 'now' (project 'demo')",
        "B (compared):     'empty' (project 'demo')",
        "rows: 0 compared, 4 only in A, 0 only in B",
        "no scores compared",
        "no row improved or regressed",
    ]


def test_diff_of_experiments_in_two_projects(db: Path) -> None:
    with SQLiteStore(db) as store:
        other = store.get_or_create_experiment("other", "now")
        store.write(other.id, [make_row("r1", "a4", scores={"exact": 0.0, "tone": 0.75})], [])

    ambiguous = run("diff", "base", "now", store=db)
    assert one_error(ambiguous) == (
        "experiment 'now' exists in several projects ('demo', 'other'): name one"
    )
    (found,) = json_lines(
        ok("diff", "now", "now", "--project-a", "demo", "--project-b", "other", "--json", store=db)
    )
    assert found["rows"] == {"compared": 1, "only_a": 3, "only_b": 0}
    assert (found["regressed"], found["scores"]["exact"]["delta"]) == (["r1"], -1.0)
    # --project names both sides; --project-b overrides it for B.
    (same,) = json_lines(
        ok("diff", "now", "now", "--project", "demo", "--project-b", "other", "--json", store=db)
    )
    assert same == found


# -- export ----------------------------------------------------------------------------------


def test_export_jsonl_is_what_rows_json_prints(db: Path, tmp_path: Path) -> None:
    rows = ok("rows", "now", "--json", store=db)

    assert ok("export", "now", "--format", "jsonl", store=db) == rows
    assert ok("export", "now", "--json", store=db) == rows
    target = tmp_path / "now.jsonl"
    said = ok("export", "now", "--format", "jsonl", "-o", target, store=db)
    assert said == f"wrote 4 rows of experiment 'now' to {target} (jsonl)\n"
    assert target.read_text(encoding="utf-8") == rows


def test_export_csv_flattens_scores_and_writes_nested_values_as_json(
    db: Path, tmp_path: Path
) -> None:
    records = {r["id"]: r for r in json_lines(ok("rows", "now", "--json", store=db))}
    target = tmp_path / "now.csv"
    ok("export", "now", "--format", "csv", "--output", target, store=db)
    with target.open(encoding="utf-8", newline="") as stream:
        lines = list(csv.DictReader(stream))

    header = list(lines[0])
    assert header[:9] == [
        "id", "nodeid", "status", "attempt_id", "execution", "version", "input", "output",
        "expected",
    ]  # fmt: skip
    assert header[9:11] == ["score.exact", "score.tone"]  # where scores is, sorted
    by_id = {line["id"]: line for line in lines}
    assert list(by_id) == list(records)
    assert by_id["new"]["score.tone"] == ""  # no such score on this row
    assert (by_id["r1"]["score.exact"], by_id["r1"]["score.tone"]) == ("1.0", "0.75")
    for row_id, line in by_id.items():
        record = records[row_id]
        for key in ("input", "output", "expected", "metadata", "tags", "error", "metrics"):
            assert json.loads(line[key]) == record[key], (row_id, key)
        for key in ("status", "attempt_id", "root_span_id", "span_id", "created"):
            assert line[key] == record[key]
        assert (int(line["version"]), int(line["execution"])) == (
            record["version"],
            record["execution"],
        )
    # A string is JSON text too, so "1" and 1 stay apart; a comma is quoted by the csv module.
    assert (by_id["new"]["output"], by_id["new"]["expected"]) == ('"plain, text"', '"1"')
    assert by_id["r3"]["error"] == "null"
    assert json.loads(by_id["r1"]["metrics"])["tokens"] == 10
    # Without -o, the same CSV on standard output.
    assert ok("export", "now", "--format", "csv", store=db) == target.read_text(encoding="utf-8")


def test_export_of_no_rows_is_a_header_with_the_record_columns(db: Path) -> None:
    empty = ok("export", "empty", "--format", "csv", store=db)
    with_rows = next(csv.reader(io.StringIO(ok("export", "now", "--format", "csv", store=db))))

    (header,) = list(csv.reader(io.StringIO(empty)))
    assert header == [name for name in with_rows if not name.startswith("score.")]
    assert header == [key for key in RECORD_KEYS if key != "scores"]
    assert ok("export", "empty", "--format", "jsonl", store=db) == ""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--format", "xml"], "--format 'xml': expected one of jsonl, csv"),
        ([], "--format: name one of jsonl, csv"),
        (["--json", "--format", "csv"], "--json writes JSON lines: it cannot go with --format csv"),
    ],
)
def test_bad_export_formats_are_usage_errors(
    db: Path, tmp_path: Path, args: list[str], said: str
) -> None:
    target = tmp_path / "out.csv"
    done = run("export", "now", *args, "-o", target, store=db)

    assert one_error(done, code=2) == said
    assert not target.exists()


def test_an_output_that_cannot_be_written_is_one_line(db: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory" / "now.csv"
    done = run("export", "now", "--format", "csv", "-o", missing, store=db)
    assert one_error(done) == f"cannot write {missing}: No such file or directory"

    done = run("export", "now", "--format", "jsonl", "-o", tmp_path, store=db)
    assert one_error(done) == f"cannot write {tmp_path}: Is a directory"
    # An unknown experiment is said before any file is made.
    target = tmp_path / "nope.csv"
    done = run("export", "nope", "--format", "csv", "-o", target, store=db)
    assert one_error(done) == f"no experiment 'nope' in sqlite:///{db}"
    assert not target.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["summary", "nope"],
        ["summary", "now", "--project", "other"],
        ["diff", "nope", "now"],
        ["diff", "base", "nope"],
        ["export", "nope", "--format", "jsonl"],
    ],
)
def test_unknown_experiments_are_one_line(db: Path, args: list[str]) -> None:
    said = one_error(run(*args, "--json", store=db))

    assert said.startswith("no experiment 'nope' in " if "nope" in args else "no experiment 'now'")
    assert said.endswith(f"sqlite:///{db}")


def test_a_row_that_cannot_be_read_is_named_after_the_others_are_used(db: Path) -> None:
    # A body damaged inside a sound SQLite file: valid JSON, not a row.
    with sqlite3.connect(db) as raw:
        raw.execute(
            'UPDATE row_versions SET body = \'{"row_id": "new", "status": 42}\' '
            "WHERE row_id = 'new'"
        )
    raw.close()

    summary = run("summary", "now", "--json", store=db)
    (record,) = json_lines(summary.stdout)
    assert (summary.returncode, record["rows"]) == (1, 3)
    (line,) = summary.stderr.splitlines()
    assert line.startswith("evalrows: error: row 'new' version 1 cannot be read: ")

    diff = run("diff", "base", "now", "--json", store=db)
    assert (diff.returncode, json_lines(diff.stdout)[0]["rows"]["only_b"]) == (1, 0)
    (line,) = diff.stderr.splitlines()
    assert line.startswith("evalrows: error: experiment 'now': row 'new' version 1 cannot be read")

    export = run("export", "now", "--format", "jsonl", store=db)
    assert (export.returncode, len(json_lines(export.stdout))) == (1, 3)
    assert len(export.stderr.splitlines()) == 1


# -- what sessions recorded, on both stores --------------------------------------------------

SUITE = """
import json
from pathlib import Path

import pytest

CAPITALS = {"de": "Berlin", "es": "Madrid", "fr": "Paris", "it": "Rome", "pt": "Lisbon"}
ANSWERS = json.loads(Path(__file__).with_name("answers.json").read_text())


@pytest.mark.eval
@pytest.mark.parametrize("country", sorted(ANSWERS))
def test_capital(country, eval_row):
    answer = ANSWERS[country]
    eval_row.log(output=answer, expected=CAPITALS[country])
    eval_row.score("exact", answer == CAPITALS[country])
    assert answer == CAPITALS[country]
"""
# The baseline's answers, then the next session's: fr regressed, pt improved, it unchanged,
# de only in the baseline, es only in the next one.
FIRST = {"de": "Bonn", "fr": "Paris", "it": "Rome", "pt": "Porto"}
SECOND = {"es": "Madrid", "fr": "Lyon", "it": "Rome", "pt": "Lisbon"}
ROW = "test_suite.py::test_capital[{}]"


@pytest.fixture(params=["sqlite", "http"])
def recorded(
    request: pytest.FixtureRequest,
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str | None]]:
    """Experiments 'first' and 'second', each recorded by a session into a SQLite file or
    into ``evalrows serve``: the store's URL and its key."""
    servers = Servers(tmp_path_factory.mktemp("served"))
    if request.param == "http":
        server = servers.make("evk-reports")
        server.start()
        store, key = server.url, "evk-reports"
    else:
        store, key = str(pytester.path / "rows.db"), None
    try:
        pytester.makepyfile(test_suite=SUITE)
        secret = () if key is None else (f"--eval-api-key={key}",)
        for name, answers, wrong in (("first", FIRST, 2), ("second", SECOND, 1)):
            (pytester.path / "answers.json").write_text(json.dumps(answers))
            session = pytester.runpytest_subprocess(
                f"--eval-experiment={name}", f"--eval-store={store}", *secret
            )
            session.assert_outcomes(passed=len(answers) - wrong, failed=wrong)
        yield store, key
    finally:
        servers.stop_all()


def test_summary_diff_and_export_of_what_sessions_recorded(
    recorded: tuple[str, str | None],
) -> None:
    store, key = recorded

    def said(*args: str) -> list[dict[str, Any]]:
        done = evalrows(*args, "--store", store, "--json", key=key, ok=True)
        assert done.stderr == ""
        return json_lines(done.stdout)

    assert said("summary", "second") == [
        {
            "experiment": "second",
            "rows": 4,
            "statuses": {"failed": 1, "passed": 3},
            "scores": {"exact": 0.75, "pass": 0.75},
            "tokens": None,
            "cost": None,
        }
    ]
    (diff,) = said("diff", "first", "second")
    assert diff["rows"] == {"compared": 3, "only_a": 1, "only_b": 1}
    assert (diff["regressed"], diff["improved"]) == ([ROW.format("fr")], [ROW.format("pt")])
    for name in ("exact", "pass"):
        assert diff["scores"][name] == {
            "a_mean": pytest.approx(2 / 3),
            "b_mean": pytest.approx(2 / 3),
            "delta": pytest.approx(0),
            "improved": 1,
            "regressed": 1,
            "unchanged": 1,
        }
    table = evalrows("diff", "first", "second", "--store", store, key=key, ok=True)
    assert table.stdout.splitlines()[-3:] == [
        "CHANGE     ROW ID",
        f"regressed  {ROW.format('fr')}",
        f"improved   {ROW.format('pt')}",
    ]

    assert said("export", "second") == said("rows", "second")
    exported = evalrows("export", "second", "--format", "csv", "--store", store, key=key, ok=True)
    lines = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(line["id"], line["score.exact"], line["score.pass"]) for line in lines] == [
        (ROW.format("es"), "1.0", "1.0"),
        (ROW.format("fr"), "0.0", "0.0"),
        (ROW.format("it"), "1.0", "1.0"),
        (ROW.format("pt"), "1.0", "1.0"),
    ]
    assert [json.loads(line["output"]) for line in lines] == ["Madrid", "Lyon", "Rome", "Lisbon"]
