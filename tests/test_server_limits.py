"""``evalrows serve`` against bad and hostile requests: every one gets a 4xx that says what was
wrong, never a 5xx; bodies are limited while they are read, in bounded memory; and only
requests that name this server as their Host and declare a JSON body get in.

Requests go to the real command (a uvicorn subprocess on 127.0.0.1); peak memory is
the server's own VmHWM from /proc.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.events import row_event, span_event
from support.servers import EvalrowsServer

from pytest_evalrows.braintrust import wire
from pytest_evalrows.braintrust.client import MAX_BYTES, MAX_EVENTS, HTTPStore
from pytest_evalrows.braintrust.server import MAX_BODY_BYTES, MAX_SMALL_BODY_BYTES, bound_hosts
from pytest_evalrows.braintrust.server_bodies import MAX_VALUES
from pytest_evalrows.cli import main

TOKEN = "limits-token"
MIB = 1024 * 1024


# -- helpers -------------------------------------------------------------------------------


def start(tmp: Path, token: str = TOKEN, **options: Any) -> EvalrowsServer:
    """A started ``evalrows serve`` on a fresh store; developer settings do not leak in."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {"EVALROWS_SERVER_ALLOWED_HOSTS": "", **options.pop("env", {})}
    server = EvalrowsServer(tmp / "served.db", token, tmp / "server.log", env=env, **options)
    server.start()
    return server


def client(server: EvalrowsServer, **headers: str) -> httpx.Client:
    if server.token:
        headers.setdefault("Authorization", f"Bearer {server.token}")
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def new_experiment(server: EvalrowsServer) -> str:
    with client(server) as http:
        project = http.post("/v1/project", json={"name": "demo"}).json()
        body = {"project_id": project["id"], "name": f"e-{uuid.uuid4().hex}"}
        response = http.post("/v1/experiment", json=body)
        assert response.status_code == 200, response.text
        experiment_id: str = response.json()["id"]
        return experiment_id


def events_of(server: EvalrowsServer, experiment_id: str) -> list[dict[str, Any]]:
    with client(server) as http:
        response = http.post(f"/v1/experiment/{experiment_id}/fetch", json={})
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events


def memory_kib(server: EvalrowsServer, field: str) -> int:
    """``VmHWM`` (the peak resident set since the process started) or ``VmRSS``, in KiB."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
    assert found, status
    return int(found[1])


def warmed(server: EvalrowsServer) -> int:
    """Sends one small insert and fetch (so that every lazy import is done); the resident set
    after it, in KiB: what a request's peak is measured against."""
    experiment_id = new_experiment(server)
    with client(server) as http:
        url = f"/v1/experiment/{experiment_id}/insert"
        assert http.post(url, json={"events": [row_event("warm")]}).status_code == 200
    assert len(events_of(server, experiment_id)) == 1
    return memory_kib(server, "VmRSS")


def raw_request(server: EvalrowsServer, head: str, body: Iterable[bytes] = ()) -> Any:
    """Sends ``head`` (the request line and headers) and then ``body`` on a plain socket, and
    reads one response: (status, headers, the JSON body). Sending stops early, without an
    error, when the server closes its side."""
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        try:
            for chunk in body:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of its answer"
        rest += chunk
    return int(status_line.split()[1]), headers, json.loads(rest[:length])


def no_server_errors(server: EvalrowsServer) -> None:
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalrowsServer]:
    """One server with a token for the tests that do not measure memory."""
    started = start(tmp_path_factory.mktemp("limits"))
    try:
        yield started
    finally:
        started.stop()
    no_server_errors(started)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalrowsServer]:
    """One server without a token."""
    started = start(tmp_path_factory.mktemp("open"), token="")
    try:
        yield started
    finally:
        started.stop()
    no_server_errors(started)


# -- bad input is a 400 that says what was wrong ------------------------------------------

GOOD = json.dumps(row_event("good")).encode()
SPAN = json.dumps(span_event("good-span")).encode()


def with_evalrows(**fields: Any) -> bytes:
    """A row event as the HTTP store sends it, with fields of ``metadata.evalrows`` replaced."""
    event = row_event("r")
    event["metadata"]["evalrows"].update(fields)
    return json.dumps(event).encode()


