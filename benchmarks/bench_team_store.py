"""A store for a team: 100,000 rows with 5 spans each into `evalrows serve` on PostgreSQL from
4 concurrent sessions, against the same into `evalrows serve` on SQLite.

    python benchmarks/bench_team_store.py [--rows 100000] [--spans 5] [--sessions 4]
                                          [--stores postgresql,sqlite] [--postgres URL]
                                          [--no-plain]

Each store is new: PostgreSQL is a throwaway cluster that scripts/postgres starts with
PostgreSQL's durable defaults (--durable: fsync and synchronous commits on), or a new database
on the server that --postgres names; SQLite is a new file. `evalrows serve` serves it on
127.0.0.1, and the sessions, each a shard of the rows (a test file of its own) in one
experiment, start at once. First the same sessions run without recording, for scale.

Prints, per store: the wall time from the first session's start to the last one's end, rows
and spans per second, the rows and spans the store then holds (read back, not taken from the
sessions' word), the store's size (pg_database_size, and the part that is evalrows' own
tables; or the SQLite file with its WAL), and the time against the sessions without
recording. Then PostgreSQL against SQLite. Asserts nothing about time; a session that fails
or a row missing stops it.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common import clean_env

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
EXPERIMENT = "team"
SESSION_TIMEOUT = 3600.0
# Not in these sessions: the Braintrust SDK's own pytest plugin (installed by the dev extra)
# imports the SDK at start-up, and pytest's cache and the random order are beside the point.
PLUGINS_OFF = ("-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:braintrust")

SHARD = """
import pytest
from opentelemetry import trace

tracer = trace.get_tracer("bench")

@pytest.mark.eval
@pytest.mark.parametrize("n", range({start}, {stop}))
def test_case(n, eval_row):
    for step in range({spans}):
        with tracer.start_as_current_span(f"step-{{step}}"):
            pass
    eval_row.log(input={{"question": f"q{{n}}"}}, output=f"answer {{n}}", expected=f"answer {{n}}")
    eval_row.score("exact", 1.0)
