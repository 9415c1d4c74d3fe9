"""Replication: copy a committed recovery point to the vault's paired region, verified.

A vault with Cross Region Restore on gets a Replication job for every committed point
(queued with the point when the delay window is 0, else by the housekeeping sweep once
the point is `replication_delay_seconds` old). The job copies every object the point's
manifest lists (not a fixed layout, so a new engine layout replicates unchanged) into
the secondary region's datastore, reads each back there and checks it against the
manifest's size and sha256, writes the manifest last, and only then records the replica
as available (`replicas`). A worker killed mid-way leaves objects that no row points
to; the next run keeps the ones that verify and copies the rest, so it converges.
An archived point replicates into the secondary's archive tier, and its vault-tier
replica, if any, is then removed: the secondary mirrors the primary's tiers.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from pgvault import jobs, regions, replicas, vaults
from pgvault.context import Context
from pgvault.engine.manifest import MANIFEST, Manifest, StoredObject
from pgvault.errors import Code, CorruptRecoveryPoint, PgVaultError
from pgvault.jobkinds.base import JobKind
from pgvault.progress import JobProgress, fail
from pgvault.recovery_points import ARCHIVE_STORE, COMMITTED, VAULT_STORE, RecoveryPoint
from pgvault.storage.backends import Location, pumped

log = logging.getLogger("pgvault.replication")

OPERATION = "Replication"


def wanted_tier(point: RecoveryPoint) -> str | None:
    """The tier a point's replica should be in: the vault tier while the primary has a
    vault copy, else the archive tier (None: nothing to copy)."""
    if point.in_vault:
        return VAULT_STORE
    if point.in_archive and point.archive_location:
        return ARCHIVE_STORE
    return None


def _running(s: Session, point_id: str) -> bool:
    return (
        s.scalar(
            select(jobs.Job.id).where(
                jobs.Job.operation == OPERATION,
                jobs.Job.recovery_point_id == point_id,
                jobs.Job.status == jobs.IN_PROGRESS,
            )
        )
        is not None
    )


def queue(s: Session, vault: vaults.Vault, point: RecoveryPoint, now: datetime) -> jobs.Job | None:
    """Queue the replication of one point (None if one is already queued or running)."""
    if _running(s, point.id):
        return None
    job = jobs.create(
        s,
        vault_id=vault.id,
        instance_id=point.instance_id,
        operation=OPERATION,
        params={"pointId": point.id, "region": regions.paired(vault.location)},
        now=now,
        recovery_point_id=point.id,
    )
    job.is_user_triggered = False
    return job


def after_commit(
    s: Session, vault: vaults.Vault, point: RecoveryPoint, now: datetime, delay: float
) -> None:
    """Called in the transaction that commits a point: replicate it at once when the vault
    has Cross Region Restore on and no delay window is set (else the sweep queues it)."""
    if vaults.crr_enabled(vault.properties) and delay <= 0:
        queue(s, vault, point, now)


#: After a failed replication (the secondary unreachable, a checksum mismatch), the sweep
#: waits this long before trying the point again, so an outage does not queue a job a pass.
RETRY_AFTER = timedelta(minutes=5)


def _backing_off(s: Session, point_id: str, now: datetime) -> bool:
    """Whether the point's last replication failed or was cancelled recently (a lost worker
    is retried at once: it says nothing about the stores)."""
    last = s.scalars(
        select(jobs.Job)
        .where(jobs.Job.operation == OPERATION, jobs.Job.recovery_point_id == point_id)
        .order_by(jobs.Job.created_at.desc())
        .limit(1)
    ).first()
    return (
        last is not None
        and last.status in (jobs.FAILED, jobs.CANCELLED)
        and last.error_code != Code.WorkerLost
        and last.ended_at is not None
        and last.ended_at > now - RETRY_AFTER
    )


def _needs(s: Session, point: RecoveryPoint, region: str) -> bool:
    tier = wanted_tier(point)
    if tier is None:
        return False
    row = replicas.get(s, point.id, region)
    return row is None or row.tier != tier


def queue_due(ctx: Context, now: datetime) -> int:
    """Queue replication of every point of a CRR vault that is older than the delay window
    and has no replica in the tier it should have (nor a job on its way, nor a failure in the
    last RETRY_AFTER). Returns how many."""
    cutoff = now - timedelta(seconds=ctx.settings.replication_delay_seconds)
    count = 0
    with ctx.db.session() as s:
        for vault in s.scalars(select(vaults.Vault)):
            if not vaults.crr_enabled(vault.properties):
                continue
            region = regions.paired(vault.location)
            points = s.scalars(
                select(RecoveryPoint).where(
                    RecoveryPoint.vault_id == vault.id,
                    RecoveryPoint.state == COMMITTED,
                    RecoveryPoint.created_at <= cutoff,
                )
            )
            for point in points:
                if (
                    _needs(s, point, region)
                    and not _backing_off(s, point.id, now)
                    and queue(s, vault, point, now) is not None
                ):
                    count += 1
    return count


def _verified(location: Location, obj: StoredObject) -> bool:
    """Whether `location` holds `obj` exactly (size and sha256 as the manifest says)."""
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in location.get_stream(obj.name):
            digest.update(chunk)
            size += len(chunk)
    except PgVaultError:
        return False
    return size == obj.size and digest.hexdigest() == obj.sha256


def copy_point(
    source: Location, target: Location, manifest: Manifest, manifest_bytes: bytes, progress: Any
) -> int:
    """Copy every object of the manifest, verify each where it landed, then the manifest.

    Objects already at the target that verify are kept (a rerun after a crash converges).
    Returns the bytes copied this time."""
    copied = 0
    for obj in manifest.objects:
        if target.exists(obj.name) and _verified(target, obj):
            continue

        def chunks(name: str = obj.name) -> Iterator[bytes]:
            nonlocal copied
            for chunk in source.get_stream(name):
                copied += len(chunk)
                progress(copied)
                yield chunk

        target.put_stream(obj.name, pumped(chunks))
        if not _verified(target, obj):  # read back in the secondary: the arrival check
            with contextlib.suppress(PgVaultError):
                target.delete(obj.name)
            raise CorruptRecoveryPoint(
                f"Object {obj.name!r} did not verify in the secondary region (size or sha256 "
                "differs from the manifest); replication runs again on the next pass."
            )
    target.put_bytes(MANIFEST, manifest_bytes)
    return copied


def _plan(ctx: Context, job_id: str) -> dict[str, Any] | None:
    """What to copy where, read in one short transaction (None: the point is gone)."""
    with ctx.db.session() as s:
        job = jobs.get(s, job_id)
        point = s.get(RecoveryPoint, job.params["pointId"])
        if point is None or point.state != COMMITTED:
            return None
        tier = wanted_tier(point)
        if tier is None:
            return None
        location = point.location if tier == VAULT_STORE else point.archive_location
        assert location is not None
        return {
            "region": job.params["region"],
            "tier": tier,
            "location": location,
            "manifest": dict(point.manifest),
            "created": point.created_at,
            "instance": point.instance_id,
            "vault": point.vault_id,
            "point": point.id,
        }


def run(ctx: Context, job_id: str) -> None:
    """Run a claimed replication job to Completed (replica recorded) or Failed."""
    progress = JobProgress(ctx, job_id)
    try:
        plan = _plan(ctx, job_id)
        if plan is None:
            with ctx.db.session() as s:
                jobs.finish(jobs.get(s, job_id), ctx.clock.now())
            return
        manifest = Manifest.from_dict(plan["manifest"])
        primary = ctx.datastore if plan["tier"] == VAULT_STORE else ctx.archive
        vault_site, archive_site = ctx.site(plan["region"])
        secondary = vault_site if plan["tier"] == VAULT_STORE else archive_site
        source = primary.child(plan["location"])
        target = secondary.child(plan["location"])
        progress.phase("Transferring data", manifest.storedBytes)
        copied = copy_point(source, target, manifest, source.get_bytes(MANIFEST), progress)
        progress.phase("Recording replica")
        _commit(ctx, job_id, plan, manifest, copied)
    except BaseException as exc:
        fail(ctx, job_id, exc)
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise


def _commit(
    ctx: Context, job_id: str, plan: dict[str, Any], manifest: Manifest, copied: int
) -> None:
    """Record the replica (a point deleted meanwhile gets none, and its copy goes), remove a
    vault-tier replica the archive one replaces, then finish the job. The row changes
    before any object is removed, so no row ever points at removed objects."""
    region = plan["region"]
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, plan["point"])
        gone = point is None or point.state != COMMITTED
        old = None if gone else replicas.get(s, plan["point"], region)
        stale_vault_copy = old is not None and old.tier != plan["tier"]
        lag = None
        if not gone:
            lag = replicas.record(
                s,
                point_id=plan["point"],
                region=region,
                instance_id=plan["instance"],
                vault_id=plan["vault"],
                tier=plan["tier"],
                location=plan["location"],
                stored_bytes=manifest.storedBytes,
                point_created_at=plan["created"],
                now=ctx.clock.now(),
            ).lag_seconds
    if gone:
        remove(ctx, region, plan["location"], plan["location"])
    elif stale_vault_copy and plan["tier"] == ARCHIVE_STORE:
        ctx.site(region)[0].child(plan["location"]).delete_all()
    with ctx.db.session() as s:
        job = jobs.get(s, job_id)
        job.bytes_done = job.bytes_total = manifest.storedBytes
        job.result = {
            "secondaryRegion": region,
            "tier": plan["tier"],
            "storedBytes": manifest.storedBytes,
            "dataTransferredInBytes": copied,
            "replicationLagSeconds": lag,
        }
        jobs.finish(job, ctx.clock.now())


def remove(ctx: Context, region: str, location: str | None, archive_location: str | None) -> None:
    """Delete a point's replicas in `region`, both tiers (idempotent)."""
    vault_site, archive_site = ctx.site(region)
    if location:
        vault_site.child(location).delete_all()
    if archive_location:
        archive_site.child(archive_location).delete_all()


class Replicate(JobKind):
    operation: ClassVar[str] = OPERATION

    def run(self, ctx: Context, job_id: str) -> None:
        run(ctx, job_id)

    def abandoned(self, ctx: Context, job: jobs.Job) -> None:
        """Nothing to remove: no row points at the partial copy, and the next run keeps the
        objects that verify and replaces the rest (the sweep queues it again)."""
        log.info("replication %s lost its worker; the next pass converges", job.id)
