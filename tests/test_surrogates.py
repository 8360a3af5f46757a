"""End to end: text UTF-8 cannot encode, logged by a real pytest session, is stored escaped
(issue item 1, the values half).

A real file whose name is not UTF-8 and a real subprocess's undecodable output give strings
with lone surrogates; the inner tests log them in every place a row or span takes text from a
test. Every row and span must reach the SQLite store with ``\\xe9`` where the byte was, and the
session's exit code and outcomes must be those of the same session without the plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import session_report
from support.output import output_of, summary_lines
from support.sessions import INI
from support.spool import spool_files
from support.store import default_db, stored

from pytest_evalrows.store.sqlite import SQLiteStore

pytest_plugins = ("pytester",)

EXPERIMENT = "surrogates"
ESCAPED = "caf\\xe9"  # what b"caf\xe9", surrogateescape-decoded, is stored as: \, x, e, 9

SUITE = r'''
import os
import subprocess
import sys

import pytest
from opentelemetry import trace

CAFE = b"caf\xe9".decode("utf-8", "surrogateescape")


def file_name(tmp_path):
    """A real file named with the byte 0xe9, listed as Python lists file names."""
    os.close(os.open(os.path.join(os.fsencode(tmp_path), b"caf\xe9"), os.O_CREAT | os.O_WRONLY))
    (name,) = os.listdir(tmp_path)
    assert name == CAFE
    return name


def tool_output():
    """A real subprocess's output that is not UTF-8, decoded as os and subprocess callers do."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(bytes([99, 97, 102, 0xe9]))"],
        capture_output=True,
        check=True,
    )
    return done.stdout.decode("utf-8", "surrogateescape")


@pytest.mark.eval
@pytest.mark.parametrize("name", [CAFE])
def test_logs_everywhere(name, eval_row, tmp_path):
    listed = file_name(tmp_path)
    output = tool_output()
    assert output == listed == name
    eval_row.log(
        output=output,
        expected={"file": listed, "also": [name, b"caf\xe9"], "lone": "\ud800"},
        metadata={listed: output, "nested": {name: name}},
        tags=[name, "plain"],
    )
    eval_row.score("found " + name, 1)
    tracer = trace.get_tracer("suite")
    with tracer.start_as_current_span(
        "open " + name, attributes={"path": listed, "paths": [listed, "ok"], name: 1}
    ) as span:
        span.add_event("read " + name, {"bytes": output})
    with eval_row.span("helper " + name, input=name) as helper:
        helper.log(output=output, metadata={name: name})


@pytest.mark.eval
@pytest.mark.parametrize("name", [CAFE])
def test_fails_quoting_the_text(name, eval_row):
    eval_row.log(output=name)
    raise FileNotFoundError("cannot open " + name)


@pytest.mark.eval
@pytest.mark.xfail(reason="flaky on " + CAFE, strict=True)
def test_passes_against_a_strict_xfail(eval_row):
    eval_row.log(output="passed")
'''


def rid(test: str, param: str | None = "caf\\udce9") -> str:
    # pytest's own id for the parameter escapes it its own way, as \udce9.
    return f"test_suite.py::{test}[{param}]" if param else f"test_suite.py::{test}"


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    # pytest itself prints the failures' text; under a C locale it writes the raw byte, which
    # pytester cannot decode. Backslashes make the inner output readable, changing no row.
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8:backslashreplace")
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester.path


def test_text_utf8_cannot_encode_is_stored_escaped_in_rows_and_spans(
    pytester: pytest.Pytester, suite: Path
) -> None:
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    recorded = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--eval-experiment={EXPERIMENT}"
    )

    # The plugin changes nothing about the session.
    plain.assert_outcomes(passed=1, failed=2)
    recorded.assert_outcomes(passed=1, failed=2)
    assert recorded.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    output = output_of(recorded)
    assert "Traceback" not in output and "INTERNALERROR" not in output
    # Every row written, none left behind, and the summary says nothing else.
    report = session_report(recorded)
    assert (report["rows_written"], report["new_rows"], report["updated_rows"]) == (3, 3, 0)
    assert (report["undelivered_rows"], report["lost_rows"], report["store_error"]) == (0, [], None)
    lines = summary_lines(recorded)
    assert not [line for line in lines if "not delivered" in line or "unavailable" in line]
    assert spool_files(suite / ".evalrows" / "spool") == []

    found = stored(default_db(pytester), EXPERIMENT)
    logs = found.rows[rid("test_logs_everywhere")]
    assert logs.status == "passed"
    assert logs.input == {"name": ESCAPED}
    assert logs.output == ESCAPED
    assert logs.expected == {
        "file": ESCAPED,
        "also": [ESCAPED, {"$bytes": "base64", "data": "Y2Fm6Q=="}],  # bytes are not text
        "lone": "\\ud800",
    }
    assert logs.scores == {f"found {ESCAPED}": 1.0, "pass": 1.0}
    assert logs.metadata[ESCAPED] == ESCAPED
    assert logs.metadata["nested"] == {ESCAPED: ESCAPED}
    assert logs.tags == [ESCAPED, "plain"]

    spans = {span.name: span for span in found.spans_of(logs.row_id)}
    assert set(spans) == {
        "test_logs_everywhere[caf\\udce9]",
        f"open {ESCAPED}",
        f"helper {ESCAPED}",
    }
    opened = spans[f"open {ESCAPED}"]
    assert opened.attributes["path"] == ESCAPED
    assert opened.attributes["paths"] == [ESCAPED, "ok"]
    assert opened.attributes[ESCAPED] == 1
    assert [(event["name"], event["attributes"]) for event in opened.events] == [
        (f"read {ESCAPED}", {"bytes": ESCAPED})
    ]
    helper = spans[f"helper {ESCAPED}"].attributes
    assert json.loads(helper["evalrows.input"]) == ESCAPED
    assert json.loads(helper["evalrows.output"]) == ESCAPED
    assert json.loads(helper["evalrows.metadata"]) == {ESCAPED: ESCAPED}

    fails = found.rows[rid("test_fails_quoting_the_text")]
    assert fails.status == "failed"
    assert fails.input == {"name": ESCAPED}
    assert fails.error is not None
    assert fails.error.type == "FileNotFoundError"
    assert fails.error.message == f"cannot open {ESCAPED}"
    assert f"FileNotFoundError: cannot open {ESCAPED}" in (fails.error.traceback or "")

    strict = found.rows[rid("test_passes_against_a_strict_xfail", None)]
    assert strict.status == "failed"
    assert strict.error is not None
    assert strict.error.type == "XPASS(strict)"
    assert f"flaky on {ESCAPED}" in strict.error.message


def test_a_project_folder_named_in_bytes_that_are_not_utf8_is_the_escaped_project_name(
    pytester: pytest.Pytester,
) -> None:
    """The default project is the rootdir's name: one Linux allows in any bytes."""
    root = pytester.mkdir("caf\udce9")
    (root / "pytest.ini").write_text(INI)
    (root / "test_one.py").write_text(
        "import pytest\n\n@pytest.mark.eval\ndef test_one(eval_row):\n    pass\n"
    )
    # pytest itself prints the rootdir in those bytes: read the output as bytes.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "--eval-experiment=e"],
        cwd=root,
        capture_output=True,
    )
    output = (done.stdout + done.stderr).decode("utf-8", "surrogateescape")
    assert done.returncode == pytest.ExitCode.OK, output
    assert "Traceback" not in output
    assert "1 rows written" in output
    with SQLiteStore(root / ".evalrows" / "evalrows.db", create=False) as store:
        (experiment,) = store.list_experiments()
    assert experiment.project == ESCAPED