"""


@dataclass
class Figures:
    store: str
    wall: float
    rows: int
    spans: int
    size: int  # bytes
    size_note: str


def make_shards(root: Path, rows: int, sessions: int, spans: int) -> list[str]:
    """One test file per session, each a contiguous share of the rows."""
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    names = []
    for k in range(sessions):
        start, stop = rows * k // sessions, rows * (k + 1) // sessions
        name = f"test_shard_{k}.py"
        (root / name).write_text(SHARD.format(start=start, stop=stop, spans=spans))
        names.append(name)
    return names


def serve(store: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "pytest_evalrows.cli", "serve", "--port", "0"]
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [*command, "--store", store],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env={**clean_env(), "EVALROWS_SERVER_TOKEN": TOKEN},
        )
    assert server.stdout is not None
    ready = re.search(r" on (http://\S+)$", server.stdout.readline().strip())
    if ready is None:
        server.kill()
        raise SystemExit(f"benchmark: evalrows serve did not start: {log.read_text()}")
    return server, ready[1]


def stop(server: subprocess.Popen[str], log: Path) -> None:
    server.terminate()
    code = server.wait(timeout=60)
    if server.stdout is not None:
        server.stdout.close()
    if code != 0 or "Traceback" in log.read_text():
        raise SystemExit(f"benchmark: evalrows serve failed ({code}):\n{log.read_text()[-3000:]}")


def run_sessions(suite: Path, shards: list[str], url: str | None) -> float:
    """Every shard's session at once, into ``url`` (None: not recording); the wall time until
    the last one ends."""
    env = {**clean_env(), "EVALROWS_API_KEY": TOKEN}
    common = ["-q"]
    if url is not None:
        common += [f"--eval-experiment={EXPERIMENT}", f"--eval-store={url}"]
    start = time.perf_counter()
    started = []
    for shard in shards:
        out = suite / f"{shard}.out"
        with open(out, "w") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "pytest", *PLUGINS_OFF, *common, shard],
                cwd=suite,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
            )
        started.append((process, out))
    try:
        for process, out in started:
            if process.wait(timeout=SESSION_TIMEOUT) != 0:
                raise SystemExit(f"benchmark: a session failed:\n{out.read_text()[-3000:]}")
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    wall = time.perf_counter() - start
    for _, out in started:
        text = out.read_text()
        if "not delivered" in text or "store unavailable" in text or "error:" in text:
            raise SystemExit(f"benchmark: a session did not deliver everything:\n{text[-3000:]}")
    return wall


def count_postgres(url: str) -> tuple[int, int, int, str]:
    import psycopg

    with psycopg.connect(url) as db:
        rows = db.execute("SELECT count(*) FROM latest_rows").fetchone()
        spans = db.execute("SELECT count(*) FROM spans").fetchone()
        size = db.execute("SELECT pg_database_size(current_database())").fetchone()
        own = db.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
    assert rows and spans and size and own
    return rows[0], spans[0], size[0], f"evalrows' tables with their indexes {mib(own[0])}"


def count_sqlite(path: Path) -> tuple[int, int, int, str]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT count(*) FROM latest_rows").fetchone()[0]
        spans = db.execute("SELECT count(*) FROM spans").fetchone()[0]
    finally:
        db.close()
    wal = Path(f"{path}-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    return rows, spans, path.stat().st_size + wal_size, f"of which WAL {mib(wal_size)}"


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def bench_postgres(root: Path, shards: list[str], given: str | None) -> Figures:
    import psycopg

    cluster = root / "pg"
    if given is None:
        started = subprocess.run(
            [str(ROOT / "scripts" / "postgres"), str(cluster), "--durable"],
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise SystemExit(f"benchmark: no PostgreSQL: {started.stderr.strip()}")
        server_url = started.stdout.strip()
    else:
        server_url = given
    database = f"evalrows_bench_{os.getpid()}"
    store = urlunsplit(urlsplit(server_url)._replace(path=f"/{database}"))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        log = root / "serve-pg.log"
        server, url = serve(store, log)
        try:
            wall = run_sessions(root / "suite", shards, url)
        finally:
            stop(server, log)
        rows, spans, size, note = count_postgres(store)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if given is None:
            subprocess.run([str(ROOT / "scripts" / "postgres"), "stop", str(cluster)], check=True)
    return Figures("postgresql", wall, rows, spans, size, f"pg_database_size; {note}")


def bench_sqlite(root: Path, shards: list[str]) -> Figures:
    path = root / "served.db"
    log = root / "serve-sqlite.log"
    server, url = serve(str(path), log)
    try:
        wall = run_sessions(root / "suite", shards, url)
    finally:
        stop(server, log)
    rows, spans, size, note = count_sqlite(path)
    return Figures("sqlite", wall, rows, spans, size, f"the file and its WAL; {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in all (default 100000)")
    parser.add_argument("--spans", type=int, default=5, help="child spans per row (default 5)")
    parser.add_argument("--sessions", type=int, default=4, help="concurrent sessions (default 4)")
    parser.add_argument(
        "--stores", default="postgresql,sqlite", help="which, in order (default postgresql,sqlite)"
    )
    parser.add_argument(
        "--no-plain",
        action="store_true",
        help="skip the run of the same sessions without recording",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="a PostgreSQL server to make the database in (default: a throwaway durable cluster)",
    )
    args = parser.parse_args()
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = set(stores) - {"postgresql", "sqlite"}
    if unknown or not stores:
        parser.error(f"--stores: postgresql, sqlite or both, not {args.stores!r}")
    expected_spans = args.rows * (1 + args.spans)  # each row's root span and its children
    print(
        f"{args.rows} rows x {args.spans} spans from {args.sessions} concurrent sessions "
        f"into evalrows serve (load average before: {os.getloadavg()[0]:.1f})"
    )
    plain = None
    if not args.no_plain:
        with tempfile.TemporaryDirectory(prefix="evalrows-bench-") as tmp:
            shards = make_shards(Path(tmp) / "suite", args.rows, args.sessions, args.spans)
            plain = run_sessions(Path(tmp) / "suite", shards, None)
        print(f"  without recording: {plain:.1f} s, {args.rows / plain:,.0f} rows/s")
    found: dict[str, Figures] = {}
    for name in stores:
        with tempfile.TemporaryDirectory(prefix="evalrows-bench-") as tmp:
            root = Path(tmp)
            os.chmod(root, 0o755)  # the cluster's own user must reach its directory
            shards = make_shards(root / "suite", args.rows, args.sessions, args.spans)
            if name == "postgresql":
                figures = bench_postgres(root, shards, args.postgres)
            else:
                figures = bench_sqlite(root, shards)
        if (figures.rows, figures.spans) != (args.rows, expected_spans):
            raise SystemExit(
                f"benchmark: {name} holds {figures.rows} rows and {figures.spans} spans, "
                f"not {args.rows} and {expected_spans}"
            )
        found[name] = figures
        print(
            f"  {name}: {figures.wall:.1f} s, {figures.rows / figures.wall:,.0f} rows/s "
            f"({figures.spans / figures.wall:,.0f} spans/s); holds {figures.rows} rows and "
            f"{figures.spans} spans; size {mib(figures.size)} "
            f"({figures.size / figures.rows:,.0f} bytes a row; {figures.size_note})"
            + (f"; {figures.wall / plain:.2f}x the time without recording" if plain else "")
        )
    if {"postgresql", "sqlite"} <= set(found):
        pg, lite = found["postgresql"], found["sqlite"]
        print(
            f"  postgresql / sqlite: rows per second {pg.wall and lite.wall / pg.wall:.2f}x, "
            f"size {pg.size / lite.size:.2f}x (load average after: {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    main()
