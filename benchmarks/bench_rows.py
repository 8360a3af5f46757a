"""Cost of recording rows, as ratios against pytest with recording off, in the same run.

    python benchmarks/bench_rows.py [--cases 5000] [--rounds 3]

Runs a trivial parametrized eval test in fresh pytest processes, recording on and off,
interleaved so that both see the same machine load, and prints:
  whole   = wall(on, N) / wall(off, N)                      (start-up included)
  per row = (wall(on, N) - wall(on, 0)) / (wall(off, N) - wall(off, 0))   (start-up left out)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST_FILE = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("n", range({cases}))
def test_case(n, eval_row):
    eval_row.log(output=n * 2, expected=n * 2)
    eval_row.score("exact", 1.0)
"""


def make_suite(root: Path, cases: int) -> Path:
    suite = root / f"suite_{cases}"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "test_bench.py").write_text(TEST_FILE.format(cases=cases))
    return suite


def run(suite: Path, record: bool, store: Path) -> float:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    if record:
        command += ["--eval-experiment=bench", f"--eval-store={store}"]
    # Bytecode caching on, as on a user's machine: without it every run recompiles the
    # plugin and pays for it in start-up.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EVALROWS_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    start = time.perf_counter()
    subprocess.run(command, cwd=suite, env=env, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suites = {0: make_suite(root, 0), args.cases: make_suite(root, args.cases)}
        times: dict[tuple[bool, int], list[float]] = {}
        for round_ in range(args.rounds):
            for cases, suite in suites.items():
                for record in (False, True):
                    store = root / f"store_{round_}_{cases}.db"
                    times.setdefault((record, cases), []).append(run(suite, record, store))
        # The fastest of the rounds: noise on a shared machine only ever adds time.
        med = {key: min(values) for key, values in times.items()}
    n = args.cases
    print(f"{n} trivial eval cases, fastest of {args.rounds} interleaved rounds")
    for cases in (0, n):
        print(f"  {cases:>6} cases: off {med[(False, cases)]:.2f} s, on {med[(True, cases)]:.2f} s")
    whole = med[(True, n)] / med[(False, n)]
    per_row = (med[(True, n)] - med[(True, 0)]) / (med[(False, n)] - med[(False, 0)])
    print(f"whole-process ratio (on/off at {n}): {whole:.2f}x")
    print(f"per-row ratio ((on {n} - on 0) / (off {n} - off 0)): {per_row:.2f}x")


if __name__ == "__main__":
    main()
