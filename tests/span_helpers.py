"""Helpers for the span and cleanup tests: the inner sessions' building blocks and read-back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import summary

from pytest_evalrows.models import RowVersion, SpanRecord
from pytest_evalrows.store.sqlite import SQLiteStore

EVALROWS_KEYS = (
    "evalrows.attempt_id",
    "evalrows.row_id",
    "evalrows.experiment",
    "evalrows.execution",
)

# A pytest.ini makes the inner rootdir (and so row ids and the default store) stable.
INI = "[pytest]\n"

# A real HTTP server on 127.0.0.1 (port 0) and real httpx instrumentation, for inner conftests.
SERVER_CONFTEST = textwrap.dedent(
    """
    import http.server
    import threading

    import pytest
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()


    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass


    @pytest.fixture(scope="session")
    def server_url():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()
        thread.join()
    """
)

# The user's own provider and exporter, configured in conftest.py. What the exporter got is
# dumped at session finish; a span started after the plugin is done shows whether the
# provider still works (the plugin must never shut it down).
USER_PROVIDER_CONFTEST = textwrap.dedent(
    """
    import json
    import pathlib

    import pytest
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    HERE = pathlib.Path(__file__).parent
    EXPORTER = InMemorySpanExporter()
    PROVIDER = TracerProvider()
    PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(PROVIDER)


    def _exported():
        return [
            {
                "name": span.name,
                "span_id": format(span.context.span_id, "016x"),
                "attributes": dict(span.attributes or {}),
            }
            for span in EXPORTER.get_finished_spans()
        ]


    def pytest_sessionfinish(session):
        (HERE / "exported.json").write_text(json.dumps(_exported()))


    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(config):
        with trace.get_tracer("after").start_as_current_span("after-session"):
            pass
        (HERE / "after.json").write_text(
            json.dumps(
                {
                    "names": [span["name"] for span in _exported()],
                    "provider_is_global": trace.get_tracer_provider() is PROVIDER,
                }
            )
        )
    """
)


@dataclass
class Stored:
    """What one experiment holds: latest rows by row id and every span."""

    rows: dict[str, RowVersion]
    spans: list[SpanRecord]

    def spans_of(self, row_id: str | None) -> list[SpanRecord]:
        return [span for span in self.spans if span.row_id == row_id]

    def by_row(self) -> dict[str | None, list[SpanRecord]]:
        found: dict[str | None, list[SpanRecord]] = defaultdict(list)
        for span in self.spans:
            found[span.row_id].append(span)
        return dict(found)

    def span_ids(self, row_id: str | None) -> set[str]:
        return {span.span_id for span in self.spans_of(row_id)}


def stored(db: Path, experiment: str) -> Stored:
    with SQLiteStore(db, create=False) as store:
        found = store.get_experiment(experiment)
        rows = {row.row_id: row for row in store.latest_rows(found.id)}
        spans = store.list_spans(found.id)
    return Stored(rows, spans)


def default_db(pytester: pytest.Pytester) -> Path:
    return pytester.path / ".evalrows" / "evalrows.db"


def attempt_of(result: pytest.RunResult) -> str:
    """The attempt id the plugin's summary names (exactly one such line)."""
    found = re.findall(r"^attempt (\S+): \d+ rows written", result.stdout.str(), re.MULTILINE)
    assert len(found) == 1, result.stdout.str()
    return str(found[0])


def header_line(result: pytest.RunResult) -> str:
    lines = [line for line in result.stdout.lines if line.startswith("evalrows:")]
    assert len(lines) == 1, result.stdout.str()
    return lines[0]


def summary_lines(result: pytest.RunResult) -> list[str]:
    """The lines of the plugin's terminal-summary section."""
    return summary(result)


def stale_removed(result: pytest.RunResult) -> int | None:
    found = [
        int(match.group(1))
        for line in summary_lines(result)
        if (match := re.fullmatch(r"stale spans removed: (\d+) \(in [\d.]+ s\)", line))
    ]
    assert len(found) <= 1, result.stdout.str()
    return found[0] if found else None


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``evalrows`` command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_evalrows.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def live(span: SpanRecord, rows: dict[str, RowVersion]) -> bool:
    """Whether a row span belongs to its row's latest version."""
    assert span.row_id is not None
    row = rows[span.row_id]
    return span.attempt_id == row.attempt_id and span.execution == row.execution
