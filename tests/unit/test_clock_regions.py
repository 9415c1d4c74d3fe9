"""Time formatting (.NET TimeSpan, ISO 8601) and regions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pgvault import regions
from pgvault.clock import FrozenClock, SystemClock, iso, timespan
from pgvault.errors import BadRequest


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "00:00:00.0000000"),
        (0.5, "00:00:00.5000000"),
        (1, "00:00:01.0000000"),
        (59.25, "00:00:59.2500000"),
        (60, "00:01:00.0000000"),
        (131.9724387, "00:02:11.9724387"),
        (3600, "01:00:00.0000000"),
        (3661.000001, "01:01:01.0000010"),
        (86399.5, "23:59:59.5000000"),
        (86400, "1.00:00:00.0000000"),
        (90061.5, "1.01:01:01.5000000"),
        (2 * 86400 + 3 * 3600 + 4 * 60 + 5.0000001, "2.03:04:05.0000001"),
        (-5, "00:00:00.0000000"),
    ],
)
def test_timespan(seconds: float, expected: str) -> None:
    assert timespan(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (59.99999999, "00:01:00.0000000"),
        (3599.99999999, "01:00:00.0000000"),
    ],
)
def test_timespan_rounding_carries_into_minutes(seconds: float, expected: str) -> None:
    """Rounding to 7 decimals must carry: never '00:00:60.0000000'."""
    assert timespan(seconds) == expected


def test_timespan_of_a_timedelta() -> None:
    delta = timedelta(minutes=2, seconds=11, microseconds=972438)
    assert timespan(delta.total_seconds()) == "00:02:11.9724380"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 25, 8, 30, 1, 123456, tzinfo=UTC), "2026-11-25T08:30:01.123456Z"),
        (
            datetime(2026, 11, 25, 10, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-25T08:30:00.000000Z",
        ),
        (None, None),
    ],
)
def test_iso(value: datetime | None, expected: str | None) -> None:
    assert iso(value) == expected


def test_clocks() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = FrozenClock(start)
    assert clock.now() == start
    clock.advance(timedelta(hours=1))
    assert clock.now() == start + timedelta(hours=1)
    assert SystemClock().now().tzinfo is not None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("East US", "eastus"),
        ("eastus", "eastus"),
        ("EASTUS", "eastus"),
        ("West Europe", "westeurope"),
        ("East US 2", "eastus2"),
        ("local", "local"),
    ],
)
def test_normalize(given: str, expected: str) -> None:
    assert regions.normalize(given) == expected


@pytest.mark.parametrize("given", ["", "mars", "east-us", "eastus9", "Narnia North"])
def test_unknown_region(given: str) -> None:
    with pytest.raises(BadRequest) as info:
        regions.normalize(given)
    assert info.value.code == "LocationNotAvailableForResourceType"
    assert info.value.target == "location"
    assert "eastus" in info.value.message  # lists the known regions


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("East US", "westus"),
        ("westus", "eastus"),
        ("northeurope", "westeurope"),
        ("local", "local2"),
    ],
)
def test_paired(given: str, expected: str) -> None:
    assert regions.paired(given) == expected


def test_pairs_are_known_regions() -> None:
    for region, pair in regions.PAIRS.items():
        assert pair in regions.PAIRS, f"{region} pairs with unknown {pair}"
        assert pair != region


def test_paired_unknown() -> None:
    with pytest.raises(BadRequest):
        regions.paired("mars")
