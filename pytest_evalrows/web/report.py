"""The one-file HTML report of ``evalrows report``: an experiment's pages, as the server shows
them, in one self-contained document to keep as a CI artifact or open from disk.

What the file holds (``templates/report.html``):

- the experiment's page, pre-rendered with its first page of rows (readable without
  JavaScript), and its every row as a JSON index in ``<script type="application/json"
  id="rows-data">``, which ``static/report.js`` filters, sorts and pages 50 rows at a time;
- each row's page (``Renderer.row_main``), in chunks of ``CHUNK_ROWS`` rows: a JSON list of
  ``[row_id, markup]`` pairs in the index's order, gzip'd and base64'd into
  ``<script type="application/gzip+base64" id="rows-chunk-N">``, inflated in the browser on
  first use (DecompressionStream);
- the comparison with the baseline (``Renderer.compare_main``), one JSON string packed the same
  way in ``#compare-data``, when there is a baseline.

No URL in it leads out: the stylesheet and the scripts are inline, links are ``#/`` routes, and
a Content-Security-Policy lets nothing load but the file's own style and scripts (by hash).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from ..core.judgments import Evaluation
from ..core.models import RowVersion, SpanRecord
from ..core.records import STATUSES
from ..store.base import Store, UnsupportedError
from . import views
from .pages import PAGE_SIZE, SORT_KEYS, ExperimentPage, ExperimentRef, RowLine, RowQuery
from .render import ROW_COLUMNS, Renderer, environment, static_text, stylesheet

#: Rows whose pages share one gzip'd chunk: the browser inflates a chunk when one of its rows
#: is opened, so a chunk stays small enough to inflate at once, and large enough to compress.
CHUNK_ROWS = 200
#: The fields of a row in the index, in order: ``scores`` is a list in the order of
#: ``scoreNames`` (null where the row has no such score); ``input`` is the cell the table
#: shows (clipped), ``search`` what text search looks in (``RowLine.search_text``: input,
#: output and expected whole, casefolded by Python, so that the script finds what the server
#: finds, past the clipped cells too).
COLUMNS = (
    "row_id",
    "status",
    "version",
    "attempt_id",
    "attempt_short",
    "duration",
    "tokens",
    "created",
    "error",
    "scores",
    "input",
    "search",
)
#: The scripts the report runs, in order: the served pages' own (the trace's expand and
#: collapse tools), the rows table's rules, then the report's routes and views.
SCRIPTS = ("evalrows.js", "report_rows.js", "report.js")
# The compressed chunks' script type: a data block the browser neither runs nor shows.
PACKED_TYPE = "application/gzip+base64"


class ReportLinks:
    """Links as the report's hash routes (``render.Links``).

    ``#/`` is the experiment (``#/?status=failed&page=2`` a query of its rows table),
    ``#/rows/ID`` a row (encoded as the browser's ``encodeURIComponent`` does), ``#/compare``
    the comparison. Another experiment (the baseline, its rows) is not in the file: its links
    go to ``#/experiment/ID[/rows/ROW]``, which the script answers with a note saying so.
    """

    def __init__(self, experiment: ExperimentRef) -> None:
        self.ref = experiment

    def experiments(self) -> str:
        return "#/"

    def experiment(self, ref: ExperimentRef, params: Sequence[tuple[str, str]] = ()) -> str:
        if ref.id != self.ref.id:
            return f"#/experiment/{uri_component(ref.id)}"
        return f"#/?{urlencode(list(params))}" if params else "#/"

    def row(self, ref: ExperimentRef, row_id: str) -> str:
        if ref.id != self.ref.id:
            return f"#/experiment/{uri_component(ref.id)}/rows/{uri_component(row_id)}"
        return f"#/rows/{uri_component(row_id)}"

    def compare(self, a: ExperimentRef, b: ExperimentRef) -> str:
        return "#/compare"

    def static(self, name: str) -> str:
        # Nothing the report embeds loads a file: the stylesheet and scripts are inline.
        return "data:,"


def uri_component(text: str) -> str:
    """``text`` encoded as JavaScript's ``encodeURIComponent`` does (the script decodes it)."""
    return quote(text, safe="!'()*", errors="replace")


@dataclass(frozen=True)
class BuiltReport:
    html: str
    rows: int


def build_report(
    store: Store, experiment_id: str, *, baseline: ExperimentRef | None
) -> BuiltReport:
    """The report of one experiment, compared with ``baseline`` when there is one (its
    card's stored baseline is replaced by it, so that the compare link goes where the
    report's comparison is)."""
    page, lines = views.experiment_page_and_lines(store, experiment_id, RowQuery())
    page = replace(page, card=replace(page.card, baseline=baseline))
    ref = page.card.ref
    renderer = Renderer(ReportLinks(ref))
    compare = None
    if baseline is not None:
        compare = renderer.compare_main(views.compare_page(store, baseline.id, experiment_id))
    scripts = [_inline(static_text(name), "script") for name in SCRIPTS]
    css = _inline(stylesheet(), "style")
    html = (
        environment()
        .get_template("report.html")
        .render(
            links=renderer.links,
            page=page,
            action="#/",
            sort_links=None,
            prev_link=None,
            next_link=None if page.pages < 2 else renderer.links.experiment(ref, [("page", "2")]),
            head=renderer.experiment_head(page),
            index=script_json(index_of(page, lines, baseline)),
            chunks=list(row_chunks(store, ref, lines, renderer)),
            compare=None if compare is None else pack(compare),
            packed_type=PACKED_TYPE,
            stylesheet=css,
            scripts=scripts,
            policy=content_policy(css, scripts),
            generated=time.time(),
            latest_only=latest_only(store),
        )
    )
    return BuiltReport(html=html, rows=len(lines))


