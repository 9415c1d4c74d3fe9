"""Time, injectable: services read `clock.now()` so tests can drive a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock UTC time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to (for tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as Azure writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timespan(seconds: float) -> str:
    """A .NET TimeSpan string (`[d.]hh:mm:ss.fffffff`), the format of Azure's job durations."""
    ticks = max(round(seconds * 10_000_000), 0)
    secs, frac = divmod(ticks, 10_000_000)
    minutes, sec = divmod(secs, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    text = f"{hour:02d}:{minute:02d}:{sec:02d}.{frac:07d}"
    return f"{days}.{text}" if days else text
