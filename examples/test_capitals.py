"""An eval suite: each case is a row of the experiment named by --eval-experiment.

Run it with:  pytest examples --eval-experiment=demo
"""

from __future__ import annotations

import pytest
from judges import answered
from stand_in_model import answer

from pytest_evalrows.judging import no_span_errors

CASES = [
    {"id": "capital-fr", "question": "Capital of France?", "expected": "Paris"},
    {"id": "capital-jp", "question": "Capital of Japan?", "expected": "Tokyo"},
    {"id": "capital-it", "question": "Capital of Italy?", "expected": "Rome"},
    {"id": "capital-ca", "question": "Capital of Canada?", "expected": "Ottawa"},
    {"id": "capital-au", "question": "Capital of Australia?", "expected": "Canberra"},
    {"id": "planet", "question": "Largest planet?", "expected": "Jupiter"},
    {"id": "gold", "question": "Chemical symbol for gold?", "expected": "Au"},
    {"id": "hamlet", "question": "Author of Hamlet?", "expected": "Shakespeare"},
]


# Rows keyed by the case's id: reordering CASES is safe. The judges look at each finished
# row's trace while later cases run; their scores show on the row as judge:<name>.
@pytest.mark.eval(key="id", judges=[answered, no_span_errors()])
@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_answers(case, eval_row):
    with eval_row.span("prompt", input=case["question"]) as span:
        prompt = f"Answer briefly: {case['question']}"
        span.log(output=prompt)
    output = answer(case["question"])
    eval_row.log(output=output, expected=case["expected"], tags=["geography"])
    eval_row.score("contains_expected", case["expected"] in output)
    eval_row.score("brevity", min(1.0, 20 / max(len(output), 1)))
    assert case["expected"] in output
