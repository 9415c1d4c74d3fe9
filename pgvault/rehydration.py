"""Rehydration: an archived point is copied back to the vault tier before it can be restored.

The rehydrated copy stays in the vault tier for the requested duration (10-30 days,
15 by default, as in Azure); another restore within that window needs no
rehydration; the housekeeping sweep removes the copy when the window ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from pgvault import housekeeping, jobs, recovery_points
from pgvault.context import Context
from pgvault.engine.restore import load_manifest
from pgvault.errors import BadRequest, Code, UserError
from pgvault.progress import JobProgress, fail
from pgvault.recovery_points import ARCHIVE_STORE, VAULT_STORE, RecoveryPoint
from pgvault.schedule import Duration

DEFAULT_DURATION = "P15D"
HIGH_PRIORITY = 10
PRIORITIES = ("standard", "high")


def duration_days(text: str | None) -> int:
    """The rehydration duration in days: ISO 8601 `P10D`-`P30D` (default 15)."""
    duration = Duration.parse(text or DEFAULT_DURATION)
    days = duration.nominal_days()
    if days != int(days) or not 10 <= days <= 30:
        raise BadRequest(
            f"Rehydration duration {text!r} is out of range: use P10D to P30D (default P15D).",
            code=Code.UserErrorInvalidRehydrationDuration,
            target="rehydrationRetentionDuration",
        )
    return int(days)


def check_priority(priority: str | None) -> str:
    value = (priority or "Standard").lower()
    if value not in PRIORITIES:
        raise BadRequest(
            f"Rehydration priority {priority!r} is not Standard or High.",
            code=Code.UserErrorInvalidRehydrationPriority,
            target="rehydrationPriority",
        )
    return "High" if value == "high" else "Standard"


def rehydrated(point: RecoveryPoint, now: datetime) -> bool:
    return point.rehydrated_until is not None and point.rehydrated_until > now


def check_source(
    point: RecoveryPoint, store: str, priority: str | None, duration: str | None, now: datetime
) -> None:
    """The requested source store must hold the point (archive restores need rehydration)."""
    if store.lower() == VAULT_STORE.lower():
        if not (point.in_vault or rehydrated(point, now)):
            raise UserError(
                f"Recovery point {point.id} is in the archive tier only.",
                code=Code.UserErrorRecoveryPointInArchive,
                recommended_action="Restore with sourceDataStoreType ArchiveStore and a "
                "rehydration priority and duration (CLI: --rehydrate), or rehydrate it first.",
            )
        return
    if store.lower() != ARCHIVE_STORE.lower():
        raise BadRequest(f"Unknown source datastore {store!r}.", code=Code.BadParameter)
    if not point.in_archive:
        raise UserError(
            f"Recovery point {point.id} has no archive copy; restore from VaultStore.",
            code=Code.UserErrorInvalidSourceDataStore,
        )
    check_priority(priority)
    duration_days(duration)


def needed(point: RecoveryPoint, store: str, now: datetime) -> bool:
    return (
        store.lower() == ARCHIVE_STORE.lower() and not point.in_vault and not rehydrated(point, now)
    )


def rehydrate(ctx: Context, point_id: str, duration: str | None) -> datetime:
    """Copy the archive copy back to the vault tier (verified) and set its expiry."""
    days = duration_days(duration)
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, point_id)
        assert point is not None
        assert point.archive_location is not None
        archive_location, location = point.archive_location, point.location
    source = ctx.archive.child(archive_location)
    housekeeping.copy_verified(source, ctx.datastore.child(location), load_manifest(source))
    until = ctx.clock.now() + timedelta(days=days)
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, point_id)
        assert point is not None
        point.rehydrated_until = max(until, point.rehydrated_until or until)
        return point.rehydrated_until


def queue(
    ctx: Context,
    s: object,
    vault_id: str,
    instance_id: str,
    point_id: str,
    priority: str | None,
    duration: str | None,
) -> jobs.Job:
    """A standalone rehydration job (High priority runs ahead of Standard)."""

    assert isinstance(s, Session)
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
        operation="Rehydrate",
        params={
            "rehydrationPriority": level,
            "rehydrationRetentionDuration": duration or DEFAULT_DURATION,
        },
        now=ctx.clock.now(),
        recovery_point_id=point.id,
        priority=HIGH_PRIORITY if level == "High" else 0,
    )


def run(ctx: Context, job_id: str) -> None:
    """Worker handler for a Rehydrate job."""
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
