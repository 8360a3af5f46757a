"""xdist: recording must not serialize the workers.

    python benchmarks/bench_xdist.py [--cases 200] [--sleep 0.02]

Runs N cases that each sleep 20 ms under -n 0 and -n 2, with recording on and off, and prints
the speed-ups: recording must not serialize the workers (the issue asks for at least 1.8x with
recording on), and xdist's own start-up is the baseline to read it against.
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
        times: dict[tuple[str, bool], list[float]] = {}
        for round_ in range(args.rounds):
            for workers in ("0", "2"):
                for record in (False, True):
                    flags = ["-q", "-n", workers]
                    if record:
                        store = root / f"round_{round_}_{workers}.db"
                        flags += ["--eval-experiment=x", f"--eval-store={store}"]
                    times.setdefault((workers, record), []).append(run_pytest(suite, *flags)[0])
    best = {key: min(values) for key, values in times.items()}
    ms = args.sleep * 1000
    print(f"{args.cases} cases of {ms:.0f} ms, fastest of {args.rounds}")
    for record in (False, True):
        serial, parallel = best[("0", record)], best[("2", record)]
        label = "recording on " if record else "recording off"
        print(
            f"  {label}: -n 0 {serial:.2f} s, -n 2 {parallel:.2f} s, "
            f"speed-up {serial / parallel:.2f}x"
        )
    added = best[("2", True)] - best[("2", False)]
    print(
        f"  recording adds {added:.2f} s under -n 2 "
        f"and {best[('0', True)] - best[('0', False)]:.2f} s under -n 0"
    )


if __name__ == "__main__":
    main()
