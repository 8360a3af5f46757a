"""Concurrent eval cases: 1,000 cases whose model call is a real HTTP request to a stand-in
answering in 100 ms, at concurrency 1, under -n 2 and at --eval-concurrency 50.

    python benchmarks/bench_concurrency.py [--cases 1000] [--delay 0.1] [--concurrency 50]
        [--rounds 1] [--skip-serial]

Each case of the generated suite is an ``async def`` eval test that POSTs to a stand-in
model on 127.0.0.1 (tests/support/slow_model.py) through an ``httpx.AsyncClient`` (one per
event loop), logs the answer and scores it. The stand-in, an asyncio server, answers every
request after ``--delay`` seconds, however many wait at once, and counts them.

Runs, each a fresh ``python -m pytest`` recording into a SQLite store of its own:
  (1) concurrency 1; (2) ``-n 2``, concurrency 1; (3) ``--eval-concurrency 50``;
  start-up: the same suite and flags under ``--collect-only -q``, i.e. pytest's own start-up
      and collection of the cases with the plugin loaded, the term the aim names. (A run at
      concurrency 50 with the model answering at once would also count running and recording
      the cases, which the aim does not allow for; it is run and printed too, as the cost of
      everything but the waiting.)
  and for reference, the same requests as many at once from the same client without pytest:
  the floor the client sets (httpx's pool alone takes ~3 s for 1,000 x 100 ms, 50 at once).
Aim: (3) within 1.5 x (bound + start-up), bound = ceil(cases / concurrency) x delay
(1,000 x 0.1 s / 50 = 2 s).
Every run must exit 0 and leave N passed rows in its store, and the stand-in must have seen N
requests from it: a fast broken run stops the benchmark instead of giving a figure.
Fastest of ``--rounds`` each (default 1: run (1) alone takes over 100 s); ``--skip-serial``
leaves out (1) and (2) for a quick check.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import clean_env, make_suite, run_pytest_with_code, summary_number

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.slow_model import SlowModel

from pytest_evalrows import SQLiteStore

AIM_FACTOR = 1.5
EXPERIMENT = "bench"

TEST_FILE = """
import asyncio

import httpx
import pytest

URL = {url!r}
# verify=False: plain http to 127.0.0.1, and building the default TLS context costs ~25 ms.
# httpx's default pool limits: an unlimited keep-alive pool measured 2.5x slower at 50 at once.
CLIENTS = {{}}
CLOSING = []


def request(case):
    return {{"model": "stand-in", "messages": [{{"role": "user", "content": f"case {{case}}"}}]}}


def answer(response):
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def async_client():
    # One client per event loop: a client's connections belong to the loop that opened them.
    loop = asyncio.get_running_loop()
    if loop not in CLIENTS:
        CLIENTS[loop] = httpx.AsyncClient(verify=False, timeout=30)
    return CLIENTS[loop]


def sync_client():
    if None not in CLIENTS:
        CLIENTS[None] = httpx.Client(verify=False, timeout=30)
    return CLIENTS[None]


def close_on(loop, client):
    # Closed on the loop it belongs to, however the plugin holds that loop at the session's end.
    if loop.is_closed():
        return  # nothing left to await on: its sockets close with the process
    if not loop.is_running():
        loop.run_until_complete(client.aclose())
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        CLOSING.append(loop.create_task(client.aclose()))  # must not block the loop we run on
    else:
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(30)


@pytest.fixture(scope="session", autouse=True)
def close_clients():
    yield
    for loop, client in CLIENTS.items():
        if loop is None:
            client.close()
        else:
            close_on(loop, client)


def record(eval_row, case, output):
    expected = f"answer to case {{case}}"
    eval_row.log(input=f"case {{case}}", output=output, expected=expected)
    eval_row.score("ok", float(output == expected))
    assert output == expected
"""

ASYNC_TEST = """
@pytest.mark.eval
@pytest.mark.parametrize("case", range({cases}))
async def test_case(case, eval_row):
    record(eval_row, case, answer(await async_client().post(URL, json=request(case))))
"""

# For checking the benchmark itself where async eval tests do not run: the same calls, sync.
SYNC_TEST = """
@pytest.mark.eval(concurrent=True)
@pytest.mark.parametrize("case", range({cases}))
def test_case(case, eval_row):
    record(eval_row, case, answer(sync_client().post(URL, json=request(case))))
"""


# The same requests, as many at once, from the same client without pytest: the floor the
# client itself sets, to read (3) against.
CLIENT_ONLY = """
import asyncio

import httpx


async def main():
    limit = asyncio.Semaphore({concurrency})
    async with httpx.AsyncClient(verify=False, timeout=30) as client:

        async def case(n):
            async with limit:
                body = {{"messages": [{{"role": "user", "content": f"case {{n}}"}}]}}
                (await client.post({url!r}, json=body)).raise_for_status()

        await asyncio.gather(*(case(n) for n in range({cases})))


