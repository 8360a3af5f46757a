"""``evalrows serve``'s web pages next to its API: the login and its cookie, the redirects,
the security headers, the pages over a store real pytest sessions wrote, and the API left as
it was. Real ``evalrows serve`` subprocesses on 127.0.0.1, httpx as the browser."""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from support.scored import SCORED_SUITE, scores
from support.servers import EvalrowsServer

from pytest_evalrows.models import Metrics, RowVersion
from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.web import auth

TOKEN = "web-serve-token-5e1c"
SECURITY = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    # Not no-referrer: under it, Chromium sends the login form with "Origin: null".
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
# A case whose row id holds a "/" and a "?": its page's path must carry them encoded.
ODD_CASE = "x/y?z"


# -- a store two real sessions wrote, and the servers over it ----------------------------------


def clean_env() -> dict[str, str]:
    """This process's environment without the developer's evalrows settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVALROWS_", "PYTEST_"))}
    env.pop("BRAINTRUST_API_KEY", None)
    return env


def run_session(suite: Path, db: Path, *args: str) -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:xdist"]
    command += ["-p", "no:cacheprovider", f"--eval-store={db}", *args]
    done = subprocess.run(
        command, cwd=suite, env=clean_env(), capture_output=True, text=True, timeout=300
    )
    # Exit code 1: a case failed on purpose (b regresses).
    assert done.returncode in (0, 1), done.stdout + done.stderr


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Experiment ``base``, and ``new`` run against it as its baseline: ``b`` regressed (and
    failed), ``a`` improved."""
    suite = tmp_path_factory.mktemp("suite")
    (suite / "test_suite.py").write_text(SCORED_SUITE)
    store = suite / "served.db"
    scores(suite, {"a": (0.5, True), "b": (0.9, True), "c": (0.7, True), ODD_CASE: (0.6, True)})
    run_session(suite, store, "--eval-experiment=base")
    scores(suite, {"a": (0.9, True), "b": (0.2, False), "c": (0.7, True), ODD_CASE: (0.6, True)})
    run_session(suite, store, "--eval-experiment=new", "--eval-baseline=base")
    return store


