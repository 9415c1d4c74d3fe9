"""Four simulated months of a weekly policy, driven through the real scheduler and sweep.

The Context runs on a FrozenClock that the test moves in 6-hour steps; every step
calls `Scheduler.tick()` and waits for the real backups (pg_dump of a tiny database)
the workers run. What each point should be -- tag, expiry, the tier it sits in on a
given day -- is computed here from the Sunday slot dates by plain date arithmetic,
then compared with what pgvault listed, what its directories hold, and what
`retention.plan` says.
"""

from __future__ import annotations

import calendar
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from pgvault import instances, jobs, retention
from pgvault.recovery_points import RecoveryPoint
from pgvault.scheduler import Scheduler
from tests.integration.clocked import (
    START,
    ClockedVault,
    assert_consistent,
    clocked_vault,
    expected_objects,
    tiny_database,
)
from tests.integration.conftest import RG
from tests.support.pg import PgCluster

STEP = timedelta(hours=6)
WEEK = timedelta(weeks=1)
# Default points: 5 weeks in VaultStore, then deleted. The first backup of each month
# (Monthly): 2 months in VaultStore, then moved to ArchiveStore until 6 months old.
# (Short enough that tiering *and* deletions both happen within four months.)
POLICY = retention.build_policy(
    schedule="weekly",
    days=["Sunday"],
    time="02:00",
    keep_default="P5W",
    keep_weekly=None,
    keep_monthly="P2M",
    archive_after="on-expiry",
    archive_keep="P6M",
    archive_tags=["Monthly"],
)
FIRST_SLOT = datetime(2024, 1, 7, 2, 0, tzinfo=UTC)  # the first Sunday 02:00 after START
DOWN_FROM = datetime(2024, 2, 12, 0, 0, tzinfo=UTC)  # no process runs from here ...
DOWN_UNTIL = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)  # ... to here: 3 weeks, 3 Sunday slots
MAIN_END = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
LATER = datetime(2024, 10, 16, 0, 0, tzinfo=UTC)  # every point has expired by then


def utc(month: int, day: int, hour: int = 6) -> datetime:
    return datetime(2024, month, day, hour, 0, tzinfo=UTC)


def add_months(t: datetime, months: int) -> datetime:
    month0 = t.month - 1 + months
    year, month = t.year + month0 // 12, month0 % 12 + 1
    return t.replace(year=year, month=month, day=min(t.day, calendar.monthrange(year, month)[1]))


