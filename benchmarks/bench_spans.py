"""Spans: recording 10 child spans per row, a full rerun, and the stale-span clean-up.

    python benchmarks/bench_spans.py [--cases 5000] [--spans 10]

Runs the suite with recording off and on (whole-process ratio), then reruns it in full:
every row's old spans are stale and the session deletes them after delivery. Prints the time
the clean-up took, as the session measured it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import make_suite, run_pytest, summary_number

TEST_FILE = """
import pytest
from opentelemetry import trace

tracer = trace.get_tracer("bench")

@pytest.mark.eval
@pytest.mark.parametrize("n", range({cases}))
def test_case(n, eval_row):
    for i in range({spans}):
        with tracer.start_as_current_span("step") as span:
            span.set_attribute("i", i)
    eval_row.log(output=n)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--spans", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite = make_suite(root, "suite", TEST_FILE.format(cases=args.cases, spans=args.spans))
        off: list[float] = []
        on: list[float] = []
        for round_ in range(args.rounds):
            off.append(run_pytest(suite, "-q")[0])
            store = root / f"round_{round_}.db"
            on.append(run_pytest(suite, "-q", "--eval-experiment=b", f"--eval-store={store}")[0])
        rerun, output = run_pytest(suite, "-q", "--eval-experiment=b", f"--eval-store={store}")
    removed = summary_number(output, r"stale spans removed: (\d+)")
    cleanup = summary_number(output, r"stale spans removed: \d+ \(in ([\d.]+) s\)")
    spans = args.cases * (args.spans + 1)
    best_off, best_on = min(off), min(on)
    print(f"{args.cases} rows x {args.spans} child spans (+1 root), fastest of {args.rounds}")
    print(f"  off {best_off:.2f} s, on {best_on:.2f} s: ratio {best_on / best_off:.2f}x")
    print(f"  full rerun: {rerun:.2f} s; removed {removed:.0f} of {spans} stale spans")
    print(f"  clean-up: {cleanup:.3f} s in one statement")


if __name__ == "__main__":
    main()