def started(db: Path, directory: Path, token: str) -> Iterator[EvalrowsServer]:
    env = {**clean_env(), "EVALROWS_SERVER_ALLOWED_HOSTS": ""}
    server = EvalrowsServer(db, token, directory / "server.log", env=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    log = server.log.read_text()
    # Every error a request caused was a page, not a traceback.
    assert server.exit_codes == [0] and "Traceback" not in log, log


@pytest.fixture(scope="module")
def server(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalrowsServer]:
    yield from started(db, tmp_path_factory.mktemp("with-token"), TOKEN)


@pytest.fixture(scope="module")
def open_server(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalrowsServer]:
    yield from started(db, tmp_path_factory.mktemp("open"), "")


@pytest.fixture(scope="module")
def ids(db: Path) -> dict[str, str]:
    """Experiment name -> id, and ``row:CASE`` -> the row id of that case."""
    with SQLiteStore(db, create=False) as store:
        found = {experiment.name: experiment.id for experiment in store.list_experiments()}
        for row in store.latest_rows(found["new"]):
            case = row.nodeid.rpartition("[")[2].rstrip("]")
            found[f"row:{case}"] = row.row_id
    return found


def browser(server: EvalrowsServer, **headers: str) -> httpx.Client:
    """A client that keeps cookies and does not follow redirects (the tests read them)."""
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def bearer(server: EvalrowsServer) -> httpx.Client:
    return browser(server, Authorization=f"Bearer {server.token}")


@contextmanager
def logged_in(server: EvalrowsServer) -> Iterator[httpx.Client]:
    with browser(server) as client:
        response = client.post("/login", data={"token": server.token, "next": "/"})
        assert response.status_code == 303, response.text
        yield client


def next_of(response: httpx.Response) -> str:
    """The ``next`` of a redirect to the login form."""
    location = urlsplit(response.headers["location"])
    assert location.path == "/login", response.headers["location"]
    (target,) = parse_qs(location.query)["next"]
    return target


def cookie(server: EvalrowsServer) -> str:
    """The name of the server's session cookie: its port's."""
    return f"evalrows_session_{server.port}"


def row_path(experiment_id: str, row_id: str) -> str:
    return f"/experiments/{quote(experiment_id, safe='')}/rows/{quote(row_id, safe='')}"


# -- the cookie and the checks around the login, as functions -----------------------------------


def test_a_session_cookie_is_an_expiry_and_its_mac_and_never_the_token() -> None:
    now = 1_800_000_000.0
    key = auth.new_session_key()
    value = auth.session_value(key, now)
    expiry, _, mac = value.partition(".")
    assert int(expiry) == now + auth.LIFETIME == now + 12 * 3600
    expected = hmac.new(key, expiry.encode(), hashlib.sha256).hexdigest()
    assert mac == expected and TOKEN not in value
    assert auth.valid_session(value, key, now)
    assert auth.valid_session(value, key, now + auth.LIFETIME - 1)
    # Expired, made with another key (before a logout), tampered with, or not ours at all.
    assert not auth.valid_session(value, key, now + auth.LIFETIME)
    assert auth.new_session_key() != key
    assert not auth.valid_session(value, auth.new_session_key(), now)
    later = str(int(expiry) + 3600)
    assert not auth.valid_session(f"{later}.{mac}", key, now)
    for forged in ("", TOKEN, f"{expiry}.", f".{mac}", f"+{expiry}.{mac}", f"{expiry}.{mac}0"):
        assert not auth.valid_session(forged, key, now), forged
    assert not auth.valid_session(None, key, now)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/experiments/e?status=failed&page=2", "/experiments/e?status=failed&page=2"),
        ("/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/x\\y", "/"),
        ("/\t/evil.example", "/"),
        ("/a\r\nSet-Cookie: x=1", "/"),
        ("https://evil.example/", "/"),
        ("evil.example", "/"),
        ("/é", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_after_the_login_only_a_path_of_this_server_is_followed(
    given: str | None, kept: str
) -> None:
    assert auth.safe_next(given) == kept


@pytest.mark.parametrize(
    ("origin", "referer", "fetch_site", "same"),
    [
        ("http://127.0.0.1:8000", None, None, True),
        ("https://127.0.0.1:8000", None, None, True),  # TLS ended by a proxy in front
        (None, "http://127.0.0.1:8000/login?next=%2F", None, True),
        (None, None, None, True),  # no browser page sent it
        ("http://evil.example", None, None, False),
        ("http://127.0.0.1:8001", None, None, False),
        ("null", None, None, False),
        (None, "http://evil.example/127.0.0.1:8000", None, False),
        # Origin decides when both are there.
        ("http://evil.example", "http://127.0.0.1:8000/login", None, False),
        # What Chromium sends from a no-referrer page of this server, and from other sites'.
        ("null", None, "same-origin", True),
        ("http://127.0.0.1:8000", None, "same-origin", True),
        ("http://evil.example", None, "same-origin", False),
        ("null", None, "cross-site", False),
        ("http://127.0.0.1:8000", None, "same-site", False),
        (None, None, "none", False),
    ],
)
def test_a_form_post_is_same_origin_when_the_browser_and_origin_or_referer_say_so(
    origin: str | None, referer: str | None, fetch_site: str | None, same: bool
) -> None:
    assert auth.same_origin(origin, referer, "127.0.0.1:8000", fetch_site) is same


# -- with a token: who gets in ---------------------------------------------------------------


def test_a_page_without_the_token_redirects_to_the_login_and_back(
    server: EvalrowsServer, ids: dict[str, str]
) -> None:
    path = f"/experiments/{ids['new']}?status=failed&sort=score%3Aq"
    with browser(server) as client:
        for method in ("GET", "HEAD"):
            response = client.request(method, path)
            assert response.status_code == 303, (method, response.text)
            assert next_of(response) == path
        # Every path, known or not: nothing says which pages exist.
        assert next_of(client.get("/no/such/page")) == "/no/such/page"
        assert next_of(client.get(row_path(ids["new"], ids[f"row:{ODD_CASE}"]))) == row_path(
            ids["new"], ids[f"row:{ODD_CASE}"]
        )
        # Not a GET: nothing to go back to.
        refused = client.post("/", data={"a": "b"})
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("text/html")
        # The login form carries next along.
        form = client.get("/login", params={"next": path})
        assert form.status_code == 200
        assert 'id="login"' in form.text and 'name="token"' in form.text
        assert f'value="{path.replace("&", "&amp;")}"' in form.text


def test_logging_in_sets_a_session_cookie_and_goes_to_next(
    server: EvalrowsServer, ids: dict[str, str]
) -> None:
    target = f"/experiments/{ids['new']}?status=failed"
    with browser(server) as client:
        response = client.post("/login", data={"token": TOKEN, "next": target})
        assert response.status_code == 303, response.text
        assert response.headers["location"] == target
        (set_cookie,) = response.headers.get_list("set-cookie")
        name_value, *attributes = [part.strip() for part in set_cookie.split(";")]
        name, _, value = name_value.partition("=")
        assert name == cookie(server)
        assert sorted(attributes) == sorted(
            ["Max-Age=43200", "Path=/", "HttpOnly", "SameSite=Strict"]
        )
        # Not the token, nor anything holding it: a proof that the token was known.
        assert TOKEN not in value and value != TOKEN
        assert TOKEN not in str(response.headers) and TOKEN not in response.text
        assert len(value.partition(".")[2]) == 64
        page = client.get(target)
        assert page.status_code == 200, page.text
        assert f'data-row-id="{ids["row:b"]}"' in page.text
        assert client.get("/").status_code == 200


def test_the_cookie_is_secure_when_the_request_came_over_https(server: EvalrowsServer) -> None:
    # What a proxy on loopback that ends TLS says (uvicorn trusts it from 127.0.0.1).
    https = {"X-Forwarded-Proto": "https"}
    with browser(server, **https) as client:
        response = client.post("/login", data={"token": TOKEN})
        assert response.status_code == 303
        set_cookie = response.headers["set-cookie"]
        # __Host-: only this host may set it (Secure, Path=/, no Domain).
        name, _, rest = set_cookie.partition("=")
        assert name == f"__Host-{cookie(server)}" and set_cookie.endswith("; Secure")
        assert "; Path=/;" in set_cookie and "domain" not in set_cookie.lower()
        value = rest.partition(";")[0]
    with browser(server, Cookie=f"{name}={value}", **https) as client:
        assert client.get("/").status_code == 200
        logout = client.post("/logout")
        assert logout.headers["set-cookie"].startswith(f"{name}=; Max-Age=0;")
        assert logout.headers["set-cookie"].endswith("; Secure")
    with browser(server) as client:
        plain = client.post("/login", data={"token": TOKEN}).headers["set-cookie"]
        assert plain.startswith(f"{cookie(server)}=") and "Secure" not in plain


def test_two_servers_on_one_host_keep_their_own_sessions(
    db: Path, server: EvalrowsServer, tmp_path: Path
) -> None:
    """A browser keeps cookies by host, not port: one jar for both servers. Each server's
    cookie has its port in its name, so a login to one does not replace the other's and a
    logout of one leaves the other."""
    with (
        contextmanager(started)(db, tmp_path, "second-token") as second,
        httpx.Client(timeout=60) as jar,
    ):
        for each in (server, second):
            login = jar.post(f"{each.url}/login", data={"token": each.token, "next": "/"})
            assert login.status_code == 303, login.text
        assert sorted(each.name for each in jar.cookies.jar) == sorted(
            [cookie(server), cookie(second)]
        )
        for each in (server, second):
            assert jar.get(f"{each.url}/").status_code == 200, each.url
        assert jar.post(f"{second.url}/logout").status_code == 303
        assert jar.get(f"{second.url}/").status_code == 303
        assert jar.get(f"{server.url}/").status_code == 200


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example", "evil.example", "/\t/e.x"],
)
def test_the_login_sends_nowhere_but_this_server(server: EvalrowsServer, target: str) -> None:
    with browser(server) as client:
        form = client.get("/login", params={"next": target})
        assert 'name="next" value="/"' in form.text
        response = client.post("/login", data={"token": TOKEN, "next": target})
        assert response.status_code == 303
        assert response.headers["location"] == "/"


def test_a_deep_link_too_long_for_the_login_form_logs_in_to_the_home_page(
    server: EvalrowsServer, ids: dict[str, str]
) -> None:
    """The login form carries ``next`` in a body of at most 4 KB: a longer deep link is
    dropped for / (the login then works), a shorter one kept."""
    base = f"/experiments/{ids['new']}?q="
    long_link, short_link = base + "x" * 4500, base + "y" * 1500
    assert auth.safe_next(long_link) == "/" and auth.safe_next(short_link) == short_link
    for link, kept in ((long_link, "/"), (short_link, short_link)):
        with browser(server) as client:
            redirect = client.get(link)
            assert redirect.status_code == 303 and next_of(redirect) == kept
            assert client.get(redirect.headers["location"]).status_code == 200
            login = client.post("/login", data={"token": TOKEN, "next": next_of(redirect)})
            assert login.status_code == 303 and login.headers["location"] == kept
    with browser(server) as client:
        # A next that long typed into the login page's own address is dropped too.
        form = client.get("/login", params={"next": long_link})
        assert form.status_code == 200 and base not in form.text


def test_a_wrong_token_shows_the_login_again_with_a_401(server: EvalrowsServer) -> None:
    with browser(server) as client:
        for given in ("wrong", "", TOKEN + "x", TOKEN[:-1]):
            response = client.post("/login", data={"token": given, "next": "/compare"})
            assert response.status_code == 401, given
            assert "set-cookie" not in response.headers
            assert 'id="login"' in response.text and 'value="/compare"' in response.text
            assert "not the server" in response.text
        assert client.post("/login", data={"next": "/"}).status_code == 401
        assert client.get("/").status_code == 303


def test_a_login_from_another_site_is_refused(server: EvalrowsServer) -> None:
    """Login CSRF: another site's page must not log a browser in (to a session of its own)."""
    with browser(server) as client:
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Referer": "http://evil.example/page"},
            {"Origin": f"http://127.0.0.1:{server.port + 1}"},
        ):
            response = client.post("/login", data={"token": TOKEN}, headers=headers)
            assert response.status_code == 403, headers
            assert "set-cookie" not in response.headers
            assert "another site" in response.text
        for headers in (
            {"Sec-Fetch-Site": "cross-site", "Origin": "null"},
            {"Sec-Fetch-Site": "same-site", "Origin": f"http://localhost:{server.port}"},
        ):
            response = client.post("/login", data={"token": TOKEN}, headers=headers)
            assert response.status_code == 403, headers
        # What a browser sends from the login form itself: its Origin, or (from a page whose
        # referrer policy is no-referrer) "null" where it says the request is same-origin.
        for headers in (
            {"Origin": server.url},
            {"Origin": server.url, "Sec-Fetch-Site": "same-origin"},
            {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        ):
            same = client.post("/login", data={"token": TOKEN}, headers=headers)
            assert same.status_code == 303 and "set-cookie" in same.headers, headers


def test_the_login_takes_a_small_form_and_nothing_else(server: EvalrowsServer) -> None:
    with browser(server) as client:
        json_body = client.post("/login", json={"token": TOKEN})
        assert json_body.status_code == 415 and "set-cookie" not in json_body.headers
        assert "x-www-form-urlencoded" in json_body.text
        padding = "p" * auth.MAX_FORM_BYTES
        large = client.post("/login", data={"token": TOKEN, "pad": padding})
        assert large.status_code == 413 and "set-cookie" not in large.headers
        # Without a length: counted as it arrives.
        body = f"token={TOKEN}&pad={padding}".encode()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        chunked = client.post("/login", content=iter([body]), headers=form)
        assert chunked.status_code == 413
        not_utf8 = client.post("/login", content=b"token=\xff", headers=form)
        assert not_utf8.status_code == 400
        # With a charset, as browsers may send it, the form is a form.
        ok = client.post(
            "/login",
            content=f"token={TOKEN}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
        )
        assert ok.status_code == 303


def test_a_forged_or_expired_cookie_is_refused(server: EvalrowsServer) -> None:
    future = str(int(time.time()) + 3600)
    token_mac = hmac.new(TOKEN.encode(), future.encode(), hashlib.sha256).hexdigest()
    for value in (
        f"{future}.{token_mac}",  # keyed with the token: the server's key is its own
        auth.session_value(auth.new_session_key(), time.time()),
        f"{future}.{'0' * 64}",
        TOKEN,
        f"{future}.{TOKEN}",
    ):
        with browser(server, Cookie=f"{cookie(server)}={value}") as client:
            assert client.get("/").status_code == 303, value
    with logged_in(server) as client:
        good = client.cookies[cookie(server)]
    with browser(server, Cookie=f"{cookie(server)}={good}") as client:
        assert client.get("/").status_code == 200


def test_logging_out_ends_the_session_for_a_copy_of_the_cookie_too(
    server: EvalrowsServer,
) -> None:
    """A cookie copied before the logout (another tab, another machine, a thief) is void after
    it: the server draws a new session key, so every session it gave ends."""
    with logged_in(server) as client:
        copied = client.cookies[cookie(server)]
        with logged_in(server) as elsewhere:
            assert elsewhere.get("/").status_code == 200
            assert client.post("/logout").status_code == 303
            assert elsewhere.get("/").status_code == 303  # every session ends
    with browser(server, Cookie=f"{cookie(server)}={copied}") as replay:
        response = replay.get("/")
        assert response.status_code == 303 and next_of(response) == "/"
    # Logging in again works at once.
    with logged_in(server) as again:
        assert again.get("/").status_code == 200


def test_a_logout_without_a_session_ends_no_one_else_s(server: EvalrowsServer) -> None:
    """/logout is open (a browser whose session expired must still be able to use it), so
    one without a valid session only clears its own cookie: anybody who can reach the server
    cannot log everyone out."""
    with logged_in(server) as client:
        with browser(server) as stranger:
            assert stranger.post("/logout").status_code == 303
        with browser(server, Cookie=f"{cookie(server)}=99999999999.forged") as forger:
            assert forger.post("/logout").status_code == 303
        assert client.get("/").status_code == 200


def test_the_cookie_does_not_open_the_api(server: EvalrowsServer) -> None:
    """A cookie goes with every request a browser makes, other sites' forms' too: the API
    takes the bearer header alone, as before the pages."""
    with logged_in(server) as client:
        assert client.get("/").status_code == 200
        response = client.get("/v1/project")
        assert response.status_code == 401
        assert response.json() == {"error": "missing token: send 'Authorization: Bearer <token>'"}
        # And the API's answers are its own, not pages.
        with bearer(server) as api:
            missing = api.get("/v1/nothing")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/json"
            assert "content-security-policy" not in missing.headers
            form = api.post("/v1/project", data={"name": "p"})
            assert form.status_code == 415 and "application/json" in form.json()["error"]


def test_the_bearer_header_opens_the_pages(server: EvalrowsServer) -> None:
    with bearer(server) as client:
        response = client.get("/")
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
        # Already in: the login form sends on.
        assert client.get("/login", params={"next": "/compare"}).headers["location"] == "/compare"
    with browser(server, Authorization="Bearer wrong") as client:
        assert client.get("/").status_code == 303
    with browser(server, Authorization=TOKEN) as client:
        assert client.get("/").status_code == 303


def test_logging_out_clears_the_cookie(server: EvalrowsServer) -> None:
    with logged_in(server) as client:
        assert client.get("/").status_code == 200
        # The page offers it.
        assert 'action="/logout"' in client.get("/").text
        elsewhere = client.post("/logout", headers={"Origin": "http://evil.example"})
        assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers
        assert client.get("/").status_code == 200
        response = client.post("/logout")
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert response.headers["set-cookie"].startswith(f"{cookie(server)}=; Max-Age=0; Path=/")
        assert client.get("/").status_code == 303


def test_every_page_has_the_logout_button_when_logged_in_with_the_cookie(
    server: EvalrowsServer, ids: dict[str, str]
) -> None:
    new = ids["new"]
    paths = [
        "/",
        f"/experiments/{new}",
        row_path(new, ids["row:a"]),
        f"/experiments/{new}/compare",
        f"/compare?a={ids['base']}&b={new}",
        "/experiments/nothing",  # an error page too
        f"/experiments/{new}?page=zero",
    ]
    with logged_in(server) as client:
        for path in paths:
            assert 'action="/logout"' in client.get(path).text, path
    # The bearer header is no session: there is nothing to log out of.
    with bearer(server) as client:
        for path in paths:
            assert 'action="/logout"' not in client.get(path).text, path


def test_the_host_check_applies_to_the_pages(server: EvalrowsServer) -> None:
    with bearer(server) as client:
        for path in ("/", "/login", "/static/evalrows.css", "/nothing"):
            response = client.get(path, headers={"Host": f"evil.example:{server.port}"})
            assert response.status_code == 400, path
            assert "--allowed-host" in response.json()["error"]
            # JSON, but with the pages' guards: not sniffed, cached or framed.
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["cache-control"] == "no-store", path
            assert response.headers["referrer-policy"] == "same-origin", path
            policy = response.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        # The API's refusal is as it was.
        api = client.get("/v1/project", headers={"Host": f"evil.example:{server.port}"})
        assert api.status_code == 400 and "content-security-policy" not in api.headers
        login = client.post(
            "/login", data={"token": TOKEN}, headers={"Host": f"evil.example:{server.port}"}
        )
        assert login.status_code == 400 and "set-cookie" not in login.headers


# -- the pages -----------------------------------------------------------------------------------


def test_every_page_and_answer_carries_the_security_headers(
    server: EvalrowsServer, ids: dict[str, str]
) -> None:
    new = ids["new"]
    with bearer(server) as client:
        answers = {
            path: client.get(path)
            for path in (
                "/",
                f"/experiments/{new}",
                row_path(new, ids["row:a"]),
                f"/experiments/{new}/compare",
                f"/compare?a={ids['base']}&b={new}",
                "/static/evalrows.css",
                "/static/evalrows.js",
                "/nothing",
                f"/experiments/{new}?page=zero",
            )
        }
    with browser(server) as client:
        answers["redirect"] = client.get("/")
        answers["login"] = client.get("/login")
        answers["login refused"] = client.post("/login", data={"token": "x"})
        answers["logout"] = client.post("/logout")
    for name, response in answers.items():
        for header, value in SECURITY.items():
            assert response.headers.get(header) == value, (name, header)


def test_the_pages_show_what_the_sessions_wrote(
    server: EvalrowsServer, ids: dict[str, str]
) -> None:
    with bearer(server) as client:
        home = client.get("/")
        for name in ("base", "new"):
            assert f'data-experiment-id="{ids[name]}"' in home.text
        page = client.get(f"/experiments/{ids['new']}")
        assert page.status_code == 200
        for case in ("a", "b", "c", ODD_CASE):
            assert f'data-row-id="{ids["row:" + case]}"' in page.text
        assert f'data-row-id="{ids["row:b"]}" data-status="failed"' in page.text
        failed = client.get(f"/experiments/{ids['new']}", params={"status": "failed"})
        assert f'data-row-id="{ids["row:b"]}"' in failed.text
        assert f'data-row-id="{ids["row:a"]}"' not in failed.text
        # A row id with a "/" and a "?" in it: its own page, by the encoded path.
        row = client.get(row_path(ids["new"], ids[f"row:{ODD_CASE}"]))
        assert row.status_code == 200, row.text
        assert 'id="versions"' in row.text and ODD_CASE in row.text
        # Against the baseline the session named: b regressed, and comes first.
        compare = client.get(f"/experiments/{ids['new']}/compare")
        assert compare.status_code == 200, compare.text
        changes = [
            line.partition('data-change="')[2].partition('"')[0]
            for line in compare.text.splitlines()
            if "data-change=" in line
        ]
        assert changes[0] == "regressed" and "improved" in changes
        both = client.get("/compare", params={"a": ids["base"], "b": ids["new"]})
        assert both.status_code == 200 and both.text.count('data-change="regressed"') == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("page", "zero"),
        ("sort", "nope"),
        ("status", "great"),
        ("min", "x"),
        ("min", "1_0"),
        ("page", "\uff12"),
    ],
)
def test_a_bad_query_is_a_400_page_naming_the_parameter(
    server: EvalrowsServer, ids: dict[str, str], name: str, value: str
) -> None:
    query = {name: value, "score": "q"} if name == "min" else {name: value}
    with bearer(server) as client:
        response = client.get(f"/experiments/{ids['new']}", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    # The message names the parameter and quotes the value (escaped, as all text is).
    assert f"{name} &#39;{value}&#39;" in response.text


def test_compare_needs_both_sides(server: EvalrowsServer, ids: dict[str, str]) -> None:
    with bearer(server) as client:
        for query in ({"a": ids["base"]}, {"b": ids["new"]}, {"a": "", "b": ids["new"]}):
            response = client.get("/compare", params=query)
            assert response.status_code == 400, query
            missing = "b" if "b" not in query else "a"
            assert f"{missing}: give one experiment id" in response.text
        # The baseline of an experiment that has none is not a page.
        response = client.get(f"/experiments/{ids['base']}/compare")
        assert response.status_code == 404 and "no baseline" in response.text


def test_what_is_not_there_is_a_404_page(server: EvalrowsServer, ids: dict[str, str]) -> None:
    with bearer(server) as client:
        for path in (
            "/experiments/no-such-experiment",
            row_path(ids["new"], "no-such-row"),
            f"/compare?a={ids['base']}&b=no-such-experiment",
            "/no/such/page",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert "<h1" in response.text and "Traceback" not in response.text
            assert str(server.db) not in response.text and server.db.name not in response.text
        wrong_method = client.delete("/")
        assert wrong_method.status_code == 405 and "GET" in wrong_method.text


def test_the_static_files_and_nothing_else_from_the_disk(server: EvalrowsServer) -> None:
    static = resources.files("pytest_evalrows.web") / "static"
    with browser(server) as client:  # open without the token: the login page uses them
        css = client.get("/static/evalrows.css")
        assert css.status_code == 200 and css.headers["content-type"] == "text/css; charset=utf-8"
        assert css.content == (static / "evalrows.css").read_bytes()
        js = client.get("/static/evalrows.js")
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        assert js.content == (static / "evalrows.js").read_bytes()
        for path in ("/static/app.py", "/static/..%2Fapp.py", "/static/", "/static/x.css"):
            assert client.get(path).status_code in (303, 404), path
    with bearer(server) as client:
        # report.js is in the package's static folder, but it is the report's, not the pages'.
        for path in (
            "/static/report.js",
            "/static/app.py",
            "/static/..%2Fapp.py",
            "/static/%2e%2e%2fauth.py",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "import" not in response.text


def test_rows_named_dot_and_dot_dot_open_from_their_links(tmp_path: Path) -> None:
    """Browsers (and httpx) drop "." and ".." from a path even percent-encoded: those two
    rows' links carry their ids in the query, and the route reads them back."""
    db = tmp_path / "dots.db"
    names = [".", "..", "...", "./x"]
    with SQLiteStore(db) as store:
        experiment_id = store.get_or_create_experiment("p", "dots").id
        rows = [
            RowVersion(
                row_id=name,
                version_id=f"v{number}",
                nodeid=f"test_dots.py::test_it[{number}]",
                attempt_id="attempt-1",
                execution=1,
                status="passed",
                metrics=Metrics(start=1.0, end=2.0, duration=1.0),
                root_span_id=f"{number:032x}",
                span_id=f"{number:016x}",
                output=f"output of [{name}]",
            )
            for number, name in enumerate(names, start=1)
        ]
        store.write(experiment_id, rows, [])
    with contextmanager(started)(db, tmp_path, TOKEN) as server, bearer(server) as client:
        page = client.get(f"/experiments/{experiment_id}")
        assert page.status_code == 200
        for name in names:
            match = re.search(
                rf'<tr data-row-id="{re.escape(html.escape(name))}".*?<a href="([^"]+)"',
                page.text,
                re.S,
            )
            assert match is not None, name
            link = html.unescape(match[1])
            row = client.get(link)
            assert row.status_code == 200, (name, link)
            assert f"output of [{name}]" in row.text, (name, link)
        # The query names a row only after an empty last part, and only a dot segment.
        rows_path = f"/experiments/{experiment_id}/rows/"
        assert "output of [...]" in client.get(rows_path + "...?row=..").text
        assert client.get(rows_path + "?row=...").status_code == 404


def test_head_answers_as_get_without_a_body(server: EvalrowsServer, ids: dict[str, str]) -> None:
    with bearer(server) as client:
        for path in ("/", f"/experiments/{ids['new']}", "/static/evalrows.css"):
            got, head = client.get(path), client.head(path)
            assert head.status_code == got.status_code == 200
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]


# -- without a token -------------------------------------------------------------------------


def test_without_a_token_the_pages_are_open_and_there_is_no_login(
    open_server: EvalrowsServer, ids: dict[str, str]
) -> None:
    with browser(open_server) as client:
        home = client.get("/")
        assert home.status_code == 200 and f'data-experiment-id="{ids["new"]}"' in home.text
        assert 'action="/logout"' not in home.text
        assert client.get(f"/experiments/{ids['new']}").status_code == 200
        form = client.get("/login", params={"next": "/compare"})
        assert form.status_code == 303 and form.headers["location"] == "/compare"
        posted = client.post("/login", data={"token": "anything"})
        assert posted.status_code == 303 and posted.headers["location"] == "/"
        assert "set-cookie" not in posted.headers
        assert home.headers["content-security-policy"] == SECURITY["content-security-policy"]
        # The API is open too, as it always was without a token.
        assert client.get("/v1/project").status_code == 200


def test_an_empty_token_is_no_token_for_the_pages_as_for_the_api(
    db: Path, tmp_path: Path, ids: dict[str, str]
) -> None:
    env = {**clean_env(), "EVALROWS_SERVER_ALLOWED_HOSTS": ""}
    server = EvalrowsServer(db, "", tmp_path / "server.log", args=["--token", ""], env=env)
    server.start()
    try:
        with browser(server) as client:
            assert client.get("/v1/project").status_code == 200
            home = client.get("/")
            assert home.status_code == 200 and f'data-experiment-id="{ids["new"]}"' in home.text
    finally:
        server.stop()


def compared_rows(side: str, count: int, failed: set[int]) -> list[RowVersion]:
    return [
        RowVersion(
            row_id=f"r{number:04d}",
            version_id=f"{side}-v{number}",
            nodeid=f"test_many.py::test_it[{number}]",
            attempt_id=f"{side}-attempt",
            execution=1,
            status="failed" if number in failed else "passed",
            metrics=Metrics(start=1.0, end=2.0, duration=1.0),
            root_span_id=f"{side}{number + 1:031x}",
            span_id=f"{side}{number + 1:015x}",
            output=f"output {number}",
            scores={"pass": 0.0 if number in failed else 1.0},
        )
        for number in range(count)
    ]


def test_the_compare_page_shows_500_rows_at_a_time_regressions_first(tmp_path: Path) -> None:
    """Two big experiments' compare table in one page takes a browser seconds to lay out: the
    served page shows a page of it, in the table's order, with links to the next and previous."""
    db = tmp_path / "many.db"
    regressed = {700, 999, 1000}
    with SQLiteStore(db) as store:
        a_id = store.get_or_create_experiment("p", "before").id
        store.write(a_id, compared_rows("a", 1001, set()), [])
        b_id = store.get_or_create_experiment("p", "after").id
        store.write(b_id, compared_rows("b", 1001, regressed), [])
    with contextmanager(started)(db, tmp_path, TOKEN) as server, bearer(server) as client:

        def page(number: str | None) -> httpx.Response:
            params = {"a": a_id, "b": b_id} | ({} if number is None else {"page": number})
            return client.get("/compare", params=params)

        def shown(response: httpx.Response) -> list[str]:
            table = response.text.partition('<table id="compare">')[2].partition("</table>")[0]
            return re.findall(r'<tr data-row-id="([^"]+)"', table)

        def pager(response: httpx.Response) -> str:
            found = re.search(r'<nav id="compare-pager" aria-label="Pages">(.*?)</nav>',
                              response.text, re.S)  # fmt: skip
            assert found is not None, response.text[-2000:]
            return html.unescape(found[1])

        first = page(None)
        assert first.status_code == 200, first.text
        rows = shown(first)
        assert len(rows) == 500
        assert rows[:3] == ["r0700", "r0999", "r1000"]  # the regressions first
        assert rows[3:6] == ["r0000", "r0001", "r0002"]
        nav = pager(first)
        assert "Rows 1\N{EN DASH}500 of 1,001" in nav and 'rel="prev"' not in nav
        assert f'rel="next" href="/compare?a={a_id}&b={b_id}&page=2"' in nav
        second = page("2")
        assert shown(second)[0] == "r0497" and len(shown(second)) == 500
        last = page("3")
        assert shown(last) == ["r0998"]
        nav = pager(last)
        assert "Rows 1,001\N{EN DASH}1,001 of 1,001" in nav and 'rel="next"' not in nav
        assert f'rel="prev" href="/compare?a={a_id}&b={b_id}&page=2"' in nav
        assert shown(page("99")) == ["r0998"]  # beyond the last: the last, as the rows page
        for bad in ("0", "two", "\uff12", "1_0", "-1"):
            response = page(bad)
            assert response.status_code == 400, bad
            assert f"page &#39;{bad}&#39;" in response.text
