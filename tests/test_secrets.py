"""No secret in any file or output, whichever way it was given (invariant 10, issue item 11).

The API key goes to pytest as ``--eval-api-key KEY``, ``--eval-api-key=KEY``, ``-o
eval_api_key=KEY``, ``-oeval_api_key=KEY``, ``--override-ini eval_api_key=KEY``,
``--override-ini=eval_api_key=KEY`` or an environment variable; credentials go in the store URL
(``http://user:PASSWORD@host``, ``http://TOKEN@host``) as a flag, an ini override or
``EVALROWS_STORE``. Real pytest sessions record into SQLite and into a real ``evalrows serve``,
also while it is down (so the attempt record goes to the spool); then every file under the
test's directories (stores, spool, ``.pytest_cache``, the server's log), the sessions' output
and ``evalrows attempts --json`` are searched for the secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import evalrows, json_lines
from support.output import output_of
from support.servers import EvalrowsServer, Servers, closed_port, files_containing
from support.sessions import INI
from support.spool import spool_files, spooled_entries
from support.store import default_db, stored

from pytest_evalrows.core.redaction import redacted, scrub_url_credentials

pytest_plugins = ("pytester",)

EXPERIMENT = "secrets"

# Three cases, one failing: the cache then holds a lastfailed entry, the store a failure.
SUITE = """
import pytest


@pytest.mark.eval
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_case(case, eval_row):
    eval_row.log(output=case.upper(), expected="A")
    eval_row.score("exact", case == "a")
    assert case != "c"
"""

# A user's own options holding secrets: a model endpoint with credentials, a judge's token.
OPTIONS_CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--llm-url")
    parser.addoption("--judge-token")
"""


def secret(label: str) -> str:
    return f"{label}-{secrets.token_hex(12)}"


def hunt(
    found: list[str],
    results: list[pytest.RunResult],
    *roots: Path,
    also: tuple[str, ...] = (),
) -> None:
    """None of ``found`` in any output (the sessions', ``also``) nor in any file under
    ``roots``."""
    outputs = [output_of(result) for result in results] + list(also)
    for value in found:
        assert [text for text in outputs if value in text] == [], value
        assert files_containing(value, *roots) == [], value


def evalrows_output(*args: str, cwd: Path, key: str | None = None) -> str:
    """The ``evalrows`` command's output, stdout and stderr; it must succeed."""
    done = evalrows(*args, cwd=cwd, key=key, ok=True)
    return done.stdout + done.stderr


def spooled_attempts(spool: Path) -> list[dict[str, Any]]:
    return [entry["attempt"] for entry in spooled_entries(spool) if entry.get("attempt")]


def arguments(result: pytest.RunResult, recorded: list[str]) -> list[str]:
    """The recorded command line without the ``--basetemp`` pytester puts first."""
    assert recorded[0].startswith("--basetemp="), recorded
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    return recorded[1:]


# -- the redaction itself ------------------------------------------------------------------------

K = "s3cr3t-K3Y"


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--eval-api-key", K, "-x"], ["--eval-api-key", "***", "-x"]),
        ([f"--eval-api-key={K}"], ["--eval-api-key=***"]),
        (["-o", f"eval_api_key={K}", "-q"], ["-o", "eval_api_key=***", "-q"]),
        ([f"-oeval_api_key={K}"], ["-oeval_api_key=***"]),
        (["--override-ini", f"eval_api_key={K}"], ["--override-ini", "eval_api_key=***"]),
        ([f"--override-ini=eval_api_key={K}"], ["--override-ini=eval_api_key=***"]),
        (["-vo", f"eval_api_key={K}"], ["-vo", "eval_api_key=***"]),
        ([f"-voeval_api_key={K}"], ["-voeval_api_key=***"]),
        (["-o", f"eval_api_key = {K} and more"], ["-o", "eval_api_key =***"]),
        (["--token", K], ["--token", "***"]),
        ([f"--token={K}"], ["--token=***"]),
        (["--eval-api-key", "-starts-with-a-dash"], ["--eval-api-key", "***"]),
        (["--eval-store", f"http://user:{K}@host:8000"], ["--eval-store", "http://***@host:8000"]),
        ([f"--eval-store=https://{K}@host/api"], ["--eval-store=https://***@host/api"]),
        (["-o", f"eval_store=http://u:{K}@h"], ["-o", "eval_store=http://***@h"]),
        ([f"-oeval_store=http://u:{K}@h"], ["-oeval_store=http://***@h"]),
        ([f"--llm-url=http://u:p@ss{K}@h/v1"], ["--llm-url=http://***@h/v1"]),
        # Other tools' secrets, known by their names.
        (["--openai-api-key", K, "--lf"], ["--openai-api-key", "***", "--lf"]),
        ([f"--judge-token={K}"], ["--judge-token=***"]),
        (["-o", f"my_plugin_password={K}"], ["-o", "my_plugin_password=***"]),
    ],
)
def test_redacted_hides_a_secret_however_it_is_given(args: list[str], shown: list[str]) -> None:
    assert redacted(args) == shown
    assert K not in " ".join(redacted(args))


