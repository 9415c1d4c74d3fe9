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

from pgvault import instances, jobs
from pgvault.context import Context
from pgvault.errors import Code
from pgvault.recovery_points import COMMITTED, DELETING, RecoveryPoint

log = logging.getLogger("pgvault.housekeeping")


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


# -- retention and tiering ----------------------------------------------------------------


def plan_point(point: RecoveryPoint, policy_properties: dict[str, Any]) -> None:
    """Set a point's tier times from its policy: vault expiry, archive copy time, archive expiry."""
    from pgvault import retention

    spans = retention.plan(point.created_at, point.retention_tag, policy_properties)
    vault = next((sp for sp in spans if sp.store == retention.VAULT), None)
    archive = next((sp for sp in spans if sp.store == retention.ARCHIVE), None)
    point.vault_expires_at = vault.end if vault else point.created_at
    point.archive_due_at = archive.start if archive else None
    point.archive_expires_at = archive.end if archive else None
    point.expires_at = max(sp.end for sp in spans) if spans else point.vault_expires_at


def copy_verified(source: Any, target: Any, manifest: Any, names: list[str] | None = None) -> None:
    """Copy a point's objects between stores, checking each against the manifest's sha256."""
    import hashlib

    from pgvault.engine.manifest import MANIFEST
    from pgvault.errors import CorruptRecoveryPoint
    from pgvault.storage.backends import pumped

    for obj in manifest.objects:
        digest = hashlib.sha256()

        def chunks(name: str = obj.name, d: Any = digest) -> Any:
            for chunk in source.get_stream(name):
                d.update(chunk)
                yield chunk

        target.put_stream(obj.name, pumped(chunks))
        if digest.hexdigest() != obj.sha256:
            target.delete(obj.name)
            raise CorruptRecoveryPoint(
                f"Object {obj.name!r} changed while being copied between tiers; kept the source."
            )
    target.put_bytes(MANIFEST, source.get_bytes(MANIFEST))


def _housekeeping_job(
    s: Session, point: RecoveryPoint, operation: str, now: datetime, details: dict[str, Any]
) -> jobs.Job:
    """A job record for housekeeping work; callers finish it in the same transaction, so it
    is never seen InProgress: no worker claims it, and a crash leaves no orphan behind."""
    job = jobs.create(
        s,
        vault_id=point.vault_id,
        instance_id=point.instance_id,
        operation=operation,
        params=details,
        now=now,
        recovery_point_id=point.id,
    )
    job.is_user_triggered = False
    job.started_at = now
    return job


def _discard_partial_uploads(target: Any) -> None:
    """Remove staged uploads a killed copy left at `target` (the local backend names them
    `name#N` and never lists them). Complete objects are kept: a concurrent copy may own them."""
    root = getattr(target, "local_root", None)
    if root is None or not target.prefix:
        return
    for staged in (root / target.prefix).glob("*#*"):
        staged.unlink(missing_ok=True)


_TIERING = {"from": "VaultStore", "to": "ArchiveStore"}


def tier_due_points(ctx: Context, now: datetime) -> int:
    """Copy points whose archive time has come to the archive tier (verified), then record it.

    The Tiering job is written when the copy ends (Completed or Failed, with the point's new
    tier in the same transaction). A sweep killed mid-copy leaves the point as it was, and
    the next sweep copies it again after discarding the partial upload.
    """
    from pgvault.engine.restore import load_manifest

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
    moved = 0
    for point_id in due:
        with ctx.db.session() as s:
            point = s.get(RecoveryPoint, point_id)
            if point is None or point.state != COMMITTED or point.in_archive or not point.in_vault:
                continue  # gone, or another sweep archived it meanwhile
            location = point.location
        source, target = ctx.datastore.child(location), ctx.archive.child(location)
        try:
            _discard_partial_uploads(target)
            copy_verified(source, target, load_manifest(source))
        except Exception as exc:
            _record_failed_tiering(ctx, point_id, now, exc)
            continue
        with ctx.db.session() as s:
            point = s.get(RecoveryPoint, point_id)
            if point is None or point.state != COMMITTED:
                target.delete_all()  # deleted while we copied: the copy belongs to no one
                continue
            point.in_archive, point.archive_location = True, location
            jobs.finish(_housekeeping_job(s, point, "Tiering", now, _TIERING), ctx.clock.now())
        moved += 1
    return moved


def _record_failed_tiering(ctx: Context, point_id: str, now: datetime, exc: Exception) -> None:
    from pgvault.errors import PgVaultError

    log.warning("tiering point %s failed: %s", point_id, exc)
    error = (
        exc
        if isinstance(exc, PgVaultError)
        else PgVaultError(
            f"Unexpected {type(exc).__name__} while copying to the archive tier; "
            "it is retried on the next pass.",
            code=Code.InternalError,
        )
    )
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, point_id)
        if point is not None:
            job = _housekeeping_job(s, point, "Tiering", now, _TIERING)
            jobs.finish(job, ctx.clock.now(), error=error)


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
            job = _housekeeping_job(s, p, "Deletion", now, {"reason": "Retention expired"})
            jobs.finish(job, now)
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
    from pgvault import policies

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
            plan_point(p, policy.properties)


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
        ("purged", lambda: purge_instances(ctx, now)),
    )
    for name, step in steps:
        try:
            done[name] = step()
        except Exception:
            log.exception("housekeeping step %s failed; it runs again next pass", name)
    return done
