"""Retention: tags, tier lifecycles, validation, summaries, policy building, simulated years."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pgvault import policies, retention
from pgvault.clock import FrozenClock
from pgvault.errors import BadRequest
from pgvault.recurrence import Schedule
from pgvault.retention import ARCHIVE, VAULT, Tag, TierSpan

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def crit(**fields: Any) -> dict[str, Any]:
    return {"objectType": "ScheduleBasedBackupCriteria", **fields}


def tagging(name: str, priority: int | None, *criteria: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"isDefault": False, "tagInfo": {"tagName": name}}
    if priority is not None:
        entry["taggingPriority"] = priority
    return entry | {"criteria": list(criteria)}


DEFAULT = {
    "isDefault": True,
    "taggingPriority": 99,
    "tagInfo": {"id": "Default_", "tagName": "Default"},
}
CLI_TAGS = [
    DEFAULT,
    tagging("Daily", 25, crit(absoluteCriteria=["FirstOfDay"])),
    tagging("Weekly", 20, crit(absoluteCriteria=["FirstOfWeek"])),
    tagging("Monthly", 15, crit(absoluteCriteria=["FirstOfMonth"])),
    tagging("Yearly", 10, crit(absoluteCriteria=["FirstOfYear"])),
]
WEEKLY = Schedule.parse(["R/2021-08-15T02:00:00+00:00/P1W"])
DAILY = Schedule.parse(["R/2021-08-15T02:00:00+00:00/P1D"])
SIX_HOURLY = Schedule.parse(["R/2021-08-15T02:00:00+00:00/PT6H"])


def year_policy() -> dict[str, Any]:
    """The issue's policy: weekly Sunday 02:00 UTC, monthly archived on expiry."""
    return retention.build_policy(
        keep_default="P5W",
        keep_weekly="P3M",
        keep_monthly="P1Y",
        keep_yearly="P10Y",
        archive_after="on-expiry",
        archive_keep="P3Y",
        archive_tags=["Monthly"],
    )


# --------------------------------------------------------------------------- tagging


@pytest.mark.parametrize(
    ("schedule", "point", "tag"),
    [
        # daily: every backup is the first of its day, so Daily beats Default
        pytest.param(DAILY, utc(2024, 1, 1, 2), "Yearly", id="daily-new-year"),
        pytest.param(DAILY, utc(2024, 2, 1, 2), "Monthly", id="daily-first-of-month"),
        pytest.param(DAILY, utc(2024, 2, 4, 2), "Weekly", id="daily-sunday-starts-week"),
        pytest.param(DAILY, utc(2024, 2, 5, 2), "Daily", id="daily-monday"),
        pytest.param(DAILY, utc(2024, 12, 1, 2), "Monthly", id="daily-sunday-first-of-month"),
        # weekly on Sunday: the first Sunday of a month/year is that month's/year's first
        pytest.param(WEEKLY, utc(2024, 9, 1, 2), "Monthly", id="weekly-first-sunday"),
        pytest.param(WEEKLY, utc(2024, 9, 8, 2), "Weekly", id="weekly-second-sunday"),
        pytest.param(WEEKLY, utc(2025, 1, 5, 2), "Yearly", id="weekly-first-of-year"),
        pytest.param(WEEKLY, utc(2024, 12, 29, 2), "Weekly", id="weekly-last-of-year"),
        # every 6 hours from 02:00: only the 02:00 slot is the first of the day
        pytest.param(SIX_HOURLY, utc(2024, 3, 10, 2), "Weekly", id="hourly-sunday-first"),
        pytest.param(SIX_HOURLY, utc(2024, 3, 10, 8), "Default", id="hourly-sunday-later"),
        pytest.param(SIX_HOURLY, utc(2024, 3, 11, 2), "Daily", id="hourly-first-of-day"),
        pytest.param(SIX_HOURLY, utc(2024, 3, 1, 2), "Monthly", id="hourly-first-of-month"),
        pytest.param(SIX_HOURLY, utc(2024, 1, 1, 2), "Yearly", id="hourly-first-of-year"),
        pytest.param(SIX_HOURLY, utc(2024, 1, 1, 20), "Default", id="hourly-new-year-evening"),
        # a backup that started late serves its slot
        pytest.param(SIX_HOURLY, utc(2024, 3, 11, 3, 15), "Daily", id="late-start"),
        # before the schedule's first slot nothing is a "first"
        pytest.param(WEEKLY, utc(2021, 8, 1, 2), "Default", id="before-first-slot"),
    ],
)
def test_tag_for_cli_tags(schedule: Schedule, point: datetime, tag: str) -> None:
    assert retention.tag_for(point, CLI_TAGS, schedule).name == tag


def test_firsts_are_in_the_schedules_zone() -> None:
    """01:00 on 1 February in Auckland is still 31 January in UTC: it is the month's first."""
    schedule = Schedule.parse(["R/2021-08-15T01:00:00/P1D"], "Pacific/Auckland")
    assert retention.tag_for(utc(2024, 1, 31, 12), CLI_TAGS, schedule).name == "Monthly"
    assert retention.tag_for(utc(2024, 2, 1, 12), CLI_TAGS, schedule).name == "Daily"


def test_firsts_across_dst_in_berlin() -> None:
    """The spring-forward Sunday's 02:30 slot (run at 03:30 CEST) is still that week's first."""
    schedule = Schedule.parse(["R/2021-08-15T02:30:00/P1D"], "Europe/Berlin")
    assert retention.tag_for(utc(2024, 3, 31, 1, 30), CLI_TAGS, schedule).name == "Weekly"
    assert retention.tag_for(utc(2024, 4, 1, 0, 30), CLI_TAGS, schedule).name == "Monthly"


