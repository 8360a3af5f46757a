"""Judges over stored traces: a deterministic judge over many traces, and the LLM judge against
a stand-in model that answers in 100 ms.

    python benchmarks/bench_judges.py [--traces 1000] [--llm-traces 200] [--rounds 3]

(a) 1,000 rows with 5 spans each (the row's own and 4 children) in a fresh SQLite store: the
    time to read their traces, judge every one with a deterministic judge and save the
    evaluations (aim: at most 2 s).
(b) ``LLMJudge`` over 200 traces against an OpenAI-compatible stand-in on 127.0.0.1 answering
    each request after 100 ms, 20 at a time (aim: at most 2 s; 10 rounds of 100 ms is the
    floor).
Fastest of ``--rounds`` each; prints both figures and whether they meet the aims.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.openai_standin import OpenAIStandin
from support.traces import stored_row

from pytest_evalrows import SQLiteStore
from pytest_evalrows.judging import LLMJudge, Trace, judge_traces, no_span_errors

AIM_S = 2.0


def stored_judging(traces: int) -> float:
    """Seconds to read ``traces`` stored traces, judge them and save the evaluations."""
    with tempfile.TemporaryDirectory() as tmp, SQLiteStore(Path(tmp) / "rows.db") as store:
        experiment = store.get_or_create_experiment("bench", "judges")
        rows, spans = [], []
        for index in range(traces):
            version, records = stored_row(f"row-{index}", f"{index:032x}", spans=4)
            rows.append(version)
            spans.extend(records)
        store.write(experiment.id, rows, spans)
        start = time.perf_counter()
        found = store.latest_traces(experiment.id)
        evaluations = judge_traces(found, [no_span_errors()], experiment_id=experiment.id)
        store.save_evaluations(experiment.id, evaluations)
        took = time.perf_counter() - start
        assert len(found) == traces, len(found)
        assert all(each.status == "success" for each in evaluations)
        assert len(store.list_evaluations(experiment.id)) == traces
    return took


def llm_judging(traces: int, concurrency: int, delay: float) -> tuple[float, int]:
    """Seconds for ``LLMJudge`` over ``traces`` traces, and the requests the model saw."""
    found = []
    for index in range(traces):
        version, records = stored_row(f"row-{index}", f"{index:032x}", spans=4)
        found.append(Trace(version, records))
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
    with OpenAIStandin(delay=delay) as model:
        judge = LLMJudge("rubric", "Did it answer?", model="stand-in", base_url=model.base_url)
        start = time.perf_counter()
        evaluations = judge_traces(found, [judge], concurrency=concurrency, timeout=30)
        took = time.perf_counter() - start
        failed = [each.error for each in evaluations if each.status != "success"]
        assert not failed, failed[:3]
        return took, model.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--llm-traces", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stored = min(stored_judging(args.traces) for _ in range(args.rounds))
    llm_runs = [
        llm_judging(args.llm_traces, args.concurrency, args.delay) for _ in range(args.rounds)
    ]
    llm, requests = min(llm_runs)
    floor = -(-args.llm_traces // args.concurrency) * args.delay

    def verdict(seconds: float) -> str:
        return "meets" if seconds <= AIM_S else "MISSES"

    print(f"fastest of {args.rounds} rounds")
    print(
        f"(a) deterministic judge over {args.traces} stored traces (5 spans each), read + "
        f"judge + save: {stored:.2f} s, {verdict(stored)} the aim of {AIM_S:g} s"
    )
    print(
        f"(b) LLMJudge over {args.llm_traces} traces, the model answering in "
        f"{args.delay * 1000:.0f} ms, "
        f"concurrency {args.concurrency}: {llm:.2f} s ({requests} requests; floor {floor:.1f} s), "
        f"{verdict(llm)} the aim of {AIM_S:g} s"
    )


if __name__ == "__main__":
    main()
