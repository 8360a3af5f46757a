"""What ``evalrows serve`` accepts and answers: request bodies (checked whole, before
anything is written) and the Braintrust-shaped objects and events it returns."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from ..core.judgments import Evaluation
from ..core.models import Attempt, Experiment, RowDoc, RowVersion, SpanDoc, SpanRecord, as_doc
from ..core.timestamps import to_iso
from ..store.base import Project, StoredEvent
from . import judgments, sdk_events, wire

# Where they have always been imported from.
from .server_json import MAX_VALUES as MAX_VALUES
from .server_json import BadRequest as BadRequest
from .server_json import TooLarge as TooLarge
from .server_json import load as load
from .server_paging import ATTEMPTS as ATTEMPTS
from .server_paging import BEFORE as BEFORE
from .server_paging import INT64_MAX as _INT64_MAX
from .server_paging import decode_cursor as decode_cursor
from .server_paging import default_name as default_name
from .server_paging import encode_cursor as encode_cursor
from .server_paging import query_int as query_int
from .server_paging import unique_name as unique_name

#: Every project belongs to one local organisation.
ORG_ID = "00000000-0000-4000-8000-000000000000"
# `_xact_id`s look like Braintrust's (19 digits) and sort the same as strings and as numbers.
_XACT_BASE = 10**18
#: The most events a fetch returns in one page (the HTTP store asks for this many); a larger
#: limit gets this many and a cursor, as the contract sets no maximum.
MAX_LIMIT = 1000
# 9999-12-31T23:59:59Z: a start or an end is a Unix time a date can be made of.
_MAX_TIMESTAMP = 253402300799.0


# -- request bodies: extra fields are ignored, as Braintrust does -----------------------------

NonEmpty = Annotated[StrictStr, Field(min_length=1)]
Score = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Timestamp = Annotated[float, Field(strict=True, ge=0, le=_MAX_TIMESTAMP, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=_INT64_MAX)]
Execution = Annotated[int, Field(ge=1, le=_INT64_MAX)]


class CreateProjectBody(BaseModel):
    name: NonEmpty


class RepoInfoBody(BaseModel):
    commit: StrictStr | None = None
    branch: StrictStr | None = None


class CreateExperimentBody(BaseModel):
    project_id: StrictStr
    name: NonEmpty | None = None
    repo_info: RepoInfoBody | None = None
    ensure_new: StrictBool | None = None
    #: The experiment to compare it with (a summary's default comparison).
    base_exp_id: NonEmpty | None = None


class MetricsBody(BaseModel):
    """The metrics the store keeps fit its columns: start and end are times (so the duration,
    their difference, is finite too), token counts fit 64 bits. Others are finite numbers."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Number | None] = Field(init=False)

    start: Timestamp | None = None
    end: Timestamp | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    tokens: Count | None = None


class EvalrowsMetadataBody(BaseModel):
    """``metadata.evalrows``: the execution number goes to an INTEGER column."""

    model_config = ConfigDict(extra="allow")

    execution: Execution | None = None


class MetadataBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    evalrows: EvalrowsMetadataBody | None = None


class EventBody(BaseModel):
    """What an event must look like before it is read as a row, a span or a delete."""

    model_config = ConfigDict(extra="allow")

    id: NonEmpty
    object_delete: StrictBool = Field(default=False, alias="_object_delete")
    is_merge: StrictBool = Field(default=False, alias="_is_merge")
    merge_paths: list[list[StrictStr]] | None = Field(default=None, alias="_merge_paths")
    span_id: StrictStr | None = None
    root_span_id: StrictStr | None = None
    span_parents: list[StrictStr] | None = None
    scores: dict[str, Score | None] | None = None
    metadata: MetadataBody | None = None
    metrics: MetricsBody | None = None
    tags: list[StrictStr] | None = None
    span_attributes: dict[str, Any] | None = None
    created: StrictStr | Number | None = None


class AttemptBody(BaseModel):
    """``metadata.evalrows.attempt`` of an attempt event: what the store's attempt record
    holds (``started`` orders them)."""

    model_config = ConfigDict(extra="ignore")

    id: NonEmpty
    started: Timestamp
    ended: Timestamp | None = None
    host: StrictStr = ""
    args: list[StrictStr] = Field(default_factory=list)
    counts: dict[str, Count] = Field(default_factory=dict)
    delivered: StrictBool | None = None
    git_commit: StrictStr | None = None
    git_branch: StrictStr | None = None
    report: dict[str, Any] | None = None


class InsertBody(BaseModel):
    events: list[EventBody]


class FetchBody(BaseModel):
    #: 0 (or none) asks for the default page, as ``MAX_LIMIT``.
    limit: Annotated[int, Field(strict=True, ge=0, le=_INT64_MAX)] | None = None
    cursor: Annotated[StrictStr, Field(max_length=100)] | None = None
    #: Every version of every row (the HTTP store reads history so); without it, as
    #: Braintrust's clients expect, the latest version of each.
    evalrows_all_versions: StrictBool = False