def test_redacted_leaves_everything_else_of_the_command_line_as_it_was() -> None:
    args = [
        "tests/test_x.py::test_a[sort_key=a]",
        "-k",
        "primary_key=3",
        "--eval-experiment=nightly",
        "--eval-store=http://127.0.0.1:8000",
        "--eval-store",
        "sqlite:////srv/evals.db",
        "-o",
        "eval_project=p",
        "--keep-token",  # named like a secret, takes no value here: the next option stays
        "-v",
        "https://medium.com/@user",
    ]
    assert redacted(args) == args
    assert redacted(iter([Path("a"), 3])) == ["a", "3"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:pw@host:1/p?q=1#f", "http://***@host:1/p?q=1#f"),
        ("https://TOKEN@api.example", "https://***@api.example"),
        ("store http://a:b@h and ftp://c@d.", "store http://***@h and ftp://***@d."),
        ("http://a.com,http://u:pw@b.com", "http://a.com,http://***@b.com"),
        ("http://u:p@ss@host/x@y", "http://***@host/x@y"),
        ("https://h/x?api_key=K&page=2&token=T", "https://h/x?api_key=***&page=2&token=***"),
        ("no url: user:pw@host", "no url: user:pw@host"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ],
)
def test_scrub_url_credentials(text: str, shown: str) -> None:
    assert scrub_url_credentials(text) == shown


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester.path


@pytest.fixture
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture
def make_server(server_dir: Path) -> Iterator[Callable[[str], EvalrowsServer]]:
    """``evalrows serve`` over ``server_dir/served.db`` with a token (none when empty), each
    stopped at teardown with a clean exit (and no traceback in its log)."""
    servers = Servers(server_dir)
    yield servers.make
    servers.stop_all()


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", *args)


def check_outcomes(result: pytest.RunResult) -> None:
    """What the plugin must not change: outcomes and exit code, and no traceback."""
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "Traceback" not in output_of(result)


# -- the API key ---------------------------------------------------------------------------------


