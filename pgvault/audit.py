"""The audit log: every write and every denied call (who, what, where, when, outcome)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault.orm import Base, UTCDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    principal_id: Mapped[str | None] = mapped_column(String(36))
    principal_name: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(300))
    scope: Mapped[str] = mapped_column(String(600))
    method: Mapped[str] = mapped_column(String(10))
    status: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(100))
    #: JSON: what a write changed, where it matters (a server's old and new address).
    details: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def details_dict(self) -> dict[str, Any] | None:
        return json.loads(self.details) if self.details else None

    #: Identical denials (same caller, action, scope, method, status) within the coalescing
    #: window share one row: how many there were, and when the last one came.
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def outcome_of(status: int) -> str:
    if status in (401, 403, 429):
        return "Denied"
    return "Succeeded" if status < 400 else "Failed"


def record(
    s: Session,
    *,
    at: datetime,
    principal_id: str | None,
    principal_name: str | None,
    action: str,
    scope: str,
    method: str,
    status: int,
    error_code: str | None,
    details: dict[str, Any] | None = None,
    coalesce: timedelta | None = None,
) -> None:
    """Add an event; a denial identical to one recorded within `coalesce` bumps that row's
    count instead (so a flood of 401s is one row per caller, action, scope and status)."""
    if coalesce is not None and outcome_of(status) == "Denied":
        same = s.scalar(
            select(AuditEvent)
            .where(
                AuditEvent.at >= at - coalesce,
                AuditEvent.principal_id.is_(None)
                if principal_id is None
                else AuditEvent.principal_id == principal_id,
                AuditEvent.action == action[:300],
                AuditEvent.scope == scope[:600],
                AuditEvent.method == method,
                AuditEvent.status == status,
            )
            .order_by(AuditEvent.at.desc())
            .limit(1)
        )
        if same is not None:  # counted in SQL: parallel denials do not lose updates
            s.execute(
                update(AuditEvent)
                .where(AuditEvent.id == same.id)
                .values(count=AuditEvent.count + 1, last_at=at)
                .execution_options(synchronize_session=False)
            )
            return
    s.add(
        AuditEvent(
            id=str(uuid.uuid4()),
            at=at,
            principal_id=principal_id,
            principal_name=principal_name,
            action=action[:300],
            scope=scope[:600],
            method=method,
            status=status,
            outcome=outcome_of(status),
            error_code=error_code,
            details=json.dumps(details, sort_keys=True) if details else None,
            count=1,
            last_at=at,
        )
    )


def prune(s: Session, before: datetime) -> int:
    """Delete events whose last occurrence is older than `before`. Returns how many."""
    result = s.execute(
        delete(AuditEvent).where(
            AuditEvent.at < before,
            AuditEvent.last_at.is_(None) | (AuditEvent.last_at < before),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def query(
    s: Session,
    *,
    scope_prefix: str | None = None,
    since: datetime | None = None,
    outcome: str | None = None,
    limit: int = 500,
) -> list[AuditEvent]:
    q = select(AuditEvent)
    if since:
        q = q.where(AuditEvent.at >= since)
    if outcome:
        q = q.where(AuditEvent.outcome == outcome)
    rows = list(s.scalars(q.order_by(AuditEvent.at.desc()).limit(limit * 4)))
    if scope_prefix:
        p = scope_prefix.rstrip("/").lower()
        rows = [r for r in rows if r.scope.lower() == p or r.scope.lower().startswith(p + "/")]
    return rows[:limit]
