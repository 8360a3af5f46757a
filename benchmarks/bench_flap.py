"""A store that flaps: 1,000 rows under -n 2 into `evalrows serve` behind a proxy that is up
2 s, then refuses connections 2 s, over and over; then a full rerun under the same flap.

    python benchmarks/bench_flap.py [--cases 1000] [--up 2] [--down 2] [--rounds 3]

Prints, per round and session: rows in the store, versions per row of that session's attempt
(min and max over rows), stale spans left, rows left undelivered in the spool (and what the
summary says about them), and the wall time against the same session through the same proxy without
faults (ratio); each round runs both pairs afresh. If the last down period met the end of the
rerun, `evalrows flush` (proxy up) delivers the rest and a "flushed" line says what is left
after it. Then what the proxy saw and the sessions' summaries. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from common import clean_env, make_suite

from pytest_evalrows.delivery.spool import read_spool
from pytest_evalrows.errors import StoreError
from pytest_evalrows.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
EXPERIMENT = "flap"
SESSION_TIMEOUT = 240.0

TEST_FILE = """
import pytest
from opentelemetry import trace

tracer = trace.get_tracer("bench")

@pytest.mark.eval
@pytest.mark.parametrize("n", range({cases}))
def test_case(n, eval_row):
    with tracer.start_as_current_span("retrieve"):
        with tracer.start_as_current_span("llm"):
            pass
    eval_row.log(output=n)
"""


def load_fault_proxy() -> ModuleType:
    """The tests' fault proxy, loaded by path: test helpers stay out of the package."""
    spec = importlib.util.spec_from_file_location(
        "fault_proxy", ROOT / "tests" / "support" / "fault_proxy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_proxy"] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


