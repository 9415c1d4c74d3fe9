"""Spread schedules: instances whose policies share a slot start inside the configured
window, each at its own fixed offset, not all at the slot's second (no worker runs here:
the test looks at what the scheduler queues, and when)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pgvault import jobs, retention
from pgvault.clock import FrozenClock
from pgvault.scheduler import Scheduler, spread_offset
from tests.integration.clocked import open_clocked, settings_for, tiny_database
from tests.support.pg import PgCluster

WINDOW = 1800
SLOT = datetime(2024, 1, 3, 23, 0, tzinfo=UTC)


def test_instances_sharing_a_slot_start_spread_over_the_window(
    tmp_path: Path, pg_source: PgCluster
) -> None:
    policy = retention.build_policy(
        schedule="hourly", every_hours=1, time="00:00", keep_default="P7D"
    )
    settings = dataclasses.replace(
        settings_for(tmp_path / "home", datastore=tmp_path / "ds", archive=tmp_path / "ar"),
        schedule_spread_seconds=WINDOW,
    )
    cv = open_clocked(settings, FrozenClock(SLOT - timedelta(minutes=30)), start_workers=False)
    try:
        cv.create_vault(policy)
        names = [cv.protect(pg_source, tiny_database(pg_source, "spread")) for _ in range(4)]
        offsets = {cv.instance_id(n): spread_offset(cv.instance_id(n), WINDOW) for n in names}
        assert len(set(offsets.values())) == len(names), "ids hash apart (else pick others)"
        scheduler = Scheduler(cv.ctx, interval=20)
        cv.advance(SLOT - cv.now())
        queued_at: dict[str, timedelta] = {}
        for offset in [timedelta(0), *sorted(offsets.values())]:
            cv.advance(SLOT + offset - cv.now())
            scheduler.queue_due_backups(cv.now())
            for job in cv.jobs(jobs.BACKUP):
                queued_at.setdefault(str(job.instance_id), cv.now() - SLOT)
        assert queued_at == offsets, "each instance queued exactly at its own offset"
        assert all(timedelta(0) <= o < timedelta(seconds=WINDOW) for o in offsets.values())
        slots = {j.params["slot"] for j in cv.jobs(jobs.BACKUP)}
        assert slots == {SLOT.isoformat()}, "all for the one slot they share"
    finally:
        cv.close()
