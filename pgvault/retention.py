"""Retention in Azure's shape: which tag a backup gets, and which store holds it until when.

A policy's AzureBackupRule carries `taggingCriteria` (which backups are Weekly,
Monthly...) and each AzureRetentionRule, named after a tag, carries lifecycles:
how long the point stays in VaultStore, whether and when it is copied to
ArchiveStore, and how long it stays there. Everything here is pure: give it a
point's time and the policy document, get back tags and tier spans. Keys and enum
values are read case-insensitively, as Azure does.

Choices where Azure is silent:

* **"First" backups are scheduled slots.** FirstOfDay/Week/Month/Year mean the first
  slot of the schedule in that period (in the schedule's time zone), computed from
  the schedule alone, so tagging is deterministic and works in simulation without
  knowing which backups actually ran. A point is attributed to the latest slot at
  or before its time (a backup that started late still serves its slot); a point
  before the schedule's first slot is never a "first".
* **Weeks start on Sunday** (.NET's DayOfWeek order, and Azure's default weekly day).
* **weeksOfTheMonth**: First = days 1-7, Second = 8-14, Third = 15-21, Fourth =
  22-28, Last = the month's last 7 days. `daysOfMonth` dates a month lacks never match.
* **Matching**: within a criterion every given field must match (values of one field
  are alternatives); a tag matches if any of its criteria does; the lowest
  `taggingPriority` wins, ties go to the earlier entry; the isDefault entry applies
  only when nothing else matches. A missing priority takes the CLI's value for the
  tag name (Default 99, Daily 25, Weekly 20, Monthly 15, Yearly 10), else 50.
* **Lifecycles**: every `deleteAfter` (AbsoluteDeleteOption) and CustomCopyOption
  duration counts from the point's creation time, in UTC, with calendar months.
  CopyOnExpiryOption moves the point when its vault copy expires; ImmediateCopyOption
  copies at creation; CustomCopyOption copies after its duration (both stores hold
  it until each store's own expiry). A tag without a retention rule falls back to
  the Default rule (a policy edit must not make old points immortal).
* **Ranges** compare durations by average Gregorian length (year 365.2425 days):
  VaultStore P7D-P10Y, ArchiveStore P6M-P10Y; so P10Y, P120M and P3652D are all
  "10 years", while P180D is short of 6 months.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as wall_time
from typing import Any, TypeVar

from pgvault import jsonbody
from pgvault.errors import BadRequest
from pgvault.recurrence import (
    WEEKDAY_NAMES,
    Duration,
    Schedule,
    bad,
    require_aware,
    resolve_zone,
)

T = TypeVar("T")

VAULT = "VaultStore"
ARCHIVE = "ArchiveStore"
DEFAULT_TAG = "Default"
# Same value as pgvault.policies.DATASOURCE_TYPE; not imported, so policies may import us.
DATASOURCE_TYPE = "Microsoft.DBforPostgreSQL/servers/databases"

ON_EXPIRY = "CopyOnExpiryOption"
CUSTOM = "CustomCopyOption"
IMMEDIATE = "ImmediateCopyOption"

ABSOLUTE_CRITERIA = ("AllBackup", "FirstOfDay", "FirstOfWeek", "FirstOfMonth", "FirstOfYear")
WEEKS_OF_MONTH = ("First", "Second", "Third", "Fourth", "Last")
MONTH_NAMES = tuple(calendar.month_name[1:])
TAG_PRIORITIES = (("Yearly", 10), ("Monthly", 15), ("Weekly", 20), ("Daily", 25), ("Default", 99))
TAG_CRITERIA = (
    ("Daily", "FirstOfDay"),
    ("Weekly", "FirstOfWeek"),
    ("Monthly", "FirstOfMonth"),
    ("Yearly", "FirstOfYear"),
)
_OTHER_PRIORITY = 50

VAULT_RANGE = (Duration(days=7), Duration(years=10))
ARCHIVE_RANGE = (Duration(months=6), Duration(years=10))


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Tag:
    """A retention tag; its name is also the name of the retention rule that applies."""

    name: str
    priority: int


@dataclass(frozen=True)
class Criterion:
    """One ScheduleBasedBackupCriteria: all given fields must match; a field's values are OR."""

    absolute: frozenset[str] = frozenset()
    weekdays: frozenset[int] = frozenset()  # date.weekday(): Monday = 0
    days_of_month: frozenset[int] = frozenset()
    last_day_of_month: bool = False
    weeks_of_month: frozenset[str] = frozenset()
    months: frozenset[int] = frozenset()  # 1 = January
    times: frozenset[wall_time] = frozenset()

    def is_empty(self) -> bool:
        return self == Criterion()

    def matches(self, local: datetime, firsts: frozenset[str]) -> bool:
        """Does a slot at wall-clock `local` match, given which "first of" it is?"""
        day = local.date()
        return all(
            (
                not self.absolute or bool(self.absolute & firsts),
                not self.weekdays or day.weekday() in self.weekdays,
                not self.months or day.month in self.months,
                not self.weeks_of_month or bool(_weeks_of_month(day) & self.weeks_of_month),
                not (self.days_of_month or self.last_day_of_month) or self._day_matches(day),
                not self.times or local.time() in self.times,
            )
        )

    def _day_matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        return day.day in self.days_of_month or (self.last_day_of_month and day.day == last)


