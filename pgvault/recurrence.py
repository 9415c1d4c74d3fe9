"""Backup schedules: ISO 8601 durations and the repeating intervals of an AzureBackupRule.

Azure writes a schedule as `R/<anchor>/<period>` strings plus a `timeZone`
(``{"repeatingTimeIntervals": ["R/2021-08-15T02:00:00+00:00/P1W"], "timeZone": "UTC"}``).
This module turns that into slot times. It is pure: no clock, no I/O; callers pass
the instants they care about, so a simulated clock can drive it through years.

Choices where Azure is silent (or stricter than we are):

* **Periods.** PostgreSQL policies in Azure are weekly only. We also accept daily
  and every-N-hours: ``P1W`` (or ``P7D``), ``P1D`` (or ``PT24H``) and ``PT{n}H`` with
  n in 1, 2, 3, 4, 6, 8, 12. Anything else is rejected: shorter than an hour is too
  frequent for pg_dump; ``P2W``/``P2D`` would leave some weeks or days without a
  backup, so "first of the week/day" retention would silently skip them; ``PT5H``
  drifts around the clock, so no two days look alike. Month/year periods are
  rejected for the same reason (use FirstOfMonth/FirstOfYear retention instead).
* **Anchor and zone.** The anchor instant is converted to ``timeZone`` (an anchor
  without an offset is already local); its local wall-clock time is then kept
  across DST, so "Sunday 02:00 Europe/Berlin" stays 02:00 in winter and summer.
  Hourly schedules follow the same wall-clock grid (02:00, 06:00, ...), not elapsed time.
* **DST edges.** A slot that falls into a spring-forward gap runs at the same
  offset, i.e. an hour later (02:30 -> 03:30); a slot in a fall-back overlap runs
  once, at its first occurrence. Two slots landing on the same instant count once.
* **Start.** ``R/`` is unbounded; slots before the anchor do not exist. Bounded
  repeats (``R5/``) are rejected, Azure never writes them.
* **Zones.** ``UTC`` (case-insensitive, also ``Etc/UTC``, ``Z``, ``Coordinated
  Universal Time``) and IANA names via zoneinfo; Windows zone names are rejected.

Every datetime this module returns is timezone-aware UTC; naive inputs are refused
rather than guessed.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgvault import jsonbody
from pgvault.errors import BadRequest, Code

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WEEK = timedelta(weeks=1)

# Average Gregorian lengths, for comparing durations (never for computing dates).
_DAYS_PER_YEAR = 365.2425
_DAYS_PER_MONTH = _DAYS_PER_YEAR / 12

_DURATION = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?",
    re.IGNORECASE,
)
_UNITS = (
    ("years", "year"),
    ("months", "month"),
    ("weeks", "week"),
    ("days", "day"),
    ("hours", "hour"),
    ("minutes", "minute"),
    ("seconds", "second"),
)
_UTC_NAMES = frozenset({"utc", "z", "etc/utc", "coordinated universal time"})
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def bad(message: str, target: str | None = None) -> BadRequest:
    """The 400 every policy-shape error becomes (Azure's code for a bad field value)."""
    return BadRequest(message, code=Code.BadParameter, target=target)


def require_aware(value: datetime, what: str = "time") -> datetime:
    """Refuse naive datetimes: guessing their zone is how backups end up an hour off."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration kept by component, because months and years have no fixed length."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: object) -> Duration:
        """`P1Y6M`, `P1W`, `PT4H`, `P1DT12H`... (case-insensitive; no fractions or signs)."""
        text_ok = isinstance(text, str) and not text.strip().upper().endswith("T")
        match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
        if not text_ok or match is None or not any(match.groupdict().values()):
            raise bad(
                f"{text!r} is not an ISO 8601 duration; write e.g. P7D, P5W, P3M, P1Y6M or PT4H."
            )
        return cls(**{k: int(v) for k, v in match.groupdict().items() if v})

    def add_to(self, when: datetime) -> datetime:
        """`when` + this duration, on the calendar.

        Years, months, weeks and days move the wall clock in `when`'s zone, clamping
        the day to the month's end (Jan 31 + P1M = Feb 28/29; Feb 29 + P1Y = Feb 28),
        because "keep 1 month" means until the same date next month, not 31 days.
        Hours, minutes and seconds are elapsed time (PT4H is 4 real hours across DST).
        """
        require_aware(when)
        total = when.month - 1 + self.months + 12 * self.years
        year, month = when.year + total // 12, total % 12 + 1
        day = min(when.day, calendar.monthrange(year, month)[1])
        moved = when.replace(year=year, month=month, day=day, fold=0)
        moved += timedelta(weeks=self.weeks, days=self.days)
        elapsed = timedelta(hours=self.hours, minutes=self.minutes, seconds=self.seconds)
        return (moved.astimezone(UTC) + elapsed).astimezone(when.tzinfo)

    def nominal_days(self) -> float:
        """Length in average Gregorian days: for range checks and ordering only."""
        return (
            self.years * _DAYS_PER_YEAR
            + self.months * _DAYS_PER_MONTH
            + self.weeks * 7
            + self.days
            + (self.hours + (self.minutes + self.seconds / 60) / 60) / 24
        )

    def iso(self) -> str:
        """Canonical ISO 8601 text (upper case, zero components dropped)."""
        date_part = "".join(
            f"{getattr(self, name)}{name[0].upper()}"
            for name in ("years", "months", "weeks", "days")
            if getattr(self, name)
        )
        time_part = "".join(
            f"{getattr(self, name)}{name[0].upper()}"
            for name in ("hours", "minutes", "seconds")
            if getattr(self, name)
        )
        text = "P" + date_part + (f"T{time_part}" if time_part else "")
        return text if text != "P" else "PT0S"

    def describe(self) -> str:
        """Plain words: `1 year 6 months`, `5 weeks`, `4 hours`."""
        parts = [
            f"{getattr(self, name)} {unit}{'s' if getattr(self, name) != 1 else ''}"
            for name, unit in _UNITS
            if getattr(self, name)
        ]
        return " ".join(parts) or "0 seconds"


@dataclass(frozen=True)
class RepeatingInterval:
    """One `R/<anchor>/<period>` string of a schedule, parsed but not yet checked for use."""

    anchor: datetime
    period: Duration
    text: str

    @classmethod
    def parse(cls, text: object) -> RepeatingInterval:
        parts = text.split("/") if isinstance(text, str) else []
        if len(parts) != 3 or parts[0].upper() != "R":
            hint = " (bounded repeats are not supported)" if parts[:1] != ["R"] else ""
            raise bad(
                f"Schedule interval {text!r} is not an unbounded ISO 8601 repeating interval "
                f"like R/2021-08-15T02:00:00+00:00/P1W{hint}."
            )
        try:
            anchor = datetime.fromisoformat(parts[1])
        except ValueError:
            raise bad(
                f"Schedule interval {text!r}: {parts[1]!r} is not an ISO 8601 date-time."
            ) from None
        return cls(anchor=anchor, period=Duration.parse(parts[2]), text=str(text))


def resolve_zone(name: object) -> tuple[str, tzinfo]:
    """`UTC` or an IANA zone name -> (canonical name, tzinfo); a missing name means UTC."""
    if name is None or (isinstance(name, str) and name.strip().lower() in _UTC_NAMES):
        return "UTC", UTC
    if isinstance(name, str) and name.strip():
        try:
            return name.strip(), ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise bad(
        f"timeZone {name!r} is not a known time zone; use UTC or an IANA name such as "
        "Europe/Berlin or America/New_York."
    )


def _step_of(interval: RepeatingInterval) -> timedelta:
    """The wall-clock step of an interval, or a 400 for periods we refuse (see module doc)."""
    p = interval.period
    step = timedelta(weeks=p.weeks, days=p.days, hours=p.hours)
    whole = not (p.years or p.months or p.minutes or p.seconds)
    if whole and (step in (WEEK, DAY) or (HOUR <= step < DAY and DAY % step == timedelta(0))):
        return step
    if p.years or p.months:
        why = "is in months or years"
    elif step + timedelta(minutes=p.minutes, seconds=p.seconds) < HOUR:
        why = "is shorter than 1 hour"
    else:
        why = "is not supported"
    raise bad(
        f"Schedule interval {interval.text!r}: period {p.iso()} {why}; use P1W (weekly), "
        "P1D (daily) or PT{n}H with n in 1, 2, 3, 4, 6, 8 or 12 (every n hours)."
    )


@dataclass(frozen=True)
class _Series:
    """Slots of one interval as local wall-clock times: first, first + step, ..."""

    first: datetime  # naive, in the schedule's zone
    step: timedelta

    def walls(self, lo: datetime, hi: datetime) -> Iterator[datetime]:
        """Wall-clock slots in [lo, hi), computed by index so no error accumulates."""
        k = max(0, -((self.first - lo) // self.step))
        wall = self.first + k * self.step
        while wall < hi:
            yield wall
            wall += self.step


@dataclass(frozen=True)
class Schedule:
    """When backups run: the union of a rule's repeating intervals, in one time zone."""

    intervals: tuple[RepeatingInterval, ...]
    time_zone: str
    zone: tzinfo = field(repr=False, compare=False)
    series: tuple[_Series, ...] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, intervals: Sequence[object], time_zone: object = "UTC") -> Schedule:
        """Build from `repeatingTimeIntervals` strings and a `timeZone` name."""
        if isinstance(intervals, str) or not intervals:
            raise bad("A schedule needs at least one repeating time interval (R/<start>/P1W).")
        name, zone = resolve_zone(time_zone)
        parsed = tuple(RepeatingInterval.parse(text) for text in intervals)
        series = tuple(_Series(_wall_of(iv.anchor, zone), _step_of(iv)) for iv in parsed)
        return cls(intervals=parsed, time_zone=name, zone=zone, series=series)

    @classmethod
    def from_trigger(cls, trigger: Mapping[str, Any]) -> Schedule:
        """From an AzureBackupRule's `trigger` (a ScheduleBasedTriggerContext); keys any case."""
        kind = jsonbody.get(trigger, "objectType")
        if kind is not None and not jsonbody.same(kind, "ScheduleBasedTriggerContext"):
            raise bad(
                f"trigger.objectType {kind!r} has no schedule; use ScheduleBasedTriggerContext."
            )
        intervals = jsonbody.get(trigger, "schedule", "repeatingTimeIntervals")
        if not isinstance(intervals, list):
            raise bad("trigger.schedule.repeatingTimeIntervals must be a list of R/... strings.")
        return cls.parse(intervals, jsonbody.get(trigger, "schedule", "timeZone"))

    def occurrences(self, start: datetime, end: datetime) -> list[datetime]:
        """Every slot in [start, end), sorted, in UTC."""
        require_aware(start, "start")
        require_aware(end, "end")
        lo, hi = self._wall(start) - DAY, self._wall(end) + DAY  # a day of slack covers DST
        slots = {
            instant
            for s in self.series
            for wall in s.walls(lo, hi)
            if start <= (instant := self._instant(wall)) < end
        }
        return sorted(slots)

    def first_at_or_after(self, t: datetime) -> datetime:
        """The first slot at or after `t` (there always is one: schedules never end)."""
        lo = max(require_aware(t), self._earliest())
        return self.occurrences(lo, lo + WEEK + DAY)[0]

    def next_after(self, t: datetime) -> datetime:
        """The first slot strictly after `t`."""
        return self.first_at_or_after(require_aware(t) + timedelta(microseconds=1))

    def last_at_or_before(self, t: datetime) -> datetime | None:
        """The latest slot at or before `t`; None before the schedule's first slot."""
        t = require_aware(t)
        slots = self.occurrences(t - WEEK - DAY, t + timedelta(microseconds=1))
        return slots[-1] if slots else None

    def due(self, last_run: datetime | None, now: datetime) -> datetime | None:
        """The slot to back up for now, if any: the latest slot in (last_run, now].

        After downtime this is one catch-up backup for the most recent missed slot,
        not one per missed slot: older slots' data is gone anyway, and a burst of
        dumps would only load the server. `last_run` is the slot (or start time) of
        the last backup; None means none ran yet.
        """
        slot = self.last_at_or_before(now)
        if slot is None or (last_run is not None and slot <= require_aware(last_run)):
            return None
        return slot

    def describe(self) -> str:
        """`every Sunday at 02:00 UTC`, `every day at 01:30 Europe/Berlin`, ..."""
        weekly: dict[str, set[int]] = {}
        daily: list[str] = []
        hourly: list[str] = []
        for s in self.series:
            clock = s.first.strftime("%H:%M")
            if s.step == WEEK:
                weekly.setdefault(clock, set()).add(s.first.weekday())
            elif s.step == DAY:
                daily.append(clock)
            else:
                hourly.append(_describe_hourly(s))
        pieces = [
            f"every {_describe_days(days)} at {clock}" for clock, days in sorted(weekly.items())
        ]
        if daily:
            pieces.append(f"every day at {_join(sorted(set(daily)))}")
        pieces += hourly
        return f"{_join(pieces)} {self.time_zone}"

    def _earliest(self) -> datetime:
        return min(self._instant(s.first) for s in self.series)

    def _wall(self, t: datetime) -> datetime:
        return t.astimezone(self.zone).replace(tzinfo=None)

    def _instant(self, wall: datetime) -> datetime:
        """A local wall-clock time as a UTC instant (gap: shifted forward; overlap: first)."""
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)


def _wall_of(anchor: datetime, zone: tzinfo) -> datetime:
    """The anchor's wall-clock time in the schedule's zone (naive anchors are already local)."""
    if anchor.tzinfo is None:
        return anchor
    return anchor.astimezone(zone).replace(tzinfo=None)


def _join(items: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _describe_days(days: set[int]) -> str:
    if len(days) == 7:
        return "day"
    ordered = sorted(days, key=lambda d: (d + 1) % 7)  # Sunday first, as Azure lists them
    return _join([WEEKDAY_NAMES[d] for d in ordered])


def _describe_hourly(s: _Series) -> str:
    hours = s.step // HOUR
    if hours == 1:
        return f"every hour at :{s.first:%M}"
    times = sorted({(s.first + k * s.step).strftime("%H:%M") for k in range(24 // hours)})
    shown = times if len(times) <= 6 else [times[0], times[1], "...", times[-1]]
    listed = ", ".join(shown) if len(times) > 6 else _join(shown)
    return f"every {hours} hours at {listed}"