Body = TypeVar("Body", bound=BaseModel)


class Converted(NamedTuple):
    """An insert's events as the store takes them."""

    rows: list[RowDoc]
    spans: list[SpanDoc]
    deletes: list[str]  # span ids
    attempts: list[Attempt]  # experiment_id still empty: the request's path names it
    #: Scores merged into the versions the HTTP store names (``_is_merge`` with
    #: ``metadata.evalrows.version_id``): row id -> (version id, scores).
    merges: dict[str, tuple[str | None, dict[str, Any]]]
    evaluations: list[Evaluation]  # experiment_id still empty, as the attempts'
    #: Every other merge and every comment, as sent, in order (``server_writes`` applies them).
    braintrust_merges: list[dict[str, Any]]
    #: The traces of other clients' events: their rows take their score spans' scores.
    traces: set[str]


def convert(
    body: InsertBody,
    raw_events: list[dict[str, Any]],
    experiment: str | None,
    experiment_id: str = "",
) -> Converted:
    """Rows, spans, span ids to delete and attempts; the raw events keep the values as
    sent. ``experiment`` (the name) goes on the rows' root spans, as the recorder puts it
    (None: only checking the events); ``experiment_id`` names the versions of another
    client's rows with their events (version ids are unique across experiments)."""
    rows: list[RowDoc] = []
    spans: list[SpanDoc] = []
    deletes: list[str] = []
    attempts: list[Attempt] = []
    merges: dict[str, tuple[str | None, dict[str, Any]]] = {}
    evaluations: list[Evaluation] = []
    braintrust_merges: list[dict[str, Any]] = []
    traces: set[str] = set()
    seen: dict[str, int] = {}
    for index, event in enumerate(body.events):
        if event.id in seen:
            raise BadRequest(
                f"events[{index}]: id {event.id!r} is also events[{seen[event.id]}]: "
                "send one event per id per request"
            )
        seen[event.id] = index
        raw = raw_events[index]
        foreign = sdk_events.is_foreign(raw)
        if foreign and isinstance(raw.get("root_span_id"), str) and _rolls_up(raw, event):
            traces.add(raw["root_span_id"])
        if event.is_merge and not wire.own_metadata(raw).get("version_id"):
            braintrust_merges.append(raw)
            continue
        if event.is_merge:
            merges[event.id] = _merge(index, raw, event)
            continue
        if event.object_delete:
            # Deletes go by span id; a row id or an unknown id deletes nothing (Braintrust
            # answers 200 for those too).
            deletes.append(event.id)
            continue
        if sdk_events.is_comment(raw):
            braintrust_merges.append(raw)
            continue
        kind = wire.event_kind(raw)
        try:
            if foreign and not event.span_parents:
                version_id = _version_id(experiment_id, raw)
                row = RowVersion.model_validate(sdk_events.row_doc(raw, version_id))
                rows.append(_doc(row, _ROW_AS_SENT))
                spans.append(_doc(wire.row_root_span(row, experiment), _SPAN_AS_SENT))
            elif foreign:
                span = SpanRecord.model_validate(sdk_events.span_doc(raw))
                spans.append(_doc(span, _SPAN_AS_SENT))
            elif kind == wire.ROW_KIND:
                row = wire.event_row(raw)
                # Braintrust: writing an id again is a version.
                if not wire.own_metadata(raw).get("version_id"):
                    row.version_id = uuid.uuid4().hex
                rows.append(_doc(row, _ROW_AS_SENT))
                # The store keeps the row's root span too, as the embedded store does.
                spans.append(_doc(wire.row_root_span(row, experiment), _SPAN_AS_SENT))
            elif kind == wire.SPAN_KIND:
                spans.append(_doc(wire.event_span(raw), _SPAN_AS_SENT))
            elif kind == judgments.EVALUATION_KIND:
                # A judgment of a row version's trace: kept as an evaluation, its score put
                # on the version it judged.
                try:
                    evaluations.append(judgments.event_evaluation(raw, ""))
                except ValidationError as exc:
                    where = f"events[{index}] (id {event.id!r}): metadata.evalrows.evaluation"
                    raise BadRequest(f"{where}: {describe(exc)}") from None
            elif kind == wire.ATTEMPT_KIND:
                # The HTTP store's attempt record: kept as an attempt, never a row or span.
                record = AttemptBody.model_validate(wire.own_metadata(raw).get("attempt"))
                attempts.append(Attempt(experiment_id="", **record.model_dump()))
            else:
                raise BadRequest(f"events[{index}]: unknown metadata.evalrows.kind {kind!r}")
        except ValidationError as exc:
            raise BadRequest(f"events[{index}] (id {event.id!r}): {describe(exc)}") from None
        except (AttributeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise BadRequest(f"events[{index}] (id {event.id!r}): unreadable: {exc}") from None
    return Converted(rows, spans, deletes, attempts, merges, evaluations, braintrust_merges, traces)


def _rolls_up(raw: dict[str, Any], event: EventBody) -> bool:
    """Whether the event's trace takes its score spans' scores again: when a row is written
    whole (after its score spans, maybe) or a span's scores come; not on any later merge of
    the trace, which would put them back over feedback given on the row since."""
    if not event.span_parents:
        return not event.is_merge
    return isinstance(raw.get("scores"), dict) and bool(raw["scores"])


def _version_id(experiment_id: str, raw: dict[str, Any]) -> str:
    """Another client's row event's version id: the same event sent again (a retry of a
    request whose answer was lost or was an error) is the same version, not a new one. The
    SDK stamps each event ``created`` when logged, so logging the same values again later is
    a version of its own, as Braintrust keeps it. An event without ``created`` says nothing
    that tells a retry from the same values written again after others (A, B, A): each is a
    version of its own then."""
    if not raw.get("created"):
        return uuid.uuid4().hex
    try:
        text = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError:  # beyond what json writes back (an integer's digits): a version anyway
        return uuid.uuid4().hex
    named = f"{experiment_id}\n{text}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(named).hexdigest()[:32]


# What a merge into a version the HTTP store names may change: the version's scores (every
# other merge is Braintrust's, into the latest, of any field), and `/logs3` names its object.
_MERGE_FIELDS = frozenset({"id", "_is_merge", "scores", "metadata", "experiment_id"})


def _merge(index: int, raw: dict[str, Any], event: EventBody) -> tuple[str | None, dict[str, Any]]:
    extra = sorted(set(raw) - _MERGE_FIELDS)
    metadata = raw.get("metadata") or {}
    own = metadata.get("evalrows") if isinstance(metadata, dict) else None
    if (
        extra
        or set(metadata) - {"evalrows"}
        or (own is not None and (not isinstance(own, dict) or set(own) - {"version_id"}))
    ):
        fields = ", ".join(extra) or "metadata"
        raise BadRequest(
            f"events[{index}] (id {event.id!r}): a merge into the version "
            f"metadata.evalrows.version_id names changes its scores only, not {fields}: "
            "leave version_id out to merge into the row's latest"
        )
    version_id = own.get("version_id") if own else None
    if version_id is not None and not isinstance(version_id, str):
        raise BadRequest(f"events[{index}]: metadata.evalrows.version_id: not a string")
    return version_id, dict(event.scores or {})


# The fields that hold what a test logged, as parsed from the body (JSON already, and checked):
# handed to the store as they are, where dumping the model would copy them all once more.
_ROW_AS_SENT = frozenset({"input", "output", "expected", "metadata"})
_SPAN_AS_SENT = frozenset({"attributes", "events"})


def _doc(model: BaseModel, as_sent: frozenset[str]) -> dict[str, Any]:
    doc = model.model_dump(mode="json", exclude=set(as_sent))
    doc.update((name, getattr(model, name)) for name in as_sent)
    return doc


# -- conversions ---------------------------------------------------------------------------


def project(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "org_id": ORG_ID,
        "name": project.name,
        "created": to_iso(project.created, "milliseconds"),
    }


def experiment(experiment: Experiment, project_id: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": experiment.id,
        "project_id": project_id,
        "name": experiment.name,
        "public": False,
        "created": to_iso(experiment.created, "milliseconds"),
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
    return _served(event, stored.xact, stored.created, experiment_id, project_id)


def evaluation_event(evaluation: Evaluation, experiment_id: str, project_id: str) -> dict[str, Any]:
    # One version per evaluation is served, as for attempts.
    created = evaluation.finished_at or evaluation.created_at
    served = judgments.evaluation_event(evaluation)
    return _served(served, 0, created, experiment_id, project_id)


def attempt_event(attempt: Attempt, experiment_id: str, project_id: str) -> dict[str, Any]:
    # One version per attempt is served: any place in write order will do.
    created = attempt.ended or attempt.started
    return _served(wire.attempt_event(attempt), 0, created, experiment_id, project_id)


def _served(
    event: dict[str, Any], xact: int, created: float, experiment_id: str, project_id: str
) -> dict[str, Any]:
    """An event as a fetch answers it: with its place in write order, when it was written,
    and whose it is."""
    event["_xact_id"] = str(_XACT_BASE + xact)
    # Another client's event says when it was created (as it logged it); else when written.
    event.setdefault("created", to_iso(created, "milliseconds"))
    event["experiment_id"] = experiment_id
    event["project_id"] = project_id
    return event


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
