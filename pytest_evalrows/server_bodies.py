"""What ``evalrows serve`` accepts and answers: request bodies (checked whole, before
anything is written) and the Braintrust-shaped objects and events it returns."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from . import wire
from .errors import EvalrowsError
from .models import Experiment, RowVersion, SpanRecord, as_doc
from .store.sqlite import Project, StoredEvent

#: Every project belongs to one local organisation.
ORG_ID = "00000000-0000-4000-8000-000000000000"
# `_xact_id`s look like Braintrust's (19 digits) and sort the same as strings and as numbers.
_XACT_BASE = 10**18


# -- request bodies: extra fields are ignored, as Braintrust does -----------------------------

NonEmpty = Annotated[StrictStr, Field(min_length=1)]
Score = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class CreateProjectBody(BaseModel):
    name: NonEmpty


class RepoInfoBody(BaseModel):
    commit: StrictStr | None = None
    branch: StrictStr | None = None


class CreateExperimentBody(BaseModel):
    project_id: StrictStr
    name: NonEmpty
    repo_info: RepoInfoBody | None = None
    ensure_new: StrictBool | None = None


class EventBody(BaseModel):
    """What an event must look like before it is read as a row, a span or a delete."""

    model_config = ConfigDict(extra="allow")

    id: NonEmpty
    object_delete: StrictBool = Field(default=False, alias="_object_delete")
    is_merge: StrictBool = Field(default=False, alias="_is_merge")
    span_id: StrictStr | None = None
    root_span_id: StrictStr | None = None
    span_parents: list[StrictStr] | None = None
    scores: dict[str, Score | None] | None = None
    metadata: dict[str, Any] | None = None
    metrics: dict[str, Number | None] | None = None
    tags: list[StrictStr] | None = None
    span_attributes: dict[str, Any] | None = None


class InsertBody(BaseModel):
    events: list[EventBody]


class FetchBody(BaseModel):
    limit: Annotated[int, Field(strict=True, ge=1)] | None = None
    cursor: StrictStr | None = None


Body = TypeVar("Body", bound=BaseModel)


class BadRequest(EvalrowsError):
    """A request the server refuses with a 400 and the message."""


def convert(
    body: InsertBody, raw_events: list[dict[str, Any]]
) -> tuple[list[RowVersion], list[SpanRecord], list[str]]:
    """Rows, spans and span ids to delete; the raw events keep the values as sent."""
    rows: list[RowVersion] = []
    spans: list[SpanRecord] = []
    deletes: list[str] = []
    seen: dict[str, int] = {}
    for index, event in enumerate(body.events):
        if event.id in seen:
            raise BadRequest(
                f"events[{index}]: id {event.id!r} is also events[{seen[event.id]}]: "
                "send one event per id per request"
            )
        seen[event.id] = index
        if event.is_merge:
            raise BadRequest(f"events[{index}]: _is_merge is not supported: send whole rows")
        if event.object_delete:
            # Deletes go by span id; a row id or an unknown id deletes nothing (Braintrust
            # answers 200 for those too).
            deletes.append(event.id)
            continue
        raw = raw_events[index]
        kind = wire.event_kind(raw)
        try:
            if kind == wire.ROW_KIND or (kind is None and not event.span_parents):
                row = wire.event_row(raw)
                own = (raw.get("metadata") or {}).get("evalrows") or {}
                if not own.get("version_id"):  # Braintrust: writing an id again is a version
                    row.version_id = uuid.uuid4().hex
                rows.append(row)
                # The store keeps the row's root span too, as the embedded store does.
                spans.append(wire.row_root_span(row))
            elif kind == wire.SPAN_KIND or kind is None:
                spans.append(wire.event_span(raw))
            else:
                raise BadRequest(f"events[{index}]: unknown metadata.evalrows.kind {kind!r}")
        except ValidationError as exc:
            raise BadRequest(f"events[{index}] (id {event.id!r}): {describe(exc)}") from None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"events[{index}] (id {event.id!r}): unreadable: {exc}") from None
    return rows, spans, deletes


# -- conversions ---------------------------------------------------------------------------


def project(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "org_id": ORG_ID,
        "name": project.name,
        "created": iso(project.created),
    }


def experiment(experiment: Experiment, project_id: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": experiment.id,
        "project_id": project_id,
        "name": experiment.name,
        "public": False,
        "created": iso(experiment.created),
    }
    repo = {"commit": experiment.git_commit, "branch": experiment.git_branch}
    repo = {key: value for key, value in repo.items() if value is not None}
    if repo:
        result["repo_info"] = repo
    if experiment.git_commit is not None:
        result["commit"] = experiment.git_commit
    return result


def event(stored: StoredEvent, experiment_id: str, project_id: str) -> dict[str, Any]:
    if stored.row is not None:
        event = wire.row_event(as_doc(stored.row))
    else:
        assert stored.span is not None
        event = wire.span_event(as_doc(stored.span))
    event["_xact_id"] = str(_XACT_BASE + stored.xact)
    event["created"] = iso(stored.created)
    event["experiment_id"] = experiment_id
    event["project_id"] = project_id
    return event


def iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_cursor(xact: int) -> str:
    return base64.urlsafe_b64encode(f"before:{xact}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "before":
            return int(value)
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise BadRequest("cursor: not a cursor this server gave out")


# -- requests and responses ----------------------------------------------------------------


def parse(model: type[Body], raw: Any) -> Body:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        where = where.lstrip(".") or "body"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
