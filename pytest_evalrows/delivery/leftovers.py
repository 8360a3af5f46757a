"""What other sessions left in the spool: counting it, and delivering it to the store.

A spool file no live session holds (its session died, or could not reach the store) is
read, written to the store in chunks, and acknowledged chunk by chunk; a file whose every
entry the store has is removed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..core.records import Attempt, RowDoc, WriteResult
from ..errors import StoreError
from ..store.base import Store
from .spool import (
    Spool,
    SpooledBatch,
    acks_line,
    lock_file,
    open_existing,
    read_spool,
    spooled_text,
    unreadable_note,
)


@dataclass
class Pending:
    """What the spool still holds for one store."""

    rows: int = 0
    row_ids: set[tuple[str, str, str]] = field(default_factory=set)  # (project, experiment, row)
    cleanups: int = 0  # rows whose stale-span clean-up is still to be done
    problems: list[str] = field(default_factory=list)


def pending_in(directory: Path, store: str, *, own: Spool | None = None) -> Pending:
    """Count what the spool holds for ``store``: in ``own`` (this process's file, read only
    when it holds anything undelivered) and in every file no live session holds."""
    pending = Pending()
    if not directory.is_dir():
        return pending
    # This process's own file is read back only when it holds anything undelivered.
    for entry in own.pending() if own is not None else ():
        _count_pending(pending, entry, store)
    for path, file in _dead_files(directory, skip=own.path if own is not None else None):
        with file:  # a live session's file is not listed: its own session counts it
            entries, unreadable = read_spool(path)
        if unreadable:
            pending.problems.append(unreadable_note(path, unreadable))
        for entry in entries:
            _count_pending(pending, entry, store)
    return pending


@dataclass
class Delivered:
    """What delivering left-over spool files did."""

    written: WriteResult = field(default_factory=WriteResult)
    # What rows of ``current_attempt`` (an xdist worker's spool file) did.
    own_written: WriteResult = field(default_factory=WriteResult)
    rows: set[tuple[str, str, str]] = field(default_factory=set)  # (project, experiment, row)
    files: int = 0
    errors: list[str] = field(default_factory=list)
    other_stores: set[str] = field(default_factory=set)  # entries left for other stores
    cleaned: int = 0  # stale spans removed by spooled clean-ups
    evaluations: int = 0  # judges' evaluations of earlier sessions saved
    # Those of ``current_attempt`` (an xdist worker's spool file): this session's own.
    own_evaluations: int = 0
    problems: list[str] = field(default_factory=list)  # unreadable lines, said once


def _count_pending(pending: Pending, entry: SpooledBatch, store: str) -> None:
    if entry.store == spooled_text(store):
        pending.rows += len(entry.rows)
        pending.row_ids.update(
            (entry.project, entry.experiment, row["row_id"]) for row in entry.rows
        )
        pending.cleanups += len(entry.cleanup or ())


def deliver_leftovers(
    directory: Path,
    store: Store,
    *,
    skip: Path | None = None,
    on_rows: Callable[[list[RowDoc]], None] | None = None,
    current_attempt: str | None = None,
) -> Delivered:
    """Deliver what earlier sessions left in ``directory`` for this ``store``, then the
    stale-span clean-ups they could not finish.

    Files that a live session holds are skipped, as is ``skip`` (this process's own file).
    Delivery is idempotent: a row version the store already has is not written twice, and
    rows of attempts other than ``current_attempt`` are written as late versions (a newer
    stored execution stays the latest). ``on_rows`` sees every delivered batch of rows.
    """
    done = Delivered()
    if not directory.is_dir():
        return done
    experiments: dict[tuple[str, str], str] = {}

    def experiment_id(entry: SpooledBatch) -> str:
        key = (entry.project, entry.experiment)
        if key not in experiments:
            experiments[key] = store.get_or_create_experiment(*key).id
        return experiments[key]

    for path, file in _dead_files(directory, skip=skip):
        with file:
            entries, unreadable = read_spool(path)
            if unreadable:
                done.problems.append(unreadable_note(path, unreadable))
            name = spooled_text(store.display_url)
            mine = [entry for entry in entries if entry.store == name]
            done.other_stores.update(e.store for e in entries if e.store != name)
            if not _ends_with_newline(path):
                file.write(b"\n")  # a torn last line (a kill mid-write): acks go after it
            acked: set[int] = set()
            try:
                data = [e for e in mine if e.cleanup is None and e.evaluations is None]
                for chunk in chunks(data):
                    experiment = experiment_id(chunk[0])
                    rows = [row for entry in chunk for row in entry.rows]
                    spans = [span for entry in chunk for span in entry.spans]
                    late = any(row.get("attempt_id") != current_attempt for row in rows)
                    result = store.write(experiment, rows, spans, late=late)
                    if late:
                        done.written += result
                    else:
                        done.own_written += result
                    for entry in chunk:
                        if entry.attempt is not None:
                            record = {**entry.attempt, "experiment_id": experiment}
                            store.save_attempt(Attempt(**record))
                    _ack(file, chunk, acked)
                    done.rows.update(
                        (chunk[0].project, chunk[0].experiment, row["row_id"]) for row in rows
                    )
                    if on_rows is not None:
                        on_rows(rows)
                for entry in mine:
                    if entry.cleanup is not None:
                        removed = store.delete_stale_spans(experiment_id(entry), entry.cleanup)
                        done.cleaned += len(removed)
                        _ack(file, [entry], acked)
                # After the rows: a judgment's score goes onto its stored row version.
                own = current_attempt is not None and path.name.startswith(f"{current_attempt}-")
                for entry in mine:
                    if entry.evaluations is not None:
                        saved = _save_evaluations(
                            store, experiment_id(entry), entry.evaluations, done
                        )
                        if own:
                            done.own_evaluations += saved
                        else:
                            done.evaluations += saved
                        _ack(file, [entry], acked)
            except StoreError as exc:
                done.errors.append(str(exc))
                return done
            done.files += 1
            # An unreadable line is said once (in ``problems``) and goes with its file.
            if len(mine) == len(entries):
                with suppress(OSError):
                    path.unlink()
    return done


def _save_evaluations(
    store: Store, experiment_id: str, evaluations: list[dict[str, Any]], done: Delivered
) -> int:
    """Save spooled evaluations, and say how many; ones the store can never take are said,
    not kept forever."""
    if not store.evaluations:
        done.problems.append(
            f"{len(evaluations)} spooled judgments not saved: {store.display_url} keeps no "
            "evaluations"
        )
        return 0
    from ..core.judgments import Evaluation  # pydantic: only when there are some

    try:
        models = [
            Evaluation.model_validate({**each, "experiment_id": experiment_id})
            for each in evaluations
        ]
    except ValueError as exc:
        done.problems.append(f"{len(evaluations)} spooled judgments cannot be read: {exc}")
        return 0
    store.save_evaluations(experiment_id, models)
    return len(models)


def _dead_files(directory: Path, *, skip: Path | None) -> Iterator[tuple[Path, IO[bytes]]]:
    """The spool files in ``directory`` that no live session holds (but ``skip``), each open
    for appending acks and locked; the caller closes it."""
    for path in sorted(directory.glob("*.jsonl")):
        if path == skip:
            continue
        file = open_existing(path)
        if file is None:
            continue
        if not lock_file(file, blocking=False):
            file.close()  # a live session's file
            continue
        yield path, file


def _ack(file: IO[bytes], entries: list[SpooledBatch], acked: set[int]) -> None:
    file.write(acks_line([entry.seq for entry in entries]))
    file.flush()
    acked.update(entry.seq for entry in entries)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() == 0:
            return True
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def chunks(entries: list[SpooledBatch], size: int = 500) -> Iterator[list[SpooledBatch]]:
    """Consecutive entries for one experiment, at most ``size`` at a time."""
    chunk: list[SpooledBatch] = []
    for entry in entries:
        if chunk and (
            len(chunk) >= size
            or (entry.project, entry.experiment) != (chunk[0].project, chunk[0].experiment)
        ):
            yield chunk
            chunk = []
        chunk.append(entry)
    if chunk:
        yield chunk
