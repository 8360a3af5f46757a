"""What the tests of ``evalrows report`` share: a SQLite store of one experiment against its
baseline (rows with traces, judgments, a rerun, hostile text on demand), the command run on
it, and the file it writes read back with ``html.parser``."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pytest_evalrows.core.judgments import Evaluation, Judgment, Step
from pytest_evalrows.models import Attempt, ErrorInfo, Metrics, RowVersion, SpanRecord
from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.web.report import CHUNK_ROWS, PACKED_TYPE, unpack

from .cli import evalrows

HOSTILE = "</script><script>alert(1)</script><!-- <b>bold</b> &amp; \u2028"
HOSTILE_ID = "case[</script><img src=x onerror=alert(1)>/?#%]"


# -- a store ----------------------------------------------------------------------------------


def version(
    row_id: str,
    attempt: str,
    start: float,
    *,
    status: str = "passed",
    scores: dict[str, float] | None = None,
    duration: float = 1.5,
    tokens: int | None = 42,
    **fields: Any,
) -> RowVersion:
    return RowVersion(
        row_id=row_id,
        version_id=str(uuid.uuid4()),
        nodeid=f"tests/test_cases.py::test_case[{row_id}]",
        attempt_id=attempt,
        execution=1,
        status=status,
        scores=scores if scores is not None else {},
        metrics=Metrics(start=start, end=start + duration, duration=duration, tokens=tokens),
        root_span_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        **fields,
    )


def trace_of(row: RowVersion, attribute: str = "a model call") -> list[SpanRecord]:
    """The row's root span and one child, a model call that raised."""
    start = row.metrics.start
    root = SpanRecord(
        span_id=row.span_id,
        root_span_id=row.root_span_id,
        row_id=row.row_id,
        attempt_id=row.attempt_id,
        name="test_case",
        start=start,
        end=start + 1.4,
    )
    call = SpanRecord(
        span_id=uuid.uuid4().hex[:16],
        root_span_id=row.root_span_id,
        span_parents=[row.span_id],
        row_id=row.row_id,
        attempt_id=row.attempt_id,
        name="chat",
        start=start + 0.1,
        end=start + 1.0,
        status="error",
        attributes={"gen_ai.usage.input_tokens": 30, "note": attribute},
        events=[
            {
                "name": "exception",
                "timestamp": start + 0.9,
                "attributes": {"exception.type": "TimeoutError", "exception.message": attribute},
            }
        ],
    )
    return [root, call]


@dataclass
class Seeded:
    db: Path
    experiment_id: str
    row_ids: list[str] = field(default_factory=list)


# Values whose display text is easy to get wrong: the rounding of a value exactly halfway
# (0.0625 to three places), each unit of a duration, thousands, none at all.
DURATIONS = (0.0, 0.00425, 0.0625, 0.2505, 1.005, 12.345, 59.996, 75.5, 3599.5, 7384.0)
TOKENS = (None, 0, 7, 1234, 1234567)
TONES = (0.0625, 0.1875, 1 / 3, 2 / 3, 0.9995, 1.0, 0.0, 0.5)


def seed(
    db: Path,
    rows: int = 3,
    *,
    hostile: bool = False,
    baseline: bool = True,
    varied: bool = False,
) -> Seeded:
    """Experiment 'now' of project 'demo' (two sessions, the second naming 'base' its
    baseline; each row with a trace, half of them judged) and 'base', 'other' besides.

    Against 'base': every third row regressed (exact 1 -> 0), the last row is only in 'now'
    and 'gone' only in 'base'. ``varied``: durations, tokens and tone scores from
    ``DURATIONS``, ``TOKENS`` and ``TONES`` in turn."""
    with SQLiteStore(db) as store:
        base = store.get_or_create_experiment("demo", "base")
        now = store.get_or_create_experiment("demo", "now")
        store.get_or_create_experiment("demo", "other")
        store.save_attempt(Attempt(id="attempt-base", experiment_id=base.id, started=10.0))
        store.save_attempt(Attempt(id="attempt-first", experiment_id=now.id, started=20.0))
        report = {"baseline": "base"} if baseline else {}
        store.save_attempt(
            Attempt(id="attempt-second", experiment_id=now.id, started=30.0, report=report)
        )
        ids = [f"case-{index:05d}" for index in range(rows)]
        if hostile:
            ids.append(HOSTILE_ID)
        text = HOSTILE if hostile else "a question"
        store.write(
            base.id,
            [version(i, "attempt-base", 10.0, scores={"exact": 1.0}) for i in [*ids[:-1], "gone"]],
            [],
        )
        first = [version(i, "attempt-first", 20.0, scores={"exact": 1.0}) for i in ids[:2]]
        store.write(now.id, first, [])
        latest, spans = [], []
        for index, row_id in enumerate(ids):
            failed = index % 3 == 0
            tone = TONES[index % len(TONES)] if varied else (index % 10) / 10
            shape: dict[str, Any] = {}
            if varied:
                shape = {
                    "duration": DURATIONS[index % len(DURATIONS)],
                    "tokens": TOKENS[index % len(TOKENS)],
                }
            row = version(
                row_id,
                "attempt-second",
                30.0 + index,
                status="failed" if failed else "passed",
                scores={"exact": 0.0 if failed else 1.0, "tone": tone},
                **shape,
                input={"question": text, "n": index},
                output="Lyon" if failed else "Paris",
                expected="Paris",
                error=ErrorInfo("AssertionError", text, "Traceback ...") if failed else None,
            )
            latest.append(row)
            spans += trace_of(row, text)
        store.write(now.id, latest, spans)
        store.save_evaluations(
            now.id,
            [
                Evaluation(
                    id=f"judged-{row.row_id}",
                    row_id=row.row_id,
                    trace_id=row.root_span_id,
                    version_id=row.version_id,
                    judge_id="tone",
                    created_at=40.0,
                    status="success",
                    result=Judgment(
                        score=0.5,
                        reasoning=text,
                        steps=[Step(span_id=None, name="look", result={"said": text})],
                    ),
                )
                for row in latest[::2]
            ],
        )
    return Seeded(db, now.id, sorted(ids))