CALENDAR_TAGS = [
    DEFAULT,
    tagging("LastSunday", 12, crit(daysOfTheWeek=["Sunday"], weeksOfTheMonth=["Last"])),
    tagging("MidMonth", 30, crit(daysOfMonth=[{"date": 15}])),
    tagging("MonthEnd", 14, crit(daysOfMonth=[{"isLast": True}])),
    tagging(
        "HalfYear", 11, crit(absoluteCriteria=["FirstOfMonth"], monthsOfYear=["january", "JULY"])
    ),
    tagging("SecondWednesday", 40, crit(daysOfTheWeek=["Wednesday"], weeksOfTheMonth=["Second"])),
    tagging(
        "Evening",
        45,
        crit(scheduleTimes=["2021-08-15T20:00:00+00:00"]),
        crit(daysOfTheWeek=["Saturday"], monthsOfYear=["December"]),
    ),
]


@pytest.mark.parametrize(
    ("point", "tag"),
    [
        (utc(2024, 3, 31, 2), "LastSunday"),  # last Sunday and last day: priority 12 beats 14
        (utc(2024, 3, 24, 2), "Default"),  # a Sunday, but not in the last 7 days
        (utc(2024, 3, 25, 2), "Default"),  # in the last 7 days, but a Monday
        (utc(2024, 2, 29, 2), "MonthEnd"),  # leap day is February's last
        (utc(2023, 2, 28, 2), "MonthEnd"),
        (utc(2024, 4, 30, 2), "MonthEnd"),
        (utc(2024, 4, 15, 2), "MidMonth"),
        (utc(2024, 7, 1, 2), "HalfYear"),  # months are case-insensitive
        (utc(2024, 8, 1, 2), "Default"),
        (utc(2024, 1, 10, 2), "SecondWednesday"),  # days 8-14
        (utc(2024, 1, 3, 2), "Default"),  # first Wednesday
        (utc(2024, 12, 7, 2), "Evening"),  # second criterion: Saturday in December
    ],
)
def test_tag_for_calendar_criteria(point: datetime, tag: str) -> None:
    assert retention.tag_for(point, CALENDAR_TAGS, DAILY).name == tag


def test_schedule_times_criterion() -> None:
    schedule = Schedule.parse(["R/2021-08-15T08:00:00+00:00/PT12H"])  # 08:00 and 20:00
    assert retention.tag_for(utc(2024, 3, 5, 20), CALENDAR_TAGS, schedule).name == "Evening"
    assert retention.tag_for(utc(2024, 3, 5, 8), CALENDAR_TAGS, schedule).name == "Default"


def test_lowest_priority_number_wins_whatever_the_order() -> None:
    reversed_priorities = [
        DEFAULT,
        tagging("Monthly", 30, crit(absoluteCriteria=["FirstOfMonth"])),
        tagging("Weekly", 5, crit(absoluteCriteria=["FirstOfWeek"])),
    ]
    assert retention.tag_for(utc(2024, 9, 1, 2), reversed_priorities, WEEKLY).name == "Weekly"
    assert retention.tag_for(utc(2024, 9, 1, 2), CLI_TAGS, WEEKLY).name == "Monthly"


def test_ties_go_to_the_earlier_entry() -> None:
    tied = [
        DEFAULT,
        tagging("A", 20, crit(absoluteCriteria=["AllBackup"])),
        tagging("B", 20, crit(absoluteCriteria=["AllBackup"])),
    ]
    assert retention.tag_for(utc(2024, 9, 1, 2), tied, WEEKLY).name == "A"


def test_missing_priority_takes_the_cli_value() -> None:
    tags = [DEFAULT, tagging("monthly", None, crit(absoluteCriteria=["FirstOfMonth"]))]
    assert retention.tag_for(utc(2024, 9, 1, 2), tags, WEEKLY) == Tag("monthly", 15)


def test_default_applies_only_when_nothing_matches() -> None:
    """A Default entry with criteria (or a low priority) still never beats a match."""
    tags = [
        {**DEFAULT, "taggingPriority": 1, "criteria": [crit(absoluteCriteria=["AllBackup"])]},
        tagging("Monthly", 15, crit(absoluteCriteria=["FirstOfMonth"])),
    ]
    assert retention.tag_for(utc(2024, 9, 1, 2), tags, WEEKLY).name == "Monthly"
    assert retention.tag_for(utc(2024, 9, 8, 2), tags, WEEKLY) == Tag("Default", 1)


def test_no_default_entry_means_the_default_tag() -> None:
    assert retention.tag_for(utc(2024, 9, 8, 2), [], WEEKLY) == Tag("Default", 99)


@pytest.mark.parametrize(("override", "expected"), [("Monthly", "Monthly"), ("yearly", "Yearly")])
def test_retention_tag_override_wins(override: str, expected: str) -> None:
    tag = retention.tag_for(utc(2024, 9, 11, 14), CLI_TAGS, WEEKLY, override=override)
    assert tag.name == expected


def test_unknown_override_is_a_bad_parameter() -> None:
    with pytest.raises(BadRequest) as info:
        retention.tag_for(utc(2024, 9, 11), CLI_TAGS, WEEKLY, override="Hourly")
    assert info.value.code == "BadParameter"
    assert info.value.message == (
        "retentionTagOverride 'Hourly' is not a tag of this policy; use one of: "
        "Default, Daily, Weekly, Monthly, Yearly."
    )


def test_tag_for_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        retention.tag_for(datetime(2024, 9, 1, 2), CLI_TAGS, WEEKLY)


# --------------------------------------------------------------------------- lifecycles


def lifecycle_policy(
    copy_after: str | None, vault: str = "P3M", archive: str = "P1Y"
) -> dict[str, Any]:
    return retention.build_policy(
        keep_default="P5W",
        keep_monthly=vault,
        archive_after=copy_after,
        archive_keep=archive,
        archive_tags=["Monthly"] if copy_after else None,
    )


