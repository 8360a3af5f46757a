"""The one time helper: every caller's format, and one answer for bad input."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from pytest_evalrows.core.timestamps import to_epoch, to_iso

MOMENT = 1_700_000_000.123456  # 2023-11-14T22:13:20.123456Z


def test_iso_has_each_callers_precision_and_a_z() -> None:
    assert to_iso(MOMENT, "seconds") == "2023-11-14T22:13:20Z"  # the CLI
    assert to_iso(MOMENT, "milliseconds") == "2023-11-14T22:13:20.123Z"  # the server
    assert to_iso(MOMENT, "microseconds") == "2023-11-14T22:13:20.123456Z"
    assert to_iso(0, "seconds") == "1970-01-01T00:00:00Z"
    assert to_iso(None, "seconds") is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e20])
def test_iso_refuses_a_number_that_is_no_time(bad: float) -> None:
    with pytest.raises(ValueError, match=r"^not a representable time"):
        to_iso(bad, "seconds")


@pytest.mark.parametrize(
    "value",
    [
        "2023-11-14T22:13:20.123456Z",
        "2023-11-14T22:13:20.123456z",
        "2023-11-14T22:13:20.123456+00:00",
        "2023-11-14T23:13:20.123456+01:00",
        " 2023-11-14T22:13:20.123456Z ",
        "2023-11-14T22:13:20.123456",  # naive: UTC, not this machine's zone
        datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=timezone.utc),
        datetime(2023, 11, 14, 17, 13, 20, 123456, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2023, 11, 14, 22, 13, 20, 123456),
        MOMENT,
    ],
)
def test_epoch_reads_every_form_of_one_moment(value: object) -> None:
    epoch = to_epoch(value)
    assert epoch == pytest.approx(MOMENT, abs=1e-6)


def test_epoch_reads_numbers_as_seconds() -> None:
    assert to_epoch(0) == 0.0
    assert to_epoch(17) == 17.0
    assert isinstance(to_epoch(17), float)
    assert to_epoch(-1.5) == -1.5


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "   ",
        "Z",
        "yesterday",
        "2023-13-45T99:99:99Z",
        "1700000000",  # a number in text is not ISO text
        True,
        False,
        math.nan,
        math.inf,
        10**400,
        b"2023-11-14T22:13:20Z",
        [MOMENT],
        {"created": MOMENT},
    ],
)
def test_epoch_of_anything_else_is_none(bad: object) -> None:
    assert to_epoch(bad) is None


def test_iso_and_epoch_round_trip() -> None:
    text = to_iso(MOMENT, "microseconds")
    assert to_epoch(text) == pytest.approx(MOMENT, abs=1e-6)
    assert to_iso(to_epoch("2023-11-14T22:13:20Z"), "seconds") == "2023-11-14T22:13:20Z"
