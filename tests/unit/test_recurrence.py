"""Schedules: ISO 8601 durations, repeating intervals, DST, month ends, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pgvault.errors import BadRequest
from pgvault.recurrence import Duration, RepeatingInterval, Schedule, resolve_zone

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def weekly(*intervals: str, tz: str = "UTC") -> Schedule:
    return Schedule.parse(list(intervals), tz)


SUNDAY_2AM = "R/2021-08-15T02:00:00+00:00/P1W"


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P1W", Duration(weeks=1)),
        ("P1D", Duration(days=1)),
        ("P10D", Duration(days=10)),
        ("PT4H", Duration(hours=4)),
        ("P3M", Duration(months=3)),
        ("P1Y", Duration(years=1)),
        ("P1Y6M", Duration(years=1, months=6)),
        ("P1DT12H", Duration(days=1, hours=12)),
        ("PT1H30M", Duration(hours=1, minutes=30)),
        ("P2Y3M4W5DT6H7M8S", Duration(2, 3, 4, 5, 6, 7, 8)),
        ("p3m", Duration(months=3)),
        (" P5W ", Duration(weeks=5)),
    ],
)
def test_duration_parse(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1DT", "1W", "P1.5D", "P-1D", "P1H", "PT1D", "P1M1Y", "X", None, 7]
)
def test_duration_parse_rejects(text: object) -> None:
    with pytest.raises(BadRequest) as info:
        Duration.parse(text)
    assert info.value.code == "BadParameter"
    assert "is not an ISO 8601 duration" in info.value.message


@pytest.mark.parametrize(
    ("duration", "iso", "words"),
    [
        (Duration(years=1, months=6), "P1Y6M", "1 year 6 months"),
        (Duration(weeks=5), "P5W", "5 weeks"),
        (Duration(hours=4), "PT4H", "4 hours"),
        (Duration(days=1, hours=1), "P1DT1H", "1 day 1 hour"),
        (Duration(), "PT0S", "0 seconds"),
    ],
)
def test_duration_iso_and_words(duration: Duration, iso: str, words: str) -> None:
    assert duration.iso() == iso
    assert duration.describe() == words
    assert Duration.parse(iso) == duration


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        # month ends clamp to the shorter month, in leap and common years
        (utc(2024, 1, 31, 2), "P1M", utc(2024, 2, 29, 2)),
        (utc(2023, 1, 31, 2), "P1M", utc(2023, 2, 28, 2)),
        (utc(2024, 3, 31), "P1M", utc(2024, 4, 30)),
        (utc(2024, 8, 31), "P6M", utc(2025, 2, 28)),
        (utc(2023, 8, 31), "P6M", utc(2024, 2, 29)),
        (utc(2024, 1, 31), "P1M1D", utc(2024, 3, 1)),
        (utc(2024, 12, 15), "P1M", utc(2025, 1, 15)),
        (utc(2024, 11, 30), "P3M", utc(2025, 2, 28)),
        (utc(2024, 2, 29), "P1Y", utc(2025, 2, 28)),
        (utc(2024, 2, 29), "P4Y", utc(2028, 2, 29)),
        (utc(2020, 2, 29), "P10Y", utc(2030, 2, 28)),
        (utc(2024, 2, 29), "P12M", utc(2025, 2, 28)),
        (utc(2024, 1, 1), "P1Y6M", utc(2025, 7, 1)),
        # days and weeks are calendar days
        (utc(2024, 2, 28), "P1D", utc(2024, 2, 29)),
        (utc(2023, 2, 28), "P1D", utc(2023, 3, 1)),
        (utc(2024, 12, 31), "P1W", utc(2025, 1, 7)),
        (utc(2024, 1, 1), "P10D", utc(2024, 1, 11)),
        (utc(2024, 1, 1, 22), "PT4H", utc(2024, 1, 2, 2)),
        # local zones: days keep the wall clock, hours are elapsed time
        (
            datetime(2024, 3, 30, 2, 0, tzinfo=BERLIN),
            "P1D",
            datetime(2024, 3, 31, 3, 0, tzinfo=BERLIN),  # 02:00 does not exist that day
        ),
        (
            datetime(2024, 3, 30, 12, 0, tzinfo=BERLIN),
            "P1D",
            datetime(2024, 3, 31, 12, 0, tzinfo=BERLIN),  # only 23 hours later
        ),
        (
            datetime(2024, 3, 31, 0, 0, tzinfo=BERLIN),
            "PT4H",
            datetime(2024, 3, 31, 5, 0, tzinfo=BERLIN),
        ),
        (
            datetime(2024, 10, 26, 12, 0, tzinfo=BERLIN),
            "P1W",
            datetime(2024, 11, 2, 12, 0, tzinfo=BERLIN),
        ),
    ],
)
def test_duration_add_is_calendar_arithmetic(
    start: datetime, duration: str, expected: datetime
) -> None:
    got = Duration.parse(duration).add_to(start)
    assert got == expected
    assert got.utcoffset() == expected.utcoffset()


def test_duration_add_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Duration(days=1).add_to(datetime(2024, 1, 1))


def test_nominal_days_orders_durations() -> None:
    assert Duration(years=1).nominal_days() == Duration(months=12).nominal_days()
    assert Duration(days=365).nominal_days() < Duration(years=1).nominal_days()
    assert Duration(days=180).nominal_days() < Duration(months=6).nominal_days()
    assert Duration(weeks=1).nominal_days() == Duration(hours=168).nominal_days() == 7


# --------------------------------------------------------------------------- intervals


def test_repeating_interval_parse() -> None:
    iv = RepeatingInterval.parse("R/2021-08-15T06:30:00+00:00/P1W")
    assert iv.anchor == utc(2021, 8, 15, 6, 30)
    assert iv.period == Duration(weeks=1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("R5/2021-08-15T02:00:00+00:00/P1W", "bounded repeats are not supported"),
        ("2021-08-15T02:00:00+00:00/P1W", "is not an unbounded ISO 8601 repeating interval"),
        ("R/2021-08-15T02:00:00+00:00", "is not an unbounded ISO 8601 repeating interval"),
        ("R/not-a-date/P1W", "'not-a-date' is not an ISO 8601 date-time"),
        ("R/2021-08-15T02:00:00+00:00/P1X", "is not an ISO 8601 duration"),
        ("R/2021-08-15T02:00:00+00:00/P1M", "period P1M is in months or years"),
        ("R/2021-08-15T02:00:00+00:00/P1Y", "period P1Y is in months or years"),
        ("R/2021-08-15T02:00:00+00:00/PT30M", "period PT30M is shorter than 1 hour"),
        ("R/2021-08-15T02:00:00+00:00/PT59M59S", "is shorter than 1 hour"),
        ("R/2021-08-15T02:00:00+00:00/PT90M", "period PT90M is not supported"),
        ("R/2021-08-15T02:00:00+00:00/PT5H", "period PT5H is not supported"),
        ("R/2021-08-15T02:00:00+00:00/P2W", "period P2W is not supported"),
        ("R/2021-08-15T02:00:00+00:00/P2D", "period P2D is not supported"),
        ("R/2021-08-15T02:00:00+00:00/PT36H", "period PT36H is not supported"),
    ],
)
def test_schedule_rejects_intervals(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        Schedule.parse([text])
    assert info.value.code == "BadParameter"
    assert message in info.value.message
    if "period" in message:
        assert "use P1W (weekly), P1D (daily) or PT{n}H" in info.value.message


@pytest.mark.parametrize(
    "period",
    ["P1W", "P7D", "P1D", "PT24H", "PT1H", "PT2H", "PT3H", "PT4H", "PT6H", "PT8H", "PT12H"],
)
def test_schedule_accepts_periods(period: str) -> None:
    Schedule.parse([f"R/2021-08-15T02:00:00+00:00/{period}"])


@pytest.mark.parametrize("intervals", [[], "R/2021-08-15T02:00:00+00:00/P1W"])
def test_schedule_needs_a_list_of_intervals(intervals: list[str]) -> None:
    with pytest.raises(BadRequest, match="at least one repeating time interval"):
        Schedule.parse(intervals)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("UTC", "UTC"),
        ("utc", "UTC"),
        ("Etc/UTC", "UTC"),
        ("Coordinated Universal Time", "UTC"),
        (None, "UTC"),
        ("Europe/Berlin", "Europe/Berlin"),
    ],
)
def test_zones(name: str | None, expected: str) -> None:
    assert resolve_zone(name)[0] == expected


@pytest.mark.parametrize(
    "name", ["W. Europe Standard Time", "Mars/Olympus", "Europe", "../etc/passwd", "", 5]
)
def test_unknown_zones(name: object) -> None:
    with pytest.raises(BadRequest) as info:
        resolve_zone(name)
    assert "is not a known time zone; use UTC or an IANA name" in info.value.message


def test_from_trigger_reads_keys_in_any_case() -> None:
    trigger = {
        "OBJECTTYPE": "schedulebasedtriggercontext",
        "Schedule": {"RepeatingTimeIntervals": [SUNDAY_2AM], "TIMEZONE": "utc"},
    }
    schedule = Schedule.from_trigger(trigger)
    assert schedule.time_zone == "UTC"
    assert schedule.occurrences(utc(2024, 1, 1), utc(2024, 1, 8)) == [utc(2024, 1, 7, 2)]


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ({"objectType": "AdhocBasedTriggerContext"}, "has no schedule"),
        ({"schedule": {}}, "repeatingTimeIntervals must be a list"),
        ({"schedule": {"repeatingTimeIntervals": "R/x/P1W"}}, "must be a list"),
        ({"schedule": {"repeatingTimeIntervals": [SUNDAY_2AM], "timeZone": "Nowhere"}}, "zone"),
    ],
)
def test_from_trigger_errors(trigger: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        Schedule.from_trigger(trigger)


# --------------------------------------------------------------------------- occurrences


@pytest.mark.parametrize(
    ("intervals", "tz", "start", "end", "expected"),
    [
        pytest.param(
            [SUNDAY_2AM],
            "UTC",
            utc(2024, 1, 1),
            utc(2024, 2, 1),
            [utc(2024, 1, d, 2) for d in (7, 14, 21, 28)],
            id="weekly-january",
        ),
        pytest.param(
            [SUNDAY_2AM],
            "UTC",
            utc(2024, 1, 7, 2),
            utc(2024, 1, 14, 2),
            [utc(2024, 1, 7, 2)],
            id="start-inclusive-end-exclusive",
        ),
        pytest.param(
            [SUNDAY_2AM, "R/2021-08-18T14:30:00+00:00/P1W"],
            "UTC",
            utc(2024, 1, 1),
            utc(2024, 1, 15),
            [
                utc(2024, 1, 3, 14, 30),
                utc(2024, 1, 7, 2),
                utc(2024, 1, 10, 14, 30),
                utc(2024, 1, 14, 2),
            ],
            id="two-weekdays",
        ),
        pytest.param(
            ["R/2021-08-15T23:00:00+00:00/P1D"],
            "UTC",
            utc(2024, 2, 27),
            utc(2024, 3, 2),
            [utc(2024, 2, d, 23) for d in (27, 28, 29)] + [utc(2024, 3, 1, 23)],
            id="daily-over-leap-day",
        ),
        pytest.param(
            ["R/2021-08-15T02:00:00+00:00/PT6H"],
            "UTC",
            utc(2024, 12, 31, 12),
            utc(2025, 1, 1, 12),
            [utc(2024, 12, 31, 14), utc(2024, 12, 31, 20), utc(2025, 1, 1, 2), utc(2025, 1, 1, 8)],
            id="every-6-hours-over-new-year",
        ),
        pytest.param(
            [SUNDAY_2AM, "R/2021-08-15T02:00:00+00:00/P1D"],
            "UTC",
            utc(2024, 1, 6),
            utc(2024, 1, 8),
            [utc(2024, 1, 6, 2), utc(2024, 1, 7, 2)],
            id="overlapping-intervals-count-once",
        ),
        pytest.param(
            ["R/2030-01-06T02:00:00+00:00/P1W"],
            "UTC",
            utc(2029, 12, 1),
            utc(2030, 1, 14),
            [utc(2030, 1, 6, 2), utc(2030, 1, 13, 2)],
            id="no-slots-before-the-anchor",
        ),
        pytest.param(
            # the anchor instant 02:00Z is 04:00 in Berlin (summer); 04:00 is kept in winter
            [SUNDAY_2AM],
            "Europe/Berlin",
            utc(2024, 1, 1),
            utc(2024, 1, 15),
            [utc(2024, 1, 7, 3), utc(2024, 1, 14, 3)],
            id="anchor-converted-to-zone",
        ),
        pytest.param(
            ["R/2021-08-15T02:30:00/P1W"],
            "Europe/Berlin",
            utc(2024, 1, 1),
            utc(2024, 1, 8),
            [utc(2024, 1, 7, 1, 30)],
            id="naive-anchor-is-local",
        ),
    ],
)
def test_occurrences(
    intervals: list[str], tz: str, start: datetime, end: datetime, expected: list[datetime]
) -> None:
    assert Schedule.parse(intervals, tz).occurrences(start, end) == expected


def test_occurrences_accept_any_aware_zone_and_return_utc() -> None:
    slots = weekly(SUNDAY_2AM).occurrences(
        datetime(2024, 1, 7, 3, 0, tzinfo=BERLIN), datetime(2024, 1, 7, 4, 0, tzinfo=BERLIN)
    )
    assert slots == [utc(2024, 1, 7, 2)]
    assert slots[0].tzinfo is UTC


def test_occurrences_refuse_naive_bounds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        weekly(SUNDAY_2AM).occurrences(datetime(2024, 1, 1), utc(2024, 2, 1))


def test_slot_counts_over_a_year() -> None:
    """52 or 53 Sundays a year, every day of a leap year, 4 slots a day: no drift."""
    schedule = weekly(SUNDAY_2AM)
    assert len(schedule.occurrences(utc(2023, 1, 1), utc(2024, 1, 1))) == 53  # 2023 starts Sunday
    assert len(schedule.occurrences(utc(2024, 1, 1), utc(2025, 1, 1))) == 52
    daily = Schedule.parse(["R/2021-08-15T02:00:00+00:00/P1D"])
    assert len(daily.occurrences(utc(2024, 1, 1), utc(2025, 1, 1))) == 366
    six = Schedule.parse(["R/2021-08-15T00:00:00+00:00/PT6H"])
    assert len(six.occurrences(utc(2024, 1, 1), utc(2025, 1, 1))) == 366 * 4


# --------------------------------------------------------------------------- DST


BERLIN_SUNDAY = Schedule.parse(["R/2021-08-15T02:30:00+02:00/P1W"], "Europe/Berlin")


@pytest.mark.parametrize(
    ("sunday", "expected_utc", "expected_local"),
    [
        pytest.param(utc(2024, 3, 24), utc(2024, 3, 24, 1, 30), "02:30+01:00", id="winter"),
        # 02:30 does not exist on the spring-forward Sunday: it runs at 03:30 CEST
        pytest.param(utc(2024, 3, 31), utc(2024, 3, 31, 1, 30), "03:30+02:00", id="gap"),
        pytest.param(utc(2024, 4, 7), utc(2024, 4, 7, 0, 30), "02:30+02:00", id="summer"),
        # 02:30 happens twice on the fall-back Sunday: it runs once, at the first
        pytest.param(utc(2024, 10, 27), utc(2024, 10, 27, 0, 30), "02:30+02:00", id="overlap"),
        pytest.param(utc(2024, 11, 3), utc(2024, 11, 3, 1, 30), "02:30+01:00", id="winter-again"),
    ],
)
def test_weekly_wall_clock_is_kept_across_dst(
    sunday: datetime, expected_utc: datetime, expected_local: str
) -> None:
    (slot,) = BERLIN_SUNDAY.occurrences(sunday, sunday + timedelta(days=1))
    assert slot == expected_utc
    assert slot.astimezone(BERLIN).isoformat(timespec="minutes")[11:] == expected_local


@pytest.mark.parametrize(
    ("day", "count", "missing_local_hour"),
    [
        pytest.param(datetime(2024, 3, 31, tzinfo=BERLIN), 23, 2, id="spring-23-slots"),
        pytest.param(datetime(2024, 10, 27, tzinfo=BERLIN), 24, None, id="fall-24-slots"),
        pytest.param(datetime(2024, 6, 1, tzinfo=BERLIN), 24, None, id="plain-day"),
    ],
)
def test_hourly_grid_across_dst(day: datetime, count: int, missing_local_hour: int | None) -> None:
    """Hourly slots follow the local grid: the lost hour has no slot, the repeated one has one."""
    schedule = Schedule.parse(["R/2021-08-15T00:00:00/PT1H"], "Europe/Berlin")
    next_day = datetime.combine(day.date() + timedelta(days=1), day.timetz())
    slots = schedule.occurrences(day, next_day)
    assert len(slots) == count
    hours = sorted({s.astimezone(BERLIN).hour for s in slots})
    expected_hours = [h for h in range(24) if h != missing_local_hour]
    assert hours == expected_hours


def test_daily_in_new_york_across_fall_back() -> None:
    """01:30 happens twice on 2024-11-03 in New York; the backup runs at the first (EDT)."""
    schedule = Schedule.parse(["R/2021-08-15T01:30:00-04:00/P1D"], "America/New_York")
    slots = schedule.occurrences(utc(2024, 11, 2), utc(2024, 11, 5))
    assert slots == [utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]
    assert [s.astimezone(NEW_YORK).strftime("%H:%M") for s in slots] == ["01:30"] * 3


# --------------------------------------------------------------------------- next / last / due


@pytest.mark.parametrize(
    ("t", "next_after", "last_at_or_before"),
    [
        (utc(2024, 1, 7, 2), utc(2024, 1, 14, 2), utc(2024, 1, 7, 2)),
        (utc(2024, 1, 7, 1, 59, 59), utc(2024, 1, 7, 2), utc(2023, 12, 31, 2)),
        (utc(2024, 1, 7, 2, 0, 0, 1), utc(2024, 1, 14, 2), utc(2024, 1, 7, 2)),
        (utc(2024, 1, 10), utc(2024, 1, 14, 2), utc(2024, 1, 7, 2)),
        (utc(2021, 8, 15, 2), utc(2021, 8, 22, 2), utc(2021, 8, 15, 2)),
        (utc(2021, 8, 15, 1), utc(2021, 8, 15, 2), None),
        (utc(2000, 1, 1), utc(2021, 8, 15, 2), None),
    ],
)
def test_next_and_last(
    t: datetime, next_after: datetime, last_at_or_before: datetime | None
) -> None:
    schedule = weekly(SUNDAY_2AM)
    assert schedule.next_after(t) == next_after
    assert schedule.last_at_or_before(t) == last_at_or_before


def test_first_at_or_after_includes_the_instant() -> None:
    schedule = weekly(SUNDAY_2AM)
    assert schedule.first_at_or_after(utc(2024, 1, 7, 2)) == utc(2024, 1, 7, 2)


def test_next_after_every_four_hours() -> None:
    schedule = Schedule.parse(["R/2021-08-15T02:00:00+00:00/PT4H"])
    assert schedule.next_after(utc(2024, 1, 1, 22)) == utc(2024, 1, 2, 2)
    assert schedule.last_at_or_before(utc(2024, 1, 2, 1, 59)) == utc(2024, 1, 1, 22)


@pytest.mark.parametrize(
    ("last_run", "now", "due"),
    [
        pytest.param(None, utc(2024, 1, 10), utc(2024, 1, 7, 2), id="never-ran"),
        pytest.param(None, utc(2021, 8, 1), None, id="before-first-slot"),
        pytest.param(utc(2024, 1, 7, 2), utc(2024, 1, 10), None, id="up-to-date"),
        pytest.param(utc(2024, 1, 7, 2, 0, 3), utc(2024, 1, 14, 1), None, id="ran-late-still-ok"),
        pytest.param(utc(2024, 1, 7, 2), utc(2024, 1, 14, 2), utc(2024, 1, 14, 2), id="on-time"),
        # three weeks down: one catch-up backup for the latest missed slot, not three
        pytest.param(utc(2024, 1, 7, 2), utc(2024, 2, 1), utc(2024, 1, 28, 2), id="catch-up"),
    ],
)
def test_due(last_run: datetime | None, now: datetime, due: datetime | None) -> None:
    assert weekly(SUNDAY_2AM).due(last_run, now) == due


def test_catch_up_after_downtime_runs_once() -> None:
    """A scheduler polling `due` after 10 days of hourly slots missed runs exactly one backup."""
    schedule = Schedule.parse(["R/2021-08-15T00:00:00+00:00/PT1H"])
    last_run = utc(2024, 5, 1)
    runs = []
    now = utc(2024, 5, 11, 0, 30)
    for minute in range(0, 30, 5):
        slot = schedule.due(last_run, now + timedelta(minutes=minute))
        if slot is not None:
            runs.append(slot)
            last_run = slot
    assert runs == [utc(2024, 5, 11, 0)]


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("intervals", "tz", "text"),
    [
        ([SUNDAY_2AM], "UTC", "every Sunday at 02:00 UTC"),
        (
            ["R/2021-08-18T02:00:00+00:00/P1W", SUNDAY_2AM],
            "UTC",
            "every Sunday and Wednesday at 02:00 UTC",
        ),
        (
            [f"R/2021-08-{d}T02:00:00+00:00/P1W" for d in (16, 18, 20)],
            "UTC",
            "every Monday, Wednesday and Friday at 02:00 UTC",
        ),
        (
            [f"R/2021-08-{d}T02:00:00+00:00/P1W" for d in range(15, 22)],
            "UTC",
            "every day at 02:00 UTC",
        ),
        (
            [SUNDAY_2AM, "R/2021-08-18T14:30:00+00:00/P1W"],
            "UTC",
            "every Sunday at 02:00 and every Wednesday at 14:30 UTC",
        ),
        (["R/2021-08-15T01:30:00+02:00/P1D"], "Europe/Berlin", "every day at 01:30 Europe/Berlin"),
        (
            ["R/2021-08-15T02:00:00+00:00/PT4H"],
            "UTC",
            "every 4 hours at 02:00, 06:00, 10:00, 14:00, 18:00 and 22:00 UTC",
        ),
        (
            ["R/2021-08-15T00:30:00+00:00/PT2H"],
            "UTC",
            "every 2 hours at 00:30, 02:30, ..., 22:30 UTC",
        ),
        (["R/2021-08-15T00:15:00+00:00/PT1H"], "UTC", "every hour at :15 UTC"),
    ],
)
def test_describe(intervals: list[str], tz: str, text: str) -> None:
    assert Schedule.parse(intervals, tz).describe() == text
