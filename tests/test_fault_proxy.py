"""The fault proxy itself, against a real ``evalrows serve``: each fault does what it says, as
an httpx client sees it. No timed assertions: what happened is asserted, waits are bounded."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fault_proxy import (
    DropAfterCommit,
    FaultProxy,
    Flap,
    Refuse,
    Reset,
    Rule,
    Status,
    too_many_requests,
    unavailable,
)
from support.servers import EvalrowsServer
from support.store import make_row

from pytest_evalrows.braintrust import wire
from pytest_evalrows.store.sqlite import SQLiteStore


@pytest.fixture
def token() -> str:
    return f"evk-{secrets.token_hex(16)}"


@pytest.fixture
def server(tmp_path: Path, token: str) -> Iterator[EvalrowsServer]:
    started = EvalrowsServer(tmp_path / "served.db", token, tmp_path / "server.log")
    started.start()
    yield started
    started.stop()
    assert started.exit_codes == [0], started.log.read_text()


@pytest.fixture
def make_proxy(server: EvalrowsServer) -> Iterator[Callable[..., FaultProxy]]:
    """Proxies in front of ``server``, every one closed (and checked) at teardown."""
    made: list[FaultProxy] = []

    def make(**options: Any) -> FaultProxy:
        proxy = FaultProxy(server.url, **options)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()
    assert [proxy.errors for proxy in made] == [[] for _ in made]


def client(proxy: FaultProxy, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=proxy.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def experiment(http: httpx.Client) -> str:
    project = http.post("/v1/project", json={"name": "demo"})
    assert project.status_code == 200, project.text
    body = {"project_id": project.json()["id"], "name": "flaky"}
    made = http.post("/v1/experiment", json=body)
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def insert(http: httpx.Client, experiment_id: str, *row_ids: str) -> httpx.Response:
    events = [wire.row_event(make_row(row_id).model_dump(mode="json")) for row_id in row_ids]
    return http.post(f"/v1/experiment/{experiment_id}/insert", json={"events": events})


def stored_versions(db: Path, experiment_id: str) -> dict[str, int]:
    """How many versions each row has in the server's SQLite file."""
    with SQLiteStore(db, create=False) as store:
        rows = store.latest_rows(experiment_id)
        return {row.row_id: len(store.history(experiment_id, row.row_id)) for row in rows}


