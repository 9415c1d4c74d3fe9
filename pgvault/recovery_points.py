"""Recovery points: one verified full backup of an instance, with its manifest.

A row exists only for a point whose objects and manifest are all stored and
verified: the backup job inserts it as its very last step, in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import armstore, retention
from pgvault.errors import Code
from pgvault.orm import Base, UTCDateTime

VAULT_STORE = "VaultStore"
ARCHIVE_STORE = "ArchiveStore"
COMMITTED = "Committed"
DELETING = "Deleting"


class RecoveryPoint(Base):
    __tablename__ = "recovery_points"
    #: An instance's points, latest first, a page at a time: one index range, no sort.
    __table_args__ = (Index("ix_recovery_points_instance_created", "instance_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("backup_instances.id"), index=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("backup_vaults.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    tier: Mapped[str] = mapped_column(String(16), default=VAULT_STORE)
    location: Mapped[str] = mapped_column(String(500))
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    dump_bytes: Mapped[int] = mapped_column(BigInteger)
    retention_tag: Mapped[str] = mapped_column(String(32), default="Default")
    policy_name: Mapped[str | None] = mapped_column(String(63))
    policy_version: Mapped[int | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=COMMITTED)
    in_vault: Mapped[bool] = mapped_column(default=True)
    in_archive: Mapped[bool] = mapped_column(default=False)
    archive_location: Mapped[str | None] = mapped_column(String(500))
    vault_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    archive_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    archive_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rehydrated_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def datastores(self) -> list[str]:
        """Tiers holding a restorable copy (a rehydrated copy counts as VaultStore)."""
        stores = []
        if self.in_vault or self.rehydrated_until is not None:
            stores.append(VAULT_STORE)
        if self.in_archive:
            stores.append(ARCHIVE_STORE)
        return stores


def add(s: Session, point: RecoveryPoint) -> RecoveryPoint:
    return armstore.add(s, point)


def get(s: Session, instance_id: str, point_id: str) -> RecoveryPoint:
    return armstore.one(
        s,
        select(RecoveryPoint).where(
            RecoveryPoint.instance_id == instance_id,
            RecoveryPoint.id == point_id.lower(),
            RecoveryPoint.state == COMMITTED,
        ),
        f"Recovery point {point_id!r} not found for this backup instance. "
        "List them with `pgvault recovery-point list`.",
        code=Code.UserErrorRecoveryPointNotFound,
    )


def list_points(
    s: Session,
    instance_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[RecoveryPoint]:
    """Points of an instance, latest first, optionally within [start, end]; a page of
    `limit` after `offset` when asked (the API pages long lists)."""
    q = select(RecoveryPoint).where(
        RecoveryPoint.instance_id == instance_id, RecoveryPoint.state == COMMITTED
    )
    if start:
        q = q.where(RecoveryPoint.created_at >= start)
    if end:
        q = q.where(RecoveryPoint.created_at <= end)
    q = q.order_by(RecoveryPoint.created_at.desc(), RecoveryPoint.id).offset(offset)
    return list(s.scalars(q if limit is None else q.limit(limit)))


def count(s: Session, instance_id: str) -> int:
    """How many listed (committed) points an instance has."""
    q = select(func.count()).where(
        RecoveryPoint.instance_id == instance_id, RecoveryPoint.state == COMMITTED
    )
    return int(s.scalar(q) or 0)


def has_unexpired(s: Session, instance_id: str, now: datetime) -> bool:
    """Whether any point of the instance is still within its retention (or kept forever)."""
    return any(p.expires_at is None or p.expires_at > now for p in list_points(s, instance_id))


def latest(s: Session, instance_id: str) -> RecoveryPoint | None:
    points = list_points(s, instance_id)
    return points[0] if points else None


def plan_point(point: RecoveryPoint, policy_properties: dict[str, Any]) -> None:
    """Set a point's tier times from its policy: vault expiry, archive copy time, archive expiry."""
    spans = retention.plan(point.created_at, point.retention_tag, policy_properties)
    vault = next((sp for sp in spans if sp.store == retention.VAULT), None)
    archive = next((sp for sp in spans if sp.store == retention.ARCHIVE), None)
    point.vault_expires_at = vault.end if vault else point.created_at
    point.archive_due_at = archive.start if archive else None
    point.archive_expires_at = archive.end if archive else None
    point.expires_at = max(sp.end for sp in spans) if spans else point.vault_expires_at
