"""Housekeeping: deleting recovery points and purging instances, crash-safe and idempotent.

Every removal runs in three steps: mark the point `Deleting` in metadata (it leaves
every list at once), delete its objects, delete its row. A crash between steps
leaves a `Deleting` row that the next sweep finishes, so no point is ever both
gone and listed, and none disappears before its metadata says so.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pgvault import instances, jobs
from pgvault.context import Context
from pgvault.recovery_points import COMMITTED, DELETING, RecoveryPoint


def mark_deleting(s: Session, point: RecoveryPoint) -> None:
    point.state = DELETING


def finish_deletions(ctx: Context) -> int:
    """Delete the objects, then the rows, of every point marked Deleting. Returns how many."""
    with ctx.db.session() as s:
        doomed = [
            (p.id, p.location, p.archive_location)
            for p in s.scalars(select(RecoveryPoint).where(RecoveryPoint.state == DELETING))
        ]
    done = 0
    for point_id, location, archive_location in doomed:
        ctx.datastore.child(location).delete_all()
        if archive_location:
            ctx.archive.child(archive_location).delete_all()
        with ctx.db.session() as s:
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
    from pgvault import vaults

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


def sweep(ctx: Context) -> None:
    """One housekeeping pass (each step is idempotent; errors wait for the next pass)."""
    now = ctx.clock.now()
    for step in (finish_deletions,):
        with contextlib.suppress(Exception):
            step(ctx)
    with contextlib.suppress(Exception):
        purge_instances(ctx, now)
