"""The terminal summary of a recording session. Every number in it is counted, not guessed."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recorder import Recorder


def write_summary(recorder: Recorder, terminalreporter: Any) -> None:
    totals = recorder.totals
    delivery = recorder.delivery
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", "evalrows")
    store = delivery.store_display if delivery is not None else recorder.settings.store.display()
    write(
        f"experiment {recorder.experiment_name!r} (project {recorder.settings.project!r}) "
        f"in {store}"
    )
    written = totals.written
    count = written.new_rows + written.updated_rows
    if recorder.rows_written_in_store is not None:
        count = recorder.rows_written_in_store
        detail = "new or updated unknown: a worker crashed; counted in the store"
    elif written.certain:
        detail = f"{written.new_rows} new, {written.updated_rows} updated"
    else:
        detail = "new or updated unknown: the store could not be read first"
    write(f"attempt {recorder.attempt_id}: {count} rows written ({detail})")
    if totals.own_leftovers:
        write(
            f"of which {totals.own_leftovers} rows its workers had not delivered were delivered "
            "from their spool files"
        )
    if recorder.crashed_workers:
        write(f"{recorder.crashed_workers} worker(s) crashed; their rows were recovered")
    if totals.resumed:
        mode = recorder.settings.resume
        took = f" (decided in {recorder.resume_seconds:.2f} s)" if recorder.resume_seconds else ""
        write(f"resumed: {totals.resumed} cases whose row already {mode} were not run again{took}")
    if totals.leftover_rows:
        write(f"delivered {totals.leftover_rows} rows an earlier session left in the spool")
    if written.superseded_rows:
        write(
            f"{written.superseded_rows} delivered versions were older than the stored latest "
            "one: kept in history, not the latest"
        )
    if recorder.stale_spans_removed is not None:
        write(
            f"stale spans removed: {recorder.stale_spans_removed} "
            f"(in {recorder.cleanup_seconds:.2f} s)"
        )
    elif recorder.settings.keep_stale_spans:
        write("stale spans kept (--eval-keep-stale-spans)")
    # This process's requests, and its xdist workers'.
    requests = Counter(totals.requests)
    requests.update(getattr(delivery.store, "requests", None) or {} if delivery else {})
    if requests:
        counts = ", ".join(f"{name} {count}" for name, count in sorted(requests.items()))
        write(f"requests to the store: {counts}")
    if totals.scores:
        means = ", ".join(
            f"{name} {total / count:.3f}" for name, (total, count) in sorted(totals.scores.items())
        )
        write(f"mean scores: {means}")
    if delivery is not None and delivery.store_error:
        write(f"store unavailable: {delivery.store_error}", red=True)
    for error in dict.fromkeys(totals.errors):
        write(f"error: {error}", red=True)
    spool = delivery.spool_dir if delivery is not None else "the spool"
    if totals.undelivered_rows:
        write(
            f"{totals.undelivered_rows} rows not delivered: kept in {spool}; the next "
            "recording session delivers them, or run `evalrows flush`",
            red=True,
        )
    if totals.cleanup_pending:
        write(
            f"stale spans left under {totals.cleanup_pending} rows: their clean-up is kept in "
            f"{spool}; the next recording session or `evalrows flush` finishes it, or run "
            f"`evalrows gc {recorder.experiment_name}`",
            red=True,
        )
    if totals.lost_rows:
        write(
            f"{len(totals.lost_rows)} rows could be neither stored nor kept in the spool:",
            red=True,
        )
        for row_id, why in totals.lost_rows:
            write(f"  row {row_id!r} {why}", red=True)