P = utc(2024, 1, 31, 2)


@pytest.mark.parametrize(
    ("copy_after", "spans"),
    [
        pytest.param(None, [TierSpan(VAULT, P, utc(2024, 4, 30, 2))], id="vault-only"),
        pytest.param(
            "on-expiry",
            [
                TierSpan(VAULT, P, utc(2024, 4, 30, 2)),
                TierSpan(ARCHIVE, utc(2024, 4, 30, 2), utc(2025, 1, 31, 2)),
            ],
            id="on-expiry-moves",
        ),
        pytest.param(
            "P30D",
            [
                TierSpan(VAULT, P, utc(2024, 4, 30, 2)),
                TierSpan(ARCHIVE, utc(2024, 3, 1, 2), utc(2025, 1, 31, 2)),
            ],
            id="custom-copies-after-30-days",
        ),
        pytest.param(
            "P1M",
            [
                TierSpan(VAULT, P, utc(2024, 4, 30, 2)),
                TierSpan(ARCHIVE, utc(2024, 2, 29, 2), utc(2025, 1, 31, 2)),
            ],
            id="custom-month-is-calendar",
        ),
        pytest.param(
            "immediate",
            [TierSpan(VAULT, P, utc(2024, 4, 30, 2)), TierSpan(ARCHIVE, P, utc(2025, 1, 31, 2))],
            id="immediate",
        ),
    ],
)
def test_plan(copy_after: str | None, spans: list[TierSpan]) -> None:
    assert retention.plan(P, "Monthly", lifecycle_policy(copy_after)) == spans
    assert retention.expires_at(P, "Monthly", lifecycle_policy(copy_after)) == spans[-1].end


@pytest.mark.parametrize(
    ("copy_after", "t", "stores"),
    [
        (None, P - timedelta(microseconds=1), set()),
        (None, P, {VAULT}),
        (None, utc(2024, 4, 30, 1, 59), {VAULT}),
        (None, utc(2024, 4, 30, 2), set()),
        ("on-expiry", utc(2024, 4, 30, 1, 59), {VAULT}),
        ("on-expiry", utc(2024, 4, 30, 2), {ARCHIVE}),
        ("on-expiry", utc(2025, 1, 31, 1, 59), {ARCHIVE}),
        ("on-expiry", utc(2025, 1, 31, 2), set()),
        ("P30D", utc(2024, 3, 1, 1, 59), {VAULT}),
        ("P30D", utc(2024, 3, 1, 2), {VAULT, ARCHIVE}),
        ("P30D", utc(2024, 4, 30, 2), {ARCHIVE}),
        ("immediate", P, {VAULT, ARCHIVE}),
    ],
)
def test_state_at(copy_after: str | None, t: datetime, stores: set[str]) -> None:
    assert retention.state_at(P, "Monthly", lifecycle_policy(copy_after), t) == stores


def test_unknown_tag_falls_back_to_the_default_rule() -> None:
    policy = lifecycle_policy(None)
    assert retention.plan(P, "Quarterly", policy) == [TierSpan(VAULT, P, utc(2024, 3, 6, 2))]
    assert retention.plan(P, Tag("default", 99), policy) == retention.plan(P, "Quarterly", policy)


def test_plan_reads_keys_and_enums_in_any_case() -> None:
    assert retention.plan(P, "MONTHLY", shout(lifecycle_policy("on-expiry"))) == retention.plan(
        P, "Monthly", lifecycle_policy("on-expiry")
    )


