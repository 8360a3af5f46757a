"""The embedded store's create-only experiment (``ServerBackend.create_experiment``): the
server's ``ensure_new`` takes a name only if no one has it, which a create-or-get cannot say."""

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
    ) -> Experiment | None:
        now = time.time()
        with self._db.errors("creating the experiment"), self._db.transaction() as db:
            db.execute(schema.INSERT_PROJECT, (str(uuid.uuid4()), project, now))
            args = (str(uuid.uuid4()), project, name, now, git_commit, git_branch)
            row = db.execute(_CREATE, args).fetchone()
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
