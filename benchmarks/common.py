"""What the benchmarks share: fresh pytest processes in a clean environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path


def clean_env() -> dict[str, str]:
    # Bytecode caching on, as on a user's machine: without it every run recompiles the
    # plugin and pays for it in start-up. No EVALROWS_* leaking in from the shell.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EVALROWS_") and k != "PYTHONDONTWRITEBYTECODE"
    }


def make_suite(root: Path, name: str, test_file: str) -> Path:
    suite = root / name
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "test_bench.py").write_text(test_file)
    return suite


def run_pytest(suite: Path, *args: str) -> tuple[float, str]:
    """Wall time and output of one pytest process."""
    elapsed, _, output = run_pytest_with_code(suite, *args)
    return elapsed, output


def run_pytest_with_code(suite: Path, *args: str) -> tuple[float, int, str]:
    """Wall time, exit code and output of one pytest process."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]
    start = time.perf_counter()
    done = subprocess.run(
        [*command, *args],
        cwd=suite,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, done.returncode, done.stdout + done.stderr


def summary_number(output: str, pattern: str) -> float:
    """The first group of ``pattern`` in a session's output, as a number."""
    match = re.search(pattern, output)
    if match is None:
        raise SystemExit(f"benchmark: no line matching {pattern!r} in:\n{output[-2000:]}")
    return float(match.group(1))