def span_with(**fields: Any) -> bytes:
    event = span_event("s")
    event["metadata"]["evalrows"].update(fields)
    return json.dumps(event).encode()


# Each an event that follows a good row and a good span in one insert; what the error names.
BAD_EVENTS: dict[str, tuple[bytes, str]] = {
    "an integer of 5,000 digits": (b'{"id": "r", "input": ' + b"7" * 5000 + b"}", "number"),
    "nesting 1,000 deep": (b'{"id": "r", "input": ' + b"[" * 1000 + b"]" * 1000 + b"}", "200"),
    "a lone high surrogate in a string": (b'{"id": "r", "output": "a\\ud800"}', "surrogate"),
    "a lone low surrogate in a string": (b'{"id": "r", "output": "\\udc00b"}', "surrogate"),
    "a lone surrogate in a key": (b'{"id": "r", "metadata": {"\\ud800": 1}}', "surrogate"),
    "a lone surrogate in a nested key": (
        b'{"id": "r", "input": [{"q": {"\\udbff": "x"}}]}',
        "surrogate",
    ),
    "a lone surrogate in a span attribute": (
        span_with(attributes={"gen_ai.prompt": "x"}).replace(b'"x"', b'"\\ud83d"'),
        "surrogate",
    ),
    "NaN": (b'{"id": "r", "output": NaN}', "line 1"),
    "Infinity": (b'{"id": "r", "output": {"x": -Infinity}}', "line 1"),
    "a float that overflows in the input": (
        b'{"id": "r", "input": {"x": [1, 1e400]}}',
        "events[2].input.x[1]",
    ),
    "a float that overflows in a key's value": (b'{"id": "r", "scores": {"a": 1e999}}', "a"),
    "a metric that overflows": (b'{"id": "r", "metrics": {"cost": -1e400}}', "cost"),
    "start and end whose duration overflows": (
        b'{"id": "r", "metrics": {"start": -1.7e308, "end": 1.7e308}}',
        "metrics.start",
    ),
    "an end past the year 9999": (b'{"id": "r", "metrics": {"start": 1, "end": 1e300}}', "end"),
    "a start of 400 digits": (b'{"id": "r", "metrics": {"start": 1' + b"0" * 400 + b"}}", "start"),
    "tokens over 64 bits": (
        b'{"id": "r", "metrics": {"tokens": 1' + b"0" * 30 + b"}}",
        "metrics.tokens",
    ),
    "negative tokens": (b'{"id": "r", "metrics": {"prompt_tokens": -1}}', "prompt_tokens"),
    "an execution over 64 bits": (with_evalrows(execution=10**30), "execution"),
    "an execution of 2**63": (with_evalrows(execution=2**63), "execution"),
    "an execution of 1e300": (with_evalrows(execution=1e300), "execution"),
    "an execution of 0": (with_evalrows(execution=0), "execution"),
    "a span's execution over 64 bits": (span_with(execution=10**20), "execution"),
    "a created of 400 digits": (b'{"id": "r", "created": 1' + b"0" * 400 + b"}", "created"),
    "a created that is no time": (b'{"id": "r", "created": {"a": 1}}', "created"),
    "merge paths of numbers": (b'{"id": "r", "_merge_paths": [[1]]}', "_merge_paths"),
}


