"""xdist: recording must not serialize the workers.

    python benchmarks/bench_xdist.py [--cases 200] [--sleep 0.02]

Runs N cases that each sleep 20 ms, with recording on, under -n 0 and -n 2, and prints the
speed-up (the issue asks for at least 1.8x).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import make_suite, run_pytest

TEST_FILE = """
import time
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("n", range({cases}))
def test_case(n, eval_row):
    time.sleep({sleep})
    eval_row.log(output=n)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite = make_suite(root, "suite", TEST_FILE.format(cases=args.cases, sleep=args.sleep))
        serial: list[float] = []
        parallel: list[float] = []
        for round_ in range(args.rounds):
            store = root / f"round_{round_}.db"
            flags = ["-q", "--eval-experiment=x", f"--eval-store={store}"]
            serial.append(run_pytest(suite, *flags, "-n", "0")[0])
            parallel.append(run_pytest(suite, *flags, "-n", "2")[0])
    print(
        f"{args.cases} cases of {args.sleep * 1000:.0f} ms, recording on, fastest of {args.rounds}"
    )
    print(f"  -n 0: {min(serial):.2f} s, -n 2: {min(parallel):.2f} s")
    print(f"  speed-up: {min(serial) / min(parallel):.2f}x")


if __name__ == "__main__":
    main()
