"""The embedded store's create-only experiment (``ServerBackend.create_experiment``): the
server's ``ensure_new`` takes a name only if no one has it, which a create-or-get cannot say;
and the experiment it is to be compared with (``base_experiment_id``)."""

from __future__ import annotations

import time
import uuid

from ..core.records import Experiment
from . import sqlite_schema as schema
from .sqlite_connection import Connection

_CREATE = """
INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
RETURNING id, project, name, created, git_commit, git_branch
"""
_SAVE_BASE = "INSERT INTO experiment_bases VALUES (?, ?)"


class CreatesExperiments:
    """``ServerBackend.create_experiment`` of the embedded store."""

    _db: Connection

    def create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
        base_experiment_id: str | None = None,
    ) -> Experiment | None:
        now = time.time()
        with self._db.errors("creating the experiment"), self._db.transaction() as db:
            db.execute(schema.INSERT_PROJECT, (str(uuid.uuid4()), project, now))
            args = (str(uuid.uuid4()), project, name, now, git_commit, git_branch)
            row = db.execute(_CREATE, args).fetchone()
            if row is not None and base_experiment_id is not None:
                db.execute(_SAVE_BASE, (row[0], base_experiment_id))
        if row is None:
            return None
        id_, project, name, created, git_commit, git_branch = row
        return Experiment(
            id=id_,
            project=project,
            name=name,
            created=created,
            git_commit=git_commit,
            git_branch=git_branch,
        )

    def base_experiment_id(self, experiment_id: str) -> str | None:
        query = "SELECT base_id FROM experiment_bases WHERE experiment_id = ?"
        row = self._db.read_one("reading the base experiment", query, (experiment_id,))
        return None if row is None else str(row[0])