@pytest.mark.parametrize("case", list(BAD_EVENTS))
def test_bad_input_is_a_400_that_names_it_and_writes_nothing(
    server: EvalrowsServer, case: str
) -> None:
    event, mentions = BAD_EVENTS[case]
    experiment_id = new_experiment(server)
    body = b'{"events": [' + GOOD + b", " + SPAN + b", " + event + b"]}"
    with client(server, **{"Content-Type": "application/json"}) as http:
        response = http.post(f"/v1/experiment/{experiment_id}/insert", content=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and "\n" not in message
    assert mentions in message, message
    assert events_of(server, experiment_id) == []


def test_the_values_next_to_those_limits_are_stored_as_sent(server: EvalrowsServer) -> None:
    """What the bad cases above refuse is the overflow, not the kind of value."""
    experiment_id = new_experiment(server)
    biggest = 2**63 - 1
    event = row_event("edge", input={"big": 7 * 10**4299, "tiny": 1e-400, "deep": [[[[[]]]]]})
    event["metadata"]["evalrows"]["execution"] = biggest
    event["metrics"].update(tokens=biggest, start=0.0, end=253402300799.0, cost=1.7e308)
    event["output"] = "\U0001f600 a pair is fine"
    # ASCII JSON: the emoji goes as the escaped pair \ud83d\ude00.
    body = json.dumps({"events": [event]}).encode()
    assert b"\\ud83d\\ude00" in body
    with client(server, **{"Content-Type": "application/json"}) as http:
        response = http.post(f"/v1/experiment/{experiment_id}/insert", content=body)
    assert response.status_code == 200, response.text
    (stored,) = events_of(server, experiment_id)
    assert stored["input"] == {"big": 7 * 10**4299, "tiny": 0.0, "deep": [[[[[]]]]]}
    assert stored["metadata"]["evalrows"]["execution"] == biggest
    assert stored["metrics"]["tokens"] == biggest
    assert stored["output"] == "\U0001f600 a pair is fine"


@pytest.mark.parametrize(
    ("method", "query", "mentions"),
    [
        ("POST", {"limit": 10**30}, "limit"),
        ("POST", {"limit": 2**63}, "limit"),
        ("POST", {"limit": -1}, "limit"),
        ("GET", {"limit": str(10**30)}, "limit"),
        ("GET", {"limit": "9" * 5000}, "limit"),
        ("POST", {"cursor": "YmVmb3JlOj" + "E" * 1_000_000}, "cursor"),
        ("POST", {"cursor": "YmVmb3JlOjEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMA=="}, "cursor"),
        ("GET", {"cursor": "YmVmb3JlOjEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMA=="}, "cursor"),
        ("POST", {"cursor": "YmVmb3JlOi0x"}, "cursor"),  # before:-1
    ],
)
def test_a_fetch_out_of_range_is_a_400(
    server: EvalrowsServer, method: str, query: dict[str, Any], mentions: str
) -> None:
    experiment_id = new_experiment(server)
    url = f"/v1/experiment/{experiment_id}/fetch"
    with client(server) as http:
        as_json = method == "POST"
        response = http.post(url, json=query) if as_json else http.get(url, params=query)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert mentions in message and "\n" not in message and len(message) < 300, message


# -- the body limit holds while the body is read -------------------------------------------


def test_a_body_other_than_an_insert_is_a_small_object(server: EvalrowsServer) -> None:
    experiment_id = new_experiment(server)
    name = f"p-{uuid.uuid4().hex}"
    padding = "x" * (MAX_SMALL_BODY_BYTES + 1)
    with client(server) as http:
        for url, body in (
            ("/v1/project", {"name": name, "padding": padding}),
            (f"/v1/experiment/{experiment_id}/fetch", {"limit": 1, "padding": padding}),
        ):
            response = http.post(url, json=body)
            assert response.status_code == 413, response.text
            assert f"over {MAX_SMALL_BODY_BYTES} bytes" in response.json()["error"]
            # Chunked, so that only counting stops it.
            response = http.post(url, content=iter([json.dumps(body).encode()]))
            assert response.status_code == 415  # no Content-Type: refused before reading
            headers = {"Content-Type": "application/json"}
            response = http.post(url, content=iter([json.dumps(body).encode()]), headers=headers)
            assert response.status_code == 413, response.text
    assert name not in projects(server)


def test_the_limit_fits_what_the_http_store_sends() -> None:
    # A full batch of characters that each take 4 bytes in UTF-8 still fits.
    assert MAX_BODY_BYTES >= 4 * MAX_BYTES + MIB
    assert MAX_EVENTS == 100


def head(server: EvalrowsServer, path: str, *lines: str) -> str:
    return "\n".join(
        [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            f"Authorization: Bearer {server.token}",
            "Content-Type: application/json",
            *lines,
            "",
        ]
    )


def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read(
    tmp_path: Path,
) -> None:
    server = start(tmp_path)
    try:
        before = warmed(server)
        experiment_id = new_experiment(server)
        path = f"/v1/experiment/{experiment_id}/insert"
        # The headers alone: an answer comes without one byte of the 300 MB.
        status, _, answer = raw_request(server, head(server, path, "Content-Length: 314572800"))
        assert status == 413
        assert str(MAX_BODY_BYTES) in answer["error"]
        assert memory_kib(server, "VmHWM") - before < 8 * 1024
    finally:
        server.stop()
    no_server_errors(server)


def test_a_chunked_body_is_counted_as_it_arrives_and_stopped_at_the_limit(
    tmp_path: Path,
) -> None:
    server = start(tmp_path)
    try:
        before = warmed(server)
        experiment_id = new_experiment(server)
        path = f"/v1/experiment/{experiment_id}/insert"
        piece = b'{"events": [' + b" " * (MIB - 12)

        def chunks() -> Iterator[bytes]:
            # Twice the limit, then the end: a server that kept it all would hold 2 limits.
            for _ in range(2 * MAX_BODY_BYTES // MIB):
                yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            yield b"0\r\n\r\n"

        status, _, answer = raw_request(
            server, head(server, path, "Transfer-Encoding: chunked"), chunks()
        )
        assert status == 413, answer
        assert str(MAX_BODY_BYTES) in answer["error"]
        peak = memory_kib(server, "VmHWM") - before
        assert peak < 1.5 * MAX_BODY_BYTES / 1024, f"{peak} KiB over the resident set"
        assert events_of(server, experiment_id) == []
    finally:
        server.stop()
    no_server_errors(server)


def test_a_body_over_the_limit_is_a_413_that_an_http_client_reads(
    server: EvalrowsServer,
) -> None:
    """The HTTP store splits a batch on a 413: the answer must reach a client that is still
    sending, not a reset connection."""
    experiment_id = new_experiment(server)
    body = b'{"events": [' + b" " * MAX_BODY_BYTES + b"]}"
    with client(server, **{"Content-Type": "application/json"}) as http:
        response = http.post(f"/v1/experiment/{experiment_id}/insert", content=body)
        assert response.status_code == 413, response.text
        assert "split the batch" in response.json()["error"]
        # The connection is still good for the next request.
        assert http.get("/v1/project").status_code == 200


def big_insert(size: int) -> bytes:
    """Rows as the HTTP store sends them, with large outputs (some not ASCII), about ``size``
    bytes in all."""
    events = []
    per_event = size // MAX_EVENTS
    for index in range(MAX_EVENTS):
        text = ("answer " * (per_event // 7))[: per_event - 1000]
        if index % 10 == 0:
            text = "réponse ✓ " + text[:-20]
        events.append(row_event(f"big-{index}", output=text, input={"q": index}))
    body = json.dumps({"events": events}, ensure_ascii=False).encode()
    assert size - MIB < len(body) <= size, len(body)
    return body


# What one insert may cost at its peak: about 6 times the body today, 2 of them the server's
# own (the body as it arrives, then parsed) and the rest the store's write (the batch as JSON
# bytes, SQLite's copy of them as text, and its parse). It was 16 times before.
PEAK_BOUND = 7 * MAX_BODY_BYTES


def test_a_valid_insert_at_the_limit_costs_a_small_multiple_of_it(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        before = warmed(server)
        experiment_id = new_experiment(server)
        body = big_insert(MAX_BODY_BYTES)
        with client(server, **{"Content-Type": "application/json"}) as http:
            response = http.post(f"/v1/experiment/{experiment_id}/insert", content=body)
        assert response.status_code == 200, response.text
        del body
        peak = memory_kib(server, "VmHWM") - before
        assert peak < PEAK_BOUND / 1024, f"{peak} KiB over the resident set"
        assert len(response.json()["row_ids"]) == MAX_EVENTS
    finally:
        server.stop()
    no_server_errors(server)


def many_values(count: int) -> bytes:
    """An insert whose input is ``count`` distinct short strings (not ASCII): what costs the
    most memory per byte of JSON."""
    values = ",".join(f'"{index}✓"' for index in range(count))
    return f'{{"events": [{{"id": "x", "input": [{values}]}}]}}'.encode()


def test_a_body_of_too_many_values_is_a_413_and_one_just_under_is_bounded(
    tmp_path: Path,
) -> None:
    """Short values cost far more memory than their bytes: their number is limited too."""
    server = start(tmp_path)
    try:
        before = warmed(server)
        experiment_id = new_experiment(server)
        url = f"/v1/experiment/{experiment_id}/insert"
        with client(server, **{"Content-Type": "application/json"}) as http:
            # 3 MB of empty lists: 2 million values.
            body = b'{"events": [{"id": "x", "input": [' + b"[]," * 10**6 + b"0]}]}"
            response = http.post(url, content=body)
            assert response.status_code == 413, response.text
            assert f"over {MAX_VALUES}: split the batch" in response.json()["error"]
            response = http.post(url, content=many_values(MAX_VALUES - 1000))
            assert response.status_code == 200, response.text
        peak = memory_kib(server, "VmHWM") - before
        assert peak < PEAK_BOUND / 1024, f"{peak} KiB over the resident set"
    finally:
        server.stop()
    no_server_errors(server)


def test_separators_inside_strings_do_not_count_as_values(server: EvalrowsServer) -> None:
    experiment_id = new_experiment(server)
    text = '{"a": [1, 2], "b": {"c": 3}}, ' * 100_000  # JSON as text: 900,000 separators
    event = row_event("commas", output=text)
    with client(server) as http:
        url = f"/v1/experiment/{experiment_id}/insert"
        assert http.post(url, json={"events": [event]}).status_code == 200
    (stored,) = events_of(server, experiment_id)
    assert stored["output"] == text


# -- Host and Content-Type: what a web page cannot send -------------------------------------


@pytest.fixture(params=["with a token", "without a token"])
def either(request: pytest.FixtureRequest) -> EvalrowsServer:
    name = "server" if request.param == "with a token" else "open_server"
    found: EvalrowsServer = request.getfixturevalue(name)
    return found


def projects(server: EvalrowsServer) -> list[str]:
    with client(server) as http:
        return [p["name"] for p in http.get("/v1/project").json()["objects"]]


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "localhost:1"],
)
def test_a_foreign_host_is_refused(either: EvalrowsServer, host: str) -> None:
    """What DNS rebinding sends: this server's address under another name."""
    name = f"p-{uuid.uuid4().hex}"
    host = host.format(port=either.port)
    with client(either, Host=host) as http:
        for response in (
            http.post("/v1/project", json={"name": name}),
            http.get("/v1/project"),
            http.get("/v1/nothing"),
        ):
            assert response.status_code == 400, response.text
            message = response.json()["error"]
            assert host in message and "--allowed-host" in message and "\n" not in message
    assert name not in projects(either)


def test_a_missing_or_malformed_host_is_refused(either: EvalrowsServer) -> None:
    for line in ("", "Host: a b", "Host: [::1", "Host: x:99999", "Host: u@127.0.0.1"):
        request = f"GET /v1/project HTTP/1.0\n{line}\n" if line else "GET /v1/project HTTP/1.0\n"
        if either.token:
            request += f"Authorization: Bearer {either.token}\n"
        status, _, answer = raw_request(either, request)
        assert status == 400, (line, answer)
        assert "Host" in answer["error"]


def test_every_name_of_loopback_with_the_port_is_accepted(either: EvalrowsServer) -> None:
    for host in ("127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"):
        with client(either, Host=host.format(port=either.port)) as http:
            assert http.get("/v1/project").status_code == 200, host
    with client(either, Host="localhost") as http:  # port 80
        assert http.get("/v1/project").status_code == 400


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ],
)
def test_a_body_not_declared_as_json_is_a_415(
    either: EvalrowsServer, content_type: str | None
) -> None:
    """What a web page can send anywhere without asking first (a "simple" CORS request)."""
    name = f"p-{uuid.uuid4().hex}"
    body = json.dumps({"name": name}).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    with client(either) as http:
        response = http.post("/v1/project", content=body, headers=headers)
        assert response.status_code == 415, response.text
        message = response.json()["error"]
        assert "application/json" in message and "\n" not in message
        # Chunked, without a length, too.
        response = http.post("/v1/project", content=iter([body]), headers=headers)
        assert response.status_code == 415, response.text
    assert name not in projects(either)


def test_json_with_parameters_and_bodiless_requests_need_no_more(either: EvalrowsServer) -> None:
    name = f"p-{uuid.uuid4().hex}"
    body = json.dumps({"name": name}).encode()
    with client(either) as http:
        headers = {"Content-Type": "Application/JSON; charset=utf-8"}
        assert http.post("/v1/project", content=body, headers=headers).status_code == 200
        experiment_id = new_experiment(either)
        # A fetch without a body reads everything, whatever its Content-Type.
        response = http.post(f"/v1/experiment/{experiment_id}/fetch")
        assert response.status_code == 200, response.text
    assert name in projects(either)


def test_allowed_hosts_come_from_the_flag_or_else_the_environment(tmp_path: Path) -> None:
    flags = ["--allowed-host", "evals.example.com", "--allowed-host", "Proxy.Local:9000"]
    env = {"EVALROWS_SERVER_ALLOWED_HOSTS": "from-env.example"}
    by_flag = start(tmp_path / "flag", args=flags, env=env)
    env = {"EVALROWS_SERVER_ALLOWED_HOSTS": " a.example , [2001:db8::1]:81,"}
    by_env = start(tmp_path / "env", env=env)
    try:
        for server, hosts in (
            (
                by_flag,
                {
                    "evals.example.com": 200,
                    "evals.example.com:443": 200,  # a name without a port: any port
                    "proxy.local:9000": 200,
                    "proxy.local:9001": 400,
                    "from-env.example": 400,  # the flag wins over the environment
                    f"127.0.0.1:{by_flag.port}": 200,  # the bound address always
                },
            ),
            (
                by_env,
                {
                    "a.example:8080": 200,
                    "[2001:0db8:0::1]:81": 200,
                    "[2001:db8::1]": 400,
                    "b.example": 400,
                },
            ),
        ):
            for host, status in hosts.items():
                with client(server, Host=host) as http:
                    assert http.get("/v1/project").status_code == status, host
    finally:
        by_flag.stop()
        by_env.stop()
    no_server_errors(by_flag)
    no_server_errors(by_env)


def test_any_host_when_asked_for(tmp_path: Path) -> None:
    server = start(tmp_path, args=["--allowed-host", "*"])
    try:
        with client(server, Host="anything.example:1") as http:
            assert http.get("/v1/project").status_code == 200
            # The Content-Type check holds still.
            assert http.post("/v1/project", content=b'{"name": "x"}').status_code == 415
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("where", "value"),
    [("flag", "evil.example/path"), ("flag", "a:b"), ("env", "ok.example,x y"), ("flag", "")],
)
def test_a_bad_allowed_host_stops_serve_with_a_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    value: str,
) -> None:
    argv = ["serve", "--store", str(tmp_path / "s.db"), "--port", "0"]
    if where == "flag":
        argv += ["--allowed-host", value]
    else:
        monkeypatch.setenv("EVALROWS_SERVER_ALLOWED_HOSTS", value)
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert ("--allowed-host" if where == "flag" else "EVALROWS_SERVER_ALLOWED_HOSTS") in line
    assert not (tmp_path / "s.db").exists()


