"""The PostgreSQL store's experiments, projects and attempts (``PostgresStore`` is the rest)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..core.records import Attempt, Experiment
from ..errors import UnknownExperimentError
from . import postgres_schema as schema
from .base import Project
from .postgres_connection import Connection
from .postgres_schema import storable

if TYPE_CHECKING:
    import psycopg


class Catalog:
    """Experiments (created once per project and name, whoever asks first), the projects
    the HTTP API names by id, and attempts."""

    _db: Connection
    display_url: str

    def get_or_create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
    ) -> Experiment:
        now = time.time()

        def create(db: psycopg.Cursor[Any]) -> Any:
            db.execute(schema.INSERT_PROJECT, (str(uuid.uuid4()), project, now))
            db.execute(
                "INSERT INTO experiments VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (str(uuid.uuid4()), project, name, now, git_commit, git_branch),
            )
            query = _EXPERIMENT + "WHERE project = %s AND name = %s"
            return db.execute(query, (project, name)).fetchone()

        return _experiment(self._db.transaction("creating the experiment", create))

    def create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
        base_experiment_id: str | None = None,
    ) -> Experiment | None:
        """``ServerBackend.create_experiment``: create-only, None when the name is taken
        (servers on one database naming new experiments at once get one each)."""
        now = time.time()

        def create(db: psycopg.Cursor[Any]) -> Any:
            db.execute(schema.INSERT_PROJECT, (str(uuid.uuid4()), project, now))
            query = (
                "INSERT INTO experiments VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING "
                "RETURNING id, project, name, created, git_commit, git_branch"
            )
            args = (str(uuid.uuid4()), project, name, now, git_commit, git_branch)
            row = db.execute(query, args).fetchone()
            if row is not None and base_experiment_id is not None:
                save = "INSERT INTO experiment_bases VALUES (%s, %s)"
                db.execute(save, (row[0], base_experiment_id))
            return row

        row = self._db.transaction("creating the experiment", create)
        return None if row is None else _experiment(row)

    def base_experiment_id(self, experiment_id: str) -> str | None:
        """``ServerBackend.base_experiment_id``."""
        query = "SELECT base_id FROM experiment_bases WHERE experiment_id = %s"
        rows = self._db.read("reading the base experiment", query, (experiment_id,))
        return str(rows[0][0]) if rows else None

    def get_experiment(self, name: str, project: str | None = None) -> Experiment:
        if project is None:
            query, args = _EXPERIMENT + "WHERE name = %s ORDER BY created", [name]
        else:
            query, args = _EXPERIMENT + "WHERE name = %s AND project = %s", [name, project]
        rows = self._db.read("reading experiments", query, args)
        if not rows:
            where = f" in project {project!r}" if project else ""
            raise UnknownExperimentError(f"no experiment {name!r}{where} in {self.display_url}")
        if len(rows) > 1:
            projects = ", ".join(repr(row[1]) for row in rows)
            raise UnknownExperimentError(
                f"experiment {name!r} exists in several projects ({projects}): name one"
            )
        return _experiment(rows[0])

    def get_experiment_by_id(self, experiment_id: str) -> Experiment:
        """The experiment with that id; raises ``UnknownExperimentError``."""
        query = _EXPERIMENT + "WHERE id = %s"
        row = self._db.read_one("reading experiments", query, (experiment_id,))
        if row is None:
            raise UnknownExperimentError(f"no experiment with id {experiment_id!r}")
        return _experiment(row)

    def list_experiments(self) -> list[Experiment]:
        query = _EXPERIMENT + "ORDER BY project, name"
        return [_experiment(row) for row in self._db.read("reading experiments", query)]

    def get_or_create_project(self, name: str) -> Project:
        query = "SELECT id, name, created FROM projects WHERE name = %s"
        row = self._db.read_one("reading projects", query, (name,))
        if row is None:

            def create(db: psycopg.Cursor[Any]) -> Any:
                db.execute(schema.INSERT_PROJECT, (str(uuid.uuid4()), name, time.time()))
                return db.execute(query, (name,)).fetchone()

            row = self._db.transaction("creating the project", create)
        return Project(*row)

    def get_project(self, project_id: str) -> Project | None:
        query = "SELECT id, name, created FROM projects WHERE id = %s"
        row = self._db.read_one("reading projects", query, (project_id,))
        return None if row is None else Project(*row)

    def list_projects(self) -> list[Project]:
        rows = self._db.read("reading projects", "SELECT id, name, created FROM projects")
        return [Project(*row) for row in rows]

    def save_attempt(self, attempt: Attempt) -> None:
        args = (
            attempt.experiment_id,
            attempt.id,
            attempt.started,
            storable(json.dumps(asdict(attempt))),
        )
        self._db.transaction(
            "recording the attempt",
            lambda db: db.execute(
                "INSERT INTO attempts VALUES (%s, %s, %s, %s::jsonb) "
                "ON CONFLICT (experiment_id, id) DO UPDATE SET body = excluded.body",
                args,
            ),
        )

    def list_attempts(self, experiment_id: str) -> list[Attempt]:
        rows = self._db.read(
            "reading attempts",
            "SELECT body::text FROM attempts WHERE experiment_id = %s ORDER BY started, id",
            (experiment_id,),
        )
        return [Attempt(**json.loads(body)) for (body,) in rows]


_EXPERIMENT = "SELECT id, project, name, created, git_commit, git_branch FROM experiments "


def _experiment(row: Any) -> Experiment:
    id_, project, name, created, git_commit, git_branch = row
    return Experiment(
        id=id_,
        project=project,
        name=name,
        created=created,
        git_commit=git_commit,
        git_branch=git_branch,
    )