def shout(obj: Any) -> Any:
    """Upper-case every key and lower-case the enum values: Azure ignores case in both."""
    if isinstance(obj, dict):
        return {
            k.upper(): (v.lower() if k in ("objectType", "dataStoreType") else shout(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [shout(v) for v in obj]
    return obj


def test_everything_reads_a_shouted_policy() -> None:
    policy = year_policy()
    loud = shout(policy)
    assert retention.check_policy(loud) == []
    assert retention.describe_policy(loud) == retention.describe_policy(policy)
    schedule = retention.schedule_of(loud)
    tag = retention.tag_for(utc(2024, 9, 1, 2), retention.tagging_criteria_of(loud), schedule)
    assert tag == Tag("Monthly", 15)


# --------------------------------------------------------------------------- validation


def edit(policy: dict[str, Any], rule: str, path: tuple[str | int, ...], value: Any) -> None:
    """Set `path` inside the policy rule named `rule`."""
    (target,) = [r for r in policy["policyRules"] if r["name"] == rule]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


VAULT_DURATION = ("lifecycles", 0, "deleteAfter", "duration")
ARCHIVE_DURATION = ("lifecycles", 1, "deleteAfter", "duration")
COPY_AFTER = ("lifecycles", 0, "targetDataStoreCopySettings", 0, "copyAfter")
TRIGGER = "BackupWeekly"


@pytest.mark.parametrize(
    ("rule", "path", "value", "message"),
    [
        pytest.param(
            "Default",
            VAULT_DURATION,
            "P6D",
            "Retention rule 'Default': VaultStore deleteAfter P6D is outside the allowed range "
            "7 days to 10 years (P7D to P10Y).",
            id="vault-too-short",
        ),
        pytest.param(
            "Default",
            VAULT_DURATION,
            "PT167H",
            "VaultStore deleteAfter PT167H is outside the allowed range",
            id="vault-hours-too-short",
        ),
        pytest.param(
            "Yearly",
            VAULT_DURATION,
            "P10Y1D",
            "Retention rule 'Yearly': VaultStore deleteAfter P10Y1D is outside the allowed range "
            "7 days to 10 years (P7D to P10Y).",
            id="vault-too-long",
        ),
        pytest.param(
            "Weekly",
            VAULT_DURATION,
            "P3653D",
            "Retention rule 'Weekly': VaultStore deleteAfter P3653D is outside",
            id="vault-days-too-long",
        ),
        pytest.param(
            "Monthly",
            ARCHIVE_DURATION,
            "P11Y",
            "Retention rule 'Monthly': ArchiveStore deleteAfter P11Y is outside the allowed "
            "range 6 months to 10 years (P6M to P10Y).",
            id="archive-too-long",
        ),
        pytest.param(
            "Monthly",
            ARCHIVE_DURATION,
            "P5M",
            "ArchiveStore deleteAfter P5M is outside the allowed range 6 months to 10 years",
            id="archive-too-short",
        ),
        pytest.param(
            "Monthly",
            ARCHIVE_DURATION,
            "P12M",
            "Retention rule 'Monthly': ArchiveStore deleteAfter P12M counts from the backup "
            "time, so it must be longer than P1Y, when the copy is made.",
            id="archive-ends-when-copied",
        ),
        pytest.param(
            "Default",
            VAULT_DURATION,
            "P1X",
            "Retention rule 'Default', VaultStore deleteAfter: 'P1X' is not an ISO 8601 duration",
            id="bad-duration",
        ),
        pytest.param(
            "Default",
            ("lifecycles", 0, "deleteAfter", "objectType"),
            "RelativeDeleteOption",
            "Retention rule 'Default': deleteAfter must be an AbsoluteDeleteOption.",
            id="not-absolute-delete",
        ),
        pytest.param(
            "Default",
            ("lifecycles", 0, "sourceDataStore", "dataStoreType"),
            "OperationalStore",
            "Retention rule 'Default': source 'OperationalStore' is not one of VaultStore, "
            "ArchiveStore.",
            id="unknown-store",
        ),
        pytest.param(
            "Monthly",
            COPY_AFTER,
            {"objectType": "CopyLaterOption"},
            "Retention rule 'Monthly': copyAfter.objectType 'CopyLaterOption' is not one of "
            "CopyOnExpiryOption, CustomCopyOption, ImmediateCopyOption.",
            id="unknown-copy-option",
        ),
        pytest.param(
            "Monthly",
            COPY_AFTER,
            {"objectType": "CustomCopyOption", "duration": "P2Y"},
            "Retention rule 'Monthly': CustomCopyOption after P2Y comes after the VaultStore "
            "copy is deleted (P1Y); use CopyOnExpiryOption or a shorter duration.",
            id="custom-copy-too-late",
        ),
        pytest.param(
            "Monthly",
            COPY_AFTER,
            {"objectType": "CustomCopyOption"},
            "None is not an ISO 8601 duration",
            id="custom-copy-without-duration",
        ),
        pytest.param(
            "Monthly",
            ("lifecycles", 0, "targetDataStoreCopySettings"),
            [],
            "Retention rule 'Monthly' has an ArchiveStore lifecycle but its VaultStore lifecycle "
            "never copies there (add targetDataStoreCopySettings).",
            id="archive-never-filled",
        ),
        pytest.param(
            "Default",
            ("isDefault",),
            False,
            "The policy needs a Default retention rule (isDefault: true) for backups no other "
            "tag selects.",
            id="no-default-rule",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "schedule", "repeatingTimeIntervals"),
            ["R/2021-08-15T02:00:00+00:00/P1M"],
            "period P1M is in months or years",
            id="monthly-period",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "schedule", "repeatingTimeIntervals"),
            [],
            "A schedule needs at least one repeating time interval",
            id="no-intervals",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "schedule"),
            None,
            "trigger.schedule.repeatingTimeIntervals must be a list",
            id="no-schedule",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "schedule", "timeZone"),
            "Mars/Base",
            "timeZone 'Mars/Base' is not a known time zone",
            id="bad-zone",
        ),
        pytest.param(
            TRIGGER,
            ("dataStore", "dataStoreType"),
            "ArchiveStore",
            "Backups can only be taken to VaultStore.",
            id="backup-to-archive",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "taggingCriteria", 1, "criteria", 0, "absoluteCriteria"),
            ["FirstOfDecade"],
            "absoluteCriteria 'FirstOfDecade' is not one of AllBackup, FirstOfDay, FirstOfWeek, "
            "FirstOfMonth, FirstOfYear.",
            id="unknown-absolute-criterion",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "taggingCriteria", 1, "criteria", 0, "daysOfTheWeek"),
            ["Sunnyday"],
            "daysOfTheWeek 'Sunnyday' is not one of Monday",
            id="unknown-weekday",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "taggingCriteria", 1, "criteria", 0, "daysOfMonth"),
            [{"date": 32}],
            "daysOfMonth entry {'date': 32} needs a date from 1 to 31 or isLast: true.",
            id="bad-day-of-month",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "taggingCriteria", 1, "criteria"),
            [],
            "Tag 'Weekly' needs criteria that select backups.",
            id="tag-without-criteria",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "taggingCriteria", 1, "criteria"),
            [{"objectType": "ScheduleBasedBackupCriteria"}],
            "Tag 'Weekly' needs criteria that select backups.",
            id="tag-with-empty-criterion",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "taggingCriteria", 1, "tagInfo", "tagName"),
            "Fortnightly",
            "Tag 'Fortnightly' has no retention rule; add an AzureRetentionRule named "
            "'Fortnightly' or remove the tag.",
            id="tag-without-rule",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "taggingCriteria", 1, "taggingPriority"),
            "high",
            "Tag 'Weekly': taggingPriority must be an integer, got 'high'.",
            id="bad-priority",
        ),
        pytest.param(
            TRIGGER,
            ("trigger", "taggingCriteria", 1, "tagInfo", "tagName"),
            "Monthly",
            "Two tagging criteria use the same tag name.",
            id="duplicate-tag",
        ),
    ],
)
def test_validation_problems(
    rule: str, path: tuple[str | int, ...], value: Any, message: str
) -> None:
    policy = year_policy()
    edit(policy, rule, path, value)
    messages = [p.message for p in retention.check_policy(policy)]
    assert any(message in m for m in messages), messages
    with pytest.raises(BadRequest) as info:
        retention.validate_policy(policy)
    assert info.value.code == "BadParameter"
    assert info.value.status == 400
    assert message in info.value.message


