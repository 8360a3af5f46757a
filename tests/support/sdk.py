"""The unmodified Braintrust SDK against ``evalrows serve``: scripts run in a subprocess of
their own (the SDK keeps global state and background threads), pointed at the server by its
environment variables alone, with the internet out of reach.

A script prints one line ``RESULT <json>`` for the test to read. ``SENT`` (appended to every
script) adds what the SDK sent: every row it published (``BRAINTRUST_ALL_PUBLISH_PAYLOADS_DIR``),
merged per id in the order sent with the SDK's own ``merge_dicts``, the oracle of what a
fetch must give back."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_evalrows.store.base import Store
from pytest_evalrows.store.urls import parse_store_url
from pytest_evalrows.stores import open_store
from support.postgres import drop_database, new_database

# Fields of a request, not of the event: the server has its own or drops them.
REQUEST_FIELDS = frozenset(
    {"_is_merge", "_merge_paths", "experiment_id", "created", "_audit_source", "_audit_metadata"}
)

# What a script ends with: the rows the SDK published, merged per id as the SDK merges.
SENT = textwrap.dedent(
    """
    def sent_events():
        import json, os
        from braintrust.util import merge_dicts

        directory = os.environ["BRAINTRUST_ALL_PUBLISH_PAYLOADS_DIR"]
        events = {}
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name)) as payload:
                for row in json.load(payload)["rows"]:
                    if row.get("_is_merge") and row["id"] in events:
                        merge_dicts(events[row["id"]], row)
                    else:
                        events[row["id"]] = dict(row)
        return events
    """
)


@dataclass
class Served:
    """``evalrows serve`` running: its URL, its token, and the store it serves."""

    url: str
    token: str
    store: str  # a SQLite file's path or a postgresql:// URL

    def open(self) -> Store:
        """The store behind the server, opened beside it (as ``evalrows`` commands do)."""
        return open_store(parse_store_url(self.store, Path.cwd()), create=False)


@contextmanager
def serving(store: str, log: Path) -> Iterator[Served]:
    """``evalrows serve --store STORE`` on a free port of 127.0.0.1 with a token of its own;
    stopped after, and it must have exited cleanly with no traceback in its log."""
    token = f"evk-{secrets.token_hex(16)}"
    command = [sys.executable, "-m", "pytest_evalrows.cli", "serve", "--store", store]
    command += ["--host", "127.0.0.1", "--port", "0"]
    env = {**os.environ, "EVALROWS_SERVER_TOKEN": token}
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink, env=env)
    assert process.stdout is not None
    try:
        ready = process.stdout.readline().decode()
        match = re.fullmatch(r"evalrows: serving (\S+) on (http://127\.0\.0\.1:\d+)\n", ready)
        assert match is not None, (ready, log.read_text())
        # The store named as every other output names it: never with a password.
        assert match[1] == parse_store_url(store, Path.cwd()).display(), ready
        yield Served(match[2], token, store)
    finally:
        process.terminate()
        code = process.wait(timeout=30)
        process.stdout.close()
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()


def serving_kind(
    kind: str, directory: Path, postgres_server: Callable[[], str]
) -> Iterator[Served]:
    """``serving`` a store of ``kind`` ("sqlite": a file in ``directory``; "postgresql": a
    fresh database on the server ``postgres_server`` gives, dropped after): for a fixture
    parametrized over both to ``yield from``."""
    if kind == "sqlite":
        with serving(str(directory / "served.db"), directory / "serve.log") as served:
            yield served
        return
    server = postgres_server()
    database = new_database(server)
    try:
        with serving(database, directory / "serve.log") as served:
            yield served
    finally:
        drop_database(server, database)


def sdk_env(server: Served, payloads: Path) -> dict[str, str]:
    """The SDK pointed at ``server`` through its environment: the app URL (it logs in there
    and is told the API URL), the server's token as its API key. Any other Braintrust setting
    of the calling environment is left out, and a proxy that refuses every connection stands
    for the internet (loopback goes direct)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINTRUST_")}
    env.update(
        BRAINTRUST_APP_URL=server.url,
        BRAINTRUST_API_KEY=server.token,
        BRAINTRUST_ALL_PUBLISH_PAYLOADS_DIR=str(payloads),
        # A failed flush raises instead of being printed and dropped.
        BRAINTRUST_SYNC_FLUSH="true",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONWARNINGS="error",
    )
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    return env


@dataclass
class SdkRun:
    result: Any
    stdout: str
    stderr: str


def run_sdk(
    server: Served, directory: Path, script: str, env: dict[str, str] | None = None
) -> SdkRun:
    """Run ``script`` (Python, dedented, ``SENT`` appended) with the SDK pointed at
    ``server`` (and ``env`` besides: ``BRAINTRUST_*`` settings, say); it must exit 0 and
    print ``RESULT <json>``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sdk_script.py"
    path.write_text(SENT + textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=directory,
        env={**sdk_env(server, directory / "payloads"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, done.stdout
    return SdkRun(json.loads(lines[0][len("RESULT ") :]), done.stdout, done.stderr)


def assert_kept(fetched: dict[str, Any], sent: dict[str, Any]) -> None:
    """Every field the SDK sent is in the event read back, equal (a row's scores may hold
    more: its score spans' too; each score sent is there, a null one as null)."""
    for field, value in sent.items():
        if field in REQUEST_FIELDS:
            continue
        assert field in fetched, (field, sent["id"])
        if field == "scores":
            assert {k: fetched[field][k] for k in value} == value, (sent["id"], fetched)
        else:
            assert fetched[field] == value, (field, sent["id"], fetched[field], value)