asyncio.run(main())
"""


def pytest_run(suite: Path, *args: str) -> tuple[float, int, str]:
    """Wall time, exit code and output of one pytest process: a failed run must not pass for
    a fast one."""
    return run_pytest_with_code(suite, *args)


def passed_rows(store: Path) -> tuple[int, int]:
    """Rows in the store, and how many of them passed."""
    with SQLiteStore(store, create=False) as opened:
        states = opened.latest_states(opened.get_experiment(EXPERIMENT).id)
    return len(states), sum(state.status == "passed" for state in states.values())


class Bench:
    def __init__(self, root: Path, suite: Path, model: SlowModel, cases: int) -> None:
        self.root = root
        self.suite = suite
        self.model = model
        self.cases = cases
        self.runs = 0

    def recording(self) -> tuple[Path, list[str]]:
        self.runs += 1
        store = self.root / f"rows_{self.runs}.db"
        return store, [f"--eval-experiment={EXPERIMENT}", f"--eval-store=sqlite:///{store}"]

    def run(self, name: str, *flags: str) -> float:
        """Seconds of one recorded run, checked: exit 0, N passed rows, N requests."""
        store, recording = self.recording()
        before = self.model.requests
        elapsed, code, output = pytest_run(self.suite, *recording, "-q", *flags)
        requests = self.model.requests - before
        if code != 0:
            raise SystemExit(f"benchmark: {name} exited {code}:\n{output[-3000:]}")
        rows, passed = passed_rows(store)
        if (rows, passed, requests) != (self.cases, self.cases, self.cases):
            raise SystemExit(
                f"benchmark: {name} left {rows} rows, {passed} passed, and made {requests} "
                f"requests; {self.cases} of each expected:\n{output[-3000:]}"
            )
        return elapsed

    def client_only(self, script: Path) -> float:
        """Seconds of the client alone making the cases' requests, python's start-up included."""
        before = self.model.requests
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(script)], env=clean_env(), capture_output=True, text=True
        )
        elapsed = time.perf_counter() - start
        requests = self.model.requests - before
        if done.returncode != 0 or requests != self.cases:
            raise SystemExit(
                f"benchmark: the client alone exited {done.returncode} after {requests} "
                f"requests:\n{done.stderr[-3000:]}"
            )
        return elapsed

    def start_up(self) -> float:
        """Seconds of pytest's start-up and collection of the cases, the plugin loaded."""
        _, recording = self.recording()
        elapsed, code, output = pytest_run(self.suite, *recording, "--collect-only", "-q")
        collected = summary_number(output, r"(\d+) tests? collected")
        if code != 0 or collected != self.cases:
            raise SystemExit(f"benchmark: --collect-only exited {code}:\n{output[-3000:]}")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-serial", action="store_true", help="leave out runs (1) and (2)")
    parser.add_argument("--sync", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    concurrent = ["--eval-concurrency", str(args.concurrency)]
    measured = f"(3) --eval-concurrency {args.concurrency}"
    kinds: dict[str, list[str]] = {}
    if not args.skip_serial:
        kinds["(1) concurrency 1"] = []
        kinds["(2) -n 2, concurrency 1"] = ["-n", "2"]
    kinds[measured] = concurrent
    no_wait = "    the same, the model answering at once"
    alone = f"    httpx alone, no pytest, {args.concurrency} at once (python start-up included)"
    start_up = "start-up and collection (--collect-only -q)"
    times: dict[str, list[float]] = {name: [] for name in [start_up, *kinds, no_wait, alone]}
    with (
        tempfile.TemporaryDirectory() as tmp,
        SlowModel(delay=args.delay) as model,
    ):
        root = Path(tmp)
        test = (SYNC_TEST if args.sync else ASYNC_TEST).format(cases=args.cases)
        suite = make_suite(root, "suite", TEST_FILE.format(url=model.url) + test)
        bench = Bench(root, suite, model, args.cases)
        client_only = root / "client_only.py"
        client_only.write_text(
            CLIENT_ONLY.format(url=model.url, cases=args.cases, concurrency=args.concurrency)
        )
        for _ in range(args.rounds):
            times[start_up].append(bench.start_up())
            times[alone].append(bench.client_only(client_only))
            for name, flags in kinds.items():
                times[name].append(bench.run(name, *flags))
            model.delay = 0.0
            try:
                times[no_wait].append(bench.run("the model answering at once", *concurrent))
            finally:
                model.delay = args.delay
    # The fastest of the rounds: noise on a shared machine only ever adds time.
    best = {name: min(values) for name, values in times.items()}
    bound = math.ceil(args.cases / args.concurrency) * args.delay
    aim = AIM_FACTOR * (bound + best[start_up])
    body = "sync (concurrent=True)" if args.sync else "async"
    print(
        f"{args.cases} {body} cases, the model answering in {args.delay * 1000:.0f} ms over "
        f"HTTP; fastest of {args.rounds} round(s); every run {args.cases} passed rows and "
        f"{args.cases} requests"
    )
    for name, seconds in best.items():
        print(f"  {name}: {seconds:.2f} s")
    verdict = "meets" if best[measured] <= aim else "MISSES"
    print(
        f"bound ceil({args.cases} / {args.concurrency}) x {args.delay:g} s = {bound:.2f} s; "
        f"aim {AIM_FACTOR:g} x ({bound:.2f} + {best[start_up]:.2f}) = {aim:.2f} s; "
        f"concurrency {args.concurrency} at {best[measured]:.2f} s {verdict} it"
    )


if __name__ == "__main__":
    main()
