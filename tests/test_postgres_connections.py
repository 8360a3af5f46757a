"""The PostgreSQL store's URLs (how one is shown, which are refused) and its one-line errors
when it cannot start: an unreachable server, a missing database, no driver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psycopg
import psycopg.sql
import pytest
from support.postgres import count, database_url, with_password
from support.servers import closed_port
from support.store import make_row

from pytest_evalrows.errors import StoreError
from pytest_evalrows.store.postgres import PostgresStore
from pytest_evalrows.store.postgres_connection import MISSING_DRIVER
from pytest_evalrows.store.urls import VALID_FORMS, parse_store_url

# -- URLs and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://evalrows:s3cret@127.0.0.1:5432/evals?sslmode=require",
            "postgresql://evalrows@127.0.0.1:5432/evals",
        ),
        ("postgres://evalrows:s3cret@db.example/evals", "postgresql://evalrows@db.example/evals"),
        ("postgresql://db.example", "postgresql://db.example"),
        ("postgresql:///evals?host=/run/postgresql", "postgresql:///evals?host=/run/postgresql"),
        ("postgresql://u:s3cret@[::1]:5433/evals", "postgresql://u@[::1]:5433/evals"),
        (
            "postgresql://h1:5432,h2:5433/evals?user=bob&password=s3cret",
            "postgresql://h1:5432,h2:5433/evals?user=bob",
        ),
        # What names the database or its schema stays: two schemas are two stores.
        (
            "postgresql://u:s3cret@db/evals?options=-csearch_path%3Dteam_a&sslmode=require",
            "postgresql://u@db/evals?options=-csearch_path%3Dteam_a",
        ),
        ("postgresql:///?service=prod&password=s3cret", "postgresql:///?service=prod"),
        ("postgresql://db/evals?hostaddr=10.0.0.7", "postgresql://db/evals?hostaddr=10.0.0.7"),
        ("postgresql:///evals", "postgresql:///evals"),  # the host from PGHOST
    ],
)
def test_a_postgresql_url_is_shown_without_its_password(
    url: str, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    parsed = parse_store_url(url, Path("/nowhere"))
    assert (parsed.scheme, parsed.path, parsed.text) == ("postgresql", None, url)
    assert parsed.display() == shown
    assert "s3cret" not in repr(parsed)


NOR_ENV = " (nor a service, and PGHOST, PGDATABASE and PGSERVICE are unset)"


def test_a_url_that_leaves_the_server_to_libpqs_environment_is_taken(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = urlsplit(postgres_url)
    monkeypatch.setenv("PGHOST", server.hostname or "")
    monkeypatch.setenv("PGPORT", str(server.port))
    monkeypatch.setenv("PGUSER", server.username or "postgres")
    monkeypatch.setenv("PGDATABASE", server.path[1:])
    with PostgresStore("postgresql://") as store:
        # Named by what the environment chose: another PGDATABASE is another store (the
        # spool tells stores apart by this name).
        assert store.display_url == "postgresql://?" + urlencode(
            {
                "host": server.hostname,
                "port": server.port,
                "dbname": server.path[1:],
                "user": server.username or "postgres",
            },
            safe="/",
        )
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("r")], [])
    with PostgresStore(postgres_url) as same:
        assert [row.row_id for row in same.latest_rows(experiment)] == ["r"]
    for name in ("PGHOST", "PGDATABASE"):
        monkeypatch.delenv(name)
    assert parse_store_url("postgresql:///?service=prod", Path("/nowhere")).scheme == "postgresql"


def test_two_schemas_of_one_database_are_two_stores(postgres_url: str) -> None:
    in_schema = {}
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for schema in ("team_a", "team_b"):
            admin.execute(
                psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema))
            )
            in_schema[schema] = f"{postgres_url}?options=-csearch_path%3D{schema}"
    with PostgresStore(in_schema["team_a"]) as a, PostgresStore(in_schema["team_b"]) as b:
        assert a.display_url != b.display_url
        experiment = a.get_or_create_experiment("p", "e").id
        a.write(experiment, [make_row("r")], [])
        assert b.list_experiments() == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://", f"'postgresql://' names neither a host nor a database{NOR_ENV}"),
        ("postgres://u:s3cret@", f"'postgres://***@' names neither a host nor a database{NOR_ENV}"),
        ("postgresql://db:99999/evals", "'postgresql://db:99999/evals' has a bad port '99999'"),
        ("postgresql://db:port/evals", "'postgresql://db:port/evals' has a bad port 'port'"),
    ],
)
def test_a_bad_postgresql_url_is_one_line_naming_the_valid_forms(
    url: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError) as raised:
        parse_store_url(url, Path("/nowhere"))
    assert str(raised.value) == f"{why}; use {VALID_FORMS}"
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in VALID_FORMS


def test_the_store_takes_only_a_postgresql_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^sqlite:///\S+ is not a postgresql:// URL$"):
        PostgresStore(f"sqlite:///{tmp_path / 'rows.db'}")
    with pytest.raises(ValueError, match=r"names neither a host nor a database"):
        PostgresStore("postgres://")


def test_an_unreachable_server_is_one_line_naming_the_store_without_its_password() -> None:
    port = closed_port()
    with pytest.raises(StoreError) as raised:
        PostgresStore(f"postgresql://evalrows:s3cret@127.0.0.1:{port}/evals")
    assert str(raised.value) == (
        f"cannot reach postgresql://evalrows@127.0.0.1:{port}/evals: connection refused"
    )


def test_a_missing_database_is_one_line_naming_it(postgres_server: str) -> None:
    url = with_password(database_url(postgres_server, "evalrows_not_here"), "s3cret")
    shown = parse_store_url(url, Path("/nowhere")).display()
    with pytest.raises(StoreError) as raised:
        PostgresStore(url)
    assert str(raised.value) == (
        f'cannot reach {shown}: database "evalrows_not_here" does not exist'
    )
    assert "s3cret" not in shown


def test_a_parameter_libpq_does_not_know_is_one_line_without_the_password() -> None:
    with pytest.raises(StoreError) as raised:
        PostgresStore("postgresql://evalrows:s3cret@127.0.0.1:5432/evals?colour=blue")
    assert str(raised.value) == (
        "postgresql://evalrows@127.0.0.1:5432/evals is not a valid PostgreSQL URL: "
        'invalid URI query parameter: "colour"'
    )


def test_create_false_refuses_a_database_without_the_store(postgres_url: str) -> None:
    shown = parse_store_url(postgres_url, Path("/nowhere")).display()
    with pytest.raises(StoreError) as raised:
        PostgresStore(postgres_url, create=False)
    assert str(raised.value) == f"no evalrows store in {shown}"
    assert count(postgres_url, "SELECT to_regclass('evalrows_migrations')") is None


def test_psycopg_is_imported_only_when_a_postgresql_store_is_opened() -> None:
    probe = """
import sys
from pathlib import Path
from pytest_evalrows.store.urls import parse_store_url
import pytest_evalrows.stores, pytest_evalrows.store.postgres, pytest_evalrows.cli
parse_store_url("postgresql://evalrows:s3cret@127.0.0.1:1/evals", Path.cwd())
print(sorted(name for name in ("psycopg", "psycopg_pool") if name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_without_psycopg_the_store_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError) as raised:
        PostgresStore("postgresql://evalrows@127.0.0.1:5432/evals")
    assert str(raised.value) == MISSING_DRIVER
    assert MISSING_DRIVER == (
        "a postgresql:// store needs psycopg: pip install 'pytest-evalrows[postgres]'"
    )
