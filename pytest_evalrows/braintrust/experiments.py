"""The HTTP store's experiments and projects: Braintrust names an experiment's project by id,
the store by name. Ids and names are remembered once seen."""

from __future__ import annotations

import time
from typing import Any

from ..core.models import Experiment
from ..core.timestamps import to_epoch
from ..errors import StoreError, UnknownExperimentError
from .api import APIClient


class Experiments:
    """Experiments through ``/v1/project`` and ``/v1/experiment``."""

    def __init__(self, api: APIClient) -> None:
        self._api = api
        self._projects: dict[str, str] = {}  # project name -> id
        self._names: dict[str, str] = {}  # experiment id -> name

    def get_or_create(
        self, project: str, name: str, git_commit: str | None, git_branch: str | None
    ) -> Experiment:
        body: dict[str, Any] = {"project_id": self._project_id(project), "name": name}
        repo = {"commit": git_commit, "branch": git_branch}
        if any(repo.values()):
            body["repo_info"] = {key: value for key, value in repo.items() if value}
        answer = self._api.call("POST", "/v1/experiment", body=body)
        return self._seen(answer, project)

    def get(self, name: str, project: str | None) -> Experiment:
        params = {"experiment_name": name}
        if project is not None:
            params["project_name"] = project
        found = self._api.call("GET", "/v1/experiment", params=params).get("objects") or []
        found = [e for e in found if e.get("name") == name]
        store = self._api.display_url
        if not found:
            where = f" in project {project!r}" if project else ""
            raise UnknownExperimentError(f"no experiment {name!r}{where} in {store}")
        if len(found) > 1:
            raise UnknownExperimentError(
                f"experiment {name!r} exists in several projects of {store}: name one"
            )
        return self._seen(found[0], project or self._project_name(found[0]["project_id"]))

    def list_all(self) -> list[Experiment]:
        found = self._api.call("GET", "/v1/experiment").get("objects") or []
        experiments = [self._seen(e, self._project_name(e["project_id"])) for e in found]
        return sorted(experiments, key=lambda e: (e.project, e.name))

    def name_of(self, experiment_id: str) -> str | None:
        """The name of the experiment with that id (listing them once if it is not known)."""
        if experiment_id not in self._names:
            self.list_all()
        return self._names.get(experiment_id)

    def _seen(self, answer: dict[str, Any], project: str) -> Experiment:
        experiment = _experiment(answer, project)
        self._names[experiment.id] = experiment.name
        return experiment

    def _project_id(self, project: str) -> str:
        if project not in self._projects:
            answer = self._api.call("POST", "/v1/project", body={"name": project})
            self._projects[project] = _field(answer, "id", self._api.display_url)
        return self._projects[project]

    def _project_name(self, project_id: str) -> str:
        for name, known in self._projects.items():
            if known == project_id:
                return name
        answer = self._api.call("GET", "/v1/project")
        for project in answer.get("objects") or []:
            self._projects[project["name"]] = project["id"]
        return next((n for n, i in self._projects.items() if i == project_id), project_id)


def _field(answer: dict[str, Any], name: str, store: str) -> str:
    value = answer.get(name)
    if not isinstance(value, str) or not value:
        raise StoreError(f"{store} answered without a {name!r}: {str(answer)[:200]}")
    return value


def _experiment(answer: dict[str, Any], project: str) -> Experiment:
    repo = answer.get("repo_info") or {}
    if not isinstance(answer.get("id"), str) or not isinstance(answer.get("name"), str):
        raise StoreError(f"the store answered an experiment without id or name: {answer!r}")
    return Experiment(
        id=answer["id"],
        project=project,
        name=answer["name"],
        created=_timestamp(answer.get("created")),
        git_commit=repo.get("commit"),
        git_branch=repo.get("branch"),
    )


def _timestamp(value: Any) -> float:
    # An experiment whose creation time is missing or unreadable was, for us, created now.
    epoch = to_epoch(value)
    return time.time() if epoch is None else epoch