def test_missing_archive_lifecycle() -> None:
    policy = year_policy()
    edit(policy, "Monthly", ("lifecycles",), policy["policyRules"][3]["lifecycles"][:1])
    assert [p.message for p in retention.check_policy(policy)] == [
        "Retention rule 'Monthly' copies to ArchiveStore but has no lifecycle with "
        "sourceDataStore ArchiveStore saying how long to keep it there."
    ]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([], "The policy has no AzureBackupRule; it needs exactly one, with a schedule."),
        ("backup-twice", "The policy has 2 AzureBackupRules; it needs exactly one"),
        ("not-a-list", "policyRules must be a list of rule objects."),
    ],
)
def test_backup_rule_count(rules: Any, message: str) -> None:
    policy = year_policy()
    if rules == "backup-twice":
        policy["policyRules"].insert(0, copy.deepcopy(policy["policyRules"][0]))
    elif rules == "not-a-list":
        policy["policyRules"] = {"rule": 1}
    else:
        policy["policyRules"] = policy["policyRules"][1:]
    assert message in " ".join(p.message for p in retention.check_policy(policy))


def test_problems_are_all_reported_with_a_target() -> None:
    policy = year_policy()
    edit(policy, "Default", VAULT_DURATION, "P1D")
    edit(policy, "Yearly", VAULT_DURATION, "P20Y")
    problems = retention.check_policy(policy)
    assert [p.target for p in problems] == ["policyRules[Default]", "policyRules[Yearly]"]
    with pytest.raises(BadRequest) as info:
        retention.validate_policy(policy)
    assert info.value.target == "policyRules[Default]"
    assert "'Default'" in info.value.message
    assert "'Yearly'" in info.value.message


@pytest.mark.parametrize(
    ("vault", "archive"),
    [
        ("P7D", None),
        ("PT168H", None),
        ("P1W", None),
        ("P10Y", None),
        ("P120M", None),
        ("P521W", None),
        ("P3652D", None),
        ("P7D", "P6M"),
        ("P7D", "P10Y"),
        ("P7D", "P120M"),
    ],
)
def test_range_edges_are_accepted(vault: str, archive: str | None) -> None:
    policy = retention.build_policy(
        keep_default=vault,
        archive_after="immediate" if archive else None,
        archive_keep=archive or "P3Y",
    )
    assert retention.check_policy(policy) == []


def test_the_default_template_is_valid() -> None:
    props = {"objectType": "BackupPolicy", "policyRules": policies.DEFAULT_RULES}
    assert retention.check_policy(props) == []


# --------------------------------------------------------------------------- describe


def test_describe_year_policy() -> None:
    assert retention.describe_policy(year_policy()) == (
        "every Sunday at 02:00 UTC; keep Yearly (first of year) 10 years, "
        "Monthly (first of month) 1 year then archive until 3 years old, "
        "Weekly (first of week) 3 months, Default 5 weeks"
    )


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({}, "every Sunday at 02:00 UTC; keep Default 3 months"),
        (
            {
                "schedule": "hourly",
                "every_hours": 6,
                "time": "01:00",
                "timezone": "Europe/Berlin",
                "keep_default": "P7D",
                "keep_daily": "P1M",
                "archive_after": "P30D",
                "archive_keep": "P1Y",
            },
            "every 6 hours at 01:00, 07:00, 13:00 and 19:00 Europe/Berlin; keep Daily (first of "
            "day) 1 month, copied to archive after 30 days and kept there until 1 year old, "
            "Default 7 days",
        ),
        (
            {
                "schedule": "daily",
                "keep_default": "P2W",
                "keep_monthly": "P6M",
                "archive_after": "immediate",
                "archive_keep": "P1Y6M",
            },
            "every day at 02:00 UTC; keep Monthly (first of month) 6 months, copied to archive "
            "at once and kept there until 1 year 6 months old, Default 2 weeks, copied to "
            "archive at once and kept there until 1 year 6 months old",
        ),
        (
            {"days": ["Mon", "wednesday", "FRIDAY"], "time": "23:30", "keep_default": "P30D"},
            "every Monday, Wednesday and Friday at 23:30 UTC; keep Default 30 days",
        ),
    ],
)
def test_describe_built_policies(kwargs: dict[str, Any], text: str) -> None:
    assert retention.describe_policy(retention.build_policy(**kwargs)) == text


def test_describe_calendar_criteria_and_on_demand_rules() -> None:
    policy = retention.build_policy(keep_default="P1M", keep_monthly="P1Y")
    trigger = policy["policyRules"][0]["trigger"]
    trigger["taggingCriteria"][1]["criteria"] = [
        crit(daysOfTheWeek=["Sunday"], weeksOfTheMonth=["First", "Last"]),
        crit(daysOfMonth=[{"date": 15}, {"isLast": True}], monthsOfYear=["July", "January"]),
    ]
    extra = copy.deepcopy(policy["policyRules"][1])
    extra.update(name="Audit", isDefault=False)
    policy["policyRules"].append(extra)
    assert retention.describe_policy(policy) == (
        "every Sunday at 02:00 UTC; keep Monthly (first or last Sunday of the month; or "
        "day 15 or last of the month in January or July) 1 year, Default 1 month, "
        "Audit (on demand only) 1 month"
    )


# --------------------------------------------------------------------------- build_policy


