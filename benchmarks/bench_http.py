"""The HTTP store: how many requests 10,000 rows with 5 spans each take into evalrows serve.

    python benchmarks/bench_http.py [--cases 10000] [--spans 5]

Starts `evalrows serve` on 127.0.0.1, runs a session of N cases that each make S child spans
into it, and prints the insert requests the session made (read from its summary) against
ceil(events / 100), and the time it took.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import clean_env, make_suite, run_pytest, summary_number

TEST_FILE = """
import pytest
from opentelemetry import trace

tracer = trace.get_tracer("bench")

@pytest.mark.eval
@pytest.mark.parametrize("n", range({cases}))
def test_case(n, eval_row):
    for i in range({spans}):
        with tracer.start_as_current_span("step"):
            pass
    eval_row.log(output=n)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--spans", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite = make_suite(root, "suite", TEST_FILE.format(cases=args.cases, spans=args.spans))
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_evalrows.cli",
                "serve",
                "--port",
                "0",
                "--store",
                str(root / "served.db"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**clean_env(), "EVALROWS_SERVER_TOKEN": "bench-token"},
        )
        try:
            assert server.stdout is not None
            ready = re.search(r"on (http://\S+)", server.stdout.readline())
            if ready is None:
                raise SystemExit("benchmark: evalrows serve did not start")
            url = ready.group(1)
            wall, output = run_pytest(
                suite,
                "-q",
                "--eval-experiment=http",
                f"--eval-store={url}",
                "--eval-api-key=bench-token",
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
            if server.stdout is not None:
                server.stdout.close()
    inserts = summary_number(output, r"requests to the store:.*insert (\d+)")
    events = args.cases * (1 + args.spans)
    bound = math.ceil(events / 100)
    print(f"{args.cases} rows x {args.spans} spans = {events} events into evalrows serve")
    print(f"  insert requests: {inserts:.0f} (ceil(events / 100) = {bound})")
    print(f"  session wall time: {wall:.1f} s")
    for line in output.splitlines():
        if line.startswith(("requests to the store", "attempt ", "error", "stale")):
            print(f"  {line}")


if __name__ == "__main__":
    main()
