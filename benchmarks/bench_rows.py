"""Cost of recording rows, as ratios against pytest with recording off, in the same run.

    python benchmarks/bench_rows.py [--cases 3000] [--rounds 8]

Runs a trivial parametrized eval test in fresh pytest processes, recording on and off,
interleaved so that both see the same machine load, and prints:
  whole   = wall(on, N) / wall(off, N)                      (start-up included)
  per row = (wall(on, N) - wall(on, 0)) / (wall(off, N) - wall(off, 0))   (start-up left out)
from the fastest run of each kind, and the median of the same ratios taken within each round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import make_suite, run_pytest

TEST_FILE = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("n", range({cases}))
def test_case(n, eval_row):
    eval_row.log(output=n * 2, expected=n * 2)
    eval_row.score("exact", 1.0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suites = {
            cases: make_suite(root, f"suite_{cases}", TEST_FILE.format(cases=cases))
            for cases in (0, args.cases)
        }
        times: dict[tuple[bool, int], list[float]] = {}
        for round_ in range(args.rounds):
            for cases, suite in suites.items():
                for record in (False, True):
                    flags = ["-q"]
                    if record:
                        store = root / f"store_{round_}_{cases}.db"
                        flags += ["--eval-experiment=bench", f"--eval-store={store}"]
                    elapsed, _ = run_pytest(suite, *flags)
                    times.setdefault((record, cases), []).append(elapsed)
        # The fastest of the rounds: noise on a shared machine only ever adds time.
        best = {key: min(values) for key, values in times.items()}
    n = args.cases
    print(f"{n} trivial eval cases, fastest of {args.rounds} interleaved rounds")
    for cases in (0, n):
        print(
            f"  {cases:>6} cases: off {best[(False, cases)]:.2f} s, on {best[(True, cases)]:.2f} s"
        )
    whole = best[(True, n)] / best[(False, n)]
    per_row = (best[(True, n)] - best[(True, 0)]) / (best[(False, n)] - best[(False, 0)])
    print(f"whole-process ratio (on/off at {n}): {whole:.2f}x")
    print(f"per-row ratio ((on {n} - on 0) / (off {n} - off 0)): {per_row:.2f}x")
    # The same ratios within each round, whose four runs follow each other: a slow spell of
    # the machine weighs on both sides of a round alike. Their median, and their spread.
    wholes = [on / off for on, off in zip(times[(True, n)], times[(False, n)], strict=True)]
    rows = [
        (on_n - on_0) / (off_n - off_0)
        for on_n, on_0, off_n, off_0 in zip(
            times[(True, n)], times[(True, 0)], times[(False, n)], times[(False, 0)], strict=True
        )
    ]
    for name, values in (("whole-process", wholes), ("per-row", rows)):
        print(
            f"{name} ratio, median of the rounds' own: {statistics.median(values):.2f}x "
            f"(from {min(values):.2f}x to {max(values):.2f}x)"
        )


if __name__ == "__main__":
    main()