@dataclass(frozen=True)
class TaggingRule:
    """One entry of `taggingCriteria`."""

    tag: Tag
    is_default: bool
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class CopySetting:
    """One `targetDataStoreCopySettings` entry: copy to `target` at creation + `after`."""

    kind: str
    target: str
    after: Duration | None = None  # CustomCopyOption only

    def copy_time(self, created: datetime, source_delete_after: Duration) -> datetime:
        if self.kind == ON_EXPIRY:
            return source_delete_after.add_to(created)
        if self.kind == CUSTOM and self.after is not None:
            return self.after.add_to(created)
        return created


@dataclass(frozen=True)
class Lifecycle:
    """A point's stay in one store: deleted `delete_after` after creation, maybe copied on."""

    source: str
    delete_after: Duration
    copies: tuple[CopySetting, ...]


@dataclass(frozen=True)
class RetentionRule:
    """An AzureRetentionRule; `name` is the tag it governs."""

    name: str
    is_default: bool
    lifecycles: tuple[Lifecycle, ...]

    def lifecycle(self, store: str) -> Lifecycle | None:
        return next((lc for lc in self.lifecycles if lc.source == store), None)


@dataclass(frozen=True)
class TierSpan:
    """A point is in `store` from `start` (inclusive) until `end` (exclusive)."""

    store: str
    start: datetime
    end: datetime

    def holds(self, t: datetime) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy: `target` is a JSON path, `message` a full sentence."""

    target: str
    message: str


# --------------------------------------------------------------------------- parsing


def _canon(value: object, allowed: Sequence[str], what: str) -> str:
    """The canonical spelling of a case-insensitive enum value, or a 400 listing the choices."""
    if isinstance(value, str):
        for option in allowed:
            if option.lower() == value.strip().lower():
                return option
    raise bad(f"{what} {value!r} is not one of {', '.join(allowed)}.")


def _list(obj: Any, key: str) -> list[Any]:
    value = jsonbody.get(obj, key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(f"{key} must be a list.")
    return value


def _parse_days_of_month(entries: list[Any]) -> tuple[frozenset[int], bool]:
    dates: set[int] = set()
    last = False
    for entry in entries:
        if jsonbody.get(entry, "isLast") is True:
            last = True
            continue
        day = jsonbody.get(entry, "date")
        if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 31:
            raise bad(f"daysOfMonth entry {entry!r} needs a date from 1 to 31 or isLast: true.")
        dates.add(day)
    return frozenset(dates), last


def _parse_time(value: object) -> wall_time:
    """A `scheduleTimes` entry: a date-time (Azure's shape) or a bare time; only HH:MM:SS count."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).time().replace(tzinfo=None)
        except ValueError:
            try:
                return wall_time.fromisoformat(value).replace(tzinfo=None)
            except ValueError:
                pass
    raise bad(f"scheduleTimes entry {value!r} is not an ISO 8601 date-time.")


def parse_criterion(obj: object) -> Criterion:
    """A ScheduleBasedBackupCriteria object."""
    if not isinstance(obj, dict):
        raise bad(f"A criterion must be an object, got {obj!r}.")
    kind = jsonbody.get(obj, "objectType")
    if kind is not None and not jsonbody.same(kind, "ScheduleBasedBackupCriteria"):
        raise bad(f"Criterion objectType {kind!r} is not ScheduleBasedBackupCriteria.")
    days, last = _parse_days_of_month(_list(obj, "daysOfMonth"))
    return Criterion(
        absolute=frozenset(
            _canon(v, ABSOLUTE_CRITERIA, "absoluteCriteria") for v in _list(obj, "absoluteCriteria")
        ),
        weekdays=frozenset(
            WEEKDAY_NAMES.index(_canon(v, WEEKDAY_NAMES, "daysOfTheWeek"))
            for v in _list(obj, "daysOfTheWeek")
        ),
        days_of_month=days,
        last_day_of_month=last,
        weeks_of_month=frozenset(
            _canon(v, WEEKS_OF_MONTH, "weeksOfTheMonth") for v in _list(obj, "weeksOfTheMonth")
        ),
        months=frozenset(
            MONTH_NAMES.index(_canon(v, MONTH_NAMES, "monthsOfYear")) + 1
            for v in _list(obj, "monthsOfYear")
        ),
        times=frozenset(_parse_time(v) for v in _list(obj, "scheduleTimes")),
    )


def default_priority(tag_name: str) -> int:
    """The Azure CLI's priority for a well-known tag name (lower wins)."""
    return dict(TAG_PRIORITIES).get(tag_name.capitalize(), _OTHER_PRIORITY)


def parse_tagging_rule(obj: object) -> TaggingRule:
    """One `taggingCriteria` entry."""
    name = jsonbody.get(obj, "tagInfo", "tagName")
    if not isinstance(name, str) or not name.strip():
        raise bad(f"Tagging criterion {obj!r} needs tagInfo.tagName.")
    priority = jsonbody.get(obj, "taggingPriority")
    if priority is None:
        priority = default_priority(name)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise bad(f"Tag {name!r}: taggingPriority must be an integer, got {priority!r}.")
    return TaggingRule(
        tag=Tag(name.strip(), priority),
        is_default=jsonbody.get(obj, "isDefault") is True,
        criteria=tuple(parse_criterion(c) for c in _list(obj, "criteria")),
    )


def parse_tagging(tagging_criteria: Sequence[object]) -> tuple[TaggingRule, ...]:
    return tuple(parse_tagging_rule(entry) for entry in tagging_criteria)


def _store(obj: object, what: str) -> str:
    return _canon(jsonbody.get(obj, "dataStoreType"), (VAULT, ARCHIVE), what)


def _parse_copy(obj: object, rule: str) -> CopySetting:
    kind = _canon(
        jsonbody.get(obj, "copyAfter", "objectType"),
        (ON_EXPIRY, CUSTOM, IMMEDIATE),
        f"Retention rule {rule!r}: copyAfter.objectType",
    )
    target = _store(jsonbody.get(obj, "dataStore"), f"Retention rule {rule!r}: copy target")
    after = None
    if kind == CUSTOM:
        after = Duration.parse(jsonbody.get(obj, "copyAfter", "duration"))
    return CopySetting(kind=kind, target=target, after=after)


def _parse_lifecycle(obj: object, rule: str) -> Lifecycle:
    source = _store(jsonbody.get(obj, "sourceDataStore"), f"Retention rule {rule!r}: source")
    kind = jsonbody.get(obj, "deleteAfter", "objectType")
    if kind is not None and not jsonbody.same(kind, "AbsoluteDeleteOption"):
        raise bad(f"Retention rule {rule!r}: deleteAfter must be an AbsoluteDeleteOption.")
    try:
        delete_after = Duration.parse(jsonbody.get(obj, "deleteAfter", "duration"))
    except BadRequest as e:
        raise bad(f"Retention rule {rule!r}, {source} deleteAfter: {e.message}") from None
    copies = tuple(_parse_copy(c, rule) for c in _list(obj, "targetDataStoreCopySettings"))
    return Lifecycle(source=source, delete_after=delete_after, copies=copies)


def parse_retention_rule(obj: object) -> RetentionRule:
    """An AzureRetentionRule."""
    name = jsonbody.get(obj, "name")
    if not isinstance(name, str) or not name.strip():
        raise bad("A retention rule needs a name (the tag it applies to).")
    lifecycles = tuple(_parse_lifecycle(lc, name) for lc in _list(obj, "lifecycles"))
    return RetentionRule(
        name=name.strip(), is_default=jsonbody.get(obj, "isDefault") is True, lifecycles=lifecycles
    )


def _rules(properties: Mapping[str, Any], kind: str) -> list[Any]:
    rules = jsonbody.get(properties, "policyRules")
    if not isinstance(rules, list):
        return []
    return [r for r in rules if jsonbody.same(jsonbody.get(r, "objectType"), kind)]


def backup_rule(properties: Mapping[str, Any]) -> Mapping[str, Any]:
    """The policy's AzureBackupRule (PostgreSQL policies have exactly one)."""
    rules = _rules(properties, "AzureBackupRule")
    if not rules:
        raise bad("The policy has no AzureBackupRule with a schedule.", target="policyRules")
    rule: Mapping[str, Any] = rules[0]
    return rule


def schedule_of(properties: Mapping[str, Any]) -> Schedule:
    return Schedule.from_trigger(jsonbody.get(backup_rule(properties), "trigger") or {})


def tagging_criteria_of(properties: Mapping[str, Any]) -> list[Any]:
    return _list(jsonbody.get(backup_rule(properties), "trigger") or {}, "taggingCriteria")


def retention_rules(properties: Mapping[str, Any]) -> tuple[RetentionRule, ...]:
    return tuple(parse_retention_rule(r) for r in _rules(properties, "AzureRetentionRule"))


def rule_for(properties: Mapping[str, Any], tag: Tag | str) -> RetentionRule:
    """The retention rule named after `tag`, else the Default rule."""
    name = tag.name if isinstance(tag, Tag) else tag
    rules = retention_rules(properties)
    exact = [r for r in rules if r.name.lower() == name.lower()]
    fallback = [r for r in rules if r.is_default or r.name.lower() == DEFAULT_TAG.lower()]
    if exact or fallback:
        return (exact or fallback)[0]
    raise bad(f"The policy has no retention rule for tag {name!r} and no Default rule.")


# --------------------------------------------------------------------------- tagging


def _weeks_of_month(day: date) -> frozenset[str]:
    last = calendar.monthrange(day.year, day.month)[1]
    weeks = {WEEKS_OF_MONTH[(day.day - 1) // 7]} if day.day <= 28 else set()
    if day.day > last - 7:
        weeks.add("Last")
    return frozenset(weeks)


def _period_starts(local: datetime) -> dict[str, date]:
    """The first day of the day/week (Sunday)/month/year containing a local time."""
    day = local.date()
    return {
        "FirstOfDay": day,
        "FirstOfWeek": day - timedelta(days=(day.weekday() + 1) % 7),
        "FirstOfMonth": day.replace(day=1),
        "FirstOfYear": day.replace(month=1, day=1),
    }


def _firsts(slot: datetime, schedule: Schedule) -> frozenset[str]:
    """Which absolute criteria a scheduled slot satisfies (always AllBackup)."""
    local = slot.astimezone(schedule.zone)
    firsts = {"AllBackup"}
    for name, start in _period_starts(local).items():
        midnight = datetime.combine(start, wall_time(), tzinfo=schedule.zone)
        if schedule.first_at_or_after(midnight) == slot:
            firsts.add(name)
    return frozenset(firsts)


def _override(rules: Sequence[TaggingRule], name: str) -> Tag:
    for rule in rules:
        if rule.tag.name.lower() == name.strip().lower():
            return rule.tag
    known = ", ".join(r.tag.name for r in rules) or DEFAULT_TAG
    raise bad(
        f"retentionTagOverride {name!r} is not a tag of this policy; use one of: {known}.",
        target="backupRuleOptions.triggerOption.retentionTagOverride",
    )


def tag_for(
    point_time: datetime,
    tagging_criteria: Sequence[object],
    schedule: Schedule,
    *,
    override: str | None = None,
) -> Tag:
    """The retention tag of a backup taken at `point_time` (see the module doc for "first").

    `override` is an on-demand backup's `retentionTagOverride`: it must name a tag of
    the policy and wins outright.
    """
    rules = parse_tagging(tagging_criteria)
    if override is not None:
        return _override(rules, override)
    slot = schedule.last_at_or_before(require_aware(point_time, "point_time"))
    reference = slot if slot is not None else point_time
    firsts = _firsts(slot, schedule) if slot is not None else frozenset({"AllBackup"})
    local = reference.astimezone(schedule.zone)
    matching = [
        r.tag
        for r in rules
        if not r.is_default and any(c.matches(local, firsts) for c in r.criteria)
    ]
    if matching:
        return min(matching, key=lambda tag: tag.priority)
    default = next((r.tag for r in rules if r.is_default), None)
    return default or Tag(DEFAULT_TAG, default_priority(DEFAULT_TAG))


# --------------------------------------------------------------------------- lifecycles


def plan(point_time: datetime, tag: Tag | str, policy: Mapping[str, Any]) -> list[TierSpan]:
    """Where a point lives and until when: a VaultStore span, then any ArchiveStore span.

    `policy` is the policy's `properties`. A copy whose target store has no lifecycle,
    or that would start after its source copy is gone, yields no span (validation
    reports those policies).
    """
    created = require_aware(point_time, "point_time")
    rule = rule_for(policy, tag)
    vault = rule.lifecycle(VAULT)
    if vault is None:
        raise bad(f"Retention rule {rule.name!r} has no VaultStore lifecycle.")
    vault_end = vault.delete_after.add_to(created)
    spans = [TierSpan(VAULT, created, vault_end)]
    for copy in vault.copies:
        target = rule.lifecycle(copy.target)
        start = copy.copy_time(created, vault.delete_after)
        if target is None or start > vault_end:
            continue
        end = target.delete_after.add_to(created)
        if start < end:
            spans.append(TierSpan(copy.target, start, end))
    return spans


def state_at(
    point_time: datetime, tag: Tag | str, policy: Mapping[str, Any], t: datetime
) -> set[str]:
    """The stores holding the point at time `t` (empty before creation and after expiry)."""
    require_aware(t, "t")
    return {span.store for span in plan(point_time, tag, policy) if span.holds(t)}


def expires_at(point_time: datetime, tag: Tag | str, policy: Mapping[str, Any]) -> datetime:
    """When the last copy of the point is deleted (the recovery point's expiryTime)."""
    return max(span.end for span in plan(point_time, tag, policy))


# --------------------------------------------------------------------------- validation


def _range_problem(
    rule: str, store: str, duration: Duration, bounds: tuple[Duration, Duration]
) -> str | None:
    lo, hi = bounds
    if lo.nominal_days() <= duration.nominal_days() <= hi.nominal_days():
        return None
    return (
        f"Retention rule {rule!r}: {store} deleteAfter {duration.iso()} is outside the "
        f"allowed range {lo.describe()} to {hi.describe()} ({lo.iso()} to {hi.iso()})."
    )


def _copy_problems(rule: RetentionRule, vault: Lifecycle) -> list[str]:
    """Copies must go to the archive, while the vault copy exists, and leave time to live."""
    found: list[str] = []
    archive = rule.lifecycle(ARCHIVE)
    for copy in vault.copies:
        after = copy.after or (vault.delete_after if copy.kind == ON_EXPIRY else Duration())
        if copy.target != ARCHIVE:
            found.append(f"Retention rule {rule.name!r}: copies can only go to {ARCHIVE}.")
        elif archive is None:
            found.append(
                f"Retention rule {rule.name!r} copies to {ARCHIVE} but has no lifecycle with "
                f"sourceDataStore {ARCHIVE} saying how long to keep it there."
            )
        elif archive.delete_after.nominal_days() <= after.nominal_days():
            found.append(
                f"Retention rule {rule.name!r}: {ARCHIVE} deleteAfter "
                f"{archive.delete_after.iso()} counts from the backup time, so it must be "
                f"longer than {after.iso()}, when the copy is made."
            )
        if copy.kind == CUSTOM and after.nominal_days() >= vault.delete_after.nominal_days():
            found.append(
                f"Retention rule {rule.name!r}: CustomCopyOption after {after.iso()} comes after "
                f"the {VAULT} copy is deleted ({vault.delete_after.iso()}); use "
                f"{ON_EXPIRY} or a shorter duration."
            )
    return found


def _lifecycle_problems(rule: RetentionRule) -> list[str]:
    vault = rule.lifecycle(VAULT)
    if vault is None:
        return [f"Retention rule {rule.name!r} needs a lifecycle with sourceDataStore {VAULT}."]
    found = [_range_problem(rule.name, VAULT, vault.delete_after, VAULT_RANGE)]
    archive = rule.lifecycle(ARCHIVE)
    if archive is not None:
        found.append(_range_problem(rule.name, ARCHIVE, archive.delete_after, ARCHIVE_RANGE))
        if archive.copies:
            found.append(f"Retention rule {rule.name!r}: {ARCHIVE} cannot copy further.")
        if not any(c.target == ARCHIVE for c in vault.copies):
            found.append(
                f"Retention rule {rule.name!r} has an {ARCHIVE} lifecycle but its {VAULT} "
                "lifecycle never copies there (add targetDataStoreCopySettings)."
            )
    if len({lc.source for lc in rule.lifecycles}) != len(rule.lifecycles):
        found.append(f"Retention rule {rule.name!r} has two lifecycles for the same store.")
    return [p for p in found if p] + _copy_problems(rule, vault)


def _parse_each(
    items: Sequence[Any], parse: Callable[[Any], T], target: str, problems: list[Problem]
) -> list[T]:
    """Parse every item, turning each failure into a problem instead of stopping."""
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(parse(item))
        except BadRequest as e:
            problems.append(Problem(f"{target}[{i}]", e.message))
    return parsed


def _backup_rule_problems(properties: Mapping[str, Any], problems: list[Problem]) -> list[Any]:
    """Check the one backup rule and its schedule; return its tagging criteria (raw)."""
    rules = _rules(properties, "AzureBackupRule")
    if len(rules) != 1:
        what = "no AzureBackupRule" if not rules else f"{len(rules)} AzureBackupRules"
        problems.append(
            Problem("policyRules", f"The policy has {what}; it needs exactly one, with a schedule.")
        )
        if not rules:
            return []
    store = jsonbody.get(rules[0], "dataStore", "dataStoreType")
    if store is not None and not jsonbody.same(store, VAULT):
        problems.append(Problem("dataStore", f"Backups can only be taken to {VAULT}."))
    trigger = jsonbody.get(rules[0], "trigger") or {}
    _parse_each([trigger], Schedule.from_trigger, "trigger.schedule", problems)
    try:
        return _list(trigger, "taggingCriteria")
    except BadRequest as e:
        problems.append(Problem("trigger.taggingCriteria", e.message))
        return []


def _tag_problems(tags: list[TaggingRule], retention: list[RetentionRule]) -> list[Problem]:
    """Each tag needs its retention rule; criteria must say something; names are unique."""
    names = {r.name.lower() for r in retention}
    found: list[Problem] = []
    for rule in tags:
        target = f"taggingCriteria[{rule.tag.name}]"
        if not rule.is_default and rule.tag.name.lower() not in names:
            found.append(
                Problem(
                    target,
                    f"Tag {rule.tag.name!r} has no retention rule; add an AzureRetentionRule "
                    f"named {rule.tag.name!r} or remove the tag.",
                )
            )
        if not rule.is_default and (not rule.criteria or any(c.is_empty() for c in rule.criteria)):
            found.append(
                Problem(target, f"Tag {rule.tag.name!r} needs criteria that select backups.")
            )
    tag_names = [r.tag.name.lower() for r in tags]
    if len(set(tag_names)) != len(tag_names):
        found.append(Problem("taggingCriteria", "Two tagging criteria use the same tag name."))
    if sum(r.is_default for r in tags) > 1:
        found.append(Problem("taggingCriteria", "Only one tagging criterion can be isDefault."))
    return found


def _retention_problems(retention: list[RetentionRule]) -> list[Problem]:
    found = [
        Problem(f"policyRules[{rule.name}]", message)
        for rule in retention
        for message in _lifecycle_problems(rule)
    ]
    names = [r.name.lower() for r in retention]
    if len(set(names)) != len(names):
        found.append(Problem("policyRules", "Two retention rules have the same name."))
    if not any(r.is_default for r in retention):
        found.append(
            Problem(
                "policyRules",
                "The policy needs a Default retention rule (isDefault: true) for backups "
                "no other tag selects.",
            )
        )
    return found


def check_policy(properties: Mapping[str, Any]) -> list[Problem]:
    """Every problem with a policy's rules (an empty list means it is usable)."""
    problems: list[Problem] = []
    if not isinstance(jsonbody.get(properties, "policyRules"), list):
        return [Problem("policyRules", "policyRules must be a list of rule objects.")]
    raw_tags = _backup_rule_problems(properties, problems)
    tags = _parse_each(raw_tags, parse_tagging_rule, "taggingCriteria", problems)
    raw_retention = _rules(properties, "AzureRetentionRule")
    retention = _parse_each(raw_retention, parse_retention_rule, "policyRules", problems)
    if len(retention) == len(raw_retention):
        problems += _retention_problems(retention)
    if len(tags) == len(raw_tags) and len(retention) == len(raw_retention):
        problems += _tag_problems(tags, retention)
    return problems


def validate_policy(properties: Mapping[str, Any]) -> None:
    """Raise a 400 `BadParameter` naming every problem (rule and allowed range) at once."""
    problems = check_policy(properties)
    if problems:
        raise bad(" ".join(p.message for p in problems), target=problems[0].target)


# --------------------------------------------------------------------------- describing

_ABSOLUTE_WORDS = {
    "AllBackup": "every backup",
    "FirstOfDay": "first of day",
    "FirstOfWeek": "first of week",
    "FirstOfMonth": "first of month",
    "FirstOfYear": "first of year",
}


def _or(words: Sequence[str]) -> str:
    return " or ".join(words)


def describe_criterion(c: Criterion) -> str:
    """`first of month`, `last Sunday of the month`, `day 1 or 15 in January`..."""
    parts = [_or([_ABSOLUTE_WORDS[a] for a in ABSOLUTE_CRITERIA if a in c.absolute])]
    days = _or([WEEKDAY_NAMES[d] for d in sorted(c.weekdays, key=lambda d: (d + 1) % 7)])
    weeks = _or([w.lower() for w in WEEKS_OF_MONTH if w in c.weeks_of_month])
    if weeks:
        parts.append(f"{weeks} {days or 'week'} of the month")
    elif days:
        parts.append(days)
    dates = [str(d) for d in sorted(c.days_of_month)] + (["last"] if c.last_day_of_month else [])
    if dates:
        parts.append(f"day {_or(dates)} of the month")
    if c.months:
        parts.append("in " + _or([MONTH_NAMES[m - 1] for m in sorted(c.months)]))
    if c.times:
        parts.append("at " + _or([t.strftime("%H:%M") for t in sorted(c.times)]))
    return " ".join(p for p in parts if p)


def _describe_keep(rule: RetentionRule) -> str:
    vault = rule.lifecycle(VAULT)
    archive = rule.lifecycle(ARCHIVE)
    if vault is None:
        return "(no vault lifecycle)"
    text = vault.delete_after.describe()
    for copy in vault.copies:
        if archive is None or copy.target != ARCHIVE:
            continue
        until = f"until {archive.delete_after.describe()} old"
        if copy.kind == ON_EXPIRY:
            text += f" then archive {until}"
        elif copy.kind == CUSTOM and copy.after is not None:
            text += f", copied to archive after {copy.after.describe()} and kept there {until}"
        else:
            text += f", copied to archive at once and kept there {until}"
    return text


def describe_policy(properties: Mapping[str, Any]) -> str:
    """One line a person can check: schedule, then each tag by priority with its retention.

    e.g. `every Sunday at 02:00 UTC; keep Yearly (first of year) 10 years, Monthly
    (first of month) 1 year then archive until 3 years old, Default 5 weeks`.
    """
    schedule = schedule_of(properties)
    tags = sorted(
        parse_tagging(tagging_criteria_of(properties)),
        key=lambda r: (r.is_default, r.tag.priority),
    )
    rules = {r.name.lower(): r for r in retention_rules(properties)}
    parts: list[str] = []
    for tagging in tags:
        rule = rules.pop(tagging.tag.name.lower(), None)
        if rule is None and tagging.is_default:
            rule = next((r for r in rules.values() if r.is_default), None)
        if rule is None:
            continue
        rules.pop(rule.name.lower(), None)
        selects = "; or ".join(describe_criterion(c) for c in tagging.criteria)
        name = tagging.tag.name
        if selects and not tagging.is_default:
            name += f" ({selects})"
        parts.append(f"{name} {_describe_keep(rule)}")
    parts += [f"{r.name} (on demand only) {_describe_keep(r)}" for r in rules.values()]
    return f"{schedule.describe()}; keep " + ", ".join(parts)


# --------------------------------------------------------------------------- building


def _store_info(store: str) -> dict[str, str]:
    return {"objectType": "DataStoreInfoBase", "dataStoreType": store}


def _delete_after(duration: str) -> dict[str, str]:
    return {"objectType": "AbsoluteDeleteOption", "duration": duration}


def _copy_after(archive_after: str) -> dict[str, str]:
    """`on-expiry`, `immediate` or an ISO duration -> Azure's copyAfter object."""
    word = archive_after.strip().lower().replace("-", "").replace("_", "")
    if word == "onexpiry":
        return {"objectType": ON_EXPIRY}
    if word == "immediate":
        return {"objectType": IMMEDIATE}
    return {"objectType": CUSTOM, "duration": Duration.parse(archive_after).iso()}


def _retention_rule(
    name: str, keep: str, archive: tuple[dict[str, str], str] | None
) -> dict[str, Any]:
    copies: list[dict[str, Any]] = []
    lifecycles: list[dict[str, Any]] = [
        {
            "deleteAfter": _delete_after(keep),
            "sourceDataStore": _store_info(VAULT),
            "targetDataStoreCopySettings": copies,
        }
    ]
    if archive is not None:
        copy_after, archive_keep = archive
        copies.append({"copyAfter": copy_after, "dataStore": _store_info(ARCHIVE)})
        lifecycles.append(
            {
                "deleteAfter": _delete_after(archive_keep),
                "sourceDataStore": _store_info(ARCHIVE),
                "targetDataStoreCopySettings": [],
            }
        )
    rule: dict[str, Any] = {"name": name, "objectType": "AzureRetentionRule"}
    if name == DEFAULT_TAG:
        rule["isDefault"] = True
    rule["lifecycles"] = lifecycles
    return rule


def _tagging_entry(name: str, absolute: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "isDefault": absolute is None,
        "taggingPriority": default_priority(name),
        "tagInfo": {"id": f"{name}_", "tagName": name},
    }
    if absolute is not None:
        entry["criteria"] = [
            {"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": [absolute]}
        ]
    return entry


def _anchor(day: date, at: str, zone: tzinfo) -> str:
    try:
        clock = wall_time.fromisoformat(at)
    except ValueError:
        raise bad(f"time {at!r} is not HH:MM (24-hour clock).") from None
    return datetime.combine(day, clock.replace(tzinfo=None), tzinfo=zone).isoformat()


def build_intervals(
    schedule: str, days: Sequence[str], at: str, every_hours: int | None, zone: tzinfo
) -> list[str]:
    """`repeatingTimeIntervals` for a weekly/daily/hourly schedule, anchored like Azure's
    (the week of Sunday 2021-08-15), with the zone's offset so the wall clock is `at`."""
    sunday = date(2021, 8, 15)
    kind = _canon(schedule, ("weekly", "daily", "hourly"), "schedule")
    if kind == "weekly":
        names = [_weekday(d) for d in days]
        if not names:
            raise bad("A weekly schedule needs at least one day.")
        offsets = sorted({(WEEKDAY_NAMES.index(n) + 1) % 7 for n in names})
        return [f"R/{_anchor(sunday + timedelta(days=o), at, zone)}/P1W" for o in offsets]
    if kind == "daily":
        return [f"R/{_anchor(sunday, at, zone)}/P1D"]
    if every_hours is None:
        raise bad("An hourly schedule needs every_hours (1, 2, 3, 4, 6, 8 or 12).")
    return [f"R/{_anchor(sunday, at, zone)}/PT{every_hours}H"]


def _weekday(name: str) -> str:
    """`Sunday`, `sunday` or `Sun`."""
    for full in WEEKDAY_NAMES:
        if name.strip().lower() in (full.lower(), full[:3].lower()):
            return full
    raise bad(f"day {name!r} is not a weekday name (Sunday, Monday, ...).")


def _archive_for(
    keeps: dict[str, str], archive_after: str | None, archive_keep: str, tags: Sequence[str] | None
) -> dict[str, tuple[dict[str, str], str]]:
    """Which tags get an archive tier: the named ones, else every one where it fits."""
    if archive_after is None:
        return {}
    copy_after = _copy_after(archive_after)
    keep = Duration.parse(archive_keep).iso()
    if tags is not None:
        return {_canon(t, list(keeps), "archive tag"): (copy_after, keep) for t in tags}
    chosen = {n: (copy_after, keep) for n, v in keeps.items() if _archive_fits(v, copy_after, keep)}
    if not chosen:
        raise bad(
            f"No retention rule can use archive_after {archive_after!r} with archive_keep "
            f"{keep}: the archive must outlast the vault copy, and a custom copy must happen "
            "while the vault copy exists."
        )
    return chosen


def _archive_fits(vault_keep: str, copy_after: dict[str, str], archive_keep: str) -> bool:
    """Archiving extends the point's life, and a custom copy comes before the vault expiry."""
    vault = Duration.parse(vault_keep).nominal_days()
    after = Duration.parse(copy_after.get("duration", "PT0S")).nominal_days()
    return vault < Duration.parse(archive_keep).nominal_days() and after < vault


def build_policy(
    schedule: str = "weekly",
    days: Sequence[str] = ("Sunday",),
    time: str = "02:00",
    every_hours: int | None = None,
    timezone: str = "UTC",
    keep_default: str = "P3M",
    keep_daily: str | None = None,
    keep_weekly: str | None = None,
    keep_monthly: str | None = None,
    keep_yearly: str | None = None,
    archive_after: str | None = None,
    archive_keep: str = "P3Y",
    archive_tags: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A policy's `properties` in Azure's exact shape, from the CLI's few options.

    Each `keep_*` given adds a tag (FirstOfDay/Week/Month/Year, the CLI's priorities)
    and its retention rule. `archive_after` (`on-expiry`, `immediate` or a duration
    such as `P30D`) adds an ArchiveStore tier kept `archive_keep` from creation, to
    `archive_tags`, or by default to every rule whose vault retention is shorter than
    `archive_keep`. The result is validated; a bad option is a 400 naming it.
    """
    _, zone = resolve_zone(timezone)
    intervals = build_intervals(schedule, days, time, every_hours, zone)
    keeps = {DEFAULT_TAG: Duration.parse(keep_default).iso()}
    given = {"Daily": keep_daily, "Weekly": keep_weekly, "Monthly": keep_monthly}
    given["Yearly"] = keep_yearly
    keeps |= {name: Duration.parse(v).iso() for name, v in given.items() if v is not None}
    archive = _archive_for(keeps, archive_after, archive_keep, archive_tags)
    absolute = dict(TAG_CRITERIA)
    rule_name = {"weekly": "BackupWeekly", "daily": "BackupDaily", "hourly": "BackupHourly"}
    properties = {
        "objectType": "BackupPolicy",
        "datasourceTypes": [DATASOURCE_TYPE],
        "policyRules": [
            {
                "name": rule_name[schedule.strip().lower()],
                "objectType": "AzureBackupRule",
                "backupParameters": {"objectType": "AzureBackupParams", "backupType": "Full"},
                "dataStore": _store_info(VAULT),
                "trigger": {
                    "objectType": "ScheduleBasedTriggerContext",
                    "schedule": {"repeatingTimeIntervals": intervals, "timeZone": timezone},
                    "taggingCriteria": [_tagging_entry(n, absolute.get(n)) for n in keeps],
                },
            },
            *(_retention_rule(n, keep, archive.get(n)) for n, keep in keeps.items()),
        ],
    }
    validate_policy(properties)
    return properties