def refused(port: int) -> bool:
    """Whether a plain connect to ``port`` is refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30):
            return False
    except ConnectionRefusedError:
        return True


# -- forwarding --------------------------------------------------------------------------------


def test_requests_are_forwarded_over_one_kept_alive_connection(
    make_proxy: Callable[..., FaultProxy], server: EvalrowsServer, token: str
) -> None:
    proxy = make_proxy()
    with client(proxy, token) as http:
        experiment_id = experiment(http)
        assert insert(http, experiment_id, "r1", "r2").status_code == 200
        fetched = http.post(f"/v1/experiment/{experiment_id}/fetch", json={"limit": 10})
        assert fetched.status_code == 200
        assert sorted(event["id"] for event in fetched.json()["events"]) == ["r1", "r2"]
        listed = http.get("/v1/experiment", params={"experiment_name": "flaky"})
        assert [e["id"] for e in listed.json()["objects"]] == [experiment_id]
    stats = proxy.stats()
    assert stats.connections == 1
    assert stats.requests == {"project": 1, "experiment": 2, "insert": 1, "fetch": 1}
    assert stats.outcomes == {"answered": 5}
    assert stats.faults == {}
    assert (stats.row_events_forwarded, stats.row_events_committed) == (2, 2)
    assert stats.transitions == [] and proxy.is_up
    assert stored_versions(server.db, experiment_id) == {"r1": 1, "r2": 1}


# -- refusing ----------------------------------------------------------------------------------


def test_going_down_refuses_connects_and_closes_open_connections_then_the_port_serves_again(
    make_proxy: Callable[..., FaultProxy], server: EvalrowsServer, token: str
) -> None:
    proxy = make_proxy()
    port = proxy.port
    with client(proxy, token) as http:
        experiment_id = experiment(http)  # leaves a kept-alive connection in the pool
        proxy.go_down(Refuse())
        assert not proxy.is_up
        # The pooled connection was closed by the proxy; the new one is refused at once: a
        # connection error, not a timeout.
        with pytest.raises(httpx.ConnectError):
            insert(http, experiment_id, "r1")
        assert refused(port)
        proxy.go_up()
        assert proxy.port == port
        assert insert(http, experiment_id, "r2").status_code == 200
    stats = proxy.stats()
    assert stats.cut_connections == 1
    assert [(t.state, t.fault) for t in stats.transitions] == [("down", "refuse"), ("up", None)]
    assert stats.down_periods == 1
    assert stats.connections == 2  # the one before, the one after; none while down
    assert stats.requests == {"project": 1, "experiment": 1, "insert": 1}
    assert stored_versions(server.db, experiment_id) == {"r2": 1}


def test_a_request_in_flight_when_the_proxy_goes_down_is_cut_after_the_server_took_it(
    tmp_path: Path,
) -> None:
    # An upstream that answers only when told to, so the proxy can go down in between.
    arrived, release = threading.Event(), threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            arrived.set()
            release.wait(30)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    serving = threading.Thread(target=upstream.serve_forever, daemon=True)
    serving.start()
    failures: list[BaseException] = []
    try:
        with FaultProxy(f"http://127.0.0.1:{upstream.server_address[1]}") as proxy:

            def post() -> None:
                with httpx.Client(base_url=proxy.url, timeout=30) as http:
                    try:
                        http.post("/v1/experiment/e/insert", json={"events": []})
                    except httpx.TransportError as exc:
                        failures.append(exc)

            sender = threading.Thread(target=post)
            sender.start()
            assert arrived.wait(30)
            proxy.go_down()
            release.set()
            sender.join(30)
            assert not sender.is_alive()
            proxy.wait_settled()
            stats = proxy.stats()
    finally:
        release.set()
        upstream.shutdown()
        upstream.server_close()
        serving.join()
    assert len(failures) == 1, failures
    assert stats.outcomes == {"cut": 1}
    assert (stats.cut_after_commit, stats.cut_connections) == (1, 1)
    assert stats.answers_lost_after_commit == 1


# -- answers without forwarding ------------------------------------------------------------------


def test_503_and_a_429_storm_are_answered_without_forwarding(
    make_proxy: Callable[..., FaultProxy], server: EvalrowsServer, token: str
) -> None:
    proxy = make_proxy(
        rules=[
            Rule(unavailable(retry_after="2"), path=r"/insert$", first=1),
            Rule(too_many_requests(retry_after="1"), path=r"/insert$", first=3),
        ]
    )
    with client(proxy, token) as http:
        experiment_id = experiment(http)
        answers = [insert(http, experiment_id, f"r{n}") for n in range(1, 6)]
    assert [a.status_code for a in answers] == [503, 429, 429, 429, 200]
    assert [a.headers.get("Retry-After") for a in answers[:4]] == ["2", "1", "1", "1"]
    stats = proxy.stats()
    assert stats.faults == {"503": 1, "429": 3}
    assert stats.outcomes == {"answered": 3, "faulted": 4}  # project, experiment, r5
    assert stats.connections == 1  # a status answer keeps the connection
    assert (stats.row_events_forwarded, stats.row_events_committed) == (1, 1)
    assert stats.unretried == 4  # each body was different: nothing came again
    # Only the forwarded insert reached the server.
    assert stored_versions(server.db, experiment_id) == {"r5": 1}


def test_rules_fault_every_nth_matching_request_only(
    make_proxy: Callable[..., FaultProxy], server: EvalrowsServer, token: str
) -> None:
    proxy = make_proxy(rules=[Rule(Status(503), path=r"/insert$", method="POST", every=3)])
    with client(proxy, token) as http:
        experiment_id = experiment(http)
        statuses = []
        for n in range(1, 8):
            statuses.append(insert(http, experiment_id, f"r{n}").status_code)
            fetched = http.post(f"/v1/experiment/{experiment_id}/fetch", json={})
            assert fetched.status_code == 200
    assert statuses == [200, 200, 503, 200, 200, 503, 200]
    stats = proxy.stats()
    assert stats.faults == {"503": 2}
    assert stats.requests["fetch"] == 7
    assert sorted(stored_versions(server.db, experiment_id)) == ["r1", "r2", "r4", "r5", "r7"]

    # `times` bounds a rule; set_rules starts the counts again.
    proxy.set_rules([Rule(Status(503), path=r"/insert$", times=2)])
    body = {"events": [wire.row_event(make_row("r3").model_dump(mode="json"))]}
    with client(proxy, token) as http:
        path = f"/v1/experiment/{experiment_id}/insert"
        again = [http.post(path, json=body).status_code for _ in range(3)]
    assert again == [503, 503, 200]
    stats = proxy.stats()
    assert (stats.retried, stats.unretried) == (2, 2)  # r3 came again; r3 and r6 did not

    # `after` spares the first matching requests.
    proxy.set_rules([Rule(Status(503), path=r"/insert$", after=2)])
    with client(proxy, token) as http:
        statuses = [insert(http, experiment_id, f"s{n}").status_code for n in range(4)]
    assert statuses == [200, 200, 503, 503]


# -- answers lost after the write ----------------------------------------------------------------


def test_an_answer_dropped_after_commit_leaves_the_write_stored_and_the_client_a_transport_error(
    make_proxy: Callable[..., FaultProxy], server: EvalrowsServer, token: str
) -> None:
    proxy = make_proxy(rules=[Rule(DropAfterCommit(), path=r"/insert$", first=1)])
    with client(proxy, token) as http:
        experiment_id = experiment(http)
        events = {"events": [wire.row_event(make_row("r1").model_dump(mode="json"))]}
        path = f"/v1/experiment/{experiment_id}/insert"
        with pytest.raises(httpx.TransportError) as lost:
            http.post(path, json=events)
        assert isinstance(lost.value, httpx.RemoteProtocolError)
        # The write is in the server's file although the client got no answer.
        assert stored_versions(server.db, experiment_id) == {"r1": 1}
        # The same request again is answered, and the server keeps one version.
        assert http.post(path, json=events).status_code == 200
    assert stored_versions(server.db, experiment_id) == {"r1": 1}
    stats = proxy.stats()
    assert (stats.dropped_after_commit, stats.dropped_rows) == (1, 1)
    assert stats.outcomes == {"answered": 3, "dropped after commit": 1}
    assert (stats.retried, stats.unretried) == (1, 0)
    assert stats.row_events_committed == 2  # the server took r1 twice


def test_a_reset_request_is_not_forwarded(
    make_proxy: Callable[..., FaultProxy], server: EvalrowsServer, token: str
) -> None:
    proxy = make_proxy(rules=[Rule(Reset(), path=r"/insert$", first=1)])
    with client(proxy, token) as http:
        experiment_id = experiment(http)
        with pytest.raises(httpx.TransportError):
            insert(http, experiment_id, "r1")
        assert insert(http, experiment_id, "r2").status_code == 200
    assert stored_versions(server.db, experiment_id) == {"r2": 1}
    assert proxy.stats().outcomes == {"answered": 3, "reset": 1}


# -- flapping ----------------------------------------------------------------------------------


def runs_of(outcomes: list[str]) -> list[str]:
    """Consecutive equal outcomes as one."""
    return [kind for i, kind in enumerate(outcomes) if i == 0 or outcomes[i - 1] != kind]


def poll(http: httpx.Client, until: Callable[[list[str]], bool]) -> list[str]:
    """Send a request every 10 ms until ``until(runs)`` holds (at most 60 s); the runs of
    outcomes: "ok", "refused", "cut" (another transport error) or the status code."""
    outcomes: list[str] = []
    deadline = time.monotonic() + 60
    while not until(runs_of(outcomes)):
        assert time.monotonic() < deadline, runs_of(outcomes)
        try:
            answer = http.post("/v1/project", json={"name": "demo"})
            outcomes.append("ok" if answer.status_code == 200 else str(answer.status_code))
        except httpx.ConnectError:
            outcomes.append("refused")
        except httpx.TransportError:
            outcomes.append("cut")
        time.sleep(0.01)
    return runs_of(outcomes)


def test_a_flap_alternates_serving_and_refusing(
    make_proxy: Callable[..., FaultProxy], token: str
) -> None:
    proxy = make_proxy(flap=Flap(up=0.2, down=0.2))

    def steady_of(runs: list[str]) -> list[str]:
        # A request caught as the proxy went down is cut; otherwise up serves and down
        # refuses. (The flap started with the proxy: the first request may already meet a
        # down period.)
        return runs_of([kind for kind in runs if kind != "cut"])

    def three_of_each(runs: list[str]) -> bool:
        # Polled until it holds, not for a set time: on a loaded machine a request may take
        # a whole period, and a cut between two refusals joins them into one run.
        steady = steady_of(runs)
        return steady.count("refused") >= 3 and steady.count("ok") >= 3 and runs[-1] == "ok"

    with client(proxy, token) as http:
        runs = poll(http, three_of_each)
    steady = steady_of(runs)
    assert set(steady) == {"ok", "refused"}
    assert steady.count("refused") >= 3 and steady.count("ok") >= 3, steady
    stats = proxy.stats()
    states = [t.state for t in stats.transitions]
    assert states == (["down", "up"] * len(states))[: len(states)]
    assert len(states) >= 6
    assert stats.down_periods >= 3
    assert stats.cut_connections >= 1  # the kept-alive connection, every time it went down


def test_a_flap_can_answer_503_while_down_on_the_same_connection(
    make_proxy: Callable[..., FaultProxy], token: str
) -> None:
    proxy = make_proxy(flap=Flap(up=0.2, down=0.2, fault=unavailable(retry_after="0")))
    with client(proxy, token) as http:
        runs = poll(http, lambda runs: runs.count("503") >= 2 and runs[-1] == "ok")
    assert set(runs) == {"ok", "503"}
    assert runs.count("503") >= 2 and runs.count("ok") >= 2, runs
    stats = proxy.stats()
    assert stats.connections == 1 and stats.cut_connections == 0
    assert stats.faults["503"] >= 2
    assert {t.fault for t in stats.transitions} == {"503", None}


def test_go_up_stops_a_flap(make_proxy: Callable[..., FaultProxy], token: str) -> None:
    proxy = make_proxy(flap=Flap(up=0.05, down=0.05))
    proxy.wait_for_transitions(3)
    proxy.go_up()
    count = len(proxy.stats().transitions)
    with client(proxy, token) as http:
        for _ in range(20):
            assert http.post("/v1/project", json={"name": "demo"}).status_code == 200
    assert proxy.is_up
    # Whatever the time taken, a stopped flap changes nothing any more.
    assert len(proxy.stats().transitions) == count


# -- closing -----------------------------------------------------------------------------------


def test_close_stops_every_thread_and_frees_the_port(server: EvalrowsServer, token: str) -> None:
    proxy = FaultProxy(server.url, flap=Flap(up=0.05, down=0.05, start_down=True))
    proxy.wait_for_transitions(2)
    proxy.go_up()
    with client(proxy, token) as http:
        assert http.post("/v1/project", json={"name": "demo"}).status_code == 200
        assert any(t.name.startswith("fault-proxy") for t in threading.enumerate())
        proxy.close()
        proxy.close()  # twice is fine
        assert not any(t.name.startswith("fault-proxy") for t in threading.enumerate())
        with pytest.raises(httpx.ConnectError):
            http.post("/v1/project", json={"name": "demo"})
    assert refused(proxy.port)
    assert proxy.errors == []
    with pytest.raises(RuntimeError):
        proxy.go_down()


def test_rules_refuse_refuse_and_flaps_need_periods() -> None:
    with pytest.raises(ValueError, match="Reset"):
        Rule(Refuse())
    with pytest.raises(ValueError):
        Rule(Status(503), every=0)
    with pytest.raises(ValueError):
        Flap(up=0, down=1)
