"""Rehydrate: copy a point's archive copy back to the vault tier, as its own job or in a restore.

The rules (durations, priorities, when a point needs it) live in `pgvault.rehydration`;
this kind queues the standalone job and does the copy, for itself and for restores
from ArchiveStore.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from sqlalchemy.orm import Session

from pgvault import jobs, recovery_points
from pgvault.context import Context
from pgvault.engine.load import load_manifest
from pgvault.errors import Code, UserError
from pgvault.jobkinds.base import JobKind
from pgvault.jobkinds.tiering import copy_verified
from pgvault.progress import JobProgress, fail
from pgvault.recovery_points import RecoveryPoint
from pgvault.rehydration import (
    DEFAULT_DURATION,
    HIGH_PRIORITY,
    check_priority,
    duration_days,
)

OPERATION = "Rehydrate"


def rehydrate(ctx: Context, point_id: str, duration: str | None) -> datetime:
    """Copy the archive copy back to the vault tier (verified) and set its expiry."""
    days = duration_days(duration)
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, point_id)
        assert point is not None
        assert point.archive_location is not None
        archive_location, location = point.archive_location, point.location
    source = ctx.archive.child(archive_location)
    copy_verified(source, ctx.datastore.child(location), load_manifest(source))
    until = ctx.clock.now() + timedelta(days=days)
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, point_id)
        assert point is not None
        point.rehydrated_until = max(until, point.rehydrated_until or until)
        return point.rehydrated_until


def queue(
    ctx: Context,
    s: Session,
    vault_id: str,
    instance_id: str,
    point_id: str,
    priority: str | None,
    duration: str | None,
) -> jobs.Job:
    """A standalone rehydration job (High priority runs ahead of Standard).

    Its checks are metadata only, so they run in the caller's transaction."""
    point = recovery_points.get(s, instance_id, point_id)
    level = check_priority(priority)
    duration_days(duration)
    if not point.in_archive:
        raise UserError(
            f"Recovery point {point.id} is not in the archive tier.",
            code=Code.UserErrorInvalidSourceDataStore,
        )
    return jobs.create(
        s,
        vault_id=vault_id,
        instance_id=instance_id,
        operation=OPERATION,
        params={
            "rehydrationPriority": level,
            "rehydrationRetentionDuration": duration or DEFAULT_DURATION,
        },
        now=ctx.clock.now(),
        recovery_point_id=point.id,
        priority=HIGH_PRIORITY if level == "High" else 0,
    )


def run(ctx: Context, job_id: str) -> None:
    """Run a claimed Rehydrate job."""
    progress = JobProgress(ctx, job_id)
    try:
        with ctx.db.session() as s:
            job = jobs.get(s, job_id)
            point_id, duration = (
                job.recovery_point_id,
                job.params.get("rehydrationRetentionDuration"),
            )
        assert point_id is not None
        progress.phase("Rehydrating")
        until = rehydrate(ctx, point_id, duration)
        with ctx.db.session() as s:
            job = jobs.get(s, job_id)
            job.result = {**job.result, "rehydratedUntil": until.isoformat()}
            jobs.finish(job, ctx.clock.now())
    except Exception as exc:
        fail(ctx, job_id, exc)


class Rehydrate(JobKind):
    """A half-written vault copy needs no cleanup: the point's tier flags change only after
    the verified copy, and the next rehydration overwrites it."""

    operation: ClassVar[str] = OPERATION

    def run(self, ctx: Context, job_id: str) -> None:
        run(ctx, job_id)
