"""Housekeeping: deleting recovery points and purging instances, crash-safe and idempotent.

Every removal runs in three steps: mark the point `Deleting` in metadata (it leaves
every list at once), delete its objects, delete its row. A crash between steps
leaves a `Deleting` row that the next sweep finishes, so no point is ever both
gone and listed, and none disappears before its metadata says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pgvault import (
    audit,
    identity,
    instances,
    jobs,
    policies,
    recovery_points,
    regions,
    replicas,
    vaults,
)
from pgvault.context import Context
from pgvault.jobkinds import deletion, replicate, tiering
from pgvault.recovery_points import COMMITTED, DELETING, RecoveryPoint

log = logging.getLogger("pgvault.housekeeping")


def mark_deleting(s: Session, point: RecoveryPoint) -> None:
    point.state = DELETING


def _replica_region(s: Session, point: RecoveryPoint) -> str | None:
    """The region holding a point's replicas: its vault's pair, if Cross Region Restore is on
    (it cannot be turned off, so a vault without it never had replicas)."""
    vault = s.get(vaults.Vault, point.vault_id)
    if vault is None or not vaults.crr_enabled(vault.properties):
        return None
    return regions.paired(vault.location)


def finish_deletions(ctx: Context) -> int:
    """Delete the objects (primary and replicas), then the rows, of every point marked
    Deleting. Returns how many."""
    with ctx.db.session() as s:
        doomed = [
            (p.id, p.location, p.archive_location, _replica_region(s, p))
            for p in s.scalars(select(RecoveryPoint).where(RecoveryPoint.state == DELETING))
        ]
    done = 0
    for point_id, location, archive_location, region in doomed:
        ctx.datastore.child(location).delete_all()
        if archive_location:
            ctx.archive.child(archive_location).delete_all()
        if region is not None:
            replicate.remove(ctx, region, location, archive_location or location)
        with ctx.db.session() as s:
            replicas.forget(s, point_id)
            row = s.get(RecoveryPoint, point_id)
            if row is not None:
                s.delete(row)
                done += 1
    return done


def immutable(vault_properties: dict[str, Any]) -> bool:
    """Immutable vaults (Unlocked or Locked) never lose a point before its expiry."""
    settings = vault_properties.get("securitySettings") or {}
    state = (settings.get("immutabilitySettings") or {}).get("state", "Disabled")
    return str(state).lower() in ("unlocked", "locked")


def purge_instances(ctx: Context, now: datetime) -> int:
    """Remove soft-deleted instances whose retention ended (points first, then the row)."""

    purged = 0
    with ctx.db.session() as s:
        due = [
            i.id
            for i in s.scalars(
                select(instances.Instance).where(
                    instances.Instance.protection_state == instances.SOFT_DELETED,
                    instances.Instance.purge_at <= now,
                )
            )
        ]
    for inst_id in due:
        with ctx.db.session() as s:
            inst = s.get(instances.Instance, inst_id)
            if inst is None:
                continue
            vault = s.get(vaults.Vault, inst.vault_id)
            keep_unexpired = vault is not None and immutable(vault.properties)
            points = list(
                s.scalars(
                    select(RecoveryPoint).where(
                        RecoveryPoint.instance_id == inst.id, RecoveryPoint.state == COMMITTED
                    )
                )
            )
            for p in points:
                if keep_unexpired and (p.expires_at is None or p.expires_at > now):
                    continue
                mark_deleting(s, p)
        finish_deletions(ctx)
        with ctx.db.session() as s:
            left = s.scalar(select(RecoveryPoint.id).where(RecoveryPoint.instance_id == inst_id))
            inst = s.get(instances.Instance, inst_id)
            if inst is not None and left is None:
                s.execute(
                    update(jobs.Job).where(jobs.Job.instance_id == inst_id).values(instance_id=None)
                )
                s.delete(inst)
                purged += 1
    return purged


# -- retention and tiering ----------------------------------------------------------------


def tier_due_points(ctx: Context, now: datetime) -> int:
    """Copy points whose archive time has come to the archive tier (see `jobkinds.tiering`)."""
    with ctx.db.session() as s:
        due = [
            p.id
            for p in s.scalars(
                select(RecoveryPoint).where(
                    RecoveryPoint.state == COMMITTED,
                    RecoveryPoint.in_archive.is_(False),
                    RecoveryPoint.archive_due_at.is_not(None),
                    RecoveryPoint.archive_due_at <= now,
                )
            )
        ]
    return sum(1 for point_id in due if tiering.tier(ctx, point_id, now))


def _retained_forever(s: Session, point: RecoveryPoint) -> bool:
    """Stopped protection keeps everything; suspended backups keep the latest point."""
    inst = s.get(instances.Instance, point.instance_id)
    if inst is None:
        return False
    if inst.protection_state == instances.PROTECTION_STOPPED:
        return True
    if inst.protection_state == instances.BACKUPS_SUSPENDED:
        latest = s.scalar(
            select(RecoveryPoint.id)
            .where(
                RecoveryPoint.instance_id == inst.id,
                RecoveryPoint.state == COMMITTED,
            )
            .order_by(RecoveryPoint.created_at.desc())
            .limit(1)
        )
        return latest == point.id
    return False


def expire_vault_copies(ctx: Context, now: datetime) -> int:
    """Drop vault copies whose time is up once the archive copy (if planned) exists."""
    with ctx.db.session() as s:
        rows = list(
            s.scalars(
                select(RecoveryPoint).where(
                    RecoveryPoint.state == COMMITTED,
                    RecoveryPoint.in_vault.is_(True),
                    RecoveryPoint.in_archive.is_(True),
                    RecoveryPoint.vault_expires_at <= now,
                )
            )
        )
        due = [(p.id, p.location) for p in rows if not _retained_forever(s, p)]
    for point_id, location in due:
        ctx.datastore.child(location).delete_all()  # then the flag: a crash re-runs this
        with ctx.db.session() as s:
            point = s.get(RecoveryPoint, point_id)
            if point is not None:
                point.in_vault = False
                if point.rehydrated_until is not None:
                    point.rehydrated_until = None
    return len(due)


def expire_points(ctx: Context, now: datetime) -> int:
    """Delete points past their final expiry (not for stopped protection or soft-deleted)."""
    with ctx.db.session() as s:
        rows = list(
            s.scalars(
                select(RecoveryPoint).where(
                    RecoveryPoint.state == COMMITTED,
                    RecoveryPoint.expires_at.is_not(None),
                    RecoveryPoint.expires_at <= now,
                )
            )
        )
        count = 0
        for p in rows:
            inst = s.get(instances.Instance, p.instance_id)
            if inst is None or inst.soft_deleted or _retained_forever(s, p):
                continue
            if p.archive_due_at is not None and not p.in_archive and p.in_vault:
                continue  # its archive copy is still to be made
            mark_deleting(s, p)
            deletion.record(s, p, now, "Retention expired")
            count += 1
    finish_deletions(ctx)
    return count


def end_rehydrations(ctx: Context, now: datetime) -> int:
    """Remove rehydrated vault copies of archived points once their duration is over."""
    with ctx.db.session() as s:
        due = [
            (p.id, p.location)
            for p in s.scalars(
                select(RecoveryPoint).where(
                    RecoveryPoint.rehydrated_until.is_not(None),
                    RecoveryPoint.rehydrated_until <= now,
                    RecoveryPoint.in_vault.is_(False),
                )
            )
        ]
    for point_id, location in due:
        ctx.datastore.child(location).delete_all()
        with ctx.db.session() as s:
            point = s.get(RecoveryPoint, point_id)
            if point is not None:
                point.rehydrated_until = None
    return len(due)


def reapply_policy(ctx: Context, instance_id: str) -> None:
    """Recompute every point's tier times after a policy change or a resume."""

    with ctx.db.session() as s:
        inst = s.get(instances.Instance, instance_id)
        if inst is None:
            return
        policy = s.get(policies.Policy, inst.policy_id)
        if policy is None:
            return
        for p in s.scalars(
            select(RecoveryPoint).where(
                RecoveryPoint.instance_id == instance_id, RecoveryPoint.state == COMMITTED
            )
        ):
            recovery_points.plan_point(p, policy.properties)


