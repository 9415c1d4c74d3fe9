"""Replicas: copies of recovery points in the vault's paired (secondary) region.

A row exists only for a replica whose objects and manifest are all stored in the
secondary region's datastore and verified there: the replication job inserts it as its
last step. `lag_seconds` is how long after the point's creation its replica became
available (the replication lag that point saw).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Float, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault.orm import Base, UTCDateTime
from pgvault.recovery_points import ARCHIVE_STORE, VAULT_STORE

AVAILABLE = "Available"
TIERS = (VAULT_STORE, ARCHIVE_STORE)


class Replica(Base):
    __tablename__ = "replicas"

    point_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    region: Mapped[str] = mapped_column(String(40), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(36), index=True)
    vault_id: Mapped[str] = mapped_column(String(36), index=True)
    tier: Mapped[str] = mapped_column(String(16), default=VAULT_STORE)
    location: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(16), default=AVAILABLE)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    point_created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    replicated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lag_seconds: Mapped[float] = mapped_column(Float)


def record(
    s: Session,
    *,
    point_id: str,
    region: str,
    instance_id: str,
    vault_id: str,
    tier: str,
    location: str,
    stored_bytes: int,
    point_created_at: datetime,
    now: datetime,
) -> Replica:
    """Mark a verified replica available (a re-replication to another tier replaces it)."""
    row = s.get(Replica, (point_id, region))
    if row is None:
        row = Replica(point_id=point_id, region=region)
        s.add(row)
        row.lag_seconds = max(0.0, (now - point_created_at).total_seconds())
    row.instance_id, row.vault_id, row.tier, row.location = instance_id, vault_id, tier, location
    row.state, row.stored_bytes = AVAILABLE, stored_bytes
    row.point_created_at, row.replicated_at = point_created_at, now
    s.flush()
    return row


def get(s: Session, point_id: str, region: str) -> Replica | None:
    return s.get(Replica, (point_id.lower(), region))


def of_instance(s: Session, instance_id: str, region: str) -> list[Replica]:
    """An instance's replicas in `region`, latest point first."""
    q = select(Replica).where(Replica.instance_id == instance_id, Replica.region == region)
    return list(s.scalars(q.order_by(Replica.point_created_at.desc())))


def forget(s: Session, point_id: str) -> None:
    """Drop the rows of a point's replicas (their objects are removed first)."""
    s.execute(delete(Replica).where(Replica.point_id == point_id))


@dataclass(frozen=True)
class Lag:
    """An instance's replication lag: what its points waited (stored per replica) and what
    is still waiting now."""

    replicated_points: int
    pending_points: int
    last_lag_seconds: float | None
    max_lag_seconds: float | None
    current_lag_seconds: float
    last_replicated_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "replicatedPoints": self.replicated_points,
            "pendingPoints": self.pending_points,
            "lastLagSeconds": self.last_lag_seconds,
            "maxLagSeconds": self.max_lag_seconds,
            "currentLagSeconds": self.current_lag_seconds,
            "lastReplicatedAt": self.last_replicated_at.isoformat()
            if self.last_replicated_at
            else None,
        }


def lag(rows: list[Replica], pending_created: list[datetime], now: datetime) -> Lag:
    """The lag figures of one instance: its replicas and the creation times of its points
    not replicated yet (the current lag is how long the oldest of those has waited)."""
    lags = [r.lag_seconds for r in rows]
    latest = max(rows, key=lambda r: r.replicated_at) if rows else None
    oldest = min(pending_created) if pending_created else None
    return Lag(
        replicated_points=len(rows),
        pending_points=len(pending_created),
        last_lag_seconds=latest.lag_seconds if latest else None,
        max_lag_seconds=max(lags) if lags else None,
        current_lag_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        last_replicated_at=latest.replicated_at if latest else None,
    )