def _inline(text: str, element: str) -> str:
    """Our own stylesheet or script, checked to hold nothing that would end its element."""
    if f"</{element}" in text.lower():
        raise AssertionError(f"the report's inline {element} holds </{element}>")
    return text


def content_policy(css: str, scripts: Sequence[str]) -> str:
    """Nothing loads but the file's own stylesheet and scripts (by their hashes) and data:
    images; no request of any kind (connect-src, form-action), no base to resolve against."""
    hashes = " ".join(f"'{_sha256(script)}'" for script in scripts)
    return (
        f"default-src 'none'; style-src '{_sha256(css)}'; script-src {hashes}; "
        "img-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'"
    )


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


# -- the index of rows ------------------------------------------------------------------------


def index_of(
    page: ExperimentPage, lines: Sequence[RowLine], baseline: ExperimentRef | None
) -> dict[str, Any]:
    """What the script pages the rows table from: every row (by row id), as arrays of
    ``COLUMNS`` rather than objects (a third of the size for 10,000 rows)."""
    names = page.score_names
    return {
        "experiment": _ref(page.card.ref),
        "baseline": None if baseline is None else _ref(baseline),
        "columns": COLUMNS,
        "scoreNames": names,
        "statuses": STATUSES,
        "sortKeys": SORT_KEYS,
        "sortLabels": dict(ROW_COLUMNS),  # the caption names the sort as the header does
        "pageSize": PAGE_SIZE,
        "chunkSize": CHUNK_ROWS,
        "rows": [
            [
                line.row_id,
                line.status,
                line.version,
                line.attempt_id,
                line.attempt_short,
                _finite(line.duration),
                line.tokens,
                _finite(line.created),
                line.error,
                [line.scores.get(name) for name in names],
                line.input,
                line.search_text,
            ]
            for line in lines
        ],
    }


def _ref(ref: ExperimentRef) -> dict[str, str]:
    return {"id": ref.id, "name": ref.name, "project": ref.project}


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or infinity: JSON.parse would refuse the whole index.
    return value if value is not None and math.isfinite(value) else None


def script_json(value: Any) -> str:
    """JSON to put inside a ``<script>`` element as it is: no ``<`` in it at all, so no
    ``</script>`` or ``<!--`` a value holds can end or change the element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


# -- the rows' pages, packed ------------------------------------------------------------------


def row_chunks(
    store: Store, ref: ExperimentRef, lines: Sequence[RowLine], renderer: Renderer
) -> Iterator[str]:
    """Each row's page in chunks of ``CHUNK_ROWS``, packed. Reads the store in bulk (every
    span and evaluation once) but for each row's history, which the store reads by row."""
    history_of = _histories(store, ref.id)
    spans: dict[str | None, list[SpanRecord]] = {}
    for span in store.list_spans(ref.id):
        spans.setdefault(span.row_id, []).append(span)
    evaluations: dict[str, list[Evaluation]] = {}
    for evaluation in _evaluations(store, ref.id):
        evaluations.setdefault(evaluation.row_id, []).append(evaluation)
    for start in range(0, len(lines), CHUNK_ROWS):
        pages = []
        for line in lines[start : start + CHUNK_ROWS]:
            history = history_of(line.row_id)
            if not history:  # gone since the rows were read: the script says "no such row"
                continue
            row = views.build_row_page(
                ref, history, spans.get(line.row_id, ()), evaluations.get(line.row_id, ())
            )
            pages.append([line.row_id, renderer.row_main(row)])
        yield pack(pages)


def latest_only(store: Store) -> bool:
    """Whether the report's row pages show each row's latest version alone: so with a store
    that does not promise every version (``history_complete``), the HTTP store, whose one
    row's history is a read of the whole experiment (10,000 of them would take hours)."""
    return not store.history_complete


def _histories(store: Store, experiment_id: str) -> Callable[[str], list[RowVersion]]:
    if not latest_only(store):
        return lambda row_id: store.history(experiment_id, row_id)
    latest = {row.row_id: row for row in store.latest_rows(experiment_id)}
    return lambda row_id: [latest[row_id]] if row_id in latest else []


def _evaluations(store: Store, experiment_id: str) -> Iterable[Evaluation]:
    if not store.evaluations:
        return ()
    try:
        return store.list_evaluations(experiment_id)
    except UnsupportedError:
        return ()


def pack(value: Any) -> str:
    """``value`` as JSON, gzip'd, base64'd: text that is safe anywhere in HTML."""
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    packed = gzip.compress(data.encode("utf-8", "replace"), compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii")


def unpack(text: str) -> Any:
    """What ``pack`` packed (the tests read the file back with it)."""
    return json.loads(gzip.decompress(base64.b64decode(text)).decode("utf-8"))