def test_the_bound_address_decides_the_default_hosts() -> None:
    loopback = ["127.0.0.1:8000", "[::1]:8000", "localhost:8000"]
    assert sorted(bound_hosts("127.0.0.1", 8000)) == loopback
    assert sorted(bound_hosts("localhost", 8000)) == loopback
    assert sorted(bound_hosts("::1", 8000)) == loopback
    assert sorted(bound_hosts("127.0.0.2", 8000)) == sorted([*loopback, "127.0.0.2:8000"])
    assert bound_hosts("10.1.2.3", 8000) == ["10.1.2.3"]
    assert bound_hosts("fd00::1", 8000) == ["[fd00::1]"]
    assert bound_hosts("evals.internal", 8000) == ["evals.internal"]
    # A wildcard address is no request's Host: only --allowed-host names the server then.
    assert bound_hosts("0.0.0.0", 8000) == []
    assert bound_hosts("::", 8000) == []


def test_the_http_store_passes_every_check(server: EvalrowsServer) -> None:
    with HTTPStore(server.url, api_key=server.token) as store:
        experiment = store.get_or_create_experiment("demo", f"e-{uuid.uuid4().hex}")
        row = row_event("r1", output="Paris")
        store.write(experiment.id, [wire.event_row(row)], [])
        (read,) = store.latest_rows(experiment.id)
        assert read.output == "Paris"
