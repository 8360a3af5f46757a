"""The root span of a row is derived once: what the recorder stores with an execution and what
the wire format rebuilds from that row's event are the same span."""

from __future__ import annotations

import time

import pytest

from pytest_evalrows.braintrust import wire
from pytest_evalrows.core import ids
from pytest_evalrows.core.records import Status
from pytest_evalrows.core.row import RowDraft, RowPlan
from pytest_evalrows.models import ErrorInfo, RowVersion, SpanRecord
from pytest_evalrows.plugin import building

ATTEMPT = "attempt-root"
EXPERIMENT = "root-exp"
NODEID = "tests/t.py::test_x[a]"


def draft(error: ErrorInfo | None) -> RowDraft:
    plan = RowPlan(row_id=NODEID, nodeid=NODEID, input={}, params_hash="h", markers=["eval"])
    return RowDraft(
        plan=plan,
        execution=2,
        trace_id=ids.new_trace_id(),
        span_id=ids.new_span_id(),
        start=time.time(),
        error=error,
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("passed", None),
        ("skipped", None),
        ("xpassed", None),
        ("failed", ErrorInfo("AssertionError", "assert 1 == 2", "t.py:3: in test_x")),
        ("error", ErrorInfo("RuntimeError", "no fixture", "")),
    ],
)
def test_the_wire_rebuilds_the_root_span_the_recorder_stores(
    status: Status, error: ErrorInfo | None
) -> None:
    row_draft = draft(error)
    end = row_draft.start + 1.5
    stored = building.root_span(
        row_draft, status=status, end=end, attempt_id=ATTEMPT, experiment=EXPERIMENT
    )
    fields = building.row_fields(row_draft, status, ATTEMPT)
    row = building.row_version(row_draft, status=status, end=end, attempt_id=ATTEMPT, fields=fields)
    rebuilt = wire.row_root_span(wire.event_row(wire.row_event(row)), experiment=EXPERIMENT)
    # Without a pytest item the recorder names the span by its row id; the event by the
    # node id's last part.
    expected = SpanRecord(**{**stored, "name": "test_x[a]"})
    assert rebuilt == expected
    assert rebuilt.attributes["evalrows.experiment"] == EXPERIMENT


def test_without_the_experiment_the_wire_leaves_its_attribute_out() -> None:
    row_draft = draft(None)
    fields = building.row_fields(row_draft, "passed", ATTEMPT)
    row = building.row_version(
        row_draft, status="passed", end=row_draft.start, attempt_id=ATTEMPT, fields=fields
    )
    rebuilt = wire.row_root_span(RowVersion.model_validate(row))
    assert "evalrows.experiment" not in rebuilt.attributes
    assert rebuilt.status == "ok"
