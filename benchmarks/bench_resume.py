"""Resume: deciding what to deselect over an experiment of 100,000 rows.

    python benchmarks/bench_resume.py [--rows 100000]

Fills an experiment with N passed rows through the store's own batched writes, then runs a
session of N cases with --eval-resume: every case is deselected after one read of the
experiment. Prints how long the decision took, as the session measured it, and the session's
wall time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import make_suite, run_pytest, summary_number

from pytest_evalrows.core import ids
from pytest_evalrows.store.sqlite import SQLiteStore

TEST_FILE = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("n", range({rows}))
def test_case(n):
    pass
"""


def fill(store_path: Path, rows: int) -> None:
    with SQLiteStore(store_path) as store:
        experiment = store.get_or_create_experiment("suite", "resume")
        for start in range(0, rows, 5000):
            batch = []
            for n in range(start, min(rows, start + 5000)):
                params = {"n": n}
                batch.append(
                    {
                        "row_id": f"test_bench.py::test_case[{n}]",
                        "version_id": os.urandom(16).hex(),
                        "nodeid": f"test_bench.py::test_case[{n}]",
                        "attempt_id": "earlier",
                        "execution": 1,
                        "status": "passed",
                        "input": params,
                        "scores": {"pass": 1.0},
                        "metadata": {"params_hash": ids.params_hash(params)},
                        "metrics": {"start": 0.0, "end": 0.0, "duration": 0.0},
                        "root_span_id": "0" * 32,
                        "span_id": "0" * 16,
                    }
                )
            store.write(experiment.id, batch, [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite = make_suite(root, "suite", TEST_FILE.format(rows=args.rows))
        store = suite / "rows.db"
        fill(store, args.rows)
        wall, output = run_pytest(
            suite, "-q", "--eval-experiment=resume", f"--eval-store={store}", "--eval-resume"
        )
    resumed = summary_number(output, r"resumed: (\d+) cases")
    decided = summary_number(output, r"decided in ([\d.]+) s")
    print(f"experiment of {args.rows} passed rows, session of {args.rows} cases")
    print(f"  resumed (deselected) {resumed:.0f} cases; decision took {decided:.2f} s")
    print(f"  whole session (collection included): {wall:.2f} s")


if __name__ == "__main__":
    main()