def first_tick_at_or_after(t: datetime) -> datetime:
    """When the test's scheduler first runs at or after `t` (6-hour grid, none while down)."""
    steps = -((START - t) // STEP)
    tick = START + steps * STEP
    return DOWN_UNTIL if DOWN_FROM < tick < DOWN_UNTIL else tick


@dataclass(frozen=True)
class Expected:
    """A backup the policy should produce, worked out from its slot by hand."""

    slot: datetime
    created: datetime
    tag: str
    vault_end: datetime
    archive_end: datetime | None

    def stores_at(self, t: datetime) -> set[str]:
        held = set()
        if self.created <= t < self.vault_end:
            held.add(retention.VAULT)
        if self.archive_end is not None and self.vault_end <= t < self.archive_end:
            held.add(retention.ARCHIVE)
        return held


def expected_backups(until: datetime) -> list[Expected]:
    """One backup per Sunday slot at the next tick; the slots missed while down collapse
    into one catch-up backup (for the latest of them) when the scheduler is back."""
    slots = []
    slot = FIRST_SLOT
    while slot < until:
        slots.append(slot)
        slot += WEEK
    out = []
    for slot in slots:
        missed = DOWN_FROM < slot < DOWN_UNTIL
        if missed and slot + WEEK < DOWN_UNTIL:
            continue  # an older missed slot: no backup at all
        created = first_tick_at_or_after(slot)
        monthly = slot.day <= 7  # the first Sunday of its month
        if monthly:
            vault_end, archive_end = add_months(created, 2), add_months(created, 6)
        else:
            vault_end, archive_end = created + timedelta(weeks=5), None
        out.append(Expected(slot, created, "Monthly" if monthly else "Default", vault_end,
                            archive_end))  # fmt: skip
    return out


def stores_of(p: RecoveryPoint) -> set[str]:
    return set(p.datastores)


class Timeline:
    """Moves the clock, ticks the scheduler, waits for the workers and checks every step."""

    def __init__(self, cv: ClockedVault, datastore: Path, archive: Path, names: list[str]):
        self.cv, self.datastore, self.archive, self.names = cv, datastore, archive, names
        self.scheduler = Scheduler(cv.ctx, interval=20)
        self.queued: dict[datetime, int] = {}
        self.ids: dict[str, dict[datetime, str]] = {n: {} for n in names}

    def tick(self) -> int:
        done = self.scheduler.tick()
        assert "queued" in done, "the only scheduler must hold the lease"
        self.cv.drain()
        self.queued[self.cv.now()] = done["queued"]
        for name in self.names:
            for p in self.cv.points(name):
                self.ids[name].setdefault(p.created_at, p.id)
        assert_consistent(self.cv, self.datastore, self.archive)
        return int(done["queued"])

    def run_until(self, end: datetime, step: timedelta = STEP, model: bool = True) -> None:
        while self.cv.now() < end:
            self.cv.advance(step)
            self.tick()
            if model:
                for name in self.names:
                    self.check_model(name)

    def check_model(self, name: str) -> None:
        """Listed points, their tiers, tags and expiry equal the hand-computed model."""
        now = self.cv.now()
        expected = {e.created: e for e in expected_backups(now + timedelta(microseconds=1))}
        want = {c: e.stores_at(now) for c, e in expected.items() if e.stores_at(now)}
        got = {p.created_at: stores_of(p) for p in self.cv.points(name)}
        assert got == want, f"{name} at {now}: listed {got}, expected {want}"
        for p in self.cv.points(name):
            e = expected[p.created_at]
            assert p.retention_tag == e.tag, (p.created_at, p.retention_tag)
            assert p.vault_expires_at == e.vault_end, (p.created_at, p.vault_expires_at)
            assert p.expires_at == (e.archive_end or e.vault_end), (p.created_at, p.expires_at)


def check_against_retention_plan(points: list[RecoveryPoint]) -> None:
    """Every point's tag and tier times are what the pure retention module says for it."""
    schedule = retention.schedule_of(POLICY)
    criteria = retention.tagging_criteria_of(POLICY)
    for p in points:
        tag = retention.tag_for(p.created_at, criteria, schedule)
        assert p.retention_tag == tag.name, (p.created_at, p.retention_tag, tag)
        spans = {s.store: s for s in retention.plan(p.created_at, tag, POLICY)}
        assert p.vault_expires_at == spans[retention.VAULT].end
        archive = spans.get(retention.ARCHIVE)
        assert p.archive_due_at == (archive.start if archive else None)
        assert p.archive_expires_at == (archive.end if archive else None)
        assert p.expires_at == retention.expires_at(p.created_at, tag, POLICY)


def names_by_created(points: list[RecoveryPoint]) -> dict[datetime, set[str]]:
    return {p.created_at: stores_of(p) for p in points}


def test_four_months_of_weekly_backups(tmp_path: Path, pg_source: PgCluster) -> None:
    with clocked_vault(tmp_path, POLICY) as (cv, datastore, archive):
        main = cv.protect(pg_source, tiny_database(pg_source, "sched_a"))
        other = cv.protect(pg_source, tiny_database(pg_source, "sched_b"))
        line = Timeline(cv, datastore, archive, [main, other])

        # -- January to mid-February, every 6 hours --------------------------------------
        line.run_until(utc(2, 1, 12))
        assert names_by_created(cv.points(main)) == {
            utc(1, 7): {"VaultStore"},
            utc(1, 14): {"VaultStore"},
            utc(1, 21): {"VaultStore"},
            utc(1, 28): {"VaultStore"},
        }
        line.run_until(DOWN_FROM)

        # -- three weeks down: slots of Feb 18, Feb 25 and Mar 3 pass unseen ------------
        cv.advance(DOWN_UNTIL - DOWN_FROM)
        assert line.tick() == 2, "one catch-up backup per instance, not three"
        catch_up = [j for j in cv.jobs(jobs.BACKUP) if j.created_at == DOWN_UNTIL]
        assert len(catch_up) == 2
        assert {j.params["slot"] for j in catch_up} == {utc(3, 3, 2).isoformat()}
        for name in (main, other):
            line.check_model(name)

        # -- on to May, every 6 hours ---------------------------------------------------
        line.run_until(utc(3, 10, 12))
        assert names_by_created(cv.points(main)) == {
            utc(1, 7): {"ArchiveStore"},  # vault copy expired Mar 7: moved
            utc(2, 4): {"VaultStore"},
            utc(2, 11): {"VaultStore"},
            utc(3, 4, 0): {"VaultStore"},  # the catch-up: first of March, Monthly
            utc(3, 10): {"VaultStore"},
        }
        line.run_until(MAIN_END)
        at_main_end = names_by_created(cv.points(main))
        assert at_main_end == {
            utc(1, 7): {"ArchiveStore"},
            utc(2, 4): {"ArchiveStore"},
            utc(3, 4, 0): {"VaultStore"},
            utc(3, 31): {"VaultStore"},
            utc(4, 7): {"VaultStore"},
            utc(4, 14): {"VaultStore"},
            utc(4, 21): {"VaultStore"},
            utc(4, 28): {"VaultStore"},
        }
        assert names_by_created(cv.points(other)) == at_main_end

        expected = expected_backups(MAIN_END)
        for name in (main, other):
            points = cv.points(name)
            check_against_retention_plan(points)
            tags = {p.created_at: p.retention_tag for p in points}
            assert tags[utc(3, 4, 0)] == tags[utc(4, 7)] == "Monthly"
            assert tags[utc(4, 14)] == "Default"
            _check_backup_jobs(cv, name, expected)
        assert sum(line.queued.values()) == 2 * len(expected) == 30

        # -- housekeeping jobs, as service.list_jobs shows them ---------------------------
        _check_tiering_jobs(cv, line, expected, [main, other])
        _check_deletion_jobs(cv, line, expected, [main, other])

        # -- May 1: `main` suspended, `other` stopped; then five months pass ---------------
        svc = cv.service
        svc.protection_action(cv.sub, RG, cv.name, main, "suspendBackups")
        svc.protection_action(cv.sub, RG, cv.name, other, "stopProtection")
        kept_by_stopped = {p.id: stores_of(p) for p in cv.points(other)}
        backups_before = len(cv.jobs(jobs.BACKUP))
        line.run_until(LATER, step=WEEK, model=False)
        assert len(cv.jobs(jobs.BACKUP)) == backups_before, "no scheduled backup while paused"

        latest = cv.points(main)
        assert [p.created_at for p in latest] == [utc(4, 28)], "suspended: the latest is kept"
        assert latest[0].expires_at is not None
        assert latest[0].expires_at < cv.now()
        assert sorted(cv.vault_tier(latest[0]).list()) == expected_objects(latest[0])

        stopped = {p.id: stores_of(p) for p in cv.points(other)}
        assert set(stopped) == set(kept_by_stopped), "stopped protection keeps every point"
        for point_id, stores in kept_by_stopped.items():
            assert stores <= stopped[point_id], (point_id, stores, stopped[point_id])
        assert_consistent(cv, datastore, archive)

        # -- resuming does not replay the months of missed slots --------------------------
        svc.protection_action(cv.sub, RG, cv.name, main, "resumeBackups")
        assert line.tick() == 0
        line.run_until(datetime(2024, 10, 20, 6, tzinfo=UTC), model=False)  # next Sunday
        resumed = [j for j in cv.jobs(jobs.BACKUP) if j.created_at > LATER]
        assert len(resumed) == 1
        assert resumed[0].params["slot"] == datetime(2024, 10, 20, 2, tzinfo=UTC).isoformat()


def _check_backup_jobs(cv: ClockedVault, name: str, expected: list[Expected]) -> None:
    """One scheduled backup per slot (none for the older missed ones), never two at once."""
    inst_id = cv.instance_id(name)
    backups = [j for j in cv.jobs(jobs.BACKUP) if j.instance_id == inst_id]
    assert all(j.status == jobs.COMPLETED for j in backups), [j.error_message for j in backups]
    assert all(j.params["scheduled"] and not j.is_user_triggered for j in backups)
    per_slot = Counter(j.params["slot"] for j in backups)
    assert per_slot == Counter(e.slot.isoformat() for e in expected), per_slot
    assert [j.created_at for j in backups] == [e.created for e in expected]
    for before, after in itertools.pairwise(backups):
        assert before.ended_at is not None
        assert after.created_at > before.ended_at, "a backup was queued before the last ended"


def _check_tiering_jobs(
    cv: ClockedVault, line: Timeline, expected: list[Expected], names: list[str]
) -> None:
    tiering = cv.jobs("Tiering")
    want = {
        (line.ids[n][e.created], first_tick_at_or_after(e.vault_end))
        for n in names
        for e in expected
        if e.archive_end is not None and e.vault_end <= MAIN_END
    }
    assert {(j.recovery_point_id, j.created_at) for j in tiering} == want
    assert len(want) == 4  # Jan 7 and Feb 4 of both instances
    for j in tiering:
        assert j.status == jobs.COMPLETED, (j.error_code, j.error_message)
        assert not j.is_user_triggered
        assert j.worker_id is None, f"a worker claimed housekeeping job {j.id}: {j.worker_id}"
        assert j.params == {"from": "VaultStore", "to": "ArchiveStore"}


def _check_deletion_jobs(
    cv: ClockedVault, line: Timeline, expected: list[Expected], names: list[str]
) -> None:
    deletions = cv.jobs("Deletion")
    want = {
        (line.ids[n][e.created], first_tick_at_or_after(e.vault_end))
        for n in names
        for e in expected
        if e.archive_end is None and e.vault_end <= MAIN_END
    }
    # Jan 14, 21, 28 (deleted when the scheduler came back), Feb 11, Mar 10, 17, 24.
    assert len(want) == 2 * 7
    assert {(j.recovery_point_id, j.created_at) for j in deletions} == want
    for j in deletions:
        assert j.status == jobs.COMPLETED
        assert j.params == {"reason": "Retention expired"}
        assert j.worker_id is None


def test_a_running_backup_holds_back_the_next_slot(tmp_path: Path, pg_source: PgCluster) -> None:
    """A backup still running when its next slot comes is not joined by a second one; once
    it ends, the latest slot runs once."""
    with clocked_vault(tmp_path, POLICY, stale_after_seconds=1e9) as (cv, _, _):
        db = tiny_database(pg_source, "held")
        name = cv.protect(pg_source, db)
        scheduler = Scheduler(cv.ctx, interval=20)
        inst_id = cv.instance_id(name)
        in_progress: list[int] = []
        stop = threading.Event()

        def observe() -> None:  # samples, in real time, how many backups are in progress
            while not stop.is_set():
                with cv.ctx.db.session() as s:
                    running = s.query(jobs.Job).filter(
                        jobs.Job.instance_id == inst_id,
                        jobs.Job.operation == jobs.BACKUP,
                        jobs.Job.status == jobs.IN_PROGRESS,
                    )
                    in_progress.append(running.count())
                time.sleep(0.005)

        watcher = threading.Thread(target=observe, daemon=True)
        watcher.start()
        # pg_dump waits for this lock (lock-wait-timeout 300s): the backup runs but can't end.
        with psycopg.connect(pg_source.admin_dsn(db)) as holder:
            holder.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
            cv.advance(FIRST_SLOT + STEP - cv.now())
            assert scheduler.tick()["queued"] == 1
            _wait_for_waiting_pg_dump(pg_source, db)
            for _ in range(2):  # two more Sundays come while it still runs
                cv.advance(WEEK)
                assert scheduler.tick()["queued"] == 0
            [running] = [j for j in cv.jobs(jobs.BACKUP) if j.status == jobs.IN_PROGRESS]
            assert running.worker_id is not None
            holder.rollback()  # releases the lock: pg_dump proceeds
        cv.drain()
        assert scheduler.tick()["queued"] == 1  # the latest slot, once
        cv.drain()
        stop.set()
        watcher.join(5)
        backups = cv.jobs(jobs.BACKUP)
        assert [j.status for j in backups] == [jobs.COMPLETED, jobs.COMPLETED]
        assert [j.params["slot"] for j in backups] == [
            FIRST_SLOT.isoformat(),
            (FIRST_SLOT + 2 * WEEK).isoformat(),
        ]
        assert in_progress
        assert max(in_progress) == 1
        inst = cv.service.get_instance(cv.sub, RG, cv.name, name).instance
        assert inst.protection_state == instances.PROTECTION_CONFIGURED
        assert inst.last_slot_at == FIRST_SLOT + 2 * WEEK


def test_a_backup_ending_after_the_next_slot_keeps_its_slots_tag(
    tmp_path: Path, pg_source: PgCluster
) -> None:
    """Hourly backups, the first of each day kept as Daily. The 00:00 backup is held until
    01:10 (a slow dump); it was queued for the 00:00 slot, so its point must be Daily."""
    policy = retention.build_policy(
        schedule="hourly", every_hours=1, time="00:00", keep_default="P7D", keep_daily="P30D"
    )
    start = datetime(2024, 1, 3, 22, 30, tzinfo=UTC)
    with clocked_vault(tmp_path, policy, start=start, stale_after_seconds=1e9) as (cv, _, _):
        db = tiny_database(pg_source, "slow")
        name = cv.protect(pg_source, db)
        scheduler = Scheduler(cv.ctx, interval=20)
        cv.advance(timedelta(minutes=35))  # 23:05: the 23:00 slot
        assert scheduler.tick()["queued"] == 1
        cv.drain()
        with psycopg.connect(pg_source.admin_dsn(db)) as holder:
            holder.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
            cv.advance(timedelta(hours=1))  # 00:05: the day's first slot
            assert scheduler.tick()["queued"] == 1
            _wait_for_waiting_pg_dump(pg_source, db)
            cv.advance(timedelta(minutes=65))  # 01:10: still dumping
            assert scheduler.tick()["queued"] == 0
            holder.rollback()
        cv.drain()
        assert scheduler.tick()["queued"] == 1  # the 01:00 slot
        cv.drain()
        by_slot = {j.params["slot"]: str(j.recovery_point_id) for j in cv.jobs(jobs.BACKUP)}
        tags = {p.id: p.retention_tag for p in cv.points(name)}
        midnight = datetime(2024, 1, 4, 0, 0, tzinfo=UTC).isoformat()
        one_am = datetime(2024, 1, 4, 1, 0, tzinfo=UTC).isoformat()
        assert tags[by_slot[one_am]] == "Default"
        assert tags[by_slot[midnight]] == "Daily", "January 4 has no Daily point"


def _wait_for_waiting_pg_dump(cluster: PgCluster, db: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = cluster.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
            " AND query LIKE 'LOCK TABLE public.notes IN ACCESS SHARE MODE%%'",
            params=[db],
        )
        if rows[0][0]:
            return
        time.sleep(0.02)
    pytest.fail("pg_dump never started waiting for the table lock")
