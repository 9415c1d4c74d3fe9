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
    """A .NET TimeSpan string (`hh:mm:ss.fffffff`), the format of Azure's job durations."""
    seconds = max(seconds, 0.0)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    text = f"{int(hours):02d}:{int(minutes):02d}:{secs:010.7f}"
    return f"{int(days)}.{text}" if days else text