def test_keys_given_every_way_on_one_command_line_are_nowhere_in_the_attempt_record(
    pytester: pytest.Pytester, suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(OPTIONS_CONFTEST)
    ways = ("flag", "flag=", "-o", "-o=", "ini", "ini=", "env", "addopts")
    keys = {way: secret(way) for way in ways}
    password, token, judge = secret("password"), secret("url-token"), secret("judge")
    monkeypatch.setenv("EVALROWS_API_KEY", keys["env"])
    monkeypatch.setenv("BRAINTRUST_API_KEY", keys["env"])
    # Arguments from PYTEST_ADDOPTS are not the command line pytest was invoked with.
    monkeypatch.setenv("PYTEST_ADDOPTS", f"-o eval_api_key={keys['addopts']}")
    given = [
        *("--eval-api-key", keys["flag"]),
        f"--eval-api-key={keys['flag=']}",
        *("-o", f"eval_api_key={keys['-o']}"),
        f"-oeval_api_key={keys['-o=']}",
        *("--override-ini", f"eval_api_key={keys['ini']}"),
        f"--override-ini=eval_api_key={keys['ini=']}",
        f"--llm-url=https://user:{password}@llm.example/v1",
        *("--judge-token", judge),
        f"--llm-url=https://{token}@llm.example/v2",  # the last one wins
    ]
    shown = [
        *("--eval-api-key", "***"),
        "--eval-api-key=***",
        *("-o", "eval_api_key=***"),
        "-oeval_api_key=***",
        *("--override-ini", "eval_api_key=***"),
        "--override-ini=eval_api_key=***",
        "--llm-url=https://***@llm.example/v1",
        *("--judge-token", "***"),
        "--llm-url=https://***@llm.example/v2",
    ]
    found = [*keys.values(), password, token, judge]

    recorded = run(pytester, *given)
    check_outcomes(recorded)
    listed = evalrows_output("attempts", EXPERIMENT, "--json", cwd=suite)
    (attempt,) = json_lines(listed)
    assert arguments(recorded, attempt["args"]) == [f"--eval-experiment={EXPERIMENT}", *shown]
    assert attempt["counts"] == {"passed": 2, "failed": 1}
    rows = evalrows_output("rows", EXPERIMENT, "--json", cwd=suite)
    assert len(rows.splitlines()) == 3

    # The store cannot be written (a file stands where its directory should be): the attempt
    # goes to the spool, and so do the rows, each xdist worker's into a file of its own.
    (suite / "blocker").write_text("a file, not a directory")
    down = run(pytester, *given, "--eval-store=blocker/sub/rows.db", "-n", "2")
    check_outcomes(down)
    spool = suite / ".evalrows" / "spool"
    assert len(spool_files(spool)) == 3
    (spooled,) = spooled_attempts(spool)
    assert arguments(down, spooled["args"]) == [
        f"--eval-experiment={EXPERIMENT}",
        *shown,
        *("--eval-store=blocker/sub/rows.db", "-n", "2"),
    ]

    assert (suite / ".pytest_cache" / "v" / "cache" / "lastfailed").is_file()
    assert default_db(pytester).is_file()
    hunt(found, [recorded, down], suite, also=(listed, rows))


KEY_WAYS: dict[str, Callable[[str], tuple[list[str], list[str], dict[str, str]]]] = {
    # way -> (arguments given, as they must be recorded, environment)
    "--eval-api-key KEY": lambda k: (["--eval-api-key", k], ["--eval-api-key", "***"], {}),
    "--eval-api-key=KEY": lambda k: ([f"--eval-api-key={k}"], ["--eval-api-key=***"], {}),
    "-o eval_api_key=KEY": lambda k: (["-o", f"eval_api_key={k}"], ["-o", "eval_api_key=***"], {}),
    "-oeval_api_key=KEY": lambda k: ([f"-oeval_api_key={k}"], ["-oeval_api_key=***"], {}),
    "--override-ini eval_api_key=KEY": lambda k: (
        ["--override-ini", f"eval_api_key={k}"],
        ["--override-ini", "eval_api_key=***"],
        {},
    ),
    "--override-ini=eval_api_key=KEY": lambda k: (
        [f"--override-ini=eval_api_key={k}"],
        ["--override-ini=eval_api_key=***"],
        {},
    ),
    "EVALROWS_API_KEY": lambda k: ([], [], {"EVALROWS_API_KEY": k}),
}


@pytest.mark.parametrize("way", list(KEY_WAYS))
def test_a_key_given_each_way_reaches_the_server_and_nowhere_else(
    pytester: pytest.Pytester,
    suite: Path,
    make_server: Callable[[str], EvalrowsServer],
    server_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
) -> None:
    key = secret("evk")
    given, shown, env = KEY_WAYS[way](key)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    url = f"http://127.0.0.1:{closed_port()}"
    store = (f"--eval-store={url}", "--eval-http-retries=0", "--eval-http-timeout=5")

    # Nothing listens: every row, and the attempt record, go to the spool.
    down = run(pytester, *store, *given)
    check_outcomes(down)
    spool = suite / ".evalrows" / "spool"
    (attempt,) = spooled_attempts(spool)
    assert arguments(down, attempt["args"]) == [f"--eval-experiment={EXPERIMENT}", *store, *shown]
    assert {entry["store"] for entry in spooled_entries(spool)} == {url}

    # The server is up, wanting that key: the next session delivers both sessions' rows, which
    # only a key the server took can do.
    server = make_server(key)
    server.start(int(url.rsplit(":", 1)[1]))
    up = run(pytester, *store, *given)
    check_outcomes(up)
    assert spool_files(spool) == []
    found = stored(server.db, EXPERIMENT)
    assert sorted(row.version for row in found.rows.values()) == [2, 2, 2]
    read = evalrows_output("rows", EXPERIMENT, "--store", url, "--json", cwd=suite, key=key)
    assert len(read.splitlines()) == 3

    hunt([key], [down, up], suite, server_dir, also=(read,))


# -- credentials in the store URL ----------------------------------------------------------------

URL_WAYS = ["--eval-store URL", "--eval-store=URL", "-o eval_store=URL", "EVALROWS_STORE"]


@pytest.mark.parametrize("way", URL_WAYS)
def test_credentials_in_the_store_url_are_nowhere_however_the_url_is_given(
    pytester: pytest.Pytester,
    suite: Path,
    make_server: Callable[[str], EvalrowsServer],
    server_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
) -> None:
    credential = secret("cred")
    port = closed_port()
    public = f"http://127.0.0.1:{port}"
    # Half the ways carry user and password, half a token as the user alone.
    userinfo = f"evals:{credential}" if URL_WAYS.index(way) % 2 else credential
    url = f"http://{userinfo}@127.0.0.1:{port}"
    given = {
        "--eval-store URL": ["--eval-store", url],
        "--eval-store=URL": [f"--eval-store={url}"],
        "-o eval_store=URL": ["-o", f"eval_store={url}"],
        "EVALROWS_STORE": [],
    }[way]
    shown = [scrub_url_credentials(arg) for arg in given]
    if way == "EVALROWS_STORE":
        monkeypatch.setenv("EVALROWS_STORE", url)
    options = ("--eval-http-retries=0", "--eval-http-timeout=5")

    down = run(pytester, *given, *options)
    check_outcomes(down)
    assert f"into {public}, attempt" in down.stdout.str()  # the header names the store
    spool = suite / ".evalrows" / "spool"
    (attempt,) = spooled_attempts(spool)
    assert arguments(down, attempt["args"]) == [f"--eval-experiment={EXPERIMENT}", *shown, *options]
    # The spool names the store without its credentials, and that name still matches it.
    assert {entry["store"] for entry in spooled_entries(spool)} == {public}

    server = make_server("")  # no token: the URL's credentials are all the client sends
    server.start(port)
    up = run(pytester, *given, *options)
    check_outcomes(up)
    assert spool_files(spool) == []
    found = stored(server.db, EXPERIMENT)
    assert sorted(row.version for row in found.rows.values()) == [2, 2, 2]

    hunt([credential], [down, up], suite, server_dir)


# -- store URLs with credentials: never in a log or an error ---------------------------------


def test_credentials_in_the_store_url_stay_out_of_the_log(
    pytester: pytest.Pytester,
    suite: Path,
    make_server: Callable[[str], EvalrowsServer],
    server_dir: Path,
) -> None:
    credential = secret("cred")
    server = make_server("")
    server.start()
    assert server.port is not None
    url = f"http://evals:{credential}@127.0.0.1:{server.port}"
    result = run(
        pytester,
        f"--eval-store={url}",
        *("-o", "log_cli=true", "--log-cli-level=INFO"),
        *("--log-file=session.log", "--log-file-level=INFO"),
    )
    check_outcomes(result)
    assert (suite / "session.log").is_file()
    hunt([credential], [result], suite, server_dir)


def test_a_store_url_pytest_refuses_names_no_credentials(
    pytester: pytest.Pytester, suite: Path
) -> None:
    credential = secret("cred")
    result = run(pytester, f"--eval-store=http://evals:{credential}@127.0.0.1:99999")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "not a valid URL" in result.stderr.str()
    hunt([credential], [result], suite)


def test_a_store_url_the_cli_refuses_names_no_credentials(tmp_path: Path) -> None:
    credential = secret("cred")
    store = f"http://evals:{credential}@127.0.0.1:99999"
    done = evalrows("rows", EXPERIMENT, cwd=tmp_path, env={"EVALROWS_STORE": store}, timeout=60)
    assert done.returncode != 0
    assert "not a valid URL" in done.stderr
    assert credential not in done.stdout + done.stderr
