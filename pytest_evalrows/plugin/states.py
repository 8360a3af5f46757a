"""The latest stored state of every row, read once per session: what resume and the
changed-parameters check decide from. The xdist controller reads it and hands it to its workers,
which never read the store for it themselves."""

from __future__ import annotations

from typing import Any

import pytest

from ..core.records import RowState
from ..delivery.delivery import Delivery
from ..delivery.totals import Totals
from ..errors import StoreError
from .settings import Settings


def read(
    delivery: Delivery | None, settings: Settings, totals: Totals
) -> dict[str, RowState] | None:
    """Every stored row's state, or None when the store cannot be read: said, and for a
    session that resumes a usage error (resume cannot decide without it)."""
    assert delivery is not None
    try:
        if delivery.store is None or delivery.experiment is None:
            raise StoreError(delivery.store_error or f"{delivery.store_display} is unavailable")
        return delivery.store.latest_states(delivery.experiment.id)
    except StoreError as exc:
        if settings.resume != "off":
            raise pytest.UsageError(
                f"evalrows: --eval-resume={settings.resume} needs the stored rows, and "
                f"they cannot be read: {exc}. Run without --eval-resume to run every case"
            ) from None
        totals.errors.append(str(exc))
        return None


def inherited(config: pytest.Config, delivery: Delivery | None) -> dict[str, RowState] | None:
    """An xdist worker's: what its controller read."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    stored = workerinput.get("evalrows_states")
    if stored is None:
        return None
    found = {row_id: RowState(*state) for row_id, state in stored.items()}
    if delivery is not None and delivery.store is not None and delivery.experiment is not None:
        delivery.store.remember_rows(delivery.experiment.id, found)
    return found


def for_workers(found: dict[str, RowState] | None) -> dict[str, list[Any]] | None:
    """What every xdist worker receives instead of reading the store itself."""
    if found is None:
        return None
    return {row_id: list(state) for row_id, state in found.items()}