def test_build_policy_defaults_are_azures_default_template() -> None:
    assert retention.build_policy() == {
        "objectType": "BackupPolicy",
        "datasourceTypes": ["Microsoft.DBforPostgreSQL/servers/databases"],
        "policyRules": policies.DEFAULT_RULES,
    }


def test_build_policy_azure_shape() -> None:
    rules = year_policy()["policyRules"]
    assert [r["name"] for r in rules] == ["BackupWeekly", "Default", "Weekly", "Monthly", "Yearly"]
    assert rules[0]["trigger"]["taggingCriteria"][1:] == [
        {
            "isDefault": False,
            "taggingPriority": priority,
            "tagInfo": {"id": f"{name}_", "tagName": name},
            "criteria": [
                {"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": [absolute]}
            ],
        }
        for name, priority, absolute in [
            ("Weekly", 20, "FirstOfWeek"),
            ("Monthly", 15, "FirstOfMonth"),
            ("Yearly", 10, "FirstOfYear"),
        ]
    ]
    assert rules[3] == {
        "name": "Monthly",
        "objectType": "AzureRetentionRule",
        "lifecycles": [
            {
                "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P1Y"},
                "sourceDataStore": {
                    "objectType": "DataStoreInfoBase",
                    "dataStoreType": "VaultStore",
                },
                "targetDataStoreCopySettings": [
                    {
                        "copyAfter": {"objectType": "CopyOnExpiryOption"},
                        "dataStore": {
                            "objectType": "DataStoreInfoBase",
                            "dataStoreType": "ArchiveStore",
                        },
                    }
                ],
            },
            {
                "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P3Y"},
                "sourceDataStore": {
                    "objectType": "DataStoreInfoBase",
                    "dataStoreType": "ArchiveStore",
                },
                "targetDataStoreCopySettings": [],
            },
        ],
    }
    assert rules[2]["lifecycles"][0]["targetDataStoreCopySettings"] == []


def test_build_policy_custom_copy_shape() -> None:
    policy = lifecycle_policy("p30d")
    copy_settings = policy["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"]
    assert copy_settings[0]["copyAfter"] == {"objectType": "CustomCopyOption", "duration": "P30D"}


@pytest.mark.parametrize(
    ("kwargs", "name", "intervals", "zone"),
    [
        (
            {"days": ["Sunday", "sat", "Wed", "sunday"]},
            "BackupWeekly",
            [
                "R/2021-08-15T02:00:00+00:00/P1W",
                "R/2021-08-18T02:00:00+00:00/P1W",
                "R/2021-08-21T02:00:00+00:00/P1W",
            ],
            "UTC",
        ),
        (
            {"schedule": "daily", "time": "01:30", "timezone": "Europe/Berlin"},
            "BackupDaily",
            ["R/2021-08-15T01:30:00+02:00/P1D"],
            "Europe/Berlin",
        ),
        (
            {
                "schedule": "Hourly",
                "every_hours": 4,
                "time": "00:00",
                "timezone": "America/New_York",
            },
            "BackupHourly",
            ["R/2021-08-15T00:00:00-04:00/PT4H"],
            "America/New_York",
        ),
    ],
)
def test_build_policy_schedules(
    kwargs: dict[str, Any], name: str, intervals: list[str], zone: str
) -> None:
    rule = retention.build_policy(**kwargs)["policyRules"][0]
    assert rule["name"] == name
    assert rule["trigger"]["schedule"] == {"repeatingTimeIntervals": intervals, "timeZone": zone}


def test_built_berlin_schedule_runs_at_local_time_in_winter() -> None:
    policy = retention.build_policy(schedule="daily", time="01:30", timezone="Europe/Berlin")
    slots = retention.schedule_of(policy).occurrences(utc(2024, 1, 10), utc(2024, 1, 11))
    assert slots == [utc(2024, 1, 10, 0, 30)]


def test_build_policy_archive_goes_where_it_fits() -> None:
    policy = retention.build_policy(
        keep_default="P7D",
        keep_weekly="P3M",
        keep_yearly="P10Y",
        archive_after="P30D",
        archive_keep="P2Y",
    )
    archived = {r["name"] for r in policy["policyRules"][1:] if len(r["lifecycles"]) == 2}
    assert archived == {"Weekly"}  # Default ends before the copy; Yearly outlives the archive


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "monthly"}, "schedule 'monthly' is not one of weekly, daily, hourly."),
        ({"days": ["Caturday"]}, "day 'Caturday' is not a weekday name"),
        ({"days": []}, "A weekly schedule needs at least one day."),
        ({"time": "25:00"}, "time '25:00' is not HH:MM"),
        ({"schedule": "hourly"}, "An hourly schedule needs every_hours"),
        ({"schedule": "hourly", "every_hours": 5}, "period PT5H is not supported"),
        ({"timezone": "Atlantis"}, "timeZone 'Atlantis' is not a known time zone"),
        ({"keep_default": "P6D"}, "VaultStore deleteAfter P6D is outside the allowed range"),
        ({"keep_weekly": "three months"}, "'three months' is not an ISO 8601 duration"),
        ({"archive_after": "later"}, "'later' is not an ISO 8601 duration"),
        (
            {"archive_after": "on-expiry", "archive_keep": "P1M"},
            "No retention rule can use archive_after 'on-expiry' with archive_keep P1M",
        ),
        (
            {"archive_after": "on-expiry", "archive_tags": ["Monthly"]},
            "archive tag 'Monthly' is not one of Default.",
        ),
    ],
)
def test_build_policy_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        retention.build_policy(**kwargs)
    assert info.value.code == "BadParameter"
    assert message in info.value.message


# --------------------------------------------------------------------------- simulation

Snapshot = dict[str, set[tuple[datetime, str, datetime]]]


@dataclass(frozen=True)
class Point:
    time: datetime
    tag: str