def seed_texts(db: Path, texts: Mapping[str, tuple[object, object, object]]) -> Seeded:
    """Experiment 'now' of project 'demo' with one row per entry of ``texts``: row id ->
    (input, output, expected), for tests of text search."""
    with SQLiteStore(db) as store:
        now = store.get_or_create_experiment("demo", "now")
        store.save_attempt(Attempt(id="attempt-texts", experiment_id=now.id, started=10.0))
        rows = [
            version(row_id, "attempt-texts", 10.0, input=given, output=said, expected=wanted)
            for row_id, (given, said, wanted) in texts.items()
        ]
        store.write(now.id, rows, [])
    return Seeded(db, now.id, sorted(texts))


# -- the command and the file read back -------------------------------------------------------


def report(
    seeded: Seeded, *args: str | Path, experiment: str = "now"
) -> subprocess.CompletedProcess[str]:
    return evalrows("report", experiment, *args, "--store", seeded.db, cwd=seeded.db.parent)


def written(seeded: Seeded, *args: str | Path) -> Path:
    """The report the command writes (to report.html beside the store), after its one line."""
    path = seeded.db.parent / "report.html"
    done = report(seeded, "-o", path, *args)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    size = path.stat().st_size
    rows = len(seeded.row_ids)
    assert re.fullmatch(
        rf"{re.escape(str(path))}: {rows} rows?, [\d.]+ (KiB|MiB|bytes)\n", done.stdout
    )
    assert size > 0
    return path


def one_error(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert (done.returncode, done.stdout) == (code, ""), done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("evalrows: error: "), line
    return line.removeprefix("evalrows: error: ")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    text: str = ""


class Document(HTMLParser):
    """Every element with its attributes, and the text of each <script> and <style>."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._raw: Element | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.elements.append(element)
        if tag in ("script", "style"):
            self._raw = element

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            self._raw.text += data

    def all(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str, **attrs: str) -> Element:
        (found,) = self.all(tag, **attrs)
        return found


def index_of(document: Document) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(document.one("script", id="rows-data").text)
    return data


def pages_of(document: Document) -> dict[str, str]:
    """Every row's packed page, unpacked: row id -> markup, in the index's order."""
    chunks = [
        e for e in document.all("script", type=PACKED_TYPE) if e.attrs["id"] != "compare-data"
    ]
    assert [e.attrs["id"] for e in chunks] == [f"rows-chunk-{n}" for n in range(len(chunks))]
    pages: dict[str, str] = {}
    for chunk in chunks:
        pairs = unpack(chunk.text)
        assert 0 < len(pairs) <= CHUNK_ROWS
        pages.update((row_id, markup) for row_id, markup in pairs)
    return pages


# Attributes that make a browser load or go to a URL.
URL_ATTRIBUTES = ("href", "src", "srcset", "action", "formaction", "poster", "data", "xlink:href")


def links_in(markup: str) -> list[tuple[str, str, str]]:
    """(tag, attribute, value) of every URL-taking attribute of the markup."""
    return [
        (e.tag, name, value or "")
        for e in Document(markup).elements
        for name, value in e.attrs.items()
        if name in URL_ATTRIBUTES
    ]


def assert_loads_nothing(markup: str) -> None:
    for tag, name, value in links_in(markup):
        assert value.startswith(("#", "data:")), (tag, name, value)
    # Base64 has no ":", "(" or "@": the packed data cannot hide these.
    assert not re.search(r"https?:|url\(|@import", markup, re.IGNORECASE)


def versions_in(markup: str) -> list[str | None]:
    """The versions a row's page lists, newest first."""
    rows = Document(markup).all("tr")
    return [e.attrs["data-version"] for e in rows if "data-version" in e.attrs]


def sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