class Server:
    """`evalrows serve` on 127.0.0.1 over ``db``, as a subprocess."""

    def __init__(self, db: Path) -> None:
        command = [sys.executable, "-m", "pytest_evalrows.cli", "serve", "--port", "0"]
        self.process = subprocess.Popen(
            [*command, "--store", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**clean_env(), "EVALROWS_SERVER_TOKEN": TOKEN},
        )
        assert self.process.stdout is not None
        ready = re.search(r"on (http://\S+)", self.process.stdout.readline())
        if ready is None:
            self.stop()
            raise SystemExit("benchmark: evalrows serve did not start")
        self.url = ready.group(1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def session(suite: Path, url: str) -> tuple[float, str]:
    """Wall time and output of one recording session under -n 2 (retries at their default)."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2"]
    command += [f"--eval-experiment={EXPERIMENT}", f"--eval-store={url}"]
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=suite,
        env={**clean_env(), "EVALROWS_API_KEY": TOKEN},
        capture_output=True,
        text=True,
        check=False,
        timeout=SESSION_TIMEOUT,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"benchmark: the session failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return wall, done.stdout + done.stderr


@dataclass
class Figures:
    rows: int
    mine_min: int  # versions of this attempt per row
    mine_max: int
    all_min: int  # versions per row, every attempt
    all_max: int
    stale: int
    spooled: int
    said_undelivered: int


def attempt_of(output: str) -> str:
    found = re.search(r"^attempt (\S+): ", output, re.MULTILINE)
    if found is None:
        raise SystemExit(f"benchmark: no attempt in the summary:\n{output[-2000:]}")
    return found.group(1)


def figures(db: Path, spool: Path, attempt: str, output: str) -> Figures:
    """Read from the served SQLite file (WAL: while the server runs) and the spool."""
    mine: list[int] = []
    every: list[int] = []
    stale = 0
    with SQLiteStore(db, create=False) as store:
        try:
            experiment = store.get_experiment(EXPERIMENT)
        except StoreError:
            experiment = None
        if experiment is not None:
            for row in store.latest_rows(experiment.id):
                versions = store.history(experiment.id, row.row_id)
                every.append(len(versions))
                mine.append(sum(1 for v in versions if v.attempt_id == attempt))
            stale = len(store.delete_stale_spans(experiment.id, dry_run=True))
    said = re.search(r"^(\d+) rows not delivered", output, re.MULTILINE)
    return Figures(
        rows=len(every),
        mine_min=min(mine, default=0),
        mine_max=max(mine, default=0),
        all_min=min(every, default=0),
        all_max=max(every, default=0),
        stale=stale,
        spooled=spooled_rows(spool),
        said_undelivered=int(said.group(1)) if said else 0,
    )


def spooled_rows(directory: Path) -> int:
    """Rows the spool still holds (entries no acks line acknowledged)."""
    paths = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    return sum(len(entry.rows) for path in paths for entry in read_spool(path)[0])


def flush(suite: Path, url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_evalrows.cli", "flush", "--store", url],
        cwd=suite,
        env={**clean_env(), "EVALROWS_API_KEY": TOKEN},
        capture_output=True,
        text=True,
        check=False,
        timeout=SESSION_TIMEOUT,
    )
    return (done.stdout + done.stderr).strip()


def run_pair(
    root: Path, name: str, cases: int, flap: Any | None, fp: ModuleType
) -> tuple[list[tuple[float, str, Figures]], Any, str | None, list[list[str]]]:
    """A session and a full rerun, through a fresh proxy (flapping or not) in front of a fresh
    server; per session its wall time, attempt and figures; the proxy's stats; and what a
    flush printed, if one was needed."""
    suite = make_suite(root, name, TEST_FILE.format(cases=cases))
    spool = suite / ".evalrows" / "spool"
    db = root / f"{name}.db"
    server = Server(db)
    flushed = None
    results = []
    summaries: list[list[str]] = []
    try:
        with fp.FaultProxy(server.url, flap=flap) as proxy:
            for _ in range(2):
                wall, output = session(suite, proxy.url)
                attempt = attempt_of(output)
                results.append((wall, attempt, figures(db, spool, attempt, output)))
                summaries.append(summary_lines(output))
            if spooled_rows(spool):
                proxy.go_up()
                flushed = flush(suite, proxy.url)
                attempt = results[-1][1]
                results.append((0.0, attempt, figures(db, spool, attempt, "")))
            stats = proxy.stats()
    finally:
        server.stop()
    return results, stats, flushed, summaries


def summary_lines(output: str) -> list[str]:
    """The plugin's summary section: from its separator to the next one."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if re.fullmatch(r"-+ evalrows -+", line)]
    found = []
    for line in lines[starts[0] + 1 :] if starts else []:
        if re.fullmatch(r"[=_-]+ .* [=_-]+|=+|\d+ (passed|failed).*", line):
            break
        found.append(line)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--up", type=float, default=2.0)
    parser.add_argument("--down", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fp = load_fault_proxy()
    flap = fp.Flap(up=args.up, down=args.down, fault=fp.Refuse())
    print(
        f"{args.cases} rows x 2 child spans, -n 2, into evalrows serve behind the fault proxy; "
        f"flap: up {args.up:g} s, refusing connections {args.down:g} s; retries at default"
    )
    header = (
        f"{'round':<6}{'session':<12}{'wall s':>8}{'calm s':>8}{'ratio':>7}{'rows':>6}"
        f"{'ver/row this attempt':>22}{'ver/row all':>13}{'stale left':>12}"
        f"{'spooled':>9}{'summary: undelivered':>22}"
    )
    print(header)
    print("-" * len(header))
    names = ["first", "rerun", "flushed"]
    notes: list[str] = []
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            # Without faults, through the same proxy: the ratio is the faults' cost alone.
            calm, _, _, _ = run_pair(root, "calm", args.cases, None, fp)
            flapping, stats, flushed, summaries = run_pair(root, "flapping", args.cases, flap, fp)
        for index, (wall, _, fig) in enumerate(flapping):
            if index < 2:
                calm_wall = calm[index][0]
                timing = f"{wall:>8.1f}{calm_wall:>8.1f}{wall / calm_wall:>6.2f}x"
            else:
                timing = f"{'':>8}{'':>8}{'':>7}"
            print(
                f"{number:<6}{names[index]:<12}{timing}{fig.rows:>6}"
                f"{f'{fig.mine_min}-{fig.mine_max}':>22}{f'{fig.all_min}-{fig.all_max}':>13}"
                f"{fig.stale:>12}{fig.spooled:>9}{fig.said_undelivered:>22}"
            )
        for name, (_, _, fig) in zip(names, calm, strict=False):
            if (fig.rows, fig.mine_min, fig.mine_max, fig.stale, fig.spooled) != (
                args.cases,
                1,
                1,
                0,
                0,
            ):
                notes.append(f"round {number}: without faults, the {name} session left {fig}")
        notes.append(
            f"round {number} proxy: {stats.down_periods} down periods, {stats.connections} "
            f"connections, {stats.cut_connections} cut on going down; requests "
            f"{dict(stats.requests)}; outcomes {dict(Counter(stats.outcomes))}; "
            f"{stats.cut_after_commit} answers lost after the server took the write"
        )
        if flushed is not None:
            notes.append(f"round {number} evalrows flush: {flushed}")
        for name, lines in zip(names, summaries, strict=False):
            shown = [line for line in lines if not line.startswith(("experiment ", "mean "))]
            notes.append(f"round {number} {name} summary: " + " | ".join(shown))
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