def tiers_now(points: list[Point], policy: dict[str, Any], now: datetime) -> Snapshot:
    """Per tier, the live points as (time, tag, when this tier drops it)."""
    out: Snapshot = {VAULT: set(), ARCHIVE: set()}
    for p in points:
        ends = {span.store: span.end for span in retention.plan(p.time, p.tag, policy)}
        for store in retention.state_at(p.time, p.tag, policy, now):
            out[store].add((p.time, p.tag, ends[store]))
    return out


def simulate(
    policy: dict[str, Any], start: datetime, days: int, checks: list[datetime]
) -> tuple[list[Point], dict[datetime, Snapshot]]:
    """Drive a FrozenClock hour by hour (stopping at each check) like the scheduler would."""
    clock = FrozenClock(start)
    schedule = retention.schedule_of(policy)
    criteria = retention.tagging_criteria_of(policy)
    stops = {start + timedelta(hours=h) for h in range(days * 24 + 1)} | set(checks)
    points: list[Point] = []
    last_run: datetime | None = start  # nothing before the start is owed
    seen: dict[datetime, Snapshot] = {}
    for stop in sorted(stops):
        clock.advance(stop - clock.now())
        slot = schedule.due(last_run, clock.now())
        if slot is not None:
            points.append(Point(slot, retention.tag_for(slot, criteria, schedule).name))
            last_run = slot
        if stop in checks:
            seen[stop] = tiers_now(points, policy, clock.now())
    return points, seen


def plus_months(t: datetime, months: int) -> datetime:
    """Calendar months, clamping by stepping back from an invalid day (test's own way)."""
    index = t.year * 12 + (t.month - 1) + months
    day = t.day
    while True:
        try:
            return t.replace(year=index // 12, month=index % 12 + 1, day=day)
        except ValueError:
            day -= 1


def each_day(first: date, last: date) -> Iterator[date]:
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


# The simulated year: weekly Sunday 02:00 UTC; Default 5 weeks, Weekly 3 months,
# Monthly 1 year then archive until 3 years, Yearly 10 years.
YEAR_START = utc(2023, 11, 1)
YEAR_DAYS = 400
YEAR_CHECKS = [
    utc(2023, 11, 5, 1, 59),  # before the first slot
    utc(2023, 11, 5, 2),  # the first point exists at its own instant
    utc(2024, 1, 7, 2),  # first Sunday of the year
    utc(2024, 2, 12),
    utc(2024, 2, 29, 12),  # leap day
    utc(2024, 3, 10, 2),  # Dec 10 weekly expires exactly now
    utc(2024, 5, 31, 23),
    utc(2024, 6, 30, 1, 59),  # Mar 31 weekly: + P3M clamps to Jun 30
    utc(2024, 6, 30, 2),  # ... and expires as the Jun 30 point is made
    utc(2024, 8, 15, 12),
    utc(2024, 11, 5, 1, 59),  # Nov 5 2023 monthly still in the vault
    utc(2024, 11, 5, 2),  # ... and now only in the archive
    utc(2024, 12, 3, 2),  # Dec 3 2023 monthly moves too
    YEAR_START + timedelta(days=YEAR_DAYS),
]


def year_expected_tag(d: date) -> str:
    """A Sunday is the year's first if it is in Jan 1-7, the month's first if in days 1-7."""
    if d.month == 1 and d.day <= 7:
        return "Yearly"
    return "Monthly" if d.day <= 7 else "Weekly"


def year_expected_points() -> list[Point]:
    end = YEAR_START + timedelta(days=YEAR_DAYS)
    sundays = [d for d in each_day(YEAR_START.date(), end.date()) if d.isoweekday() == 7]
    slots = [datetime(d.year, d.month, d.day, 2, tzinfo=UTC) for d in sundays]
    return [Point(s, year_expected_tag(s.date())) for s in slots if YEAR_START < s <= end]


def year_expected_tiers(now: datetime) -> Snapshot:
    vault_months = {"Weekly": 3, "Monthly": 12, "Yearly": 120}
    out: Snapshot = {VAULT: set(), ARCHIVE: set()}
    for p in year_expected_points():
        if p.time > now:
            continue
        vault_end = plus_months(p.time, vault_months[p.tag])
        if now < vault_end:
            out[VAULT].add((p.time, p.tag, vault_end))
        archive_end = plus_months(p.time, 36)
        if p.tag == "Monthly" and vault_end <= now < archive_end:
            out[ARCHIVE].add((p.time, p.tag, archive_end))
    return out


@pytest.fixture(scope="module")
def simulated_year() -> tuple[list[Point], dict[datetime, Snapshot]]:
    return simulate(year_policy(), YEAR_START, YEAR_DAYS, YEAR_CHECKS)


def test_simulated_year_makes_one_point_per_sunday_with_its_tag(
    simulated_year: tuple[list[Point], dict[datetime, Snapshot]],
) -> None:
    points, _ = simulated_year
    assert points == year_expected_points()
    assert len(points) == 57
    assert {p.tag for p in points} == {"Weekly", "Monthly", "Yearly"}


@pytest.mark.parametrize("check", YEAR_CHECKS, ids=[c.isoformat()[:16] for c in YEAR_CHECKS])
def test_simulated_year_tiers(
    simulated_year: tuple[list[Point], dict[datetime, Snapshot]], check: datetime
) -> None:
    _, seen = simulated_year
    assert seen[check] == year_expected_tiers(check)


def test_simulated_year_end_state_by_hand(
    simulated_year: tuple[list[Point], dict[datetime, Snapshot]],
) -> None:
    """Spot facts written out, so the comparison above cannot pass by both being empty."""
    _, seen = simulated_year
    end = seen[YEAR_CHECKS[-1]]
    assert end[ARCHIVE] == {
        (utc(2023, 11, 5, 2), "Monthly", utc(2026, 11, 5, 2)),
        (utc(2023, 12, 3, 2), "Monthly", utc(2026, 12, 3, 2)),
    }
    assert (utc(2024, 1, 7, 2), "Yearly", utc(2034, 1, 7, 2)) in end[VAULT]
    assert (utc(2024, 12, 1, 2), "Monthly", utc(2025, 12, 1, 2)) in end[VAULT]
    weekly = sorted(t for t, tag, _ in end[VAULT] if tag == "Weekly")
    assert weekly[0] == utc(2024, 9, 8, 2)  # three months back, first Sundays excluded
    assert seen[utc(2024, 6, 30, 1, 59)][VAULT] > {
        (utc(2024, 3, 31, 2), "Weekly", utc(2024, 6, 30, 2))
    }
    assert (utc(2024, 3, 31, 2), "Weekly", utc(2024, 6, 30, 2)) not in seen[utc(2024, 6, 30, 2)][
        VAULT
    ]
    assert seen[utc(2023, 11, 5, 1, 59)] == {VAULT: set(), ARCHIVE: set()}


# A daily quarter in Berlin across the spring DST change: Default 7 days; Weekly 5 weeks
# and also in the archive at once until 6 months; Monthly 3 months, copied to the archive
# after 30 days and kept there until 1 year.


def berlin_policy() -> dict[str, Any]:
    policy = retention.build_policy(
        schedule="daily",
        time="01:30",
        timezone="Europe/Berlin",
        keep_default="P7D",
        keep_weekly="P5W",
        keep_monthly="P3M",
        archive_after="P30D",
        archive_keep="P1Y",
        archive_tags=["Monthly"],
    )
    weekly = policy["policyRules"][2]
    weekly["lifecycles"][0]["targetDataStoreCopySettings"] = [
        {
            "copyAfter": {"objectType": "ImmediateCopyOption"},
            "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "ArchiveStore"},
        }
    ]
    weekly["lifecycles"].append(
        {
            "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"},
            "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "ArchiveStore"},
            "targetDataStoreCopySettings": [],
        }
    )
    retention.validate_policy(policy)
    return policy


