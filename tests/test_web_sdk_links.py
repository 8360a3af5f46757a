"""The links the Braintrust SDK prints for an experiment ("See results at ...") open its page
in ``evalrows serve``'s web view: the SDK builds them itself, from the app URL, as Braintrust's
app names an experiment (``/app/<org>/p/<project>/experiments/<name>``)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from support.servers import EvalrowsServer

from pytest_evalrows.store.sqlite import SQLiteStore

TOKEN = "sdk-links-token-0c7d"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EvalrowsServer, dict[tuple[str, str], str]]]:
    directory = tmp_path_factory.mktemp("sdk-links")
    db = directory / "served.db"
    with SQLiteStore(db) as store:
        ids = {
            (project, name): store.get_or_create_experiment(project, name).id
            for project, name in [
                ("capitals", "sdk-nightly"),
                ("capitals", "a/b c"),
                ("other", "sdk-nightly"),
            ]
        }
    server = EvalrowsServer(db, TOKEN, directory / "server.log")
    server.start()
    try:
        yield server, ids
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()


def sdk_link(project: str, name: str) -> str:
    """The path of the link, built as the SDK's ``Experiment.summarize`` builds it."""
    from braintrust.util import encode_uri_component

    return f"/app/evalrows/p/{encode_uri_component(project)}/experiments/" + encode_uri_component(
        name
    )


def client(server: EvalrowsServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )


@pytest.mark.parametrize(
    ("project", "name"),
    [("capitals", "sdk-nightly"), ("capitals", "a/b c"), ("other", "sdk-nightly")],
)
def test_an_sdk_experiment_link_goes_to_that_experiments_page(
    served: tuple[EvalrowsServer, dict[tuple[str, str], str]], project: str, name: str
) -> None:
    server, ids = served
    with client(server) as http:
        response = http.get(sdk_link(project, name))
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/experiments/{ids[project, name]}"
        page = http.get(response.headers["location"])
    assert page.status_code == 200
    assert name in page.text


def test_an_sdk_link_to_an_unknown_experiment_is_the_404_page(
    served: tuple[EvalrowsServer, dict[tuple[str, str], str]],
) -> None:
    server, _ = served
    with client(server) as http:
        response = http.get(sdk_link("capitals", "never-ran"))
    assert response.status_code == 404
    assert "There is no such experiment in this store." in response.text


def test_an_sdk_project_link_goes_to_the_experiments(
    served: tuple[EvalrowsServer, dict[tuple[str, str], str]],
) -> None:
    server, _ = served
    with client(server) as http:
        response = http.get("/app/evalrows/p/capitals")
    assert (response.status_code, response.headers["location"]) == (303, "/")


def test_an_sdk_link_without_the_token_logs_in_and_comes_back(
    served: tuple[EvalrowsServer, dict[tuple[str, str], str]],
) -> None:
    server, _ = served
    link = sdk_link("capitals", "a/b c")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.get(link)
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [link]