def prune_audit_and_lockouts(ctx: Context, now: datetime) -> int:
    """Delete audit events older than PGVAULT_AUDIT_RETENTION_DAYS and lockout rows whose
    window is over (unknown names and stray 401s leave nothing lasting)."""
    with ctx.db.session() as s:
        events = audit.prune(s, now - ctx.settings.audit_retention)
        lockouts = identity.prune_lockouts(s, now)
    return events + lockouts


def sweep(ctx: Context) -> dict[str, int]:
    """One housekeeping pass, in an order that never loses a point: archive copies first,
    then vault copies, then whole points; every step is idempotent and resumable."""
    now = ctx.clock.now()
    done: dict[str, int] = {}
    steps: tuple[tuple[str, Callable[[], int]], ...] = (
        ("deletions", lambda: finish_deletions(ctx)),
        ("tiered", lambda: tier_due_points(ctx, now)),
        ("vaultCopiesExpired", lambda: expire_vault_copies(ctx, now)),
        ("expired", lambda: expire_points(ctx, now)),
        ("rehydrationsEnded", lambda: end_rehydrations(ctx, now)),
        ("replicationsQueued", lambda: replicate.queue_due(ctx, now)),
        ("purged", lambda: purge_instances(ctx, now)),
        ("auditPruned", lambda: prune_audit_and_lockouts(ctx, now)),
    )
    for name, step in steps:
        try:
            done[name] = step()
        except Exception:
            log.exception("housekeeping step %s failed; it runs again next pass", name)
    return done