BERLIN_START = utc(2024, 3, 1)
BERLIN_DAYS = 100
BERLIN_CHECKS = [
    utc(2024, 3, 1, 0, 30),  # 01:30 CET: the March 1 point
    utc(2024, 3, 8, 0, 29),
    utc(2024, 3, 8, 0, 30),  # the Mar 1 point's vault copy ends as Mar 8's is made
    utc(2024, 3, 31, 0, 30),  # DST day: 01:30 CET is before the jump
    utc(2024, 3, 31, 23, 30),  # 01:30 CEST on April 1, a Monthly point made on UTC March 31
    utc(2024, 4, 1, 12),
    utc(2024, 4, 30, 23, 30),  # Apr 1 monthly reaches the archive (created + 30 days)
    utc(2024, 5, 1, 12),
    utc(2024, 5, 4, 23, 29),
    utc(2024, 6, 1, 0, 30),  # Mar 1 monthly leaves the vault (+3 months, counted in UTC)
    BERLIN_START + timedelta(days=BERLIN_DAYS),
]


def berlin_expected_tiers(now: datetime) -> Snapshot:
    out: Snapshot = {VAULT: set(), ARCHIVE: set()}
    for d in each_day(date(2024, 3, 1), date(2024, 6, 9)):
        made = datetime(d.year, d.month, d.day, 1, 30, tzinfo=BERLIN).astimezone(UTC)
        if not BERLIN_START < made <= min(now, BERLIN_START + timedelta(days=BERLIN_DAYS)):
            continue
        local = made.astimezone(BERLIN)  # tags follow the local calendar ...
        if local.day == 1:  # ... while lifetimes count from the UTC creation time
            tag, vault_end = "Monthly", plus_months(made, 3)
            archive = (made + timedelta(days=30), plus_months(made, 12))
        elif local.isoweekday() == 7:
            tag, vault_end = "Weekly", made + timedelta(days=35)
            archive = (made, plus_months(made, 6))
        else:
            tag, vault_end, archive = "Default", made + timedelta(days=7), None
        if now < vault_end:
            out[VAULT].add((made, tag, vault_end))
        if archive and archive[0] <= now < archive[1]:
            out[ARCHIVE].add((made, tag, archive[1]))
    return out


@pytest.fixture(scope="module")
def simulated_berlin() -> tuple[list[Point], dict[datetime, Snapshot]]:
    return simulate(berlin_policy(), BERLIN_START, BERLIN_DAYS, BERLIN_CHECKS)


@pytest.mark.parametrize("check", BERLIN_CHECKS, ids=[c.isoformat()[:16] for c in BERLIN_CHECKS])
def test_simulated_berlin_quarter_tiers(
    simulated_berlin: tuple[list[Point], dict[datetime, Snapshot]], check: datetime
) -> None:
    _, seen = simulated_berlin
    assert seen[check] == berlin_expected_tiers(check)


def test_simulated_berlin_quarter_points(
    simulated_berlin: tuple[list[Point], dict[datetime, Snapshot]],
) -> None:
    points, seen = simulated_berlin
    # 100 UTC days hold 101 local 01:30 slots: from April on, 01:30 CEST is 23:30Z the day before
    assert len(points) == BERLIN_DAYS + 1
    assert [p.tag for p in points].count("Monthly") == 4  # Mar 1 .. Jun 1
    assert Point(utc(2024, 3, 31, 23, 30), "Monthly") in points
    assert Point(utc(2024, 3, 31, 0, 30), "Weekly") in points
    assert seen[utc(2024, 4, 30, 23, 30)][ARCHIVE] >= {
        (utc(2024, 3, 31, 23, 30), "Monthly", utc(2025, 3, 31, 23, 30))
    }
